// `ktune tune LIST.json`: tunes every workload of a shape list (or a shard of it) under one
// trial budget, with the task scheduler choosing the workload of each round (DESIGN §7), and
// all measurements in one log. See docs/cli.md.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "ktune/log/record.h"
#include "ktune/search/measurer.h"
#include "ktune/search/task_scheduler.h"
#include "ktune/search/tuner.h"
#include "ktune/search/workload_list.h"
#include "ktune/support/error.h"
#include "ktune/support/interrupt.h"
#include "ktune/support/util.h"
#include "subcommands.h"

namespace ktune::cli {

namespace {

using nlohmann::json;

struct TuneListFlags {
  std::string list;
  std::string target = "host";
  std::string log;
  int budget = -1;        // unset: 64 per workload of the shard
  int round_trials = -1;  // unset: budget / (4 x workloads), between 1 and 64
  std::string shard = "0/1";
  int threads = 0;
  uint64_t seed = 0;
  std::string strategy = "two-phase";
  bool json_out = false;
  bool dry_run = false;
  bool resume = false;
  bool no_isolate = false;
  bool anchor = false;
  int remeasure = 8;
  double compile_timeout_s = 30, run_timeout_s = 10;
};

constexpr int kDefaultTrialsPerWorkload = 64;
constexpr int kMaxRoundTrials = 64;

// "conv2d(C=64,H=56,...)" without the parameters every entry of the list shares the value of,
// for narrow tables; the log and --json keep the full key.
std::string short_key(const search::WorkloadEntry& w) {
  std::string s = w.kernel + "(";
  bool first = true;
  for (const auto& [k, v] : w.dag->params) {
    s += (first ? "" : ",") + k + "=" + std::to_string(v);
    first = false;
  }
  return s + ")";
}

json workload_json(const search::WorkloadEntry& w) {
  json params = json::object();
  for (const auto& [k, v] : w.dag->params) params[k] = v;
  if (!w.dtype.empty()) params["dtype"] = w.dtype;
  return {{"index", w.index}, {"name", w.name}, {"kernel", w.kernel}, {"params", params},
          {"weight", w.weight}, {"flops", w.dag->flop_count()}, {"key", w.key}};
}

int run_tune_list(const TuneListFlags& f, const te::KernelRegistry& reg) {
  // Everything is validated before the log is opened: bad input leaves no trace.
  const search::WorkloadList list = search::read_workload_list(f.list, reg);
  const search::Shard shard = search::parse_shard(f.shard);
  const std::vector<search::WorkloadEntry> work = search::select_shard(list, shard);
  KT_USER_CHECK(f.budget == -1 || f.budget > 0, "--budget must be positive (got ", f.budget, ")");
  KT_USER_CHECK(f.remeasure >= 0 && f.remeasure <= 100, "--remeasure must be between 0 and 100 (got ", f.remeasure,
                ")");
  KT_USER_CHECK(f.round_trials == -1 || f.round_trials > 0, "--round-trials must be positive (got ", f.round_trials,
                ")");
  KT_USER_CHECK(f.threads >= 0, "--threads must be positive (got ", f.threads, ")");
  KT_USER_CHECK(f.compile_timeout_s > 0, "--compile-timeout must be positive (got ", f.compile_timeout_s, ")");
  KT_USER_CHECK(f.run_timeout_s > 0, "--run-timeout must be positive (got ", f.run_timeout_s, ")");
  const target::Target t = resolve_measure_target(f.target);
  search::check_strategy(f.strategy);
  for (const auto& w : work) check_cpu_dtypes(*w.dag, f.list + ": workloads[" + std::to_string(w.index) + "]");
  const std::string shard_text = std::to_string(shard.index) + "/" + std::to_string(shard.count);
  if (work.empty()) {
    std::cerr << "ktune: shard " << shard_text << " of " << f.list << " has no workloads (the list has "
              << list.workloads.size() << "); nothing to tune\n";
    if (f.json_out) std::cout << json{{"list", list.name}, {"shard", shard_text}, {"workloads", json::array()}}.dump(2) << "\n";
    return 0;
  }
  const int n = int(work.size());
  const int budget = f.budget > 0 ? f.budget : kDefaultTrialsPerWorkload * n;
  const int round_trials =
      f.round_trials > 0 ? f.round_trials : std::clamp(budget / (4 * n), 1, kMaxRoundTrials);
  const int threads = f.threads > 0 ? f.threads : std::max(1, t.cores);
  const std::string log_path = f.log.empty() ? list.name + ".jsonl" : f.log;

  search::IsolationOptions isolation;
  isolation.enabled = !f.no_isolate;
  isolation.compile_timeout_s = f.compile_timeout_s;
  isolation.run_timeout_s = f.run_timeout_s;

  // --resume: the log's records of these workloads, checked (same definition, target,
  // threads) before anything is written.
  std::vector<log::Record> logged;
  if (f.resume && !f.dry_run) {
    KT_USER_CHECK(std::filesystem::exists(log_path), "--resume: there is no tuning log '", log_path, "' to resume");
    log::LogContents contents = log::read_log(log_path);
    for (const auto& w : contents.warnings) std::cerr << "ktune: warning: " << w << "\n";
    logged = std::move(contents.records);
  }
  // One cost model learns from every workload of the list (throughputs are normalized per
  // workload). Two-phase: a workload explores for three quarters of its even share of the
  // budget, then refines; the task scheduler decides how many trials each really gets.
  std::shared_ptr<search::CostModel> model = search::make_cost_model("xgboost", f.seed);
  std::vector<search::ListTask> tasks;
  int resumed = 0;
  for (const auto& w : work) {
    search::ListTask task;
    task.dag = w.dag;
    task.weight = w.weight;
    task.options.threads = threads;
    task.options.strategy = f.strategy;
    task.options.anchored = f.anchor;
    task.options.remeasure_top = f.remeasure;
    task.options.model = model;
    task.options.budget = std::max(1, budget * 3 / (4 * n));
    task.options.refine_budget = std::max(1, budget / n);
    task.options.isolation = isolation;
    // A workload's candidates depend on the seed and the workload, not on the list or shard.
    task.options.seed = fnv1a64(w.key + "#" + std::to_string(f.seed));
    if (!logged.empty()) task.history = search::resumable_history(logged, *w.dag, t, threads, log_path);
    resumed += int(task.history.size());
    tasks.push_back(task);
  }

  const bool quiet = f.json_out && !isatty(STDERR_FILENO);
  if (!f.json_out) {
    std::cout << "tuning " << list.name << ": " << n << " workload" << (n == 1 ? "" : "s");
    if (shard.count > 1) std::cout << " (shard " << shard_text << " of " << list.workloads.size() << ")";
    std::cout << " on " << t.name << " (" << t.triple << ", " << threads << " threads), budget " << budget
              << " trials in rounds of " << round_trials << ", log " << log_path
              << (f.resume ? " (resumed: " + std::to_string(resumed) + " trials from it)" : "")
              << (isolation.enabled ? "" : ", measured in-process") << std::endl;
    if (budget < n * round_trials)
      std::cout << "note: the budget is smaller than one round per workload; some workloads get no trials\n";
  }
  if (f.dry_run) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& w : work)
      rows.push_back({std::to_string(w.index), short_key(w), w.name, fmt_num(w.weight, 3),
                      fmt_num(w.dag->flop_count() / 1e9, 4)});
    if (f.json_out) {
      json ws = json::array();
      for (const auto& w : work) ws.push_back(workload_json(w));
      std::cout << json{{"list", list.name}, {"shard", shard_text}, {"budget", budget}, {"round_trials", round_trials},
                        {"log", log_path}, {"workloads", ws}}
                       .dump(2)
                << "\n";
    } else {
      std::cout << format_table({"#", "workload", "name", "weight", "GFLOP"}, rows, {true, false, false, true, true})
                << "dry run: nothing tuned, no log written\n";
    }
    return 0;
  }

  log::LogWriter writer(log_path);
  install_interrupt_handler();
  search::SchedulerOptions sopt;
  sopt.round_trials = round_trials;
  auto backend = [&](const search::ListTask& task) {
    return search::make_measure_backend(task.dag, t, threads, task.options.timing, task.options.isolation);
  };
  auto on_round = [&](const search::RoundReport& r) {
    if (quiet) return;
    const auto& w = work[size_t(r.task)];
    std::fprintf(stderr, "[round %d, %d/%d trials] %s +%d (%s): ", r.round, r.total_trials, r.budget,
                 short_key(w).c_str(), r.trials, r.reason.c_str());
    if (r.result && r.result->best)
      std::fprintf(stderr, "best %s ms, %s GFLOP/s", fmt_num(r.result->best->median_ms).c_str(),
                   fmt_num(r.result->best->gflops).c_str());
    else
      std::fprintf(stderr, "no valid candidate yet");
    std::fprintf(stderr, "; weighted total %s ms (%d/%d workloads)\n", fmt_num(r.objective_ms).c_str(),
                 r.tasks_with_time, n);
    std::fflush(stderr);
  };
  auto on_final = [&](int i, const search::TuneResult& r) {
    if (quiet || !r.sustained) return;
    const auto& p = *r.sustained;
    std::fprintf(stderr, "[final ranking] %s: %d candidates timed against each other in %d rounds; pick: trial %d, "
                 "%s ms (logged at %s ms)\n", short_key(work[size_t(i)]).c_str(), p.candidates, p.rounds, p.trial,
                 fmt_num(p.median_ms).c_str(), fmt_num(p.logged_ms).c_str());
    std::fflush(stderr);
  };
  const search::ListTuneResult res =
      search::tune_tasks(tasks, t, budget, sopt, &writer, backend, on_round, on_final);
  for (const auto& w : res.warnings) std::cerr << "ktune: warning: " << w << "\n";

  int missing = 0;
  for (const auto& r : res.results) missing += !r.best;
  if (f.json_out) {
    json ws = json::array();
    for (size_t i = 0; i < work.size(); ++i) {
      const auto& r = res.results[i];
      json wj = workload_json(work[i]);
      wj["trials"] = r.trials;
      wj["valid"] = r.valid;
      wj["errors"] = r.errors;
      wj["error_counts"] = r.error_counts;
      wj["dropped"] = res.dropped[i];
      if (r.best)
        wj["best"] = {{"time_ms", r.best->median_ms}, {"gflops", r.best->gflops}, {"trial", r.best->trial},
                      {"weighted_ms", work[i].weight * r.best->median_ms}};
      else
        wj["best"] = nullptr;
      if (r.sustained)
        wj["sustained"] = {{"time_ms", r.sustained->median_ms}, {"gflops", r.sustained->gflops},
                           {"trial", r.sustained->trial}, {"logged_ms", r.sustained->logged_ms},
                           {"candidates", r.sustained->candidates}, {"rounds", r.sustained->rounds}};
      else
        wj["sustained"] = nullptr;
      ws.push_back(wj);
    }
    json out = {{"list", list.name},
                {"file", f.list},
                {"shard", shard_text},
                {"target", t.name},
                {"threads", threads},
                {"budget", budget},
                {"round_trials", round_trials},
                {"trials", res.trials},
                {"resumed", res.resumed},
                {"isolated", isolation.enabled},
                {"rounds", res.rounds},
                {"tuning_seconds", res.seconds},
                {"interrupted", res.interrupted},
                {"log", log_path},
                {"weighted_total_ms", res.objective_ms},
                {"workloads_without_result", missing},
                {"workloads", ws}};
    std::cout << out.dump(2) << std::endl;
  } else {
    if (res.interrupted)
      std::cout << "interrupted after " << res.trials << " of " << budget << " trials; continue with --resume\n";
    std::vector<std::vector<std::string>> rows;
    for (size_t i = 0; i < work.size(); ++i) {
      const auto& r = res.results[i];
      const auto& w = work[i];
      std::vector<std::string> row = {std::to_string(w.index), short_key(w), fmt_num(w.weight, 3)};
      if (r.best) {
        row.push_back(fmt_num(r.best->median_ms));
        row.push_back(fmt_num(r.best->gflops));
        row.push_back(fmt_num(w.weight * r.best->median_ms));
      } else {
        row.insert(row.end(), {"-", "-", "-"});
      }
      row.push_back(r.sustained ? fmt_num(r.sustained->median_ms) + " (#" + std::to_string(r.sustained->trial) + ")"
                                : "-");
      row.push_back(std::to_string(r.trials));
      row.push_back(std::to_string(r.errors));
      if (!res.dropped[i].empty()) row.push_back("dropped: " + res.dropped[i]);
      rows.push_back(row);
    }
    std::cout << format_table(
        {"#", "workload", "weight", "best ms", "GFLOP/s", "weighted ms", "pick ms (trial)", "trials", "errors", ""},
        rows, {true, false, true, true, true, true, true, true, true, false});
    std::cout << "weighted total " << fmt_num(res.objective_ms) << " ms over " << (n - missing) << " of " << n
              << " workloads; " << res.trials << " trials in " << res.rounds << " rounds, " << fmt_num(res.seconds, 3)
              << " s; log " << log_path << "\n";
  }
  if (res.interrupted) return 130;
  return missing ? 1 : 0;
}

}  // namespace

void register_tune_list_command(CLI::App& app, const te::KernelRegistry& reg, std::vector<Subcommand>& out) {
  auto f = std::make_shared<TuneListFlags>();
  CLI::App* cmd = app.add_subcommand(
      "tune", "Tune every workload of a shape list (configs/workloads/*.json) under one trial budget");
  cmd->add_option("list", f->list, "Shape list (JSON)")->required();
  cmd->add_option("--target", f->target, "Target: host, or a name from configs/targets")->capture_default_str();
  cmd->add_option("--log", f->log, "Tuning log to append to (default: NAME.jsonl, NAME = the list's name)");
  cmd->add_option("--budget", f->budget, "Total trials over all workloads (default: 64 per workload)");
  cmd->add_option("--round-trials", f->round_trials,
                  "Trials per scheduling round (default: budget / (4 x workloads), between 1 and 64)");
  cmd->add_option("--shard", f->shard, "Tune slice INDEX/COUNT of the list (e.g. 0/4)")->capture_default_str();
  cmd->add_option("--threads", f->threads, "Threads for parallel loops (default: all cores)");
  cmd->add_option("--seed", f->seed, "Random seed")->capture_default_str();
  cmd->add_option("--strategy", f->strategy, "Search strategy of every workload (as for a single kernel)")
      ->capture_default_str();
  cmd->add_flag("--json", f->json_out, "Print one JSON document with the summary on stdout");
  cmd->add_flag("--dry-run", f->dry_run, "Validate the list and show the workloads of the shard; tune nothing");
  cmd->add_flag("--resume", f->resume,
                "Continue the run in the log: its candidates of these workloads are not measured again and count "
                "against the budget");
  cmd->add_flag("--anchor", f->anchor,
                "Time each candidate against its workload's best so far, in alternating groups");
  cmd->add_option("--remeasure", f->remeasure,
                  "At the end, time each workload's N best candidates against each other in interleaved rounds; "
                  "the log's best is the fastest of them (0: off)")
      ->capture_default_str();
  cmd->add_flag("--no-isolate", f->no_isolate,
                "Measure candidates in this process instead of worker processes (a crashing candidate then ends "
                "the run)");
  cmd->add_option("--compile-timeout", f->compile_timeout_s, "Seconds allowed to compile one candidate")
      ->capture_default_str();
  cmd->add_option("--run-timeout", f->run_timeout_s, "Seconds allowed for one run of a candidate")
      ->capture_default_str();
  out.push_back({cmd, [f, &reg] { return run_tune_list(*f, reg); }});
}

}  // namespace ktune::cli
