// The tuning driver (DESIGN §7, §9). A TuningTask tunes one workload: a SearchPolicy
// proposes candidates, a MeasureBackend measures them (never the same candidate twice), and
// every measurement is appended to the log. tune() runs one task to its budget; a shape list
// interleaves several tasks by calling step().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ktune/log/record.h"
#include "ktune/runtime/cpu_runner.h"
#include "ktune/schedule/state.h"
#include "ktune/search/cost_model.h"
#include "ktune/search/measurer.h"
#include "ktune/target/target.h"
#include "ktune/te/compute_dag.h"
#include "ktune/te/kernel.h"

namespace ktune::search {

struct TuneOptions {
  // Measured candidates of the exploration (for two-phase; of the whole run otherwise).
  int budget = 300;
  // Two-phase: refinement candidates after the exploration (Droplet Search stops earlier when
  // it converges).
  int refine_budget = 100;
  // Wall-clock limit of the run in seconds (0: none); the tune stops cleanly after the
  // candidate in flight and keeps the best so far.
  double time_budget_s = 0;
  uint64_t seed = 0;
  int threads = 1;
  // two-phase (default), evolutionary, droplet or random (strategy_names()).
  std::string strategy = "two-phase";
  // The cost model of the learning strategies: "xgboost" or "random" (ablations).
  std::string cost_model = "xgboost";
  // A model shared with other tasks (a shape list shares one); null: the task makes its own.
  std::shared_ptr<CostModel> model;
  // Tuning logs whose records of the same kernel (any shape) train the model first.
  std::vector<std::string> warm_start;
  std::string log_path;  // empty: no log (tune() opens it; a TuningTask gets a writer)
  runtime::TimingOptions timing;
  // Measure in a worker process (off by default here; the CLI turns it on).
  IsolationOptions isolation;
  // Continue the run recorded in log_path: its candidates of this workload are not measured
  // again and count against the budget (see resumable_history).
  bool resume = false;
  // The final ranking: at the end, the `remeasure_top` best candidates are timed against each
  // other in up to `remeasure_rounds` interleaved rounds (MeasureBackend::rank) and the best
  // sustained time is reported (DESIGN §8: the best of hundreds of noisy measurements is
  // optimistic). Logged as records of phase "final", which the log's best view prefers.
  // 0: no final ranking.
  int remeasure_top = 0;
  int remeasure_rounds = 40;
  // Anchored timing (measurer.h, Measurer::set_anchor; --anchor): candidates are timed against
  // the best so far in alternating groups, which cancels the machine's speed drifts between
  // candidates. Off by default: in the ninth session's side-by-side runs its tunes' picks were
  // not faster than those of tunes without it (docs/results.md).
  bool anchored = false;

  // Candidates the strategy measures at most: budget, plus refine_budget for two-phase.
  int total_budget() const;
};

struct TuneProgress {
  int trial = 0, budget = 0, valid = 0, errors = 0;
  double best_ms = 0, best_gflops = 0;
  double elapsed_s = 0;
  std::string phase;  // of the last candidate
};

// One move accepted by the refinement (Droplet Search), for reports.
struct RefineStep {
  int trial = 0;  // the trial of the candidate moved to
  double from_ms = 0, to_ms = 0;
  double p_value = 1;  // Welch's t-test; NaN when decided on the means alone
  std::string move;
  bool confirmed = false;  // decided on interleaved re-measurements (from_ms, to_ms are theirs)
};

struct TuneResult {
  int trials = 0, valid = 0, errors = 0;
  std::map<std::string, int> error_counts;  // by error class
  double seconds = 0;
  std::string reference;                    // how candidates were verified
  std::optional<log::Record> best;          // the best valid record, as logged
  std::string best_steps_text;              // its steps, readable
  int resumed = 0;                          // trials taken from the log (--resume)
  std::vector<std::string> log_warnings;    // lines of the resumed log that were skipped
  bool interrupted = false;                 // stopped by Ctrl-C (stop_requested) before the budget
  bool timed_out = false;                   // stopped by the time budget
  // Two-phase: the trials of each phase, the exploration's best, the accepted moves.
  std::map<std::string, int> phase_trials;
  double explore_best_ms = 0;
  std::vector<RefineStep> refinement;
  bool refine_converged = false;
  // Refinement: neighbours confirmed by interleaved re-measurement, and the measurements that
  // took (not counted in `trials`, not logged).
  int refine_confirmations = 0, refine_remeasured = 0;
  // --warm-start: records that trained the model, and those skipped (other kernel
  // parameters that no longer replay, bad lines).
  int warm_start_records = 0, warm_start_skipped = 0;
  // The final ranking of the best candidates (TuneOptions::remeasure_top): the candidate with
  // the best sustained time (median of its slices), its trial and times, how many candidates
  // and rounds.
  struct Sustained {
    int trial = 0;
    double logged_ms = 0, median_ms = 0, gflops = 0;
    int candidates = 0, rounds = 0;
  };
  std::optional<Sustained> sustained;
};

// Measures states again (not logged, not counted against the budget), in order; the result
// is shorter when the tune is stopping.
using RemeasureFn = std::function<std::vector<MeasureResult>(const std::vector<schedule::State>&)>;

// Proposes candidates. Implementations: random (the sketch sampler), evolutionary (cost
// model guided), droplet (refinement), and two-phase, which runs the evolutionary search for
// the budget and then refines its best with Droplet Search.
class SearchPolicy {
 public:
  virtual ~SearchPolicy() = default;
  // Up to n candidates whose canonical keys are not in `measured`; fewer (maybe none) when
  // the policy cannot find more.
  virtual std::vector<schedule::State> propose(int n, const std::unordered_set<std::string>& measured) = 0;
  // The results of the candidates it proposed, in order (learning policies use them).
  virtual void observe(const std::vector<schedule::State>& states, const std::vector<MeasureResult>& results) {}
  // The results of an earlier run (--resume), with the phase each was measured in.
  virtual void restore(const std::vector<schedule::State>& states, const std::vector<MeasureResult>& results,
                       const std::vector<std::string>& phases) {}
  // The phase recorded in the log for the candidates of the last proposal.
  virtual std::string phase() const = 0;
  // Fills the strategy-specific parts of a result (phases, refinement moves).
  virtual void report(TuneResult& r) const {}
  // A way to measure candidates again outside the budget (the refinement confirms its moves
  // with it); policies that need none ignore it.
  virtual void set_remeasure(RemeasureFn f) {}
};

// The policy for opt.strategy; UserError for an unknown one. `model` is the cost model of the
// learning strategies (made from opt.cost_model when null).
std::unique_ptr<SearchPolicy> make_policy(const TuneOptions& opt, std::shared_ptr<const te::ComputeDAG> dag,
                                          const target::Target& t, std::shared_ptr<CostModel> model = nullptr);
std::vector<std::string> strategy_names();
// UserError naming the known strategies unless `strategy` is one.
void check_strategy(const std::string& strategy);

// Trains `model` on the records of `logs` that belong to kernel `def` (any parameters,
// measured on target `t`); each record's candidate is replayed on its own workload. UserError
// when a log cannot be read or holds records of no other kernel than another one; bad lines,
// records of another target or another definition of the kernel, and records that do not
// replay are skipped and counted.
struct WarmStart {
  int used = 0, skipped = 0;
  std::vector<std::string> warnings;
};
WarmStart warm_start_model(CostModel& model, const std::vector<std::string>& logs, const te::KernelDef& def,
                           const target::Target& t);

class TuningTask {
 public:
  // `log` may be null (nothing written); it must outlive the task.
  TuningTask(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, const TuneOptions& opt,
             log::LogWriter* log, std::unique_ptr<MeasureBackend> backend = nullptr);
  ~TuningTask();

  // Records measured before (a resumed run): their candidates are not measured again and the
  // best of them counts.
  void add_history(const std::vector<log::Record>& records);
  // Measures up to n more candidates; returns how many were measured (0: the policy ran dry
  // or the deadline passed).
  int step(int n, const std::function<void(const TuneProgress&)>& on_progress = {});
  // Re-measures the best `top` candidates `rounds` times, interleaved (result().sustained).
  void remeasure(int top, int rounds);
  // No candidate starts after `deadline` (--time-budget).
  void set_deadline(std::chrono::steady_clock::time_point deadline) { deadline_ = deadline; }

  TuneResult result() const;
  const te::ComputeDAG& dag() const { return *dag_; }

 private:
  void record(const schedule::State& st, const MeasureResult& m);

  std::shared_ptr<const te::ComputeDAG> dag_;
  target::Target target_;
  TuneOptions opt_;
  log::LogWriter* log_;
  std::unique_ptr<MeasureBackend> backend_;
  std::unique_ptr<SearchPolicy> policy_;
  std::unordered_set<std::string> measured_;
  TuneResult result_;
  double seconds_ = 0;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  struct Top {
    double median_ms;
    int trial;
    std::string key;
    schedule::State state;
  };
  void add_top(const schedule::State& st, double median_ms, int trial);
  std::vector<Top> top_;  // the best valid candidates, fastest first (at most kTopKept)
  // The anchor of the next group of candidates: the best so far, with its time on the tune's
  // scale when a result has reported it (opt_.anchored; none before a valid candidate).
  std::optional<AnchorSpec> anchor();
  std::unordered_map<std::string, double> anchor_ms_;  // anchor key -> its time, from results
  std::unordered_map<std::string, int> anchor_trial_;  // anchor key -> its trial
};

// The records of a log that a resumed tune of `dag` on `t` with `threads` threads takes over:
// those of the same workload (kernel, parameters, dtype). Records of other workloads are
// ignored. UserError, saying what differs, when a record of this workload was measured for
// another definition of the kernel (DAG hash), on another target (triple or CPU features)
// or with another number of threads.
std::vector<log::Record> resumable_history(const std::vector<log::Record>& records, const te::ComputeDAG& dag,
                                           const target::Target& t, int threads, const std::string& log_path);

// Tunes one workload to opt.budget measured candidates (counting resumed ones).
TuneResult tune(std::shared_ptr<const te::ComputeDAG> dag, const target::Target& target, const TuneOptions& opt,
                const std::function<void(const TuneProgress&)>& on_progress = {});

}  // namespace ktune::search
