// The first tuner's random sampler: draws complete schedules from a small space that any
// kernel has, without kernel-specific code. Per stage: element-wise intermediates are
// inlined or computed at root; reductions are tiled (spatial loops into levels, reduction
// loops into levels, ordered by a structure such as "SSRSRS"), element-wise stages tiled in
// two levels; split factors are divisors (perfect tiling); the outer spatial tiles are fused
// and run in parallel; the innermost spatial loop may be vectorized; an unroll pragma from
// {0, 16, 64, 512}. (The sketch rules of the next issue replace this with Ansor's space.)
#pragma once

#include <memory>
#include <random>

#include "ktune/schedule/state.h"
#include "ktune/target/target.h"

namespace ktune::search {

class RandomSampler {
 public:
  RandomSampler(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, uint64_t seed);
  // A random complete schedule. Throws InvalidCandidate only on a ktune bug in the rules.
  schedule::State sample();

 private:
  void tile_stage(schedule::State& st, int s, bool reduction);
  std::vector<int64_t> random_factors(int64_t extent, int parts, int64_t inner_max);

  std::shared_ptr<const te::ComputeDAG> dag_;
  target::Target target_;
  std::mt19937_64 rng_;
};

}  // namespace ktune::search
