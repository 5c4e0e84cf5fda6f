// The cost models (cost_model.h): XGBoost with the pack-sum objective, and random scores.
//
// Training: all rows of all programs form one DMatrix (Ansor's pack-sum); each boosting round
// predicts every row's margin (XGBoost caches the training predictions, so this is cheap),
// sums the margins per program, and boosts one tree on the gradient of a pairwise ranking
// loss on those sums (RankNet: log(1 + exp(-(s_hi - s_lo))) for each pair of programs of one
// workload, `hi` measured faster), every row taking its program's gradient and hessian.
// base_score is 0 so a program's score is exactly the sum of its rows' tree outputs.
//
// Ansor's objective, the weighted squared error of the sums against throughput normalized per
// workload, ranked the search's own later picks no better than chance on matmul 512^3 and
// 0.58-0.68 on a conv2d (ktune model-eval --train=300); the pairwise loss does not spend the
// trees on the scale of the slow and invalid programs, and ranked 0.63-0.75 on the conv2d,
// still about chance on the matmul (docs/results.md has the measurements).
#include "ktune/search/cost_model.h"

#include <xgboost/c_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <random>

#include "ktune/support/debug.h"
#include "ktune/support/error.h"

namespace ktune::search {

namespace {

// Below this many samples (or with no pair of different throughputs) the model predicts
// random scores.
constexpr int kMinTrainSamples = 64;
// Pairs: every pair of a workload's programs up to this many programs, else this many random
// partners per program (training cost grows with the pairs, not with their square).
constexpr int kAllPairsUpTo = 500;
constexpr int kSampledPairs = 128;
// Floor of a program's hessian (a program in no uncertain pair has almost none).
constexpr double kMinHessian = 1e-6;
constexpr int kMaxRounds = 100;
// XGBoost's threads. One: training on a thousand programs takes 0.4 s and predicting 2,048
// programs 30 ms on one core, while with two OpenMP threads on a busy 2-core machine both
// were several times slower (threads spinning at barriers while the other is descheduled).
constexpr int kThreads = 1;
// Boosting stops early once the pairwise loss improves by less than this fraction over
// kPatience rounds (about 40 rounds on 300 programs). The loss keeps falling slowly for all
// 100 rounds while the held-out accuracy stays flat (ktune model-eval on the four logs of
// docs/results.md: within 0.005 of the 100-round model, at a third of the training time).
constexpr double kMinImprovement = 0.1;
constexpr int kPatience = 10;
// The model trains on at most this many programs, the most recent ones (older samples, a
// warm start's first, are dropped). Memory and retraining time then stop growing with the
// trials of a long run (a 10,000-candidate evolutionary tune held every program's rows, about
// 10 KB per candidate); past a few thousand samples of one workload the search's recent picks
// are the ones whose order matters.
constexpr size_t kMaxTrainPrograms = 4096;

// A pair's weight: min(1, log2(faster / slower)). Programs measured within a few percent of
// each other are in the measurement noise (DESIGN §7) and barely count; an invalid program
// (0 GFLOP/s) is ordered below every valid one with full weight.
double pair_weight(double faster, double slower) {
  return slower > 0 ? std::min(1.0, std::log2(faster / slower)) : 1.0;
}

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
    // Ansor's parameters (TVM auto_scheduler/cost_model/xgb_model.py) but min_child_weight;
    // hist trees are as good as exact ones on our data and several times faster.
    const std::pair<const char*, const char*> params[] = {
        {"booster", "gbtree"},
        {"tree_method", "hist"},
        {"max_depth", "10"},
        {"eta", "0.2"},
        // Ansor has 0; with the pairwise loss most programs end up in no uncertain pair and
        // carry almost no hessian, and trees split down to them: 1 trains 3-4x faster and
        // ranks as well (0.507 0.530 0.637 0.751 against 0.492 0.517 0.645 0.762 with 0 on
        // the four logs of docs/results.md, 100 rounds each).
        {"min_child_weight", "1"},
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
    while (programs_.size() > kMaxTrainPrograms) {
      programs_.pop_front();
      gflops_.pop_front();
      workloads_.pop_front();
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
  // One pair of programs of a workload: `hi` measured faster than `lo`, with a weight.
  struct Pair {
    int hi, lo;
    float weight;
  };

  // The ordered pairs of programs of each workload, weighted by how far apart they measured.
  std::vector<Pair> make_pairs() const {
    std::map<std::string, std::vector<int>> groups;
    for (size_t i = 0; i < gflops_.size(); ++i) groups[workloads_[i]].push_back(int(i));
    std::vector<Pair> pairs;
    std::mt19937_64 rng(seed_ ^ 0x9e3779b97f4a7c15ULL);
    auto add = [&](int a, int b) {
      if (gflops_[a] == gflops_[b]) return;
      if (gflops_[a] < gflops_[b]) std::swap(a, b);
      pairs.push_back({a, b, float(pair_weight(gflops_[a], gflops_[b]))});
    };
    for (const auto& [key, idx] : groups) {
      const int n = int(idx.size());
      if (n <= kAllPairsUpTo) {
        for (int a = 0; a < n; ++a)
          for (int b = a + 1; b < n; ++b) add(idx[a], idx[b]);
      } else {
        std::uniform_int_distribution<int> other(0, n - 2);
        for (int a = 0; a < n; ++a)
          for (int k = 0; k < kSampledPairs; ++k) {
            const int b = other(rng);
            add(idx[a], idx[b < a ? b : b + 1]);
          }
      }
    }
    return pairs;
  }

  // Retrains from scratch on every sample kept (the most recent kMaxTrainPrograms).
  void train() {
    booster_.reset();
    std::vector<const ProgramFeatures*> ptrs;
    for (const ProgramFeatures& p : programs_) ptrs.push_back(&p);
    if (num_samples() < kMinTrainSamples || total_rows(ptrs) == 0) return;
    const std::vector<Pair> pairs = make_pairs();
    if (pairs.empty()) return;  // nothing to order (no valid program, or all alike)
    double pair_weights = 0;
    for (const Pair& p : pairs) pair_weights += p.weight;

    const auto start = std::chrono::steady_clock::now();
    std::vector<int> pack;
    DMatrix dm(ptrs, pack);
    auto booster = std::make_unique<Booster>(dm, seed_);
    const size_t n = programs_.size();
    // Gradients are scaled so that a program's share is about what it was under the regression
    // objective (sum of the weights = number of programs), which Ansor's tree parameters
    // (min_child_weight, gamma) were tuned for.
    const double scale = double(n) / pair_weights;
    std::vector<float> grad(pack.size()), hess(pack.size());
    std::vector<double> g(n), h(n), history;
    int round = 0;
    for (; round < kMaxRounds; ++round) {
      const std::vector<double> sums = sum_per_program(booster->margins(dm, true), pack, n);
      std::fill(g.begin(), g.end(), 0.0);
      std::fill(h.begin(), h.end(), 0.0);
      double loss = 0;
      for (const Pair& p : pairs) {
        // RankNet: loss log(1 + exp(-d)) on the score difference d of the ordered pair.
        const double d = sums[p.hi] - sums[p.lo], e = std::exp(-std::fabs(d));
        const double wrong = d > 0 ? e / (1 + e) : 1 / (1 + e);  // P(the wrong order)
        loss += p.weight * (std::log1p(e) + std::max(0.0, -d));
        const double pg = scale * p.weight * wrong, ph = scale * p.weight * wrong * (1 - wrong);
        g[p.hi] -= pg;
        g[p.lo] += pg;
        h[p.hi] += ph;
        h[p.lo] += ph;
      }
      history.push_back(loss / pair_weights);
      if (round >= kPatience && history[round - kPatience] - history[round] <
                                    kMinImprovement * history[round - kPatience])
        break;
      // A row's gradient is its program's: the program's score is the sum of its rows'.
      for (size_t r = 0; r < pack.size(); ++r) {
        grad[r] = float(g[pack[r]]);
        hess[r] = float(std::max(h[pack[r]], kMinHessian));
      }
      booster->boost(dm, grad, hess);
    }
    debug(1) << "cost model: trained on " << n << " programs (" << pack.size() << " rows, "
             << pairs.size() << " pairs), " << round << " rounds, pairwise loss "
             << history.back() << ", "
             << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                    .count()
             << " ms\n";
    booster_ = std::move(booster);
  }

  uint64_t seed_;
  std::mt19937_64 rng_;
  std::deque<ProgramFeatures> programs_;
  std::deque<double> gflops_;
  std::deque<std::string> workloads_;
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

std::optional<double> pairwise_ranking_accuracy(const std::vector<double>& predicted,
                                                const std::vector<double>& actual, double min_ratio,
                                                const std::vector<int64_t>& groups) {
  KT_CHECK(predicted.size() == actual.size(), "ranking accuracy: ", predicted.size(),
           " predictions for ", actual.size(), " values");
  KT_CHECK(groups.empty() || groups.size() == actual.size(), "ranking accuracy: ", groups.size(),
           " groups for ", actual.size(), " values");
  long long agree = 0, total = 0;
  for (size_t i = 0; i < actual.size(); ++i)
    for (size_t j = i + 1; j < actual.size(); ++j) {
      if (actual[i] == actual[j]) continue;
      if (!groups.empty() && groups[i] != groups[j]) continue;
      if (min_ratio > 1 && std::max(actual[i], actual[j]) <= min_ratio * std::min(actual[i], actual[j]))
        continue;
      ++total;
      agree += (predicted[i] - predicted[j]) * (actual[i] - actual[j]) > 0;
    }
  if (!total) return std::nullopt;
  return double(agree) / double(total);
}

double pairwise_ranking_accuracy(const std::vector<double>& predicted,
                                 const std::vector<double>& actual, double min_ratio) {
  return pairwise_ranking_accuracy(predicted, actual, min_ratio, {}).value_or(0.5);
}

}  // namespace ktune::search
