// The task scheduler: Ansor's gradient rule over a shape list (see task_scheduler.h).
#include "ktune/search/task_scheduler.h"

#include <chrono>
#include <cmath>
#include <limits>

#include "ktune/support/error.h"
#include "ktune/support/interrupt.h"

namespace ktune::search {

TaskScheduler::TaskScheduler(std::vector<double> weights, std::vector<double> flops, std::vector<std::string> groups,
                             SchedulerOptions opt)
    : weights_(std::move(weights)), flops_(std::move(flops)), groups_(std::move(groups)), opt_(opt) {
  KT_CHECK(flops_.size() == weights_.size() && groups_.size() == weights_.size(), "task lists differ in length");
  KT_CHECK(opt_.backward_window >= 1, "backward window must be positive");
  history_.resize(weights_.size());
  drop_reason_.resize(weights_.size());
  grads_.assign(weights_.size(), 0.0);
}

double TaskScheduler::best(int task) const {
  const auto& h = history_[size_t(task)];
  return h.empty() ? 0 : h.back();
}

void TaskScheduler::report(int task, int trials, double best_ms) {
  KT_CHECK(task >= 0 && task < num_tasks(), "no task ", task);
  history_[size_t(task)].push_back(std::isfinite(best_ms) && best_ms > 0 ? best_ms : 0);
  if (best(task) == 0 && rounds(task) >= opt_.max_rounds_without_valid)
    drop(task, detail::concat("no valid candidate in ", rounds(task), " rounds"));
}

void TaskScheduler::drop(int task, const std::string& why) {
  if (drop_reason_[size_t(task)].empty()) drop_reason_[size_t(task)] = why.empty() ? "dropped" : why;
}

double TaskScheduler::objective_ms() const {
  double f = 0;
  for (int i = 0; i < num_tasks(); ++i) f += weights_[size_t(i)] * best(i);
  return f;
}

int TaskScheduler::tasks_with_time() const {
  int n = 0;
  for (int i = 0; i < num_tasks(); ++i) n += best(i) > 0;
  return n;
}

int TaskScheduler::next() {
  const int n = num_tasks();
  // The live tasks in round-robin order, starting after the last one chosen.
  std::vector<int> order;
  for (int k = 1; k <= n; ++k) {
    const int i = (last_ + k) % n;
    if (!dropped(i)) order.push_back(i);
  }
  if (order.empty()) return -1;
  auto choose = [&](int i, const char* why) {
    last_ = i;
    reason_ = why;
    return i;
  };
  // Warm-up: every task once, in list order.
  for (int i = 0; i < n; ++i)
    if (!dropped(i) && rounds(i) == 0) return choose(i, "warm-up");
  // A task without a valid time has nothing to improve on: it needs results first.
  for (int i : order)
    if (best(i) == 0) return choose(i, "no valid result yet");

  // Best throughput (flops per ms) among the tasks of each group.
  std::vector<double> group_best(size_t(n), 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      if (groups_[size_t(j)] != groups_[size_t(i)] || best(j) <= 0) continue;
      group_best[size_t(i)] = std::max(group_best[size_t(i)], flops_[size_t(j)] / best(j));
    }
  }
  grads_.assign(size_t(n), 0.0);
  for (int i : order) {
    const auto& h = history_[size_t(i)];
    const double t = best(i);
    const int r = int(h.size());
    double backward = 0;
    if (r > opt_.backward_window) {
      const double before = h[size_t(r - 1 - opt_.backward_window)];
      if (before > 0) backward = (t - before) / opt_.backward_window;
    }
    double next_time = t - t / r;
    if (group_best[size_t(i)] > 0 && flops_[size_t(i)] > 0) {
      // Only when the group has another task to learn from (a task's own throughput would
      // only say "beta times slower than yourself").
      int members = 0;
      for (int j = 0; j < n; ++j) members += groups_[size_t(j)] == groups_[size_t(i)] && best(j) > 0;
      if (members > 1) next_time = std::min(next_time, opt_.beta * flops_[size_t(i)] / group_best[size_t(i)]);
    }
    const double forward = next_time - t;
    grads_[size_t(i)] = weights_[size_t(i)] * (opt_.alpha * backward + (1 - opt_.alpha) * forward);
  }
  int best_i = order.front();
  for (int i : order)
    if (grads_[size_t(i)] < grads_[size_t(best_i)]) best_i = i;
  // All equal (to rounding): round-robin, i.e. the first live task after the last chosen.
  double lo = grads_[size_t(order.front())], hi = lo;
  for (int i : order) {
    lo = std::min(lo, grads_[size_t(i)]);
    hi = std::max(hi, grads_[size_t(i)]);
  }
  if (hi - lo <= 1e-12 * std::max(1.0, std::abs(lo))) return choose(order.front(), "round-robin");
  return choose(best_i, "gradient");
}

ListTuneResult tune_tasks(const std::vector<ListTask>& tasks, const target::Target& t, int budget,
                          const SchedulerOptions& opt, log::LogWriter* log, const BackendFactory& make_backend,
                          const std::function<void(const RoundReport&)>& on_round,
                          const std::function<void(int, const TuneResult&)>& on_final) {
  KT_CHECK(opt.round_trials > 0, "round_trials must be positive");
  const auto start = std::chrono::steady_clock::now();
  std::vector<double> weights, flops;
  std::vector<std::string> groups;
  for (const auto& task : tasks) {
    weights.push_back(task.weight);
    flops.push_back(task.dag->flop_count());
    groups.push_back(task.dag->kernel);
  }
  TaskScheduler sched(weights, flops, groups, opt);
  std::vector<std::unique_ptr<TuningTask>> running(tasks.size());
  ListTuneResult out;
  out.results.resize(tasks.size());
  auto create = [&](size_t i) {
    const ListTask& lt = tasks[i];
    running[i] = std::make_unique<TuningTask>(lt.dag, t, lt.options, log, make_backend ? make_backend(lt) : nullptr);
    running[i]->add_history(lt.history);
  };
  // Resumed tasks: their history is their first round.
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (tasks[i].history.empty()) continue;
    try {
      create(i);
    } catch (const UserError&) {
      throw;
    } catch (const std::exception& e) {
      sched.drop(int(i), std::string("could not be measured: ") + e.what());
      continue;
    }
    const TuneResult& r = running[i]->result();
    out.results[i] = r;
    out.trials += int(tasks[i].history.size());
    out.resumed += int(tasks[i].history.size());
    sched.report(int(i), int(tasks[i].history.size()), r.best ? r.best->median_ms : 0);
  }
  while (out.trials < budget) {
    if (stop_requested()) {
      out.interrupted = true;
      break;
    }
    const int i = sched.next();
    if (i < 0) break;
    auto& task = running[size_t(i)];
    const int n = std::min(opt.round_trials, budget - out.trials);
    int measured = 0;
    // A ktune bug while setting up or measuring one workload (the reference, the backend)
    // drops that workload instead of ending the whole list; bad input still ends it.
    try {
      if (!task) create(size_t(i));
      measured = task->step(n);
    } catch (const UserError&) {
      throw;
    } catch (const std::exception& e) {
      sched.drop(i, std::string("could not be measured: ") + e.what());
      ++out.rounds;
      continue;
    }
    out.trials += measured;
    out.results[size_t(i)] = task->result();
    const auto& r = task->result();
    sched.report(i, measured, r.best ? r.best->median_ms : 0);
    if (measured == 0 && !stop_requested()) sched.drop(i, "the search found no new candidate");
    ++out.rounds;
    if (on_round) {
      RoundReport rep;
      rep.round = out.rounds;
      rep.task = i;
      rep.reason = sched.reason();
      rep.trials = measured;
      rep.total_trials = out.trials;
      rep.budget = budget;
      rep.objective_ms = sched.objective_ms();
      rep.tasks_with_time = sched.tasks_with_time();
      rep.result = &out.results[size_t(i)];
      on_round(rep);
    }
  }
  if (stop_requested()) out.interrupted = true;
  // The final ranking of each workload's best candidates, as a single tune ends (a ranking
  // that cannot run falls back inside the backend; a ktune bug here keeps the search's best).
  for (size_t i = 0; i < tasks.size() && !out.interrupted; ++i) {
    auto& task = running[i];
    const int top = tasks[i].options.remeasure_top;
    if (!task || top <= 0 || !task->result().best) continue;
    try {
      task->remeasure(top, tasks[i].options.remeasure_rounds);
    } catch (const UserError&) {
      throw;
    } catch (const std::exception& e) {
      out.warnings.push_back("the final ranking of workload " + std::to_string(i) + " failed (" + e.what() +
                             "); its best stays the search's");
    }
    out.results[i] = task->result();
    if (on_final) on_final(int(i), out.results[i]);
    if (stop_requested()) out.interrupted = true;
  }
  for (int i = 0; i < sched.num_tasks(); ++i) out.dropped.push_back(sched.drop_reason(i));
  out.objective_ms = sched.objective_ms();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace ktune::search
