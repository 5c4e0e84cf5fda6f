// Measurement of candidates for one workload (DESIGN §8): lower, compile, run once on random
// inputs with poisoned outputs, verify against the reference, then time. The reference
// outputs are computed once: by the IR interpreter for small workloads, by the naive
// schedule compiled for large ones.
#pragma once

#include <memory>
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

// Measures candidates of one workload. Implementations: Measurer (in this process).
class MeasureBackend {
 public:
  virtual ~MeasureBackend() = default;
  virtual MeasureResult measure(const schedule::State& state) = 0;
  // How results are verified: "interpreter" or "naive schedule".
  virtual const std::string& reference_kind() const = 0;
};

class Measurer : public MeasureBackend {
 public:
  Measurer(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, int threads,
           runtime::TimingOptions timing = {});
  ~Measurer() override;

  MeasureResult measure(const schedule::State& state) override;
  const std::string& reference_kind() const override { return reference_kind_; }
  const te::ComputeDAG& dag() const { return *dag_; }
  runtime::CpuRunner& runner() { return *runner_; }

 private:
  void compute_reference();

  std::shared_ptr<const te::ComputeDAG> dag_;
  std::unique_ptr<runtime::CpuRunner> runner_;
  runtime::TimingOptions timing_;
  std::vector<runtime::HostBuffer> inputs_, outputs_, expected_;
  std::string reference_kind_;
};

// The backend tuning uses. `isolated`: candidates run in a worker process (a crash or hang
// kills only the worker); otherwise in this process.
std::unique_ptr<MeasureBackend> make_measure_backend(std::shared_ptr<const te::ComputeDAG> dag,
                                                     const target::Target& t, int threads,
                                                     const runtime::TimingOptions& timing, bool isolated);

// Work above which the reference is the compiled naive schedule instead of the interpreter.
constexpr double kInterpreterFlopLimit = 2e7;

}  // namespace ktune::search
