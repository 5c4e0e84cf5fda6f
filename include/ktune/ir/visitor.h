// Visitor and mutator over the IR. Both have one method per node kind, generated from the
// node lists in ir.h. The mutator returns the very same handle when nothing below a node
// changed (STYLE 2), so `mutated.same_as(original)` tells whether a pass did anything.
#pragma once

#include <functional>
#include <unordered_map>

#include "ktune/ir/ir.h"

namespace ktune::ir {

class IRVisitor {
 public:
  virtual ~IRVisitor() = default;
  virtual void visit(const Expr& e);
  virtual void visit(const Stmt& s);
#define KT_X(n) virtual void visit_##n(const n* op);
  KTUNE_EXPR_NODES(KT_X)
  KTUNE_STMT_NODES(KT_X)
#undef KT_X
};

class IRMutator {
 public:
  virtual ~IRMutator() = default;
  virtual Expr mutate(const Expr& e);
  virtual Stmt mutate(const Stmt& s);
  // `self` is the handle of `op`; return it unchanged when nothing changed.
#define KT_X(n) virtual Expr visit_##n(const n* op, const Expr& self);
  KTUNE_EXPR_NODES(KT_X)
#undef KT_X
#define KT_X(n) virtual Stmt visit_##n(const n* op, const Stmt& self);
  KTUNE_STMT_NODES(KT_X)
#undef KT_X
};

// Variable substitution, keyed by the Var node. Unmapped variables stay.
using VarMap = std::unordered_map<const ExprNode*, Expr>;
Expr substitute(const Expr& e, const VarMap& map);
Stmt substitute(const Stmt& s, const VarMap& map);

// Calls f on every node of an expression tree, children before their parent (post-order).
void post_order_visit(const Expr& e, const std::function<void(const Expr&)>& f);

// True when `e` mentions the variable `v` (a Var handle).
bool uses_var(const Expr& e, const Expr& v);
bool uses_var(const Stmt& s, const Expr& v);

}  // namespace ktune::ir
