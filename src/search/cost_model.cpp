// SKELETON (being written): the cost model (cost_model.h).
#include "ktune/search/cost_model.h"

#include <random>

#include "ktune/support/error.h"

namespace ktune::search {

namespace {
class RandomModel : public CostModel {
 public:
  explicit RandomModel(uint64_t seed) : rng_(seed) {}
  void update(const std::vector<ProgramFeatures>& programs, const std::vector<double>&, const std::string&) override {
    n_ += int(programs.size());
  }
  std::vector<double> predict(const std::vector<ProgramFeatures>& programs) override {
    std::vector<double> out(programs.size());
    std::uniform_real_distribution<double> u(0, 1);
    for (double& v : out) v = u(rng_);
    return out;
  }
  int num_samples() const override { return n_; }
  std::string name() const override { return "random"; }

 private:
  std::mt19937_64 rng_;
  int n_ = 0;
};
}  // namespace

std::unique_ptr<CostModel> make_cost_model(const std::string& kind, uint64_t seed) {
  return std::make_unique<RandomModel>(seed);
}

double pairwise_ranking_accuracy(const std::vector<double>& predicted, const std::vector<double>& actual) {
  KT_CHECK(predicted.size() == actual.size(), "ranking accuracy: sizes differ");
  long long agree = 0, total = 0;
  for (size_t i = 0; i < actual.size(); ++i)
    for (size_t j = i + 1; j < actual.size(); ++j) {
      if (actual[i] == actual[j]) continue;
      ++total;
      agree += (predicted[i] - predicted[j]) * (actual[i] - actual[j]) > 0;
    }
  return total ? double(agree) / double(total) : 0.5;
}

}  // namespace ktune::search
