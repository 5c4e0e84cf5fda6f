// The CPU runner: compiles a lowered kernel with LLVM ORC LLJIT at -O3 for the target,
// runs it on host buffers over ktune's thread pool, and times it (DESIGN §8).
// JIT'd code is freed when the CompiledKernel is destroyed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ktune/ir/ir.h"
#include "ktune/runtime/buffer.h"
#include "ktune/target/target.h"

namespace ktune::runtime {

// Error classes of a measurement (DESIGN §8). None = valid.
enum class ErrorClass : uint8_t {
  None,
  InvalidSchedule,
  CompileError,
  CompileTimeout,
  RuntimeError,
  RunTimeout,
  WrongAnswer,
};
const char* error_class_name(ErrorClass e);  // "invalid-schedule", ...
ErrorClass parse_error_class(const std::string& s);

struct TimingOptions {
  int warmup = 1;             // untimed runs first
  int repeat = 5;             // groups
  int number = 0;             // runs per group; 0 = chosen so a group lasts min_repeat_ms
  double min_repeat_ms = 10;  // minimum duration of a group
  double max_total_ms = 2000; // stop adding groups past this (at least one group runs)
};

// The median of `v` (0 when empty).
double median_of(std::vector<double> v);

// The timings of one kernel: the mean of each group, and their median.
struct Timing {
  std::vector<double> group_means_ms;
  double median_ms = 0;
  int number = 0;
};

class CompiledKernel;

class CpuRunner {
 public:
  CpuRunner(target::Target t, int threads);
  ~CpuRunner();
  CpuRunner(const CpuRunner&) = delete;
  CpuRunner& operator=(const CpuRunner&) = delete;

  const target::Target& target() const;
  int threads() const;

  // Compiles `f` (after codegen::prepare_for_codegen). Throws InvalidCandidate with the LLVM
  // message on a compile error. May be called from several threads at once.
  std::unique_ptr<CompiledKernel> compile(const ir::LoweredFunc& f);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  friend class CompiledKernel;
};

class CompiledKernel {
 public:
  ~CompiledKernel();  // removes the code from the JIT
  // Runs once with buffers in LoweredFunc::args order.
  void run(const std::vector<void*>& args);
  Timing time(const std::vector<void*>& args, const TimingOptions& opt);
  double compile_ms() const { return compile_ms_; }

 private:
  friend class CpuRunner;
  CompiledKernel() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  double compile_ms_ = 0;
};

}  // namespace ktune::runtime
