// SKELETON (being written): evolutionary search (evolution.h). For now: random samples.
#include "ktune/search/evolution.h"

#include "ktune/schedule/steps.h"

namespace ktune::search {

struct EvolutionaryPolicy::Impl {
  Impl(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, uint64_t seed) : sampler(dag, t, seed) {}
  RandomSampler sampler;
};

EvolutionaryPolicy::EvolutionaryPolicy(std::shared_ptr<const te::ComputeDAG> dag, target::Target t,
                                       std::shared_ptr<CostModel> model, uint64_t seed, EvolutionOptions opt)
    : impl_(std::make_unique<Impl>(std::move(dag), std::move(t), seed)) {}
EvolutionaryPolicy::~EvolutionaryPolicy() = default;

std::vector<schedule::State> EvolutionaryPolicy::propose(int n, const std::unordered_set<std::string>& measured) {
  std::vector<schedule::State> out;
  std::unordered_set<std::string> batch;
  for (int misses = 0; int(out.size()) < n && misses < 1000;) {
    schedule::State st = impl_->sampler.sample();
    const std::string key = schedule::canonical_key(st.steps());
    if (measured.count(key) || !batch.insert(key).second) {
      ++misses;
      continue;
    }
    out.push_back(std::move(st));
  }
  return out;
}
void EvolutionaryPolicy::observe(const std::vector<schedule::State>&, const std::vector<MeasureResult>&) {}
const RejectCounts& EvolutionaryPolicy::rejected() const { return impl_->sampler.rejected(); }

std::optional<schedule::State> mutate_tile_size(const schedule::State&, std::mt19937_64&) { return std::nullopt; }
std::optional<schedule::State> mutate_unroll(const schedule::State&, std::mt19937_64&) { return std::nullopt; }
std::optional<schedule::State> mutate_compute_location(const schedule::State&, std::mt19937_64&) { return std::nullopt; }
std::optional<schedule::State> mutate_parallel(const schedule::State&, std::mt19937_64&) { return std::nullopt; }

}  // namespace ktune::search
