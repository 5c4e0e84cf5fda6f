// Measurement of candidates for one workload (DESIGN §8): lower, compile, run once on random
// inputs with poisoned outputs, verify against the reference, then time. The reference
// outputs are computed once: by the IR interpreter for small workloads, by the naive
// schedule compiled for large ones.
//
// Two backends: Measurer measures in this process; the isolated backend (isolated.h) runs a
// Measurer in a worker process, so that a candidate that crashes or hangs kills only the
// worker.
#pragma once

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
  bool valid() const { return error == runtime::ErrorClass::None; }
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
};

// Measures candidates of one workload. Implementations: Measurer (in this process) and
// IsolatedMeasurer (in a worker process, isolated.h).
class MeasureBackend {
 public:
  virtual ~MeasureBackend() = default;
  virtual MeasureResult measure(const schedule::State& state) = 0;
  // How results are verified: "interpreter" or "naive schedule".
  virtual const std::string& reference_kind() const = 0;
};

class Measurer : public MeasureBackend {
 public:
  // Computes the reference unless one is given (a restarted worker gets it from its tuner).
  Measurer(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, int threads,
           runtime::TimingOptions timing = {}, std::optional<Reference> reference = std::nullopt);
  ~Measurer() override;

  MeasureResult measure(const schedule::State& state) override;
  MeasureResult measure(const schedule::State& state, MeasureObserver* observer);
  const std::string& reference_kind() const override { return reference_.kind; }
  const Reference& reference() const { return reference_; }
  const te::ComputeDAG& dag() const { return *dag_; }
  runtime::CpuRunner& runner() { return *runner_; }

 private:
  void compute_reference();

  std::shared_ptr<const te::ComputeDAG> dag_;
  std::unique_ptr<runtime::CpuRunner> runner_;
  runtime::TimingOptions timing_;
  std::vector<runtime::HostBuffer> inputs_, outputs_;
  Reference reference_;
};

// Isolated measurement settings (DESIGN §8; the backend is in isolated.h).
struct IsolationOptions {
  bool enabled = false;
  // Limits per candidate, in seconds. The compile limit covers replay, lowering and the JIT;
  // the run limit covers the verification run, and the timing phase gets its expected length
  // (from the verification run's duration and the timing options) twice over on top of it.
  double compile_timeout_s = 30;
  double run_timeout_s = 10;
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

// Work above which the reference is the compiled naive schedule instead of the interpreter.
constexpr double kInterpreterFlopLimit = 2e7;

}  // namespace ktune::search
