// Export of tuned kernels for use outside ktune (`ktune replay --emit`, docs/export.md).
//
// Per kernel, a directory receives the code (SYMBOL.c, SYMBOL.ll, SYMBOL.s or SYMBOL.o) and
// SYMBOL.h, a header that states the function signature, the shape and layout of every
// argument, which arguments are inputs and outputs, the launch configuration (threads on a
// CPU), the schedule and where it came from. Whatever the format, the header declares
//     void SYMBOL(const T* in0, ..., T* out0, ...);
// For C it is the function itself; for the LLVM formats the compiled symbol is
// `void SYMBOL_args(void** args)` (ktune's calling convention, llvm_codegen.h) and the header
// defines SYMBOL as a static inline wrapper around it. Compiled kernels with parallel loops
// call `ktune_parallel_for`; write_export_support writes ktune_parallel_for.c (OpenMP when
// compiled with -fopenmp, else POSIX threads, or serial with -DKTUNE_SERIAL) so that they
// link standalone, and a README.md telling how to build and call the kernels.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ktune/ir/ir.h"
#include "ktune/target/target.h"

namespace ktune::codegen {

enum class ExportFormat : uint8_t { C, LLVM, Asm, Obj };
const char* export_format_name(ExportFormat f);  // "c", "llvm", "asm", "obj"
// Parses "c", "llvm", "asm", "obj"; false for anything else.
bool parse_export_format(const std::string& s, ExportFormat* out);

// What the header says about a kernel beyond its IR.
struct ExportInfo {
  std::string symbol;    // C identifier of the kernel function, e.g. "matmul_5c1f0e0c"
  std::string workload;  // "matmul(M=256,N=256,K=256,dtype=f32)"
  int num_inputs = 0;    // the first num_inputs arguments are inputs, the rest outputs
  std::vector<bool> weights;  // per input: a `const` input of the kernel (weights); may be empty
  std::string schedule;       // the steps, one per line
  std::string provenance;     // e.g. "tuning log r18.jsonl, trial 17: 0.130 ms, 257.2 GFLOP/s"
  int threads = 1;            // threads the kernel was tuned with
  double flops = 0;           // per call
};

struct ExportedKernel {
  std::vector<std::string> files;  // file names written into the directory
  std::string prototype;           // as declared in the header, without ';'
  std::vector<std::string> arg_names, arg_types;  // C parameter names and element types
  int parallel_loops = 0;          // > 0: the code runs loops on threads
  int simd_loops = 0;              // C only: loops with `omp simd`
};

// Writes the kernel's code and header into `dir` (created when missing). `f` is the lowered
// kernel (its name is replaced by info.symbol). Throws UserError when a file cannot be
// written, InvalidCandidate when the kernel cannot be compiled for the format.
ExportedKernel export_kernel(const ir::LoweredFunc& f, const target::Target& t, ExportFormat fmt,
                             const ExportInfo& info, const std::string& dir);

// Writes README.md (and, for the LLVM formats, ktune_parallel_for.c) into `dir`; returns the
// file names written.
std::vector<std::string> write_export_support(const std::string& dir, ExportFormat fmt, const target::Target& t,
                                              const std::vector<ExportInfo>& kernels,
                                              const std::vector<ExportedKernel>& exported);

// The source of ktune_parallel_for.c.
std::string parallel_for_c_source();

}  // namespace ktune::codegen
