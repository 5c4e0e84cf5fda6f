// Random schedules from the sketch space: a random sketch (sketch.h), randomly annotated.
// Annotations that give an invalid state are rejected before compilation (the state is
// lowered to check) and counted by reason.
#pragma once

#include <memory>
#include <optional>

#include "ktune/search/sketch.h"

namespace ktune::search {

class RandomSampler {
 public:
  RandomSampler(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, uint64_t seed);
  // A random complete, valid schedule.
  schedule::State sample();
  // Up to n valid states of other sketches (in random order) with the tile sizes of `src`
  // (Annotator::tile_sizes), each differing from `src`; the rest of each is drawn at random.
  std::vector<schedule::State> transplants(const schedule::State& src, int n);
  // `src` without its first pack stage (a cache_read and every step of its stage; the reader
  // reads the tensor itself), everything else as it was; nullopt when it has none or the
  // result is not valid. Whether a pack pays depends on the layout the tensor already has.
  std::optional<schedule::State> without_pack(const schedule::State& src) const;
  const std::vector<Sketch>& sketches() const { return sketches_; }
  const RejectCounts& rejected() const { return rejected_; }

 private:
  std::shared_ptr<const te::ComputeDAG> dag_;
  std::vector<Sketch> sketches_;
  Annotator annotator_;
  RejectCounts rejected_;
};

}  // namespace ktune::search
