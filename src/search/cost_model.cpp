// The cost models (cost_model.h): XGBoost with the pack-sum objective, and random scores.
//
// Training is Ansor's: all rows of all programs form one DMatrix; each boosting round
// predicts every row's margin (XGBoost caches the training predictions, so this is cheap),
// sums the margins per program, and boosts one tree on the gradient of the weighted squared
// error of those sums: grad_row = w (sum_prog - y_prog), hess_row = w. base_score is 0 so a
// program's score is exactly the sum of its rows' tree outputs.
#include "ktune/search/cost_model.h"

#include <xgboost/c_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <random>

#include "ktune/support/debug.h"
#include "ktune/support/error.h"

namespace ktune::search {

namespace {

// Below this many samples (or with no valid one) the model predicts random scores.
constexpr int kMinTrainSamples = 64;
// Sample weight floor: invalid and slow programs still pull their sums towards 0.
constexpr double kMinWeight = 0.1;
constexpr int kMaxRounds = 100;
// XGBoost's threads. One: training on a thousand programs takes 0.4 s and predicting 2,048
// programs 30 ms on one core, while with two OpenMP threads on a busy 2-core machine both
// were several times slower (threads spinning at barriers while the other is descheduled).
constexpr int kThreads = 1;
// Boosting stops early once the weighted RMSE of the program sums improves by less than
// this fraction over kPatience rounds.
constexpr double kMinImprovement = 0.005;
constexpr int kPatience = 10;

void xgb_check(int rc, const char* call) {
  KT_CHECK(rc == 0, "XGBoost ", call, " failed: ", XGBGetLastError());
}

size_t total_rows(const std::vector<const ProgramFeatures*>& programs) {
  size_t rows = 0;
  for (const ProgramFeatures* p : programs) rows += size_t(p->rows());
  return rows;
}

class DMatrix {
 public:
  // Rows of every program, in order; `pack` gets each row's program index.
  DMatrix(const std::vector<const ProgramFeatures*>& programs, std::vector<int>& pack) {
    const int width = feature_width();
    const size_t rows = total_rows(programs);
    std::vector<float> data;
    data.reserve(rows * width);
    for (size_t i = 0; i < programs.size(); ++i) {
      const ProgramFeatures& p = *programs[i];
      KT_CHECK(p.data.size() == size_t(p.rows()) * width, "program features of the wrong width");
      data.insert(data.end(), p.data.begin(), p.data.end());
      pack.insert(pack.end(), size_t(p.rows()), int(i));
    }
    rows_ = rows;
    xgb_check(XGDMatrixCreateFromMat_omp(data.data(), bst_ulong(rows), bst_ulong(width),
                                         std::numeric_limits<float>::quiet_NaN(), &h_, kThreads),
              "XGDMatrixCreateFromMat_omp");
  }
  ~DMatrix() { XGDMatrixFree(h_); }
  DMatrix(const DMatrix&) = delete;
  DMatrix& operator=(const DMatrix&) = delete;
  DMatrixHandle handle() const { return h_; }
  size_t rows() const { return rows_; }

 private:
  DMatrixHandle h_ = nullptr;
  size_t rows_ = 0;
};

class Booster {
 public:
  explicit Booster(const DMatrix& train, uint64_t seed) {
    DMatrixHandle m = train.handle();
    xgb_check(XGBoosterCreate(&m, 1, &h_), "XGBoosterCreate");
    const std::string seed_text = std::to_string(seed % 2147483647),
                      threads = std::to_string(kThreads);
    // Ansor's parameters (TVM auto_scheduler/cost_model/xgb_model.py); hist trees are as good
    // as exact ones on our data and several times faster.
    const std::pair<const char*, const char*> params[] = {
        {"booster", "gbtree"},
        {"tree_method", "hist"},
        {"max_depth", "10"},
        {"eta", "0.2"},
        {"min_child_weight", "0"},
        {"gamma", "0.001"},
        {"nthread", threads.c_str()},
        {"verbosity", "0"},
        {"base_score", "0"},
        {"objective", "reg:squarederror"},
        {"disable_default_eval_metric", "1"},
        {"seed", seed_text.c_str()},
    };
    for (const auto& [k, v] : params) xgb_check(XGBoosterSetParam(h_, k, v), "XGBoosterSetParam");
  }
  ~Booster() { XGBoosterFree(h_); }
  Booster(const Booster&) = delete;
  Booster& operator=(const Booster&) = delete;

  // Raw tree sums per row. `training`: dm is the training matrix (uses XGBoost's cache).
  std::vector<float> margins(const DMatrix& dm, bool training) const {
    bst_ulong len = 0;
    const float* out = nullptr;
    xgb_check(XGBoosterPredict(h_, dm.handle(), /*option_mask=output margin*/ 1, 0,
                               training ? 1 : 0, &len, &out),
              "XGBoosterPredict");
    KT_CHECK(len == dm.rows(), "XGBoost returned ", len, " predictions for ", dm.rows(), " rows");
    return std::vector<float>(out, out + len);
  }
  void boost(const DMatrix& dm, std::vector<float>& grad, std::vector<float>& hess) {
    xgb_check(
        XGBoosterBoostOneIter(h_, dm.handle(), grad.data(), hess.data(), bst_ulong(grad.size())),
        "XGBoosterBoostOneIter");
  }

 private:
  BoosterHandle h_ = nullptr;
};

std::vector<double> sum_per_program(const std::vector<float>& rows, const std::vector<int>& pack,
                                    size_t programs) {
  std::vector<double> s(programs, 0.0);
  for (size_t r = 0; r < rows.size(); ++r) s[pack[r]] += rows[r];
  return s;
}

class XGBoostModel : public CostModel {
 public:
  explicit XGBoostModel(uint64_t seed) : seed_(seed), rng_(seed) {}

  void update(const std::vector<ProgramFeatures>& programs, const std::vector<double>& gflops,
              const std::string& workload) override {
    KT_CHECK(programs.size() == gflops.size(), "cost model update: ", programs.size(),
             " programs, ", gflops.size(), " throughputs");
    if (programs.empty()) return;
    for (size_t i = 0; i < programs.size(); ++i) {
      programs_.push_back(programs[i]);
      gflops_.push_back(std::isfinite(gflops[i]) ? std::max(0.0, gflops[i]) : 0.0);
      workloads_.push_back(workload);
    }
    train();
  }

  std::vector<double> predict(const std::vector<ProgramFeatures>& programs) override {
    if (!booster_) {
      std::uniform_real_distribution<double> u(0, 1);
      std::vector<double> out(programs.size());
      for (double& v : out) v = u(rng_);
      return out;
    }
    std::vector<const ProgramFeatures*> ptrs;
    for (const ProgramFeatures& p : programs) ptrs.push_back(&p);
    if (total_rows(ptrs) == 0) return std::vector<double>(programs.size(), 0.0);
    std::vector<int> pack;
    DMatrix dm(ptrs, pack);
    return sum_per_program(booster_->margins(dm, false), pack, programs.size());
  }

  int num_samples() const override { return int(programs_.size()); }
  std::string name() const override { return "xgboost"; }

 private:
  // Retrains from scratch on every sample.
  void train() {
    booster_.reset();
    std::map<std::string, double> best;
    for (size_t i = 0; i < gflops_.size(); ++i)
      best[workloads_[i]] = std::max(best[workloads_[i]], gflops_[i]);
    std::vector<double> y(gflops_.size()), w(gflops_.size());
    bool any = false;
    for (size_t i = 0; i < y.size(); ++i) {
      const double b = best[workloads_[i]];
      y[i] = b > 0 ? gflops_[i] / b : 0.0;
      w[i] = std::max(y[i], kMinWeight);
      any = any || y[i] > 0;
    }
    std::vector<const ProgramFeatures*> ptrs;
    for (const ProgramFeatures& p : programs_) ptrs.push_back(&p);
    if (num_samples() < kMinTrainSamples || !any || total_rows(ptrs) == 0) return;

    const auto start = std::chrono::steady_clock::now();
    std::vector<int> pack;
    DMatrix dm(ptrs, pack);
    std::vector<float> labels(pack.size());
    for (size_t r = 0; r < pack.size(); ++r) labels[r] = float(y[pack[r]]);
    xgb_check(XGDMatrixSetFloatInfo(dm.handle(), "label", labels.data(), bst_ulong(labels.size())),
              "XGDMatrixSetFloatInfo");

    auto booster = std::make_unique<Booster>(dm, seed_);
    std::vector<float> grad(pack.size()), hess(pack.size());
    std::vector<double> history;
    double sum_w = 0;
    for (double x : w) sum_w += x;
    int round = 0;
    for (; round < kMaxRounds; ++round) {
      const std::vector<double> sums =
          sum_per_program(booster->margins(dm, true), pack, programs_.size());
      double err = 0;
      for (size_t i = 0; i < sums.size(); ++i) err += w[i] * (sums[i] - y[i]) * (sums[i] - y[i]);
      history.push_back(std::sqrt(err / sum_w));
      if (round >= kPatience && history[round - kPatience] - history[round] <
                                    kMinImprovement * history[round - kPatience])
        break;
      for (size_t r = 0; r < pack.size(); ++r) {
        const int p = pack[r];
        grad[r] = float(w[p] * (sums[p] - y[p]));
        hess[r] = float(w[p]);
      }
      booster->boost(dm, grad, hess);
    }
    debug(1) << "cost model: trained on " << programs_.size() << " programs (" << pack.size()
             << " rows), " << round << " rounds, weighted RMSE " << history.back() << ", "
             << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count()
             << " ms\n";
    booster_ = std::move(booster);
  }

  uint64_t seed_;
  std::mt19937_64 rng_;
  std::vector<ProgramFeatures> programs_;
  std::vector<double> gflops_;
  std::vector<std::string> workloads_;
  std::unique_ptr<Booster> booster_;
};

class RandomModel : public CostModel {
 public:
  explicit RandomModel(uint64_t seed) : rng_(seed) {}
  void update(const std::vector<ProgramFeatures>& programs, const std::vector<double>&,
              const std::string&) override {
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
  if (kind == "xgboost") return std::make_unique<XGBoostModel>(seed);
  if (kind == "random") return std::make_unique<RandomModel>(seed);
  throw UserError("unknown cost model '" + kind + "' (known: xgboost, random)");
}

double pairwise_ranking_accuracy(const std::vector<double>& predicted,
                                 const std::vector<double>& actual) {
  KT_CHECK(predicted.size() == actual.size(), "ranking accuracy: ", predicted.size(),
           " predictions for ", actual.size(), " values");
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
