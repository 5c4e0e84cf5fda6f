// Measurement of candidates for one workload (DESIGN §8): lower, compile, run once on random
// inputs with poisoned outputs, verify against the reference, then time. The reference
// outputs are computed once: by the IR interpreter for small workloads, by the naive
// schedule compiled for large ones.
//
// Two backends: Measurer measures in this process; the isolated backend (isolated.h) runs a
// Measurer in a worker process, so that a candidate that crashes or hangs kills only the
// worker.
//
// A batch is measured in groups: the candidates of a group are lowered and compiled in
// parallel (one thread per core the tune may use, each compile in its own LLVM context), then
// verified and timed one at a time, in order, with no compilation running. Compiling a group
// rather than the whole batch at once bounds the memory held by compiled code and how long a
// stop request waits.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ktune/runtime/cpu_runner.h"
#include "ktune/schedule/state.h"
#include "ktune/te/compute_dag.h"

namespace ktune::search {

struct MeasureResult {
  runtime::ErrorClass error = runtime::ErrorClass::None;
  std::string message;
  runtime::Timing timing;
  double gflops = 0;
  double compile_ms = 0;
  double rel_error = 0;
  // Anchored timing (Measurer::set_anchor): the anchor's time on the tune's scale and its
  // canonical key, and the candidate's own median group time, before normalization. anchor_ms
  // is 0 when the candidate was timed on its own.
  double anchor_ms = 0;
  std::string anchor_key;
  double raw_median_ms = 0;
  bool valid() const { return error == runtime::ErrorClass::None; }
};

// The kernel a batch's candidates are timed against (BatchHooks::anchor): a valid candidate
// of the same workload (the tuner's best so far), its canonical key, and its time on the
// tune's scale when known (a restarted worker gets it back), else 0: the backend then times it
// against its current anchor, or, without one, takes logged_ms (its time in the tuning log).
struct AnchorSpec {
  schedule::State state;
  std::string key;
  double ms = 0;
  double logged_ms = 0;
};

// The phases of one measurement. Compile: replay, lower and compile; Run: the verification
// run; Time: the timing runs.
enum class MeasurePhase : uint8_t { Compile, Run, Time };
const char* phase_name(MeasurePhase p);

// Hooks into a measurement. The isolated worker reports phase changes to the tuner through
// them (the tuner's timeouts depend on the phase), and its test-only fault injection
// misbehaves at them. Every hook does nothing by default.
class MeasureObserver {
 public:
  virtual ~MeasureObserver() = default;
  // A phase begins. For Time, `run_ms` is how long the verification run took.
  virtual void on_phase(MeasurePhase p, double run_ms) {}
  // Just before the verification run, with the kernel's arguments (inputs, then outputs).
  virtual void before_run(std::vector<void*>& args) {}
  // After the verification run, before its outputs are compared with the reference.
  virtual void after_run(std::vector<runtime::HostBuffer>& outputs) {}
};

// The reference outputs of a workload and how they were computed ("interpreter" or
// "naive schedule"). Computed once; the isolated backend hands them to restarted workers.
struct Reference {
  std::string kind;
  std::vector<runtime::HostBuffer> outputs;
  double naive_ms = 0;  // the naive schedule's run time, when it computed the outputs
};

// Options of one candidate's measurement.
struct MeasureOptions {
  // Early rejection of slow candidates: when the verification run takes longer than this
  // many milliseconds (and at least a timing group, min_repeat_ms), the candidate is not timed
  // further. It is still verified and valid; its timing is that one run (one value instead of
  // the group means: honest, less precise). A shorter verification run says too little (a
  // cold run): the candidate's first timing group decides instead, and one slower than the
  // cutoff is not timed further (its timing is that group). 0: no cutoff.
  double slow_cutoff_ms = 0;
  // A run limit below the backend's --run-timeout, in seconds (0: none): a candidate far
  // slower than the best so far, or than the naive schedule, is hopeless, and waiting out the
  // full timeout for it costs more than the rest of the tune. Recorded as run-timeout.
  double run_limit_s = 0;
};

// The tuner's run limit: this many times the best valid median so far, or, before there is
// one, times the naive schedule's run time; never below kMinRunLimitS.
constexpr double kRunLimitFactor = 50;
constexpr double kMinRunLimitS = 1;

// The tuner's cutoff is this many times the best valid median so far. A candidate that slow
// cannot become the best, and a noisy verification run (a core taken by another process
// slows a two-thread run about twice) must not hide one that could: see docs/architecture.md,
// "Measuring a batch".
constexpr double kSlowCutoffFactor = 3;

// The caller's side of MeasureBackend::measure_batch. The hooks are called on the caller's
// thread, in candidate order; an empty hook does nothing (keep_going: always true).
struct BatchHooks {
  // Asked before each group is compiled and before each candidate runs: false ends the batch
  // there (after the candidate in flight).
  std::function<bool()> keep_going;
  // Candidate i's options, asked just before it runs (so a cutoff can follow the best so far).
  std::function<MeasureOptions(size_t i)> options;
  // Candidate i's result, as soon as it has one (before the next candidate runs).
  std::function<void(size_t i, const MeasureResult&)> done;
  // Asked before each group is compiled: the kernel to time the group's candidates against
  // (none: each candidate timed on its own).
  std::function<std::optional<AnchorSpec>()> anchor;
};

// The final ranking of a tune (TuningTask::remeasure): its best candidates timed against each
// other in rounds of one short slice each, so that all of them see the same machine.
struct RankOptions {
  int rounds = 40;        // at most
  double slice_ms = 5;    // a slice: >= this many ms of calls (at least one), after one untimed call
  double max_ms = 4000;   // stop after the round that passes this (at least 3 rounds)
};

// The final ranking's times. times[c][r] is candidate c's slice time in round r (rounds that
// not every candidate has are left out). This machine's speed changes in steps of up to 2x
// that last seconds, shorter than a ranking but longer than a round; the median of a
// candidate's raw times then falls between the fast and slow rounds wherever its own mix of
// them puts it, and copies of one kernel differ by 8%. So each round's times are divided by
// the round's geometric mean: candidate c's relative time is the median over rounds of its
// ratio, and its ranked time is that times the median round's geometric mean (the time it
// takes in a typical round). Only the faster half of the rounds (by their geometric mean)
// counts: in the slow stretches kernels do not keep their order (matmul 512^3: one kernel 19%
// faster than another in the quiet rounds, 7% slower in the slow ones), and the quiet
// machine's order is the one wanted. Returns one per candidate.
std::vector<double> ranked_times(const std::vector<std::vector<double>>& times);

// Measures candidates of one workload. Implementations: Measurer (in this process) and
// IsolatedMeasurer (in a worker process, isolated.h).
class MeasureBackend {
 public:
  virtual ~MeasureBackend() = default;
  virtual MeasureResult measure(const schedule::State& state) = 0;
  // Measures `states` in order and returns their results, fewer when hooks.keep_going stopped
  // the batch. By default one at a time through measure(), without options; the backends
  // compile a group of candidates in parallel and honour the options.
  virtual std::vector<MeasureResult> measure_batch(const std::vector<schedule::State>& states,
                                                   const BatchHooks& hooks = {});
  // Times valid candidates against each other (RankOptions): each is compiled once and
  // verified, then every round times one slice of each, in an order that reverses from round
  // to round. Per candidate: timing.group_means_ms holds its slice times and median_ms its
  // time in a typical round (ranked_times); or the error that stopped it. By default each
  // candidate is measured through measure() in turns, one measurement per round (up to
  // opt.rounds, until opt.max_ms).
  virtual std::vector<MeasureResult> rank(const std::vector<schedule::State>& states, const RankOptions& opt);
  // How results are verified: "interpreter" or "naive schedule".
  virtual const std::string& reference_kind() const = 0;
  // The naive schedule's run time in ms when it computed the reference (0: the interpreter did).
  virtual double reference_ms() const { return 0; }
};

// A candidate lowered and compiled (Measurer::compile), ready to be verified and timed; or the
// error that stopped it (invalid-schedule, compile-error) in `result`.
struct CompiledCandidate {
  MeasureResult result;                            // compile_ms, or the error
  std::unique_ptr<runtime::CompiledKernel> kernel;  // null after an error
};

class Measurer : public MeasureBackend {
 public:
  // Computes the reference unless one is given (a restarted worker gets it from its tuner).
  Measurer(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, int threads,
           runtime::TimingOptions timing = {}, std::optional<Reference> reference = std::nullopt);
  ~Measurer() override;

  MeasureResult measure(const schedule::State& state) override;
  MeasureResult measure(const schedule::State& state, const MeasureOptions& opt, MeasureObserver* observer = nullptr);
  std::vector<MeasureResult> measure_batch(const std::vector<schedule::State>& states,
                                           const BatchHooks& hooks = {}) override;
  // The two halves of measure(). compile() may run on several threads at once (the observer's
  // on_phase(Compile) is called on the compiling thread); run() verifies and times, one
  // candidate at a time, and frees the candidate's code.
  CompiledCandidate compile(const schedule::State& state, MeasureObserver* observer = nullptr);
  MeasureResult run(CompiledCandidate& c, const MeasureOptions& opt, MeasureObserver* observer = nullptr);
  std::vector<MeasureResult> rank(const std::vector<schedule::State>& states, const RankOptions& opt) override;
  // rank() on candidates compiled already (the worker compiles them as a group); frees them.
  std::vector<MeasureResult> rank(std::vector<CompiledCandidate>& cs, const RankOptions& opt);
  const std::string& reference_kind() const override { return reference_.kind; }
  double reference_ms() const override { return reference_.naive_ms; }
  // Anchored timing (docs/architecture.md, "Anchored timing"): from now on every candidate is
  // timed in alternating groups with `a`'s kernel, and its time is the median over the pairs
  // of (its group time / the anchor's) times the anchor's time a.ms, so that the machine's
  // speed changes between candidates (tens of percent here, over seconds) cancel. With a.ms
  // <= 0 the anchor's time is measured against the current anchor; without one it is
  // a.logged_ms (or, without that, measured on its own): the log's scale goes on. An
  // anchor with the current key is kept. Returns the anchor's time, or 0 when it cannot be
  // compiled or run (then candidates are timed on their own).
  double set_anchor(const AnchorSpec& a);
  void clear_anchor();
  const Reference& reference() const { return reference_; }
  const te::ComputeDAG& dag() const { return *dag_; }
  runtime::CpuRunner& runner() { return *runner_; }

 private:
  void compute_reference();

  std::shared_ptr<const te::ComputeDAG> dag_;
  std::unique_ptr<runtime::CpuRunner> runner_;
  // Times `k` against the anchor: `pairs` pairs of groups (order alternating), each group at
  // least half a timing group long; group times normalized to the anchor's time.
  runtime::Timing time_anchored(runtime::CompiledKernel& k, const std::vector<void*>& args, int pairs,
                                double* raw_median_ms);
  // The kernel's arguments: inputs, then outputs (poisoned first when asked: before a run
  // whose outputs are verified).
  std::vector<void*> args(bool poison = false);
  // Compares the outputs with the reference: false (and r's error set) when they differ.
  bool verify(MeasureResult& r);
  runtime::TimingOptions timing_;
  std::vector<runtime::HostBuffer> inputs_, outputs_;
  Reference reference_;
  std::unique_ptr<runtime::CompiledKernel> anchor_;
  std::string anchor_key_;
  double anchor_ms_ = 0;
};

// Isolated measurement settings (DESIGN §8; the backend is in isolated.h).
struct IsolationOptions {
  bool enabled = false;
  // Limits per candidate, in seconds. The compile limit covers replay, lowering and the JIT;
  // the run limit covers the verification run, and the timing phase gets its expected length
  // (from the verification run's duration and the timing options) twice over on top of it.
  double compile_timeout_s = 30;
  double run_timeout_s = 10;
  // The worker is replaced, between groups of a batch, after running this many candidates:
  // its memory creeps up over a long run (JIT and allocator, about 0.1 MB per candidate),
  // and a fresh worker costs about 0.1 s.
  int recycle_after = 256;
  // Tests only: make chosen candidates misbehave in the worker (see isolated.h, FaultPlan).
  std::string inject_faults;
  // The worker executable; empty: found next to this executable or in the build tree.
  std::string worker_path;
};

// The backend tuning uses. Isolated: candidates run in a worker process (a crash or hang
// kills only the worker); otherwise in this process.
std::unique_ptr<MeasureBackend> make_measure_backend(std::shared_ptr<const te::ComputeDAG> dag,
                                                     const target::Target& t, int threads,
                                                     const runtime::TimingOptions& timing,
                                                     const IsolationOptions& isolation);
std::unique_ptr<MeasureBackend> make_measure_backend(std::shared_ptr<const te::ComputeDAG> dag,
                                                     const target::Target& t, int threads,
                                                     const runtime::TimingOptions& timing, bool isolated);

// A group of a batch has this many candidates per compiling thread; a tune compiles on as many
// threads as it runs kernels with (`threads`, the cores it may use).
constexpr int kGroupPerThread = 4;

// Calls f(0), ..., f(n-1) on up to `threads` threads, each index once, and returns when all
// have returned; the first exception thrown by f is rethrown here.
void parallel_for_each(size_t n, int threads, const std::function<void(size_t)>& f);

// Work above which the reference is the compiled naive schedule instead of the interpreter.
constexpr double kInterpreterFlopLimit = 2e7;

}  // namespace ktune::search
