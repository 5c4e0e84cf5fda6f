// Code generation entry points that need no LLVM types: text forms for users and tests.
// (llvm_codegen.h has the LLVM-typed interface used by the runtime.)
#pragma once

#include <string>

#include "ktune/ir/ir.h"
#include "ktune/target/target.h"

namespace ktune::codegen {

// The lowering passes that run before code generation, in order: simplify, unroll loops
// marked Unrolled, vectorize loops marked Vectorized (Ramp/Broadcast), simplify.
ir::LoweredFunc prepare_for_codegen(const ir::LoweredFunc& f, const target::Target& t);

// Textual LLVM IR of the optimized module (-O3) for the target.
std::string emit_llvm_ir(const ir::LoweredFunc& f, const target::Target& t);
// Assembly text of the optimized module.
std::string emit_assembly(const ir::LoweredFunc& f, const target::Target& t);
// The optimized module as a relocatable object file (ELF on Linux triples), position
// independent. It defines the external symbol f.name with the C ABI `void NAME(void** args)`
// (see llvm_codegen.h); a kernel with parallel loops references `ktune_parallel_for`, which
// the user links in (codegen/export.h writes a C implementation).
std::string emit_object(const ir::LoweredFunc& f, const target::Target& t);

}  // namespace ktune::codegen
