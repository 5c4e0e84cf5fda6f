// Exploration (DESIGN §7, after Ansor): evolutionary search guided by the cost model.
//
// Each round proposes a batch: an initial population sampled from the sketches (at least
// init_population valid states, plus the best measured states so far), evolved for
// `generations` generations of `population` states by mutation (tile size, unroll, compute
// location, parallel; weights below) with parents picked by roulette over predicted score;
// the batch is the best predicted states not measured before (a few slots reserved for the
// best of each structure, and for transplants of the best measured states into other
// structures), with eps_greedy of it drawn at random from the sketches. Every measured batch
// retrains the model (observe()).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <random>

#include "ktune/search/cost_model.h"
#include "ktune/search/features.h"
#include "ktune/search/sampler.h"
#include "ktune/search/tuner.h"

namespace ktune::search {

struct EvolutionOptions {
  int population = 2048;
  int generations = 4;
  int init_population = 50;  // sample until this many unique valid states
  double mutation_prob = 0.85;
  double w_tile = 0.90, w_unroll = 0.04, w_compute_location = 0.05, w_parallel = 0.01;
  double eps_greedy = 0.05;
  // Per batch, up to this many transplants of the best measured states into other sketches
  // (RandomSampler::transplants): the search otherwise stays in the sketch of its first good
  // candidates, and a sketch's random samples rarely have good tile sizes.
  int transplants = 2;
  // Per batch, up to this many slots go to the best-predicted unmeasured state of each
  // structure (structure_key: a state's cache stages, inlined and root stages), structures
  // with the fewest measured states first. The model's best otherwise all come from the
  // structure of the first good candidates: in a ResNet-18 stem tune one structure took 239
  // of 300 trials while the structure of another tune's best got 14.
  int structure_slots = 8;
  // The best measured states (by GFLOP/s) join each initial population, at most this
  // fraction of `population` (Ansor's sample_init_use_measured_ratio).
  double use_measured_ratio = 0.2;
  // Threads extracting features (each lowers its states); propose() is otherwise serial.
  int threads = 2;
  // The features of a state: extract_features unless set (tests give their own). Called from
  // `threads` threads at once; throws InvalidCandidate for a state that does not lower.
  std::function<ProgramFeatures(const schedule::State&, const target::Target&)> features;
};

class EvolutionaryPolicy : public SearchPolicy {
 public:
  // `model` may be shared with other tasks (a shape list shares one model).
  EvolutionaryPolicy(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, std::shared_ptr<CostModel> model,
                     uint64_t seed, EvolutionOptions opt = {});
  ~EvolutionaryPolicy() override;
  std::vector<schedule::State> propose(int n, const std::unordered_set<std::string>& measured) override;
  void observe(const std::vector<schedule::State>& states, const std::vector<MeasureResult>& results) override;
  std::string phase() const override { return "explore"; }
  const RejectCounts& rejected() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A state's structure: its cache_read/cache_write, compute_inline, compute_root and rfactor
// steps, which tile sizes, unrolling, parallel loops and mutations do not change.
std::string structure_key(const schedule::State& st);

// Mutations. Each edits the step list and replays it; the result is lowered to check it
// (nullopt when the edit does not apply or gives an invalid state).
// Tile size: moves a prime factor between two levels of a split (innermost stays <= 64).
std::optional<schedule::State> mutate_tile_size(const schedule::State& s, std::mt19937_64& rng);
// Unroll: another value of an auto_unroll_max_step pragma from {0, 16, 64, 512}.
std::optional<schedule::State> mutate_unroll(const schedule::State& s, std::mt19937_64& rng);
// Compute location: another loop of the consumer for a stage computed at one.
std::optional<schedule::State> mutate_compute_location(const schedule::State& s, std::mt19937_64& rng);
// Parallel: one loop more or fewer fused into a stage's parallel loop.
std::optional<schedule::State> mutate_parallel(const schedule::State& s, std::mt19937_64& rng);

}  // namespace ktune::search
