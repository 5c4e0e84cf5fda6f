// LLVM IR emission from the loop-nest IR (CPU targets).
//
// The module holds one function per kernel with the C ABI
//     void NAME(void** args)
// where args[i] points to buffer argument i (inputs then outputs, as LoweredFunc::args).
// Inside, buffer pointers are noalias; parallel loops are outlined into functions
//     void NAME_par_N(void* closure, int64_t begin, int64_t end)
// called through the runtime's
//     void ktune_parallel_for(void (*fn)(void*, int64_t, int64_t), void* closure, int64_t n);
// Vectorized loops are emitted as LLVM vector types; float arithmetic carries the `contract`
// flag so multiply-adds become FMAs.
#pragma once

#include <memory>

#include "ktune/ir/ir.h"
#include "ktune/target/target.h"

namespace llvm {
class LLVMContext;
class Module;
class TargetMachine;
}  // namespace llvm

namespace ktune::codegen {

// Creates the TargetMachine for a CPU target (triple + feature list), at -O3.
std::unique_ptr<llvm::TargetMachine> make_target_machine(const target::Target& t);

// Emits the module for `f` (after prepare_for_codegen) and runs LLVM's -O3 pipeline on it.
std::unique_ptr<llvm::Module> emit_llvm(const ir::LoweredFunc& f, llvm::LLVMContext& ctx,
                                        llvm::TargetMachine& tm);

}  // namespace ktune::codegen
