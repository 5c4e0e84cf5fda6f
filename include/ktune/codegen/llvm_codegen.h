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
#include <string>

#include "ktune/ir/ir.h"
#include "ktune/target/target.h"

namespace llvm {
class LLVMContext;
class Module;
class TargetMachine;
}  // namespace llvm

namespace ktune::codegen {

// Registers LLVM's targets (all of them, or the native one in a static-LLVM build) and sets
// ktune's LLVM options (the machine scheduler's region limit). Idempotent and thread-safe;
// make_target_machine calls it.
void initialize_llvm();

// The limit on the loads and stores LLVM's machine scheduler tracks at a time in a block
// (-dag-maps-huge-region) as LLVM holds it now; 0 when this LLVM has no such option.
unsigned machine_scheduler_region_limit();

// The CPU name handed to LLVM for a target: a generic one ("x86-64", "generic"), since code
// is chosen by the feature list, never by the CPU name (DESIGN §10).
std::string cpu_name_for_codegen(const target::Target& t);

// Creates the TargetMachine for a CPU target (triple + feature list), at -O3. A GPU target
// or a triple LLVM has no backend for is a UserError.
std::unique_ptr<llvm::TargetMachine> make_target_machine(const target::Target& t);

// Emits the module for `f` and runs LLVM's -O3 pipeline on it. `f` should have been through
// prepare_for_codegen (loops still marked Unrolled or Vectorized are emitted as serial loops).
// Throws InvalidCandidate when the module fails LLVM's verifier or uses an unsupported
// dtype or a GPU loop kind.
std::unique_ptr<llvm::Module> emit_llvm(const ir::LoweredFunc& f, llvm::LLVMContext& ctx,
                                        llvm::TargetMachine& tm);
// As above, with the target's details that the TargetMachine does not carry (the SVE vector
// length of AArch64 targets, which becomes a vscale_range attribute).
std::unique_ptr<llvm::Module> emit_llvm(const ir::LoweredFunc& f, llvm::LLVMContext& ctx,
                                        llvm::TargetMachine& tm, const target::Target& t);

}  // namespace ktune::codegen
