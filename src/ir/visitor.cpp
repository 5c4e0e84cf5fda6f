// Default traversals of the IR. A visitor recurses into every child; a mutator rebuilds a
// node only when a child changed and otherwise hands back the node it was given, so passes
// that change nothing cost no allocation and are detected with same_as (STYLE 2).
#include "ktune/ir/visitor.h"

#include "ktune/support/error.h"

namespace ktune::ir {

// ---------------------------------------------------------------------------------------
// IRVisitor

void IRVisitor::visit(const Expr& e) {
  if (!e.defined()) return;
  switch (e.kind()) {
#define KT_X(n)                                    \
  case ExprKind::n:                                \
    visit_##n(static_cast<const n*>(e.get()));     \
    return;
    KTUNE_EXPR_NODES(KT_X)
#undef KT_X
  }
}

void IRVisitor::visit(const Stmt& s) {
  if (!s.defined()) return;
  switch (s.kind()) {
#define KT_X(n)                                    \
  case StmtKind::n:                                \
    visit_##n(static_cast<const n*>(s.get()));     \
    return;
    KTUNE_STMT_NODES(KT_X)
#undef KT_X
  }
}

void IRVisitor::visit_IntImm(const IntImm*) {}
void IRVisitor::visit_FloatImm(const FloatImm*) {}
void IRVisitor::visit_Var(const Var*) {}
void IRVisitor::visit_Cast(const Cast* op) { visit(op->value); }
#define KT_BINARY(n)                             \
  void IRVisitor::visit_##n(const n* op) {       \
    visit(op->a);                                \
    visit(op->b);                                \
  }
KTUNE_BINARY_NODES(KT_BINARY)
#undef KT_BINARY
void IRVisitor::visit_Not(const Not* op) { visit(op->a); }
void IRVisitor::visit_Select(const Select* op) {
  visit(op->cond);
  visit(op->true_value);
  visit(op->false_value);
}
void IRVisitor::visit_Load(const Load* op) { visit(op->index); }
void IRVisitor::visit_Ramp(const Ramp* op) {
  visit(op->base);
  visit(op->stride);
}
void IRVisitor::visit_Broadcast(const Broadcast* op) { visit(op->value); }
void IRVisitor::visit_Call(const Call* op) {
  for (const Expr& a : op->args) visit(a);
}
void IRVisitor::visit_TensorRead(const TensorRead* op) {
  for (const Expr& i : op->indices) visit(i);
}

void IRVisitor::visit_For(const For* op) {
  visit(op->var);
  visit(op->min);
  visit(op->extent);
  visit(op->body);
}
void IRVisitor::visit_Store(const Store* op) {
  visit(op->value);
  visit(op->index);
}
void IRVisitor::visit_Allocate(const Allocate* op) { visit(op->body); }
void IRVisitor::visit_IfThenElse(const IfThenElse* op) {
  visit(op->cond);
  visit(op->then_case);
  visit(op->else_case);
}
void IRVisitor::visit_Block(const Block* op) {
  for (const Stmt& s : op->stmts) visit(s);
}
void IRVisitor::visit_Barrier(const Barrier*) {}
void IRVisitor::visit_Evaluate(const Evaluate* op) { visit(op->value); }
void IRVisitor::visit_LetStmt(const LetStmt* op) {
  visit(op->var);
  visit(op->value);
  visit(op->body);
}

// ---------------------------------------------------------------------------------------
// IRMutator

Expr IRMutator::mutate(const Expr& e) {
  if (!e.defined()) return e;
  switch (e.kind()) {
#define KT_X(n) \
  case ExprKind::n: return visit_##n(static_cast<const n*>(e.get()), e);
    KTUNE_EXPR_NODES(KT_X)
#undef KT_X
  }
  return e;
}

Stmt IRMutator::mutate(const Stmt& s) {
  if (!s.defined()) return s;
  switch (s.kind()) {
#define KT_X(n) \
  case StmtKind::n: return visit_##n(static_cast<const n*>(s.get()), s);
    KTUNE_STMT_NODES(KT_X)
#undef KT_X
  }
  return s;
}

Expr IRMutator::visit_IntImm(const IntImm*, const Expr& self) { return self; }
Expr IRMutator::visit_FloatImm(const FloatImm*, const Expr& self) { return self; }
Expr IRMutator::visit_Var(const Var*, const Expr& self) { return self; }
Expr IRMutator::visit_Cast(const Cast* op, const Expr& self) {
  Expr v = mutate(op->value);
  if (v.same_as(op->value)) return self;
  return Cast::make(op->type.with_lanes(v.type().lanes), v);
}
#define KT_BINARY(n)                                                 \
  Expr IRMutator::visit_##n(const n* op, const Expr& self) {         \
    Expr a = mutate(op->a), b = mutate(op->b);                       \
    if (a.same_as(op->a) && b.same_as(op->b)) return self;           \
    return n::make(std::move(a), std::move(b));                      \
  }
KTUNE_BINARY_NODES(KT_BINARY)
#undef KT_BINARY
Expr IRMutator::visit_Not(const Not* op, const Expr& self) {
  Expr a = mutate(op->a);
  if (a.same_as(op->a)) return self;
  return Not::make(std::move(a));
}
Expr IRMutator::visit_Select(const Select* op, const Expr& self) {
  Expr c = mutate(op->cond), t = mutate(op->true_value), f = mutate(op->false_value);
  if (c.same_as(op->cond) && t.same_as(op->true_value) && f.same_as(op->false_value))
    return self;
  return Select::make(std::move(c), std::move(t), std::move(f));
}
Expr IRMutator::visit_Load(const Load* op, const Expr& self) {
  Expr i = mutate(op->index);
  if (i.same_as(op->index)) return self;
  return Load::make(op->buffer, std::move(i));
}
Expr IRMutator::visit_Ramp(const Ramp* op, const Expr& self) {
  Expr b = mutate(op->base), s = mutate(op->stride);
  if (b.same_as(op->base) && s.same_as(op->stride)) return self;
  return Ramp::make(std::move(b), std::move(s), op->lanes);
}
Expr IRMutator::visit_Broadcast(const Broadcast* op, const Expr& self) {
  Expr v = mutate(op->value);
  if (v.same_as(op->value)) return self;
  return Broadcast::make(std::move(v), op->lanes);
}
Expr IRMutator::visit_Call(const Call* op, const Expr& self) {
  std::vector<Expr> args;
  bool changed = false;
  args.reserve(op->args.size());
  for (const Expr& a : op->args) {
    args.push_back(mutate(a));
    changed |= !args.back().same_as(a);
  }
  if (!changed) return self;
  return Call::make(op->func, std::move(args));
}
Expr IRMutator::visit_TensorRead(const TensorRead* op, const Expr& self) {
  std::vector<Expr> idx;
  bool changed = false;
  idx.reserve(op->indices.size());
  for (const Expr& i : op->indices) {
    idx.push_back(mutate(i));
    changed |= !idx.back().same_as(i);
  }
  if (!changed) return self;
  return TensorRead::make(op->type, op->tensor, std::move(idx));
}

Stmt IRMutator::visit_For(const For* op, const Stmt& self) {
  Expr m = mutate(op->min), e = mutate(op->extent);
  Stmt b = mutate(op->body);
  if (m.same_as(op->min) && e.same_as(op->extent) && b.same_as(op->body)) return self;
  return For::make(op->var, std::move(m), std::move(e), op->for_kind, std::move(b));
}
Stmt IRMutator::visit_Store(const Store* op, const Stmt& self) {
  Expr v = mutate(op->value), i = mutate(op->index);
  if (v.same_as(op->value) && i.same_as(op->index)) return self;
  return Store::make(op->buffer, std::move(v), std::move(i));
}
Stmt IRMutator::visit_Allocate(const Allocate* op, const Stmt& self) {
  Stmt b = mutate(op->body);
  if (b.same_as(op->body)) return self;
  return Allocate::make(op->buffer, std::move(b));
}
Stmt IRMutator::visit_IfThenElse(const IfThenElse* op, const Stmt& self) {
  Expr c = mutate(op->cond);
  Stmt t = mutate(op->then_case), e = mutate(op->else_case);
  if (c.same_as(op->cond) && t.same_as(op->then_case) && e.same_as(op->else_case)) return self;
  return IfThenElse::make(std::move(c), std::move(t), std::move(e));
}
Stmt IRMutator::visit_Block(const Block* op, const Stmt& self) {
  std::vector<Stmt> stmts;
  bool changed = false;
  stmts.reserve(op->stmts.size());
  for (const Stmt& s : op->stmts) {
    stmts.push_back(mutate(s));
    changed |= !stmts.back().same_as(s);
  }
  if (!changed) return self;
  return Block::make(std::move(stmts));
}
Stmt IRMutator::visit_Barrier(const Barrier*, const Stmt& self) { return self; }
Stmt IRMutator::visit_Evaluate(const Evaluate* op, const Stmt& self) {
  Expr v = mutate(op->value);
  if (v.same_as(op->value)) return self;
  return Evaluate::make(std::move(v));
}
Stmt IRMutator::visit_LetStmt(const LetStmt* op, const Stmt& self) {
  Expr v = mutate(op->value);
  Stmt b = mutate(op->body);
  if (v.same_as(op->value) && b.same_as(op->body)) return self;
  return LetStmt::make(op->var, std::move(v), std::move(b));
}

// ---------------------------------------------------------------------------------------
// Helpers

namespace {

class Substituter : public IRMutator {
 public:
  explicit Substituter(const VarMap& map) : map_(map) {}
  Expr visit_Var(const Var* op, const Expr& self) override {
    auto it = map_.find(op);
    return it == map_.end() ? self : it->second;
  }

 private:
  const VarMap& map_;
};

class UsesVar : public IRVisitor {
 public:
  explicit UsesVar(const ExprNode* v) : var_(v) {}
  void visit(const Expr& e) override {
    if (found || !e.defined()) return;
    if (e.get() == var_) {
      found = true;
      return;
    }
    IRVisitor::visit(e);
  }
  void visit(const Stmt& s) override {
    if (!found) IRVisitor::visit(s);
  }
  bool found = false;

 private:
  const ExprNode* var_;
};

class PostOrder : public IRVisitor {
 public:
  explicit PostOrder(const std::function<void(const Expr&)>& f) : f_(f) {}
  void visit(const Expr& e) override {
    if (!e.defined()) return;
    IRVisitor::visit(e);
    f_(e);
  }

 private:
  const std::function<void(const Expr&)>& f_;
};

}  // namespace

Expr substitute(const Expr& e, const VarMap& map) {
  if (map.empty()) return e;
  return Substituter(map).mutate(e);
}

Stmt substitute(const Stmt& s, const VarMap& map) {
  if (map.empty()) return s;
  return Substituter(map).mutate(s);
}

void post_order_visit(const Expr& e, const std::function<void(const Expr&)>& f) {
  PostOrder(f).visit(e);
}

bool uses_var(const Expr& e, const Expr& v) {
  UsesVar u(v.get());
  u.visit(e);
  return u.found;
}

bool uses_var(const Stmt& s, const Expr& v) {
  UsesVar u(v.get());
  u.visit(s);
  return u.found;
}

}  // namespace ktune::ir
