// SKELETON (being written): Droplet Search (droplet.h). For now: converged at once.
#include "ktune/search/droplet.h"

#include <cmath>
#include <limits>

namespace ktune::search {

struct DropletPolicy::Impl {
  schedule::State centre;
  double centre_ms = 0;
  std::vector<DropletStep> accepted;
};

DropletPolicy::DropletPolicy(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, schedule::State start,
                             std::vector<double> start_times_ms, uint64_t seed, DropletOptions opt)
    : impl_(new Impl{std::move(start), start_times_ms.empty() ? 0.0 : start_times_ms[0], {}}) {}
DropletPolicy::~DropletPolicy() = default;
std::vector<schedule::State> DropletPolicy::propose(int, const std::unordered_set<std::string>&) { return {}; }
void DropletPolicy::observe(const std::vector<schedule::State>&, const std::vector<MeasureResult>&) {}
bool DropletPolicy::converged() const { return true; }
const schedule::State& DropletPolicy::centre() const { return impl_->centre; }
double DropletPolicy::centre_ms() const { return impl_->centre_ms; }
const std::vector<DropletStep>& DropletPolicy::accepted() const { return impl_->accepted; }

double welch_p_value(const std::vector<double>&, const std::vector<double>&) {
  return std::numeric_limits<double>::quiet_NaN();
}

}  // namespace ktune::search
