// The task scheduler of shape lists (gradient rule, warm-up, round-robin fallback, dropping),
// the shape-list parser and sharding. tune_tasks runs with a made-up measurement backend, so
// nothing is compiled.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <set>

#include "ktune/schedule/steps.h"
#include "ktune/search/task_scheduler.h"
#include "ktune/search/workload_list.h"
#include "ktune/support/error.h"
#include "ktune/support/interrupt.h"
#include "ktune/support/util.h"

using namespace ktune;
using namespace ktune::search;

namespace {

// Simulates tuning: task i's best time after r rounds is base[i] * (floor[i] + (1 - floor[i]) / r).
std::vector<int> simulate(TaskScheduler& s, const std::vector<double>& base, const std::vector<double>& floor,
                          int rounds, std::vector<int>* order = nullptr) {
  std::vector<int> count(base.size(), 0);
  for (int k = 0; k < rounds; ++k) {
    const int i = s.next();
    REQUIRE(i >= 0);
    if (order) order->push_back(i);
    const int r = ++count[size_t(i)];
    s.report(i, 8, base[size_t(i)] * (floor[size_t(i)] + (1 - floor[size_t(i)]) / r));
  }
  return count;
}

te::KernelRegistry shipped() {
  te::KernelRegistry reg;
  reg.add_directory(std::string(KTUNE_SOURCE_DIR) + "/kernels");
  return reg;
}

std::string error_of(const std::string& text) {
  try {
    parse_workload_list(text, "list.json", shipped());
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("scheduler: warm-up in list order, then the gradient favours heavy, improvable tasks", "[scheduler]") {
  TaskScheduler s({1, 10, 1}, {1e6, 1e6, 1e6}, {"a", "b", "c"});
  std::vector<int> order;
  std::vector<int> count = simulate(s, {1.0, 1.0, 1.0}, {0.5, 0.5, 0.5}, 30, &order);
  CHECK(order[0] == 0);
  CHECK(order[1] == 1);
  CHECK(order[2] == 2);
  CHECK(s.reason() == "gradient");
  // Same curves, ten times the weight: task 1 gets most rounds.
  CHECK(count[1] > count[0] + count[2]);
  CHECK(s.objective_ms() > 0);
  CHECK(s.tasks_with_time() == 3);
}

TEST_CASE("scheduler: of two equally fast tasks, the one still improving goes next", "[scheduler]") {
  TaskScheduler s({1, 1}, {1e6, 1e6}, {"a", "b"});
  for (double t : {1.0, 1.0, 1.0, 1.0, 1.0}) s.report(0, 8, t);  // flat
  for (double t : {2.0, 1.8, 1.5, 1.2, 1.0}) s.report(1, 8, t);  // improving
  CHECK(s.next() == 1);
  CHECK(s.reason() == "gradient");
  CHECK(s.gradients()[1] < s.gradients()[0]);
}

TEST_CASE("scheduler: equal gradients fall back to round-robin", "[scheduler]") {
  TaskScheduler s({1, 1, 1}, {1, 1, 1}, {"a", "b", "c"});
  for (int i = 0; i < 3; ++i) s.report(s.next(), 8, 2.0);
  // Identical histories: identical gradients.
  // Identical histories: identical gradients, so round-robin; then the tasks with fewer
  // rounds catch up (a round is worth more to a task that had fewer), and so on.
  std::vector<int> order;
  std::vector<std::string> reasons;
  for (int k = 0; k < 6; ++k) {
    const int i = s.next();
    order.push_back(i);
    reasons.push_back(s.reason());
    s.report(i, 8, 2.0);
  }
  CHECK(order == std::vector<int>{0, 1, 2, 0, 1, 2});
  CHECK(reasons[0] == "round-robin");
  CHECK(reasons[3] == "round-robin");
}

TEST_CASE("scheduler: tasks without a valid result go first and are dropped after a few rounds", "[scheduler]") {
  SchedulerOptions opt;
  opt.max_rounds_without_valid = 2;
  TaskScheduler s({1, 1}, {1, 1}, {"a", "a"}, opt);
  s.report(s.next(), 8, 1.0);
  s.report(s.next(), 8, 0);  // task 1: nothing valid
  CHECK(s.next() == 1);
  CHECK(s.reason() == "no valid result yet");
  s.report(1, 8, 0);
  CHECK(s.dropped(1));
  CHECK(s.drop_reason(1).find("no valid candidate") != std::string::npos);
  CHECK(s.next() == 0);
  s.drop(0, "done");
  CHECK(s.next() == -1);
}

TEST_CASE("scheduler: similar tasks' throughput raises the forward estimate", "[scheduler]") {
  // Two flat tasks of one kernel with equal flops; task 1 is 10x slower. By its own history
  // alone task 1 would not be chosen (task 0 weighs slightly more than its share), but it is
  // far below the throughput its sibling reached, so the group term makes it the choice.
  TaskScheduler s({10.1, 1}, {1e6, 1e6}, {"conv", "conv"});
  for (int r = 0; r < 4; ++r) {
    s.report(0, 8, 1.0);
    s.report(1, 8, 10.0);
  }
  CHECK(s.next() == 1);
  CHECK(s.reason() == "gradient");
  // In different groups, the same histories choose task 0.
  TaskScheduler d({10.1, 1}, {1e6, 1e6}, {"conv", "dense"});
  for (int r = 0; r < 4; ++r) {
    d.report(0, 8, 1.0);
    d.report(1, 8, 10.0);
  }
  CHECK(d.next() == 0);
}

namespace {

// Times from a hash of the candidate: deterministic, nothing compiled.
class FakeBackend : public MeasureBackend {
 public:
  MeasureResult measure(const schedule::State& st) override {
    MeasureResult r;
    r.timing.median_ms = 1.0 + double(fnv1a64(schedule::canonical_key(st.steps())) % 1000) / 1000.0;
    r.timing.group_means_ms = {r.timing.median_ms};
    r.gflops = 1;
    return r;
  }
  const std::string& reference_kind() const override { return kind_; }

 private:
  std::string kind_ = "fake";
};

}  // namespace

TEST_CASE("tune_tasks spends exactly the budget, warms every task up and logs every trial", "[scheduler][list]") {
  te::KernelRegistry reg = shipped();
  const WorkloadList list = parse_workload_list(R"({"name": "t", "workloads": [
      {"kernel": "matmul", "params": {"M": 16, "N": 16, "K": 16}, "weight": 3},
      {"kernel": "matmul", "params": {"M": 8, "N": 32, "K": 16}},
      {"kernel": "softmax", "params": {"M": 4, "N": 32}, "weight": 2}]})",
                                                "t.json", reg);
  std::vector<ListTask> tasks;
  for (const auto& w : list.workloads) {
    ListTask t;
    t.dag = w.dag;
    t.weight = w.weight;
    t.options.seed = 5;
    tasks.push_back(t);
  }
  const std::string path = (std::filesystem::temp_directory_path() / "ktune_test_tune_tasks.jsonl").string();
  std::filesystem::remove(path);
  SchedulerOptions opt;
  opt.round_trials = 4;
  std::vector<int> rounds_of(tasks.size(), 0);
  ListTuneResult r;
  {
    log::LogWriter writer(path);
    r = tune_tasks(tasks, target::host_target(), 30, opt, &writer,
                   [](const ListTask&) { return std::make_unique<FakeBackend>(); },
                   [&](const RoundReport& rep) {
                     ++rounds_of[size_t(rep.task)];
                     CHECK(rep.total_trials <= 30);
                   });
  }
  CHECK(r.trials == 30);
  CHECK(r.rounds == 8);  // 7 rounds of 4, one of 2
  CHECK_FALSE(r.interrupted);
  for (size_t i = 0; i < tasks.size(); ++i) {
    CHECK(rounds_of[i] >= 1);
    REQUIRE(r.results[i].best.has_value());
  }
  CHECK(r.objective_ms > 0);
  log::LogContents log = log::read_log(path);
  CHECK(log.records.size() == 30);
  std::filesystem::remove(path);

  // A workload that cannot be measured (a ktune bug in its setup) is dropped; the others go on.
  ListTuneResult partial = tune_tasks(tasks, target::host_target(), 12, opt, nullptr,
                                      [&](const ListTask& lt) -> std::unique_ptr<MeasureBackend> {
                                        if (lt.dag == tasks[1].dag) throw InternalError("no reference");
                                        return std::make_unique<FakeBackend>();
                                      });
  CHECK(partial.dropped[1].find("could not be measured: no reference") != std::string::npos);
  CHECK(partial.trials == 12);
  CHECK(partial.results[0].trials + partial.results[2].trials == 12);

  // The final ranking: each workload's 3 best candidates logged again as phase "final" once
  // the budget is spent, after every search record; the pick is the fastest of them.
  std::vector<ListTask> ranked = tasks;
  for (auto& t : ranked) t.options.remeasure_top = 3;
  std::vector<int> finals_called;
  {
    log::LogWriter writer(path);
    r = tune_tasks(ranked, target::host_target(), 30, opt, &writer,
                   [](const ListTask&) { return std::make_unique<FakeBackend>(); }, {},
                   [&](int i, const TuneResult& tr) {
                     CHECK(tr.sustained.has_value());
                     finals_called.push_back(i);
                   });
  }
  CHECK(finals_called == std::vector<int>{0, 1, 2});
  log = log::read_log(path);
  REQUIRE(log.records.size() == 30 + 9);
  for (size_t k = 0; k < log.records.size(); ++k) CHECK((log.records[k].phase == "final") == (k >= 30));
  for (size_t i = 0; i < ranked.size(); ++i) {
    REQUIRE(r.results[i].sustained.has_value());
    CHECK(r.results[i].sustained->candidates == 3);
    // FakeBackend times a candidate the same every time: the pick is the search's best.
    CHECK(r.results[i].sustained->trial == r.results[i].best->trial);
    CHECK(r.results[i].sustained->median_ms == r.results[i].best->median_ms);
  }
  std::filesystem::remove(path);

  // A stop request ends the run between rounds.
  request_stop();
  ListTuneResult stopped = tune_tasks(tasks, target::host_target(), 30, opt, nullptr,
                                      [](const ListTask&) { return std::make_unique<FakeBackend>(); });
  clear_stop();
  CHECK(stopped.interrupted);
  CHECK(stopped.trials == 0);
}

TEST_CASE("shape lists: every mistake is one clear user error", "[list]") {
  INFO(error_of("{\"workloads\": [\n  {\"kernel\": \"matmul\",, }]}"));
  CHECK(error_of("{\"workloads\": [\n  {\"kernel\": \"matmul\",, }]}").find("list.json:2:23: invalid JSON") == 0);
  CHECK(error_of("").find("list.json:1:1: invalid JSON: the file is empty") == 0);
  CHECK(error_of(R"({"workloads": []})") == "list.json: the list has no workloads");
  CHECK(error_of(R"({"workloads": [{"kernel": "conv9", "params": {}}]})").find("workloads[0]: unknown kernel 'conv9'") !=
        std::string::npos);
  CHECK(error_of(R"({"workloads": [{"kernel": "matmul", "params": {"M": 4, "N": 4}}]})")
            .find("workloads[0] (matmul): missing parameter K") != std::string::npos);
  CHECK(error_of(R"({"workloads": [{"kernel": "conv2d", "params": {"N": 1, "C": 3, "H": 8, "W": 8, "K": 4}}]})")
            .find("missing parameters R, S, stride, pad, dilation") != std::string::npos);
  CHECK(error_of(R"({"workloads": [{"kernel": "matmul", "params": {"M": 4, "N": 4, "K": 4, "Q": 1}}]})")
            .find("unknown parameter 'Q' (matmul has M, N, K, dtype)") != std::string::npos);
  CHECK(error_of(R"({"workloads": [{"kernel": "matmul", "params": {"M": 4.5, "N": 4, "K": 4}}]})")
            .find("parameter 'M' must be an integer") != std::string::npos);
  CHECK(error_of(R"({"workloads": [{"kernel": "matmul", "params": {"M": 0, "N": 4, "K": 4}}]})")
            .find("workloads[0] (matmul): ") != std::string::npos);
  CHECK(error_of(R"({"workloads": [{"kernel": "matmul", "params": {"M": 4, "N": 4, "K": 4}, "wieght": 2}]})")
            .find("unknown field 'wieght'") != std::string::npos);
  CHECK(error_of(R"({"workloads": [{"kernel": "matmul", "params": {"M": 4, "N": 4, "K": 4}, "weight": 0}]})")
            .find("'weight' must be a positive number") != std::string::npos);
  CHECK(error_of(R"({"workloads": [{"kernel": "matmul", "params": {"M": 4, "N": 4, "K": 4}},
                                   {"kernel": "matmul", "params": {"K": 4, "N": 4, "M": 4, "dtype": "f32"}}]})")
            .find("workloads[1] duplicates workloads[0]: matmul(M=4,N=4,K=4,dtype=f32)") != std::string::npos);
}

TEST_CASE("shards partition a list deterministically, independent of the file's order", "[list]") {
  te::KernelRegistry reg = shipped();
  std::string a = R"({"workloads": [)", b = a;
  for (int i = 0; i < 7; ++i) {
    a += std::string(i ? "," : "") + R"({"kernel": "matmul", "params": {"M": )" + std::to_string(8 + i) +
         R"(, "N": 8, "K": 8}})";
    b += std::string(i ? "," : "") + R"({"kernel": "matmul", "params": {"M": )" + std::to_string(14 - i) +
         R"(, "N": 8, "K": 8}})";
  }
  a += "]}";
  b += "]}";
  const WorkloadList la = parse_workload_list(a, "a.json", reg), lb = parse_workload_list(b, "b.json", reg);
  std::set<std::string> all;
  for (int i = 0; i < 3; ++i) {
    std::set<std::string> ka, kb;
    for (const auto& w : select_shard(la, {i, 3})) ka.insert(w.key);
    for (const auto& w : select_shard(lb, {i, 3})) kb.insert(w.key);
    CHECK(ka == kb);
    CHECK(ka.size() >= 2);
    for (const auto& k : ka) CHECK(all.insert(k).second);
  }
  CHECK(all.size() == 7);
  CHECK(parse_shard("2/5").index == 2);
  CHECK_THROWS_AS(parse_shard("5/5"), UserError);
  CHECK_THROWS_AS(parse_shard("1/0"), UserError);
  CHECK_THROWS_AS(parse_shard("-1/3"), UserError);
  CHECK_THROWS_AS(parse_shard("1-3"), UserError);
}

TEST_CASE("the shipped shape lists parse", "[list]") {
  te::KernelRegistry reg = shipped();
  for (const auto& e : std::filesystem::directory_iterator(std::string(KTUNE_SOURCE_DIR) + "/configs/workloads")) {
    INFO(e.path());
    const WorkloadList l = read_workload_list(e.path().string(), reg);
    CHECK(l.workloads.size() >= 5);
  }
}
