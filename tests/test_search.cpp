// The random sampler's schedules lower correctly, and an end-to-end tune of a small matmul
// writes a parseable log whose best record is verified.
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
                                                {"cb", 3}, {"kb", 2}};
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
