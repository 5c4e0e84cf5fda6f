// Isolated measurement, fault injection, resuming and interrupting a tune, and the log's
// tolerance of interrupted writes (DESIGN §8, §9).
#include <catch2/catch.hpp>

#include <chrono>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "ktune/schedule/dag_json.h"
#include "ktune/schedule/steps.h"
#include "ktune/search/isolated.h"
#include "ktune/search/sampler.h"
#include "ktune/search/tuner.h"
#include "ktune/support/error.h"
#include "ktune/support/interrupt.h"
#include "ktune/te/kernel.h"
#include "support/dags.h"

using namespace ktune;
using namespace ktune::testing;

namespace {

std::shared_ptr<const te::ComputeDAG> shipped(const std::string& name, const std::map<std::string, int64_t>& v) {
  te::KernelDef def = te::parse_kernel_file(te::shipped_kernel_dir() + "/" + name + ".kt");
  return std::make_shared<const te::ComputeDAG>(def.instantiate(v));
}

std::string temp_path(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() / ("ktune_test_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::remove(p);
  return p.string();
}

search::TuneOptions quick_options(int budget) {
  search::TuneOptions opt;
  opt.strategy = "random";  // exactly `budget` candidates (tests/test_two_phase.cpp covers the others)
  opt.budget = budget;
  opt.threads = 2;
  opt.seed = 5;
  opt.timing.repeat = 1;
  opt.timing.min_repeat_ms = 0.2;
  return opt;
}

// Timing for tests: one run of at least `min_ms`, enough to tell candidates apart.
runtime::TimingOptions quick_timing(double min_ms = 0.2) {
  runtime::TimingOptions t;
  t.repeat = 1;
  t.min_repeat_ms = min_ms;
  return t;
}

// Isolated measurement on.
search::IsolationOptions isolated_options() {
  search::IsolationOptions iso;
  iso.enabled = true;
  return iso;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("a ComputeDAG survives its JSON form exactly", "[isolated][dag_json]") {
  std::vector<std::shared_ptr<const te::ComputeDAG>> dags = {matmul_dag(24, 20, 12), dense_relu_dag(8, 12, 6),
                                                              conv1d_dag(3, 12, 4, 3, 1), softmax_dag(6, 10)};
  te::KernelRegistry reg;
  reg.add_directory(te::shipped_kernel_dir());
  for (const auto& def : reg.kernels()) dags.push_back(std::make_shared<const te::ComputeDAG>(def.instantiate()));
  for (const auto& dag : dags) {
    INFO(dag->kernel);
    const nlohmann::json j = schedule::dag_to_json(*dag);
    const te::ComputeDAG back = schedule::dag_from_json(nlohmann::json::parse(j.dump()));
    CHECK(back.canonical_text() == dag->canonical_text());
    CHECK(back.hash() == dag->hash());
    CHECK(back.params == dag->params);
    CHECK(back.flop_count() == dag->flop_count());
  }
  CHECK_THROWS_AS(schedule::dag_from_json(nlohmann::json::parse(R"({"kernel":"k"})")), ktune::UserError);
  CHECK_THROWS_AS(schedule::dag_from_json(nlohmann::json::parse(
                      R"({"kernel":"k","dtype":"","params":[],"vars":[],"ops":[{"name":"C","placeholder":false,)"
                      R"("dtype":[1,32,1],"shape":[2],"const":false,"output":true,"axes":[[0,2]],)"
                      R"("reduce_axes":[],"reduce":0,"body":["IntImm",[0,64,1],1]}]})")),
                  ktune::UserError);  // var 0 does not exist
}

TEST_CASE("the isolated backend measures like the in-process one", "[isolated]") {
  auto dag = shipped("matmul", {{"M", 32}, {"N", 24}, {"K", 16}});
  const target::Target t = target::host_target();
  const runtime::TimingOptions quick = quick_timing();
  search::IsolationOptions iso = isolated_options();
  search::IsolatedMeasurer isolated(dag, t, 2, quick, iso);
  search::Measurer local(dag, t, 2, quick);
  CHECK(isolated.reference_kind() == local.reference_kind());
  search::RandomSampler sampler(dag, t, 11);
  for (int i = 0; i < 4; ++i) {
    schedule::State st = sampler.sample();
    search::MeasureResult a = isolated.measure(st), b = local.measure(st);
    INFO(a.message);
    CHECK(a.valid());
    CHECK(b.valid());
    CHECK(a.rel_error == Approx(b.rel_error).margin(1e-7));
    CHECK(a.timing.median_ms > 0);
    CHECK(a.gflops > 0);
  }
  CHECK(isolated.worker_starts() == 1);
  CHECK(isolated.stats().candidates == 4);
  CHECK(isolated.stats().worker_busy_ms <= isolated.stats().round_trip_ms);

  search::IsolationOptions missing = iso;
  missing.worker_path = "/nonexistent/ktune-worker";
  CHECK_THROWS_WITH(search::IsolatedMeasurer(dag, t, 2, quick, missing),
                    Catch::Contains("is not an executable file"));
  CHECK_THAT(search::find_worker_executable(), Catch::EndsWith("ktune-worker"));
  search::IsolationOptions not_a_worker = iso;
  not_a_worker.worker_path = "/bin/true";  // runs, but does not speak the protocol
  CHECK_THROWS_WITH(search::IsolatedMeasurer(dag, t, 2, quick, not_a_worker),
                    Catch::Contains("failed to start") && Catch::Contains("exited with status 0"));
}

TEST_CASE("fault plans", "[isolated][faults]") {
  search::FaultPlan every("segv+wrong:every=3");
  std::vector<search::Fault> got;
  for (int i = 0; i < 9; ++i) got.push_back(every.next());
  using F = search::Fault;
  CHECK(got == std::vector<F>{F::None, F::None, F::Segv, F::None, F::None, F::WrongAnswer, F::None, F::None, F::Segv});
  search::FaultPlan p1("all:p=0.5:seed=3"), p2("all:p=0.5:seed=3");
  int faults = 0;
  for (int i = 0; i < 200; ++i) {
    const F f = p1.next();
    CHECK(f == p2.next());
    faults += f != F::None;
  }
  CHECK(faults > 60);
  CHECK(faults < 140);
  CHECK_THROWS_WITH(search::FaultPlan("boom"), Catch::Contains("unknown fault 'boom'"));
  CHECK_THROWS_WITH(search::FaultPlan("segv:every=0"), Catch::Contains("every must be at least 1"));
  CHECK_THROWS_WITH(search::FaultPlan("segv:p=2"), Catch::Contains("p must be in [0, 1]"));
  CHECK_THROWS_WITH(search::FaultPlan("segv:often"), Catch::Contains("unknown option 'often'"));
}

TEST_CASE("a tune survives one fault of every kind and classifies each", "[isolated][faults][e2e]") {
  auto dag = shipped("matmul", {{"M", 32}, {"N", 32}, {"K", 32}});
  const std::string log = temp_path("faults.jsonl");
  search::TuneOptions opt = quick_options(16);
  opt.log_path = log;
  opt.isolation.enabled = true;
  opt.isolation.run_timeout_s = 0.3;
  opt.isolation.compile_timeout_s = 4;  // far above a real compile, even on a loaded machine
  opt.isolation.inject_faults = "all:every=2";  // 8 faults, one of each kind, between valid candidates
  search::TuneResult r = search::tune(dag, target::host_target(), opt);
  CHECK(r.trials == 16);
  CHECK(r.valid == 8);
  CHECK(r.error_counts["runtime-error"] == 4);  // segv, abort, sigill, oob
  CHECK(r.error_counts["run-timeout"] == 1);
  CHECK(r.error_counts["compile-timeout"] == 1);
  CHECK(r.error_counts["compile-error"] == 1);
  CHECK(r.error_counts["wrong-answer"] == 1);
  REQUIRE(r.best.has_value());
  CHECK(r.best->valid());
  CHECK(r.best->trial % 2 == 1);  // never a faulty candidate
  const auto records = log::read_log(log).records;
  REQUIRE(records.size() == 16);
  for (const auto& rec : records) {
    INFO(rec.trial << ": " << rec.error_message);
    if (rec.trial % 2 == 1) {
      CHECK(rec.valid());
      continue;
    }
    CHECK_THAT(rec.error_message, Catch::Contains("[injected fault: "));
  }
  CHECK_THAT(records[1].error_message, Catch::Contains("SIGSEGV"));
  CHECK_THAT(records[3].error_message, Catch::Contains("SIGABRT"));
  CHECK_THAT(records[5].error_message, Catch::Contains("SIGILL"));
  CHECK_THAT(records[13].error_message, Catch::Contains("SIGSEGV") && Catch::Contains("while compiling"));
  std::filesystem::remove(log);
}

TEST_CASE("an isolated batch is measured in order, like in-process, with the cutoff", "[isolated][batch]") {
  auto dag = dense_relu_dag(24, 20, 12);  // a DAG without a kernel file travels too
  const target::Target t = target::host_target();
  runtime::TimingOptions timing;
  timing.repeat = 3;
  timing.min_repeat_ms = 1e-6;  // every run lasts a group: early rejection applies
  search::IsolationOptions iso = isolated_options();
  search::IsolatedMeasurer isolated(dag, t, 2, timing, iso);
  search::Measurer local(dag, t, 2, timing);
  search::RandomSampler sampler(dag, t, 8);
  std::vector<schedule::State> states;
  for (int i = 0; i < 10; ++i) states.push_back(sampler.sample());
  schedule::State bad(dag);  // replays, does not lower: D computed at a loop of Y split afterwards
  bad.apply(schedule::ComputeAtStep{0, 1, 1});
  bad.apply(schedule::SplitStep{1, 1, {2}});
  states[4] = bad;

  std::vector<size_t> order;
  search::BatchHooks hooks;
  hooks.options = [](size_t i) {
    search::MeasureOptions o;
    o.slow_cutoff_ms = i % 2 ? 1e-9 : 0;  // odd ones: one timing
    return o;
  };
  hooks.done = [&](size_t i, const search::MeasureResult&) { order.push_back(i); };
  const std::vector<search::MeasureResult> batch = isolated.measure_batch(states, hooks);
  REQUIRE(batch.size() == states.size());
  CHECK(order == std::vector<size_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  for (size_t i = 0; i < states.size(); ++i) {
    INFO(i << ": " << batch[i].message);
    const search::MeasureResult one = local.measure(states[i]);
    CHECK(batch[i].error == one.error);
    if (i == 4) {
      CHECK(batch[i].error == runtime::ErrorClass::InvalidSchedule);
      continue;
    }
    REQUIRE(batch[i].valid());
    CHECK(batch[i].rel_error == Approx(one.rel_error).margin(1e-7));
    CHECK(batch[i].timing.group_means_ms.size() == (i % 2 ? 1u : 3u));
  }
  CHECK(isolated.worker_starts() == 1);
  CHECK(isolated.stats().candidates == 10);

  // A stop request between candidates: the batch ends after the one in flight.
  int asked = 0;
  search::BatchHooks stop;
  stop.keep_going = [&] { return ++asked <= 3; };  // the group, then candidates 0 and 1
  CHECK(isolated.measure_batch(states, stop).size() == 2);
}

TEST_CASE("faults in a batch are pinned on their candidates, also while its group compiles", "[isolated][batch][faults]") {
  auto dag = shipped("matmul", {{"M", 32}, {"N", 32}, {"K", 32}});
  const target::Target t = target::host_target();
  const runtime::TimingOptions quick = quick_timing();
  search::IsolationOptions iso = isolated_options();
  iso.run_timeout_s = 0.5;
  iso.compile_timeout_s = 2;
  // Candidates 3, 6, 9 and 12 (1-based) misbehave; the groups hold 8 (2 threads).
  iso.inject_faults = "compile-crash+compile-hang+segv+wrong:every=3";
  search::IsolatedMeasurer isolated(dag, t, 2, quick, iso);
  search::RandomSampler sampler(dag, t, 4);
  std::vector<schedule::State> states;
  for (int i = 0; i < 13; ++i) states.push_back(sampler.sample());
  const std::vector<search::MeasureResult> r = isolated.measure_batch(states);
  REQUIRE(r.size() == states.size());
  using E = runtime::ErrorClass;
  const std::map<size_t, E> faulty = {{2, E::CompileError}, {5, E::CompileTimeout}, {8, E::RuntimeError}, {11, E::WrongAnswer}};
  for (size_t i = 0; i < r.size(); ++i) {
    INFO(i << ": " << r[i].message);
    if (!faulty.count(i)) {
      CHECK(r[i].valid());
      CHECK_THAT(r[i].message, !Catch::Contains("injected fault"));
      continue;
    }
    CHECK(r[i].error == faulty.at(i));
    CHECK_THAT(r[i].message, Catch::Contains("[injected fault: "));
  }
  CHECK_THAT(r[2].message, Catch::Contains("SIGSEGV") && Catch::Contains("while compiling"));
  CHECK_THAT(r[5].message, Catch::Contains("--compile-timeout=2"));
}

TEST_CASE("a run limit below --run-timeout stops hopeless candidates early", "[isolated][batch]") {
  auto dag = shipped("matmul", {{"M", 32}, {"N", 32}, {"K", 32}});
  const target::Target t = target::host_target();
  const runtime::TimingOptions quick = quick_timing();
  search::IsolationOptions iso = isolated_options();
  iso.run_timeout_s = 30;
  iso.inject_faults = "hang:every=2";  // the second candidate never finishes
  search::IsolatedMeasurer isolated(dag, t, 2, quick, iso);
  search::RandomSampler sampler(dag, t, 6);
  std::vector<schedule::State> states{sampler.sample(), sampler.sample(), sampler.sample()};
  search::BatchHooks hooks;
  hooks.options = [](size_t) {
    search::MeasureOptions o;
    o.run_limit_s = 0.3;
    return o;
  };
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<search::MeasureResult> r = isolated.measure_batch(states, hooks);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(r.size() == 3);
  CHECK(r[0].valid());
  CHECK(r[1].error == runtime::ErrorClass::RunTimeout);
  CHECK_THAT(r[1].message, Catch::Contains("the limit for hopeless candidates"));
  CHECK(r[2].valid());
  CHECK(secs < 15);  // not the 30 s of --run-timeout
  // A matmul this small uses the interpreter: no naive time to scale the first limit by.
  CHECK(isolated.reference_ms() == 0);
}

TEST_CASE("a worker is replaced after recycle_after candidates, between groups", "[isolated][batch]") {
  auto dag = shipped("matmul", {{"M", 16}, {"N", 16}, {"K", 16}});
  const target::Target t = target::host_target();
  const runtime::TimingOptions quick = quick_timing(0.1);
  search::IsolationOptions iso = isolated_options();
  iso.recycle_after = 5;
  search::IsolatedMeasurer isolated(dag, t, 1, quick, iso);  // groups of 4 on one thread
  search::RandomSampler sampler(dag, t, 3);
  std::vector<schedule::State> states;
  for (int i = 0; i < 12; ++i) states.push_back(sampler.sample());
  const std::vector<search::MeasureResult> r = isolated.measure_batch(states);
  REQUIRE(r.size() == 12);
  for (const auto& m : r) CHECK(m.valid());
  // Groups of 4: the first worker runs 8 (it reaches 5 within its second group), the next 4.
  CHECK(isolated.worker_starts() == 2);
}

TEST_CASE("a resumed tune measures nothing twice and refuses another target or kernel", "[resume][e2e]") {
  auto dag = shipped("matmul", {{"M", 16}, {"N", 16}, {"K", 16}});
  auto other = shipped("matmul", {{"M", 8}, {"N", 8}, {"K", 8}});
  const target::Target t = target::host_target();
  const std::string log = temp_path("resume.jsonl");
  search::TuneOptions opt = quick_options(5);
  opt.log_path = log;
  search::tune(other, t, opt);  // another workload in the same log: ignored
  opt.budget = 4;
  search::tune(dag, t, opt);
  opt.budget = 9;
  opt.resume = true;
  search::TuneResult r = search::tune(dag, t, opt);
  CHECK(r.resumed == 4);
  CHECK(r.trials == 9);
  CHECK_FALSE(r.interrupted);
  REQUIRE(r.best.has_value());
  const auto records = log::read_log(log).records;
  REQUIRE(records.size() == 14);
  std::set<std::string> keys;
  for (size_t i = 5; i < records.size(); ++i) {
    CHECK(records[i].trial == int(i) - 4);
    keys.insert(schedule::canonical_key(schedule::steps_from_json(records[i].steps)));
  }
  CHECK(keys.size() == 9);
  // At its budget already: nothing more is measured.
  r = search::tune(dag, t, opt);
  CHECK(r.trials == 9);
  CHECK(log::read_log(log).records.size() == 14);

  const std::string before = read_text(log);
  target::Target changed = t;
  changed.features.push_back("imaginary-feature");
  CHECK_THROWS_WITH(search::tune(dag, changed, opt),
                    Catch::Contains("other CPU features") && Catch::Contains("+imaginary-feature"));
  changed = t;
  changed.triple = "aarch64-unknown-linux-gnu";
  CHECK_THROWS_WITH(search::tune(dag, changed, opt), Catch::Contains("aarch64-unknown-linux-gnu"));
  auto redefined = std::make_shared<te::ComputeDAG>(*dag);
  redefined->ops.back().is_const = !redefined->ops.back().is_const;  // same name and params, another DAG
  CHECK_THROWS_WITH(search::tune(redefined, t, opt), Catch::Contains("another definition of the kernel"));
  search::TuneOptions threads = opt;
  threads.threads = 1;
  CHECK_THROWS_WITH(search::tune(dag, t, threads), Catch::Contains("--threads=2"));
  CHECK(read_text(log) == before);  // a refused resume leaves the log as it was
  search::TuneOptions missing = opt;
  missing.log_path = temp_path("missing.jsonl");
  CHECK_THROWS_WITH(search::tune(dag, t, missing), Catch::Contains("no tuning log"));
  std::filesystem::remove(log);
}

TEST_CASE("a stop request ends a tune after the candidate in flight, resumable", "[resume][interrupt]") {
  auto dag = shipped("matmul", {{"M", 16}, {"N", 16}, {"K", 16}});
  const target::Target t = target::host_target();
  const std::string log = temp_path("interrupt.jsonl");
  for (bool isolated : {false, true}) {
    std::filesystem::remove(log);
    search::TuneOptions opt = quick_options(8);
    opt.log_path = log;
    opt.isolation.enabled = isolated;
    clear_stop();
    search::TuneResult r = search::tune(dag, t, opt, [](const search::TuneProgress& p) {
      if (p.trial == 3) request_stop();
    });
    clear_stop();
    CHECK(r.interrupted);
    CHECK(r.trials == 3);
    CHECK(log::read_log(log).records.size() == 3);
    opt.resume = true;
    r = search::tune(dag, t, opt);
    CHECK_FALSE(r.interrupted);
    CHECK(r.resumed == 3);
    CHECK(r.trials == 8);
    CHECK(log::read_log(log).records.size() == 8);
  }
  std::filesystem::remove(log);
}

TEST_CASE("a record cut short by a killed run is skipped, also once the log goes on", "[log]") {
  auto dag = shipped("matmul", {{"M", 8}, {"N", 8}, {"K", 8}});
  const std::string path = temp_path("cut.jsonl");
  log::Record rec = log::make_record(*dag, target::host_target(), 1);
  rec.median_ms = 1;
  const std::string line = log::to_json(rec).dump() + "\n";
  { std::ofstream(path, std::ios::binary) << line << line.substr(0, 100); }  // killed mid-write
  {
    log::LogWriter w(path);  // ends the cut line before its first record
    w.write(rec);
  }
  const std::string text = read_text(path);
  CHECK(text == line + line.substr(0, 100) + "\n" + line);
  log::LogContents c = log::read_log(path);
  CHECK(c.records.size() == 2);
  REQUIRE(c.warnings.size() == 1);
  CHECK_THAT(c.warnings[0], Catch::Contains(":2:") && Catch::Contains("interrupted run"));
  // Garbage (not a cut record) in the middle is still an error.
  CHECK_THROWS_WITH(log::parse_log(line + "{\"a\":1}x\n" + line, "x.jsonl"), Catch::Contains("x.jsonl:2:"));
  CHECK_THROWS_WITH(log::parse_log(line + "hello\n" + line, "x.jsonl"), Catch::Contains("x.jsonl:2:"));
  std::filesystem::remove(path);
}

// A matmul workload measured by both backends: a worker process, and this process.
struct BothBackends {
  BothBackends(std::map<std::string, int64_t> params, int threads)
      : dag(shipped("matmul", params)),
        isolated(dag, target::host_target(), threads, quick_timing(), isolated_options()),
        local(dag, target::host_target(), threads, quick_timing()) {}
  std::vector<search::MeasureBackend*> backends() { return {&isolated, &local}; }
  std::shared_ptr<const te::ComputeDAG> dag;
  search::IsolatedMeasurer isolated;
  search::Measurer local;
};

TEST_CASE("anchored timing normalizes to the anchor's time, in process and in a worker", "[isolated][anchor]") {
  // One thread: a kernel of a few microseconds on two threads waits for a preempted thread
  // now and then (ctest runs tests side by side), which no timing protocol can even out.
  BothBackends both({{"M", 64}, {"N", 64}, {"K", 64}}, 1);
  search::RandomSampler sampler(both.dag, target::host_target(), 5);
  const schedule::State a = sampler.sample(), b = sampler.sample();
  const std::string key = schedule::canonical_key(a.steps());
  // The anchor's logged time is far from its real one (microseconds), so that a time not
  // normalized to it shows: the anchor timed against itself takes the anchor's time.
  search::BatchHooks hooks;
  hooks.anchor = [&] { return std::optional<search::AnchorSpec>(search::AnchorSpec{a, key, 0, 1000}); };
  for (search::MeasureBackend* m : both.backends()) {
    const std::vector<search::MeasureResult> r = m->measure_batch({a, b}, hooks);
    REQUIRE(r.size() == 2);
    for (const auto& x : r) {
      INFO(x.message);
      REQUIRE(x.valid());
      CHECK(x.anchor_ms == 1000);
      CHECK(x.anchor_key == key);
      CHECK(x.raw_median_ms > 0);
      CHECK(x.raw_median_ms < 100);
    }
    CHECK(r[0].timing.median_ms > 500);
    CHECK(r[0].timing.median_ms < 2000);
    // Without the hook, candidates are timed on their own again.
    const search::MeasureResult own = m->measure(b);
    CHECK(own.valid());
    CHECK(own.anchor_ms == 0);
    CHECK(own.timing.median_ms < 100);
  }
}

TEST_CASE("the final ranking times every candidate in the same rounds, in process and in a worker", "[isolated][rank]") {
  BothBackends both({{"M", 32}, {"N", 24}, {"K", 16}}, 2);
  search::RandomSampler sampler(both.dag, target::host_target(), 9);
  std::vector<schedule::State> states;
  for (int i = 0; i < 3; ++i) states.push_back(sampler.sample());
  search::RankOptions ro;
  ro.rounds = 6;
  ro.slice_ms = 1;
  for (search::MeasureBackend* m : both.backends()) {
    const std::vector<search::MeasureResult> r = m->rank(states, ro);
    REQUIRE(r.size() == 3);
    for (const auto& x : r) {
      INFO(x.message);
      REQUIRE(x.valid());
      CHECK(x.timing.group_means_ms.size() == 6);
      CHECK(x.timing.median_ms > 0);
      CHECK(x.gflops > 0);
    }
  }
  CHECK(both.isolated.worker_starts() == 1);  // ranked in one worker, not by the fallback
}

TEST_CASE("the final ranking scores each round relative to the round, so a change of machine speed does not pick", "[rank]") {
  // A is 3% faster than B in every round. The machine is twice as slow from round 20 on, and
  // the change falls between A's and B's slices of round 20: A has 21 slow rounds of 41, B
  // 20. The median of raw times would take B (its median is a fast round, A's a slow one).
  std::vector<double> a, b;
  for (int r = 0; r < 41; ++r) {
    const double speed = r >= 20 ? 2.0 : 1.0;
    a.push_back(1.00 * speed);
    b.push_back(1.03 * (r > 20 ? 2.0 : 1.0));
  }
  REQUIRE(runtime::median_of(a) > runtime::median_of(b));  // the trap is there
  const std::vector<double> t = search::ranked_times({a, b});
  REQUIRE(t.size() == 2);
  CHECK(t[0] < t[1]);
  CHECK(t[1] / t[0] == Approx(1.03).epsilon(1e-9));
  // A time that a quiet round had.
  CHECK(t[0] == Approx(1.0).epsilon(1e-6));
  // One candidate: the median of the faster half of its times; rounds that not all have are
  // left out.
  CHECK(search::ranked_times({{3.0, 1.0, 2.0}})[0] == Approx(1.5));
  const std::vector<double> u = search::ranked_times({{1.0, 1.0, 1.0, 9.0}, {2.0, 2.0, 2.0}});
  CHECK(u[1] / u[0] == Approx(2.0));
  CHECK(search::ranked_times({}).empty());
}

TEST_CASE("the final ranking orders the candidates as the quiet machine runs them", "[rank]") {
  // In quiet rounds A takes 1.0 ms and B 1.2; in the slow stretches (1.6x and more) their
  // order reverses (A 2.4, B 2.2), and 12 of 20 rounds are slow. All rounds together would
  // pick B; the faster half of the rounds picks A.
  std::vector<double> a, b;
  for (int r = 0; r < 20; ++r) {
    const bool slow = r % 5 < 3;
    a.push_back(slow ? 2.4 : 1.0);
    b.push_back(slow ? 2.2 : 1.2);
  }
  const std::vector<double> t = search::ranked_times({a, b});
  CHECK(t[0] < t[1]);
  CHECK(t[1] / t[0] == Approx(1.2).epsilon(0.05));
}

TEST_CASE("a log's best view prefers the final ranking's pick to a faster search measurement", "[log]") {
  auto dag = shipped("matmul", {{"M", 8}, {"N", 8}, {"K", 8}});
  log::Record fast = log::make_record(*dag, target::host_target(), 1), fin = fast, slow = fast;
  fast.trial = 1, fast.median_ms = 1.0, fast.phase = "explore";
  slow.trial = 2, slow.median_ms = 3.0, slow.phase = "final";
  fin.trial = 3, fin.median_ms = 2.0, fin.phase = "final";
  const std::vector<log::Record> best = log::best_records({fast, slow, fin});
  REQUIRE(best.size() == 1);
  CHECK(best[0].trial == 3);
  CHECK(log::best_records({fast})[0].trial == 1);
}
