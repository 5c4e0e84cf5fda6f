// The tuning driver's strategies: two-phase (exploration, then refinement), droplet,
// evolutionary and random; the time budget; resuming a two-phase run; warm-starting the cost
// model from logs of other shapes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "ktune/search/tuner.h"
#include "ktune/support/error.h"
#include "ktune/te/kernel.h"

using namespace ktune;

namespace {

te::KernelDef matmul_def() { return te::parse_kernel_file(te::shipped_kernel_dir() + "/matmul.kt"); }

std::shared_ptr<const te::ComputeDAG> matmul(const te::KernelDef& def, int64_t m, int64_t n, int64_t k) {
  return std::make_shared<const te::ComputeDAG>(def.instantiate({{"M", m}, {"N", n}, {"K", k}}));
}

std::string temp_log(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() / ("ktune_two_phase_" + name + ".jsonl");
  std::filesystem::remove(p);
  return p.string();
}

search::TuneOptions quick(const std::string& strategy, int budget, int refine, const std::string& log) {
  search::TuneOptions opt;
  opt.strategy = strategy;
  opt.budget = budget;
  opt.refine_budget = refine;
  opt.threads = 1;
  opt.seed = 11;
  opt.log_path = log;
  opt.timing.repeat = 3;
  opt.timing.min_repeat_ms = 0.5;
  return opt;
}

}  // namespace

TEST_CASE("two-phase explores for the budget, then refines the best with recorded phases", "[two-phase]") {
  const auto def = matmul_def();
  const std::string log = temp_log("tp");
  search::TuneOptions opt = quick("two-phase", 24, 12, log);
  int last_trial = 0;
  bool order_ok = true, refine_seen = false;
  search::TuneResult r = search::tune(matmul(def, 48, 64, 32), target::host_target(), opt, [&](const search::TuneProgress& p) {
    order_ok = order_ok && p.trial == last_trial + 1 && p.budget == 36;
    last_trial = p.trial;
    if (p.phase == "refine") refine_seen = true;
    else order_ok = order_ok && !refine_seen && p.phase == "explore";  // no exploration after refinement
  });
  CHECK(order_ok);
  CHECK(r.phase_trials["explore"] == 24);
  CHECK(r.phase_trials["refine"] >= 1);
  CHECK(r.trials == r.phase_trials["explore"] + r.phase_trials["refine"]);
  CHECK(r.trials <= 36);
  REQUIRE(r.best.has_value());
  CHECK(r.explore_best_ms > 0);
  CHECK(r.best->median_ms <= r.explore_best_ms);
  // Every accepted move improved on the centre it left, and is a logged refine trial.
  // Moves are accepted on interleaved re-measurements (4 rounds of centre and neighbour),
  // which are neither logged nor counted as trials.
  for (const auto& m : r.refinement) {
    CHECK(m.to_ms < m.from_ms);
    CHECK(m.trial > 24);
    CHECK(m.trial <= r.trials);
    CHECK(m.confirmed);
    CHECK(m.p_value < 0.05);
  }
  CHECK(r.refine_confirmations >= int(r.refinement.size()));
  CHECK(r.refine_remeasured == 8 * r.refine_confirmations);
  // The log holds every trial, exploration first, each candidate once.
  const auto recs = log::read_log(log).records;
  REQUIRE(int(recs.size()) == r.trials);
  std::set<std::string> keys;
  for (size_t i = 0; i < recs.size(); ++i) {
    CHECK(recs[i].phase == (i < 24 ? "explore" : "refine"));
    CHECK(keys.insert(recs[i].steps.dump()).second);
  }
  std::filesystem::remove(log);
}

TEST_CASE("the droplet strategy refines the first valid random schedule", "[two-phase]") {
  const auto def = matmul_def();
  const std::string log = temp_log("droplet");
  search::TuneResult r = search::tune(matmul(def, 32, 32, 32), target::host_target(), quick("droplet", 10, 0, log));
  CHECK(r.trials <= 10);
  const auto recs = log::read_log(log).records;
  REQUIRE(!recs.empty());
  CHECK(recs[0].phase == "sample");
  CHECK(r.phase_trials["sample"] >= 1);
  if (r.trials > r.phase_trials["sample"]) CHECK(recs.back().phase == "refine");
  std::filesystem::remove(log);
}

TEST_CASE("strategies: unknown names are user errors; the time budget stops a run cleanly", "[two-phase]") {
  CHECK_THROWS_AS(search::check_strategy("annealing"), UserError);
  CHECK_NOTHROW(search::check_strategy("evolutionary"));
  const auto def = matmul_def();
  search::TuneOptions bad = quick("annealing", 4, 0, "");
  CHECK_THROWS_WITH(search::tune(matmul(def, 8, 8, 8), target::host_target(), bad),
                    Catch::Contains("unknown strategy 'annealing'") && Catch::Contains("two-phase"));

  const std::string log = temp_log("time");
  search::TuneOptions opt = quick("random", 100000, 0, log);
  opt.time_budget_s = 1.5;
  const auto t0 = std::chrono::steady_clock::now();
  search::TuneResult r = search::tune(matmul(def, 64, 64, 64), target::host_target(), opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(r.timed_out);
  CHECK_FALSE(r.interrupted);
  CHECK(r.trials > 0);
  CHECK(r.trials < 100000);
  CHECK(secs < 15);  // one candidate in flight at most past the deadline
  CHECK(int(log::read_log(log).records.size()) == r.trials);
  std::filesystem::remove(log);
}

TEST_CASE("a resumed two-phase run keeps its exploration and goes on", "[two-phase]") {
  const auto def = matmul_def();
  const auto dag = matmul(def, 32, 48, 16);
  const std::string log = temp_log("resume");
  search::TuneResult first = search::tune(dag, target::host_target(), quick("two-phase", 12, 0, log));
  CHECK(first.trials == 12);
  search::TuneOptions more = quick("two-phase", 12, 6, log);
  more.resume = true;
  search::TuneResult second = search::tune(dag, target::host_target(), more);
  CHECK(second.resumed == 12);
  CHECK(second.phase_trials["explore"] == 12);  // nothing explored again
  CHECK(second.trials > 12);
  CHECK(second.trials <= 18);
  const auto recs = log::read_log(log).records;
  REQUIRE(int(recs.size()) == second.trials);
  for (size_t i = 12; i < recs.size(); ++i) CHECK(recs[i].phase == "refine");
  std::filesystem::remove(log);
}

TEST_CASE("warm start: records of other shapes train the model; bad logs are user errors", "[two-phase]") {
  const auto def = matmul_def();
  const auto t = target::host_target();
  const std::string a = temp_log("warm_a"), b = temp_log("warm_b");
  search::tune(matmul(def, 16, 16, 16), t, quick("random", 6, 0, a));
  search::tune(matmul(def, 24, 16, 8), t, quick("random", 5, 0, b));
  {
    auto model = search::make_cost_model("random", 1);
    search::WarmStart ws = search::warm_start_model(*model, {a, b}, def, t);
    CHECK(ws.used == 11);
    CHECK(ws.skipped == 0);
    CHECK(model->num_samples() == 11);
  }
  // A bad line in the middle is skipped and counted; the good ones are used.
  {
    std::ifstream in(a);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    std::ofstream out(a);
    const size_t cut = text.find('\n') + 1;
    out << text.substr(0, cut) << "{not json\n" << text.substr(cut);
  }
  {
    auto model = search::make_cost_model("random", 1);
    search::WarmStart ws = search::warm_start_model(*model, {a}, def, t);
    CHECK(ws.used == 6);
    CHECK(ws.skipped == 1);
    REQUIRE(ws.warnings.size() == 1);
  }
  // A log of another kernel, a missing log: user errors naming the problem.
  te::KernelDef other = te::parse_kernel_file(te::shipped_kernel_dir() + "/softmax.kt");
  auto model = search::make_cost_model("random", 1);
  CHECK_THROWS_WITH(search::warm_start_model(*model, {b}, other, t),
                    Catch::Contains("holds no record of kernel softmax") && Catch::Contains("only of matmul"));
  CHECK_THROWS_WITH(search::warm_start_model(*model, {"/nonexistent.jsonl"}, def, t),
                    Catch::Contains("there is no tuning log"));
  std::filesystem::remove(a);
  std::filesystem::remove(b);
}

TEST_CASE("the slow cutoff times a short candidate slower than it by one group, others fully", "[two-phase]") {
  const auto def = matmul_def();
  auto dag = matmul(def, 64, 64, 64);
  runtime::TimingOptions timing;
  timing.repeat = 5;
  timing.min_repeat_ms = 20;  // the verification run is far shorter: a short run
  search::Measurer measurer(dag, target::host_target(), 1, timing);
  const schedule::State naive(dag);
  search::MeasureOptions slow;
  slow.slow_cutoff_ms = 1e-9;  // anything is slower
  const search::MeasureResult r1 = measurer.measure(naive, slow);
  REQUIRE(r1.valid());
  CHECK(r1.timing.group_means_ms.size() == 1);
  CHECK(r1.timing.median_ms == r1.timing.group_means_ms[0]);
  CHECK(r1.timing.number >= 1);
  search::MeasureOptions fast;
  fast.slow_cutoff_ms = 1e9;  // nothing is slower: the first group and the remaining ones
  const search::MeasureResult r2 = measurer.measure(naive, fast);
  REQUIRE(r2.valid());
  CHECK(r2.timing.group_means_ms.size() == 5);
  std::vector<double> sorted = r2.timing.group_means_ms;
  std::sort(sorted.begin(), sorted.end());
  CHECK(r2.timing.median_ms == sorted[2]);
  const search::MeasureResult r3 = measurer.measure(naive, search::MeasureOptions{});
  CHECK(r3.timing.group_means_ms.size() == 5);
}
