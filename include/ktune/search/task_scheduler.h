// The task scheduler (DESIGN §7): tunes a shape list — several workloads of one model, each
// occurring `weight` times — under one trial budget, giving each round of trials to the
// workload whose improvement most reduces the model's weighted total time.
//
// This is Ansor's gradient strategy (TVM auto_scheduler/task_scheduler.py). The objective is
//     f = sum_i w_i * t_i
// where t_i is task i's best time so far. After a warm-up that gives every task one round, in
// list order, the next round goes to the task with the most negative estimated derivative of
// f with respect to its rounds:
//     grad_i = w_i * (alpha * backward_i + (1 - alpha) * forward_i)
//     backward_i = (t_i[now] - t_i[window rounds ago]) / window   (its recent improvement per
//                  round; 0 until it has had window + 1 rounds)
//     forward_i  = min(t_i - t_i / rounds_i,                      (another round gains the
//                                                                  average so far)
//                      beta * flops_i / best throughput among its similar tasks) - t_i
//                                                                 (it could reach beta times
//                                                                  the best of its kind)
// Similar tasks are those of the same kernel. Ties (equal gradients, e.g. every task flat)
// fall back to round-robin. A task without any valid result yet goes first (it has no time
// to improve on); after `max_rounds_without_valid` such rounds it is dropped. A task whose
// policy runs out of new candidates is dropped too.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ktune/log/record.h"
#include "ktune/search/measurer.h"
#include "ktune/search/tuner.h"

namespace ktune::search {

struct SchedulerOptions {
  int round_trials = 64;  // trials per round (the last round may be shorter)
  double alpha = 0.2;     // weight of the backward (observed) gradient
  double beta = 2.0;      // slack on the throughput of similar tasks
  int backward_window = 3;
  int max_rounds_without_valid = 3;
};

// The choice of rounds, separate from measuring (unit-testable with made-up results).
class TaskScheduler {
 public:
  // One entry per task: its weight (> 0), flops per run, and a group name (similar tasks
  // share it: the kernel name).
  TaskScheduler(std::vector<double> weights, std::vector<double> flops, std::vector<std::string> groups,
                SchedulerOptions opt = {});

  // The task for the next round, or -1 when every task has been dropped.
  int next();
  // Why the last next() chose its task: "warm-up", "gradient", "round-robin", "no valid result yet".
  const std::string& reason() const { return reason_; }
  // Reports the round just run for `task`: trials measured and the task's best time so far in
  // ms (<= 0 or not finite: no valid result yet).
  void report(int task, int trials, double best_ms);
  // Drops a task from further rounds, with the reason shown to the user.
  void drop(int task, const std::string& why);

  int num_tasks() const { return int(weights_.size()); }
  bool dropped(int task) const { return !drop_reason_[size_t(task)].empty(); }
  const std::string& drop_reason(int task) const { return drop_reason_[size_t(task)]; }
  int rounds(int task) const { return int(history_[size_t(task)].size()); }
  // The gradients computed by the last next() that used them (0 for dropped tasks).
  const std::vector<double>& gradients() const { return grads_; }
  // sum w_i t_i over the tasks with a valid time, and how many tasks have one.
  double objective_ms() const;
  int tasks_with_time() const;

 private:
  double best(int task) const;

  std::vector<double> weights_, flops_;
  std::vector<std::string> groups_;
  SchedulerOptions opt_;
  std::vector<std::vector<double>> history_;  // best time after each round (0: none valid)
  std::vector<std::string> drop_reason_;
  std::vector<double> grads_;
  int last_ = -1;
  std::string reason_;
};

// One workload of a shape list.
struct ListTask {
  std::shared_ptr<const te::ComputeDAG> dag;
  double weight = 1;
  // log_path and resume are ignored; budget and refine_budget are the task's phase budgets
  // (two-phase), the list's budget caps the whole; the rest is the task's.
  TuneOptions options;
  // Records of an earlier run of this workload (a resumed list): not measured again, and
  // counted against the list's budget.
  std::vector<log::Record> history;
};

// What happened in one round, for progress output.
struct RoundReport {
  int round = 0;           // 1-based
  int task = -1;
  std::string reason;      // TaskScheduler::reason()
  int trials = 0;          // measured in this round
  int total_trials = 0;    // over all tasks so far
  int budget = 0;
  double objective_ms = 0; // weighted total time of the tasks with a valid time
  int tasks_with_time = 0;
  const TuneResult* result = nullptr;  // the task's result so far
};

struct ListTuneResult {
  std::vector<TuneResult> results;   // per task (trials 0 when it never ran; resumed trials count)
  std::vector<std::string> dropped;  // per task: why it was dropped, or ""
  int rounds = 0, trials = 0;  // trials include the resumed ones
  int resumed = 0;             // trials taken over from the tasks' histories
  double seconds = 0;
  bool interrupted = false;  // stop_requested() ended it
  double objective_ms = 0;
  std::vector<std::string> warnings;  // e.g. a final ranking that failed
};

// Creates the measurement backend of a task (called once per task, when it first runs).
using BackendFactory = std::function<std::unique_ptr<MeasureBackend>(const ListTask&)>;

// Tunes the tasks under `budget` trials in total, round by round as the scheduler decides,
// appending every measurement to `log` (may be null). Tasks are created when they first run;
// a task with a history is created first and its history counts as its warm-up round. A task
// whose setup or measurement fails with an error other than a UserError is dropped (the
// others go on). Stops early when every task is dropped or when stop_requested() (checked
// between rounds and, inside TuningTask::step, between candidates).
// When the budget is spent (not when stopped), every task with a valid candidate and
// options.remeasure_top > 0 gets its final ranking (TuningTask::remeasure), one task after
// the other; `on_final` is called after each (task index, its result) for progress output.
ListTuneResult tune_tasks(const std::vector<ListTask>& tasks, const target::Target& t, int budget,
                          const SchedulerOptions& opt, log::LogWriter* log, const BackendFactory& make_backend,
                          const std::function<void(const RoundReport&)>& on_round = {},
                          const std::function<void(int, const TuneResult&)>& on_final = {});

}  // namespace ktune::search
