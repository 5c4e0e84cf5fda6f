// The learned cost model (DESIGN §7): gradient-boosted trees through XGBoost's C API.
//
// Each program is a set of feature rows (features.h); its score is the sum of its rows'
// predictions ("pack-sum"), and training fits those sums with a pairwise ranking loss (a
// custom gradient): for each pair of programs of one workload, the faster one should score
// higher, pairs weighted by min(1, log2 of their throughput ratio). Only programs of the same
// workload are compared, so one model serves a whole shape list. The model keeps the most
// recent 4,096 samples and retrains from scratch on them on update(). Before it has enough samples it returns random
// scores.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ktune/search/features.h"

namespace ktune::search {

class CostModel {
 public:
  virtual ~CostModel() = default;
  // Adds measured programs of the workload keyed `workload` (log::Workload::key()), with their
  // throughput in GFLOP/s (0 for an invalid candidate), and retrains.
  virtual void update(const std::vector<ProgramFeatures>& programs, const std::vector<double>& gflops,
                      const std::string& workload) = 0;
  // Scores; higher means predicted faster. Only the order matters.
  virtual std::vector<double> predict(const std::vector<ProgramFeatures>& programs) = 0;
  virtual int num_samples() const = 0;
  // "xgboost" or "random".
  virtual std::string name() const = 0;
};

// kind: "xgboost" (the default) or "random" (random scores, for ablations).
std::unique_ptr<CostModel> make_cost_model(const std::string& kind, uint64_t seed);

// The fraction of pairs (i, j) with actual[i] != actual[j] that `predicted` orders the same
// way. 0.5 is chance. With `min_ratio` > 1, only the pairs whose larger actual value is more
// than min_ratio times the smaller count (pairs outside the measurement noise).
double pairwise_ranking_accuracy(const std::vector<double>& predicted, const std::vector<double>& actual,
                                 double min_ratio = 1.0);

// The same over the pairs whose `groups` values are equal (say, measured in one batch);
// nullopt when there is no such pair of different actual values.
std::optional<double> pairwise_ranking_accuracy(const std::vector<double>& predicted,
                                                const std::vector<double>& actual, double min_ratio,
                                                const std::vector<int64_t>& groups);

}  // namespace ktune::search
