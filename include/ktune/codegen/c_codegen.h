// C source emission (DESIGN §11): a lowered CPU kernel as one readable, standalone C99
// function that needs no ktune header or runtime, for users to compile into their own
// projects (`ktune replay --emit=c`).
//
// The emitter works from the loop nest after simplification and before unrolling and
// vectorization, so the source keeps the tuned loop structure as loops:
//  - a Parallel loop (the outermost one of a nest) gets `#pragma omp parallel for` when the
//    file is compiled with OpenMP (-fopenmp), and runs serially otherwise;
//  - a Vectorized loop gets `#pragma omp simd` (again only under OpenMP) when vectorizing
//    it is legal by the rule of passes::vectorize_loops; otherwise it is a plain loop;
//  - an Unrolled loop of constant extent <= 512 gets `#pragma GCC unroll N` (understood by
//    GCC and Clang).
// Semantics follow the IR exactly: integer Div/Mod are floor division/modulo (plain `/` and
// `%` where the dividend is provably non-negative and the divisor a positive constant),
// float min/max are fminf/fmaxf (as llvm.minnum/maxnum), a select reads only the chosen arm
// (C's `?:`, which guards the out-of-bounds arm of a padding select), bool is one byte in
// memory. Buffers larger than 64 KiB, or of global scope, are malloc'ed; smaller ones are
// arrays on the stack. f16 and bf16 are not supported (InvalidCandidate, as in the LLVM
// code generator).
#pragma once

#include <string>
#include <vector>

#include "ktune/ir/ir.h"
#include "ktune/target/target.h"

namespace ktune::codegen {

struct CSource {
  std::string code;        // a complete C99 translation unit
  int parallel_loops = 0;  // loops with `omp parallel for`
  int simd_loops = 0;      // loops with `omp simd`
};

// Emits `f` as a C99 file defining
//     void NAME(const T0* A0, ..., T* OUT0, ...)
// with the arguments of `f` in order; the first `num_inputs` are inputs (`const`), the rest
// outputs. Pointers are `restrict` in the definition. `t` gives the vector width used to
// decide which Vectorized loops are simd-safe. Throws InvalidCandidate for an unsupported
// element type or a GPU loop kind.
CSource emit_c(const ir::LoweredFunc& f, const target::Target& t, int num_inputs);

// The prototype of the function emit_c defines (without `restrict` and without the
// trailing semicolon), for headers: "void matmul(const float* A, const float* B, float* C)".
std::string c_prototype(const ir::LoweredFunc& f, int num_inputs);

// The C parameter names of f's arguments, as emit_c and c_prototype use them (IR names made
// valid, distinct C identifiers).
std::vector<std::string> c_param_names(const ir::LoweredFunc& f);

// The C element type of an IR type: "float", "double", "int32_t", "int8_t", "int64_t",
// "uint8_t" (bool in memory). InvalidCandidate for f16/bf16.
std::string c_type_name(ir::Type t);

}  // namespace ktune::codegen
