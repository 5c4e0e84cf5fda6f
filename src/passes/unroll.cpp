// unroll_loops: expands loops marked Unrolled into copies of their body (see unroll.h).
#include "ktune/passes/unroll.h"

#include "ktune/ir/ir_ops.h"
#include "ktune/ir/visitor.h"

namespace ktune::passes {

namespace {

// Number of statements of a Stmt (expressions are not visited).
class StmtCounter : public ir::IRVisitor {
 public:
  int64_t count = 0;
  void visit(const ir::Expr&) override {}
  void visit(const ir::Stmt& s) override {
    if (!s.defined()) return;
    ++count;
    IRVisitor::visit(s);
  }
};

int64_t statement_count(const ir::Stmt& s) {
  StmtCounter c;
  c.visit(s);
  return c.count;
}

class Unroller : public ir::IRMutator {
 public:
  ir::Stmt visit_For(const ir::For* op, const ir::Stmt& self) override {
    ir::Stmt body = mutate(op->body);
    if (op->for_kind != ir::ForKind::Unrolled) {
      if (body.same_as(op->body)) return self;
      return ir::For::make(op->var, op->min, op->extent, op->for_kind, body);
    }
    int64_t extent = 0;
    if (!ir::is_const_int(op->extent, &extent) || extent > kMaxUnrollExtent ||
        extent * statement_count(body) > kMaxUnrolledStatements) {
      return ir::For::make(op->var, op->min, op->extent, ir::ForKind::Serial, body);
    }
    if (extent <= 0) return ir::Evaluate::make(ir::Expr(0));
    int64_t min = 0;
    bool const_min = ir::is_const_int(op->min, &min);
    std::vector<ir::Stmt> copies;
    copies.reserve(size_t(extent));
    for (int64_t i = 0; i < extent; ++i) {
      ir::Expr value = const_min ? ir::IntImm::make(op->var.type(), min + i)
                                 : op->min + ir::IntImm::make(op->min.type(), i);
      ir::VarMap map{{op->var.get(), value}};
      copies.push_back(ir::substitute(body, map));
    }
    return ir::Block::make(std::move(copies));
  }
};

}  // namespace

ir::Stmt unroll_loops(const ir::Stmt& s) { return Unroller().mutate(s); }

}  // namespace ktune::passes
