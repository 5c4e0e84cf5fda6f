// The random sampler's schedules lower correctly, and an end-to-end tune of a small matmul
// writes a parseable log whose best record is verified. Measurement in this process: early
// rejection of slow candidates, batches compiled in parallel groups, and the tuner's use of
// both.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "ktune/schedule/steps.h"
#include "ktune/search/measurer.h"
#include "ktune/search/sampler.h"
#include "ktune/search/tuner.h"
#include "ktune/te/kernel.h"
#include "support/dags.h"

using namespace ktune;
using namespace ktune::testing;

TEST_CASE("random sampler schedules lower to the right values", "[sampler]") {
  const target::Target t = target::host_target();
  std::vector<std::shared_ptr<const te::ComputeDAG>> dags = {matmul_dag(24, 20, 12), matmul_dag(7, 13, 5),
                                                              dense_relu_dag(8, 12, 6), conv1d_dag(3, 12, 4, 3, 1),
                                                              softmax_dag(6, 10)};
  for (const auto& dag : dags) {
    search::RandomSampler sampler(dag, t, 42);
    for (int i = 0; i < 25; ++i) {
      schedule::State st = sampler.sample();
      INFO(dag->kernel << " sample " << i << "\n" << st.steps_text());
      CHECK(check_lowering(st, i) < 1e-5);
    }
  }
}

TEST_CASE("tuning matmul 64x64x64 end to end writes a verified best and a full log", "[e2e]") {
  te::KernelDef def = te::parse_kernel_file(te::shipped_kernel_dir() + "/matmul.kt");
  auto dag = std::make_shared<const te::ComputeDAG>(def.instantiate({{"M", 64}, {"N", 64}, {"K", 64}}));
  const std::string log = (std::filesystem::temp_directory_path() / "ktune_e2e_test.jsonl").string();
  std::filesystem::remove(log);
  search::TuneOptions opt;
  opt.strategy = "random";  // exactly the budget (tests/test_two_phase.cpp covers the others)
  opt.budget = 16;
  opt.threads = 2;
  opt.log_path = log;
  opt.seed = 3;
  opt.timing.min_repeat_ms = 1;
  opt.timing.repeat = 3;
  int calls = 0;
  search::TuneResult r = search::tune(dag, target::host_target(), opt, [&](const search::TuneProgress&) { ++calls; });
  CHECK(r.trials == 16);
  CHECK(calls == 16);
  CHECK(r.reference == "interpreter");
  REQUIRE(r.best.has_value());
  CHECK(r.best->valid());
  CHECK(r.best->gflops > 0);

  log::LogContents contents = log::read_log(log);
  CHECK(contents.warnings.empty());
  REQUIRE(contents.records.size() == 16);
  for (const auto& rec : contents.records) {
    CHECK(rec.workload.kernel == "matmul");
    CHECK(rec.workload.dag_hash == dag->hash());
    if (rec.valid()) CHECK(rec.median_ms >= r.best->median_ms);
  }
  // The best record replays into a schedule that verifies again.
  schedule::State st = schedule::replay(dag, schedule::steps_from_json(r.best->steps));
  search::Measurer m(dag, target::host_target(), 2);
  search::MeasureResult again = m.measure(st);
  CHECK(again.valid());
  CHECK(again.rel_error < 1e-4);
  std::filesystem::remove(log);
}

TEST_CASE("a truncated last log line is skipped with a warning; a bad middle line is an error", "[log]") {
  te::KernelDef def = te::parse_kernel_file(te::shipped_kernel_dir() + "/matmul.kt");
  auto dag = std::make_shared<const te::ComputeDAG>(def.instantiate({{"M", 8}, {"N", 8}, {"K", 8}}));
  const std::string path = (std::filesystem::temp_directory_path() / "ktune_log_test.jsonl").string();
  std::filesystem::remove(path);
  {
    log::LogWriter w(path);
    log::Record rec = log::make_record(*dag, target::host_target(), 1);
    rec.median_ms = 1;
    w.write(rec);
    w.write(rec);
  }
  std::string text;
  {
    std::ifstream in(path);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  {
    std::ofstream out(path);
    out << text << text.substr(0, 40);  // an interrupted write
  }
  auto contents = log::read_log(path);
  CHECK(contents.records.size() == 2);
  REQUIRE(contents.warnings.size() == 1);
  CHECK_THAT(contents.warnings[0], Catch::Contains(":3:") && Catch::Contains("truncated"));
  {
    std::ofstream out(path);
    out << "{\"format_version\": 1}\n" << text;  // complete JSON, but not a record
  }
  CHECK_THROWS_WITH(log::read_log(path), Catch::Contains(":1:"));
  std::filesystem::remove(path);
}

TEST_CASE("random schedules compiled by the JIT match the interpreter", "[sampler][jit]") {
  const target::Target t = target::host_target();
  std::vector<std::shared_ptr<const te::ComputeDAG>> dags = {matmul_dag(24, 20, 12), matmul_dag(7, 13, 5),
                                                              dense_relu_dag(8, 12, 6), conv1d_dag(3, 12, 4, 3, 1),
                                                              softmax_dag(6, 10)};
  runtime::TimingOptions quick;
  quick.repeat = 1;
  quick.min_repeat_ms = 0.1;
  for (const auto& dag : dags) {
    search::Measurer m(dag, t, 2, quick);
    REQUIRE(m.reference_kind() == "interpreter");
    search::RandomSampler sampler(dag, t, 7);
    for (int i = 0; i < 12; ++i) {
      schedule::State st = sampler.sample();
      search::MeasureResult r = m.measure(st);
      INFO(dag->kernel << " sample " << i << ": " << r.message << "\n" << st.steps_text());
      CHECK(r.valid());
    }
  }
}

TEST_CASE("every shipped kernel tunes at a small shape", "[e2e]") {
  te::KernelRegistry reg;
  reg.add_directory(te::shipped_kernel_dir());
  REQUIRE(reg.kernels().size() >= 10);
  // Shrink every parameter that is a size so the interpreter is the reference.
  const std::map<std::string, int64_t> small = {{"M", 12}, {"N", 2}, {"K", 10}, {"B", 2}, {"C", 3},
                                                {"H", 9},  {"W", 7}, {"R", 3},  {"S", 3},
                                                {"cb", 3}, {"kb", 2}, {"nb", 2}};
  for (const auto& def : reg.kernels()) {
    std::map<std::string, int64_t> vals;
    for (const auto& p : def.params)
      if (small.count(p.name)) vals[p.name] = small.at(p.name);
    if (def.name == "softmax" || def.name == "transpose2d") vals["N"] = 10;
    auto dag = std::make_shared<const te::ComputeDAG>(def.instantiate(vals));
    search::TuneOptions opt;
    opt.strategy = "random";
    opt.budget = 6;
    opt.threads = 2;
    opt.timing.repeat = 1;
    opt.timing.min_repeat_ms = 0.1;
    search::TuneResult r = search::tune(dag, target::host_target(), opt);
    INFO(def.name);
    CHECK(r.trials == 6);
    CHECK(r.errors == 0);
    CHECK(r.best.has_value());
  }
}

namespace {

// A state that replays but does not lower: D is computed at a loop of Y that is split after.
schedule::State unlowerable(const std::shared_ptr<const te::ComputeDAG>& dense_relu) {
  schedule::State st(dense_relu);
  st.apply(schedule::ComputeAtStep{0, 1, 1});
  st.apply(schedule::SplitStep{1, 1, {2}});
  return st;
}

// Three groups of one run each: every run lasts a group, so early rejection applies.
runtime::TimingOptions three_groups() {
  runtime::TimingOptions t;
  t.repeat = 3;
  t.min_repeat_ms = 1e-6;
  return t;
}

}  // namespace

TEST_CASE("early rejection: a candidate slower than the cutoff is timed by its verification run", "[measure]") {
  auto dag = matmul_dag(48, 40, 32);
  search::Measurer m(dag, target::host_target(), 2, three_groups());
  search::RandomSampler sampler(dag, target::host_target(), 3);
  const schedule::State st = sampler.sample();
  search::MeasureOptions slow;
  slow.slow_cutoff_ms = 1e-9;  // any run is slower
  const search::MeasureResult one = m.measure(st, slow);
  REQUIRE(one.valid());
  CHECK(one.timing.group_means_ms.size() == 1);
  CHECK(one.timing.number == 1);
  CHECK(one.timing.median_ms == one.timing.group_means_ms[0]);
  CHECK(one.gflops > 0);
  search::MeasureOptions fast;
  fast.slow_cutoff_ms = 1e6;  // no run is slower
  for (const search::MeasureOptions& opt : {fast, search::MeasureOptions{}}) {
    const search::MeasureResult full = m.measure(st, opt);
    REQUIRE(full.valid());
    CHECK(full.timing.group_means_ms.size() == 3);
  }
  // A run shorter than a group is timed (one short cold run is mostly noise), by one group
  // first: slower than the cutoff, that group is its timing; otherwise all groups follow.
  runtime::TimingOptions long_groups = three_groups();
  long_groups.min_repeat_ms = 5;
  search::Measurer m1(dag, target::host_target(), 2, long_groups);
  const search::MeasureResult short_slow = m1.measure(st, slow);
  CHECK(short_slow.timing.group_means_ms.size() == 1);
  CHECK(short_slow.timing.number > 1);  // a calibrated group, not the verification run
  CHECK(m1.measure(st, fast).timing.group_means_ms.size() == 3);
  // Verification comes first: a wrong or failing candidate is never "too slow".
  auto dr = dense_relu_dag(8, 12, 6);
  search::Measurer m2(dr, target::host_target(), 2, three_groups());
  CHECK(m2.measure(unlowerable(dr), slow).error == runtime::ErrorClass::InvalidSchedule);
}

TEST_CASE("a batch is measured in order, like one at a time; a failing candidate affects no other", "[measure][batch]") {
  auto dag = dense_relu_dag(24, 20, 12);
  const target::Target t = target::host_target();
  search::Measurer m(dag, t, 2, three_groups());
  search::RandomSampler sampler(dag, t, 5);
  std::vector<schedule::State> states;
  for (int i = 0; i < 11; ++i) states.push_back(i == 5 ? unlowerable(dag) : sampler.sample());  // groups of 8 + 3

  std::vector<size_t> order;
  std::vector<double> cutoffs;
  search::BatchHooks hooks;
  hooks.options = [&](size_t i) {
    search::MeasureOptions o;
    o.slow_cutoff_ms = i % 2 ? 1e-9 : 0;  // odd ones: one timing
    cutoffs.push_back(o.slow_cutoff_ms);
    return o;
  };
  hooks.done = [&](size_t i, const search::MeasureResult&) { order.push_back(i); };
  const std::vector<search::MeasureResult> batch = m.measure_batch(states, hooks);
  REQUIRE(batch.size() == states.size());
  CHECK(order == std::vector<size_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  CHECK(cutoffs.size() == states.size());
  for (size_t i = 0; i < states.size(); ++i) {
    INFO(i << ": " << batch[i].message);
    const search::MeasureResult alone = m.measure(states[i]);
    CHECK(batch[i].error == alone.error);
    CHECK(batch[i].rel_error == Approx(alone.rel_error).margin(1e-7));
    if (i == 5) {
      CHECK(batch[i].error == runtime::ErrorClass::InvalidSchedule);
      CHECK_THAT(batch[i].message, Catch::Contains("split or fused afterwards"));
      continue;
    }
    REQUIRE(batch[i].valid());
    CHECK(batch[i].compile_ms > 0);
    CHECK(batch[i].timing.group_means_ms.size() == (i % 2 ? 1u : 3u));
  }

  // keep_going is asked before each group and each candidate: stopping after the 3rd result
  // measures exactly 3.
  int asked = 0;
  search::BatchHooks stop;
  stop.keep_going = [&] { return ++asked <= 4; };  // once before the group, then per candidate
  CHECK(m.measure_batch(states, stop).size() == 3);
  // The base class measures one at a time through measure().
  CHECK(m.MeasureBackend::measure_batch({states[0], states[5]}).size() == 2);
}

namespace {

// Times from a table, in the order measured; records the options the tuner passes.
class ScriptedBackend : public search::MeasureBackend {
 public:
  explicit ScriptedBackend(std::vector<double> times) : times_(std::move(times)) {}
  search::MeasureResult measure(const schedule::State&) override { return next(search::MeasureOptions{}); }
  std::vector<search::MeasureResult> measure_batch(const std::vector<schedule::State>& states,
                                                   const search::BatchHooks& hooks) override {
    std::vector<search::MeasureResult> out;
    for (size_t i = 0; i < states.size() && (!hooks.keep_going || hooks.keep_going()); ++i) {
      out.push_back(next(hooks.options(i)));
      hooks.done(i, out.back());
    }
    return out;
  }
  const std::string& reference_kind() const override { return kind_; }
  std::vector<double> cutoffs;

 private:
  search::MeasureResult next(const search::MeasureOptions& opt) {
    cutoffs.push_back(opt.slow_cutoff_ms);
    search::MeasureResult r;
    const double t = times_.at(cutoffs.size() - 1);
    if (t < 0) {
      r.error = runtime::ErrorClass::WrongAnswer;
      return r;
    }
    r.timing.group_means_ms = {t};
    r.timing.median_ms = t;
    r.gflops = 1 / t;
    return r;
  }
  std::vector<double> times_;
  std::string kind_ = "scripted";
};

}  // namespace

TEST_CASE("the tuner measures in batches with a cutoff of 3x the best so far", "[measure][batch]") {
  auto dag = matmul_dag(16, 16, 16);
  search::TuneOptions opt;
  opt.strategy = "random";
  opt.budget = 6;
  auto backend = std::make_unique<ScriptedBackend>(std::vector<double>{-1, 4, 5, 2, 9, 1});  // -1: wrong answer
  ScriptedBackend* b = backend.get();
  search::TuningTask task(dag, target::host_target(), opt, nullptr, std::move(backend));
  CHECK(task.step(6) == 6);
  CHECK(b->cutoffs == std::vector<double>{0, 0, 12, 12, 6, 6});
  CHECK(task.result().best->median_ms == 1);
}
