// The tuning driver (DESIGN §7, §9). A TuningTask tunes one workload: a SearchPolicy
// proposes candidates, a MeasureBackend measures them (never the same candidate twice), and
// every measurement is appended to the log. tune() runs one task to its budget; a shape list
// interleaves several tasks by calling step().
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "ktune/log/record.h"
#include "ktune/runtime/cpu_runner.h"
#include "ktune/schedule/state.h"
#include "ktune/search/measurer.h"
#include "ktune/target/target.h"
#include "ktune/te/compute_dag.h"

namespace ktune::search {

struct TuneOptions {
  int budget = 300;      // measured candidates
  uint64_t seed = 0;
  int threads = 1;
  std::string strategy = "random";
  std::string log_path;  // empty: no log (tune() opens it; a TuningTask gets a writer)
  runtime::TimingOptions timing;
  // Measure in a worker process (off by default here; the CLI turns it on).
  IsolationOptions isolation;
  // Continue the run recorded in log_path: its candidates of this workload are not measured
  // again and count against the budget (see resumable_history).
  bool resume = false;
};

struct TuneProgress {
  int trial = 0, budget = 0, valid = 0, errors = 0;
  double best_ms = 0, best_gflops = 0;
  double elapsed_s = 0;
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
};

// Proposes candidates. Implementations: the random sampler (strategy "random").
class SearchPolicy {
 public:
  virtual ~SearchPolicy() = default;
  // Up to n candidates whose canonical keys are not in `measured`; fewer (maybe none) when
  // the policy cannot find more.
  virtual std::vector<schedule::State> propose(int n, const std::unordered_set<std::string>& measured) = 0;
  // The results of the candidates it proposed, in order (learning policies use them).
  virtual void observe(const std::vector<schedule::State>& states, const std::vector<MeasureResult>& results) {}
  // The phase recorded in the log for its candidates.
  virtual std::string phase() const = 0;
};

// The policy for a --strategy name; UserError for an unknown one.
std::unique_ptr<SearchPolicy> make_policy(const std::string& strategy, std::shared_ptr<const te::ComputeDAG> dag,
                                          const target::Target& t, uint64_t seed);
std::vector<std::string> strategy_names();

class TuningTask {
 public:
  // `log` may be null (nothing written); it must outlive the task.
  TuningTask(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, const TuneOptions& opt,
             log::LogWriter* log, std::unique_ptr<MeasureBackend> backend = nullptr);
  ~TuningTask();

  // Records measured before (a resumed run): their candidates are not measured again and the
  // best of them counts.
  void add_history(const std::vector<log::Record>& records);
  // Measures up to n more candidates; returns how many were measured (0: the policy ran dry).
  int step(int n, const std::function<void(const TuneProgress&)>& on_progress = {});

  const TuneResult& result() const { return result_; }
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
