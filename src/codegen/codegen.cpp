// The lowering passes before code generation, and text forms of the generated code.
#include "ktune/codegen/codegen.h"

#include <llvm/ADT/SmallString.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>

#include <algorithm>

#include "ktune/codegen/llvm_codegen.h"
#include "ktune/ir/printer.h"
#include "ktune/ir/simplify.h"
#include "ktune/passes/unroll.h"
#include "ktune/passes/vectorize.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"

namespace ktune::codegen {

namespace {

void dump_if_changed(const char* stage, const ir::Stmt& before, const ir::Stmt& after) {
  if (debug_level() >= 3 && !after.same_as(before)) {
    debug(3) << "-- after " << stage << ":\n" << ir::to_string(after) << "\n";
  }
}

}  // namespace

ir::LoweredFunc prepare_for_codegen(const ir::LoweredFunc& f, const target::Target& t) {
  // Vectorized loops may span up to 4 native registers of f32.
  int max_lanes = std::max(4, t.vector_lanes(32));
  ir::LoweredFunc out = f;
  ir::Stmt s = f.body;
  ir::Stmt next = ir::simplify(s);
  dump_if_changed("simplify", s, next);
  s = next;
  next = passes::unroll_loops(s);
  dump_if_changed("unroll_loops", s, next);
  s = next;
  next = passes::vectorize_loops(s, max_lanes);
  dump_if_changed("vectorize_loops", s, next);
  s = next;
  next = ir::simplify(s);
  dump_if_changed("simplify", s, next);
  out.body = next;
  return out;
}

std::string emit_llvm_ir(const ir::LoweredFunc& f, const target::Target& t) {
  auto tm = make_target_machine(t);
  llvm::LLVMContext ctx;
  auto m = emit_llvm(prepare_for_codegen(f, t), ctx, *tm, t);
  std::string out;
  llvm::raw_string_ostream os(out);
  m->print(os, nullptr);
  os.flush();
  return out;
}

namespace {

std::string emit_file(const ir::LoweredFunc& f, const target::Target& t, llvm::CodeGenFileType type) {
  auto tm = make_target_machine(t);
  llvm::LLVMContext ctx;
  auto m = emit_llvm(prepare_for_codegen(f, t), ctx, *tm, t);
  llvm::SmallString<0> buf;
  llvm::raw_svector_ostream os(buf);
  llvm::legacy::PassManager pm;
  KT_CHECK(!tm->addPassesToEmitFile(pm, os, nullptr, type), "the target machine for ", t.name, " cannot emit ",
           type == llvm::CodeGenFileType::AssemblyFile ? "assembly" : "object files");
  pm.run(*m);
  return std::string(buf.str());
}

}  // namespace

std::string emit_assembly(const ir::LoweredFunc& f, const target::Target& t) {
  return emit_file(f, t, llvm::CodeGenFileType::AssemblyFile);
}

std::string emit_object(const ir::LoweredFunc& f, const target::Target& t) {
  return emit_file(f, t, llvm::CodeGenFileType::ObjectFile);
}

}  // namespace ktune::codegen
