// Differential testing of lowering and code generation (STYLE 12): random kernels × random
// schedules, each compiled by the LLVM JIT and compared with the IR interpreter running the
// naive schedule of the same kernel on the same random inputs.
//
// Kernels are ComputeDAGs built directly with the IR builders (like dags.h): 1–4 compute
// stages in a chain over random shapes with awkward sizes (1, 3, 7, 17, 127, ...):
// element-wise maps (padding through a guarded select, slices, strides, reversal, modulo
// wrap-around, transposes, broadcasts), reductions (sum / max / min), contractions with a
// weight input and convolution / pooling windows (i*s + r indices); bodies mix +, -, *,
// min/max, select, exp(-|x|), sqrt(|x|), tanh, sigmoid, abs, integer division and modulo,
// and casts between f32, f64 and i32. Values stay bounded, and casts to integers and select
// conditions only see values that every legal evaluation order computes bit-identically, so
// a mismatch beyond the f32 tolerance is a miscompile rather than rounding.
//
// Schedules come from search::RandomSampler and from random_step_schedule, which applies
// random steps of every kind (splits with non-divisor lengths, follow splits, fuse, reorder,
// compute_at at random loops, compute_inline/root, cache_read/write, rfactor, storage_align,
// parallel/vectorize/unroll annotations, the unroll pragma) and keeps those that apply.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ktune/runtime/buffer.h"
#include "ktune/runtime/cpu_runner.h"
#include "ktune/schedule/state.h"
#include "ktune/te/compute_dag.h"

namespace ktune::testing {

// A random kernel named "rand_<seed>"; the same seed always gives the same kernel.
std::shared_ptr<const te::ComputeDAG> random_kernel(uint64_t seed);

// The naive state of `dag` with random steps of every kind applied in a plausible order
// (structure, then loop shapes, then compute locations, then annotations), each kept only if
// it applies. The state may still fail to lower (an InvalidCandidate): callers skip those.
schedule::State random_step_schedule(std::shared_ptr<const te::ComputeDAG> dag, uint64_t seed);

enum class DiffStatus {
  Match,         // the compiled kernel agrees with the reference
  Invalid,       // the state does not lower (InvalidCandidate): nothing to compare
  Skipped,       // legal but too slow to run in a test (e.g. a huge guarded loop around a
                 // parallel loop): nothing compared
  Mismatch,      // wrong values
  CompileError,  // a lowered kernel the code generator rejects or LLVM's verifier fails
  Error,         // any other exception (internal error, interpreter out of bounds, ...)
};
const char* diff_status_name(DiffStatus s);

struct DiffResult {
  DiffStatus status = DiffStatus::Match;
  std::string message;
  double error = 0;  // worst normalized error over the outputs
  bool failed() const {
    return status != DiffStatus::Match && status != DiffStatus::Invalid && status != DiffStatus::Skipped;
  }
};

// Reference outputs of one kernel (the interpreter on the naive schedule) and the check of
// schedules against them.
class DiffChecker {
 public:
  DiffChecker(std::shared_ptr<const te::ComputeDAG> dag, runtime::CpuRunner& runner, uint64_t input_seed = 1);
  // Lowers, compiles and runs `st`; on a mismatch the message says whether the interpreter
  // agrees with the compiled code (a lowering bug) or with the reference (a codegen bug).
  DiffResult check(const schedule::State& st);
  // Max relative error of the reference against the double-precision TE evaluator: a check
  // of the generator (its kernels are well defined and tame), not of ktune.
  double reference_vs_te_eval() const;

 private:
  std::vector<void*> args(std::vector<runtime::HostBuffer>& outs);
  // Worst normalized error of `got` against the reference; NaN/inf mismatches count as inf.
  double compare(const std::vector<runtime::HostBuffer>& got, std::string* which) const;

  std::shared_ptr<const te::ComputeDAG> dag_;
  runtime::CpuRunner& runner_;
  std::vector<runtime::HostBuffer> inputs_, expected_;
};

// Everything a human needs for a failing case: the kernel, the steps, the lowered IR.
std::string describe_case(const schedule::State& st);

}  // namespace ktune::testing
