// vectorize_loops: turns loops marked Vectorized into Ramp/Broadcast vector code
// (see vectorize.h for when a loop qualifies and what happens when it does not).
//
// Two steps per loop: a legality check on the scalar body (straight-line, no cross-lane
// dependence through memory), then a widening mutator that replaces the loop variable by
// Ramp(min, 1, L) and rebuilds every node that sees a vector operand. Integer arithmetic on
// ramps is folded into ramps (Ramp(b, s) + x -> Ramp(b + x, s), Ramp(b, s) * c ->
// Ramp(b * c, s * c)) so that affine indices stay recognisable as strided accesses.
#include "ktune/passes/vectorize.h"
#include "ktune/passes/unroll.h"

#include <algorithm>
#include <optional>
#include <unordered_set>

#include "ktune/ir/ir_ops.h"
#include "ktune/ir/printer.h"
#include "ktune/ir/simplify.h"
#include "ktune/ir/visitor.h"

namespace ktune::passes {

namespace {

using ir::Expr;
using ir::Stmt;

// Loops longer than this that cannot be vectorized stay loops.
constexpr int64_t kMaxUnrollRefusedLanes = 16;

// Whether `s` has a loop (of kind `kind`, when given).
bool contains_loop(const Stmt& s, std::optional<ir::ForKind> kind = std::nullopt) {
  struct Finder : ir::IRVisitor {
    std::optional<ir::ForKind> kind;
    bool found = false;
    void visit_For(const ir::For* op) override {
      if (!kind || op->for_kind == *kind) found = true;
      if (!found) ir::IRVisitor::visit_For(op);
    }
  } f;
  f.kind = kind;
  f.visit(s);
  return f.found;
}

// The constant coefficient c such that e == c * v + (terms free of v), if e has that form.
std::optional<int64_t> linear_coefficient(const Expr& e, const Expr& v) {
  if (!ir::uses_var(e, v)) return 0;
  if (e.same_as(v)) return 1;
  if (const auto* op = e.as<ir::Add>()) {
    auto a = linear_coefficient(op->a, v), b = linear_coefficient(op->b, v);
    if (a && b) return *a + *b;
    return std::nullopt;
  }
  if (const auto* op = e.as<ir::Sub>()) {
    auto a = linear_coefficient(op->a, v), b = linear_coefficient(op->b, v);
    if (a && b) return *a - *b;
    return std::nullopt;
  }
  if (const auto* op = e.as<ir::Mul>()) {
    int64_t k = 0;
    if (ir::is_const_int(op->a, &k)) {
      auto b = linear_coefficient(op->b, v);
      if (b) return k * *b;
    } else if (ir::is_const_int(op->b, &k)) {
      auto a = linear_coefficient(op->a, v);
      if (a) return *a * k;
    }
    return std::nullopt;
  }
  if (const auto* op = e.as<ir::Cast>()) {
    if (e.type().is_int() && e.type().bits == 64 && op->value.type().is_int() &&
        op->value.type().bits == 64) {
      return linear_coefficient(op->value, v);
    }
  }
  return std::nullopt;
}

bool equal_index(const Expr& a, const Expr& b) {
  if (a.same_as(b)) return true;
  if (ir::to_string(a) == ir::to_string(b)) return true;
  if (a.type() != b.type()) return false;
  return ir::is_const_int(ir::simplify(a - b), 0);
}

// Legality of vectorizing a loop over `var` with body `body` (see vectorize.h).
class LegalityCheck {
 public:
  explicit LegalityCheck(const Expr& var) : var_(var) {}

  bool check(const Stmt& body) {
    if (!walk(body)) return false;
    for (const auto& st : stores_) {
      if (!ir::uses_var(st.index, var_)) return false;  // invariant index: race or redundant
      auto c = linear_coefficient(st.index, var_);
      if (!c || *c == 0) return false;
    }
    for (const auto& st : stores_) {
      for (const auto& acc : stores_) {
        if (acc.buffer == st.buffer && !equal_index(acc.index, st.index)) return false;
      }
      for (const auto& acc : loads_) {
        if (acc.buffer == st.buffer && !equal_index(acc.index, st.index)) return false;
      }
    }
    return true;
  }

 private:
  struct Access {
    const ir::BufferNode* buffer;
    Expr index;  // with let-bound variables substituted
  };

  bool walk(const Stmt& s) {
    switch (s.kind()) {
      case ir::StmtKind::Block:
        for (const auto& c : s.as<ir::Block>()->stmts) {
          if (!walk(c)) return false;
        }
        return true;
      case ir::StmtKind::LetStmt: {
        const auto* op = s.as<ir::LetStmt>();
        if (!scan(op->value)) return false;
        lets_[op->var.get()] = ir::substitute(op->value, lets_);
        return walk(op->body);
      }
      case ir::StmtKind::Store: {
        const auto* op = s.as<ir::Store>();
        if (!scan(op->value) || !scan(op->index)) return false;
        stores_.push_back({op->buffer.get(), ir::substitute(op->index, lets_)});
        return true;
      }
      case ir::StmtKind::Evaluate:
        return scan(s.as<ir::Evaluate>()->value);
      case ir::StmtKind::IfThenElse: {
        // Only a condition that is the same in every lane: the branches are then vectorized
        // on their own, under a scalar test.
        const auto* op = s.as<ir::IfThenElse>();
        if (!scan(op->cond) || ir::uses_var(ir::substitute(op->cond, lets_), var_)) return false;
        return walk(op->then_case) && (!op->else_case.defined() || walk(op->else_case));
      }
      case ir::StmtKind::For:
      case ir::StmtKind::Allocate:
      case ir::StmtKind::Barrier:
        return false;
    }
    return false;
  }

  // Records loads; rejects expressions that are already vectors.
  bool scan(const Expr& e) {
    bool ok = true;
    ir::post_order_visit(e, [&](const Expr& x) {
      if (x.type().lanes != 1) ok = false;
      if (const auto* ld = x.as<ir::Load>()) {
        loads_.push_back({ld->buffer.get(), ir::substitute(ld->index, lets_)});
      }
    });
    return ok;
  }

  Expr var_;
  ir::VarMap lets_;
  std::vector<Access> stores_, loads_;
};

Expr broadcast_to(const Expr& e, int lanes) {
  if (e.type().lanes == lanes) return e;
  return ir::Broadcast::make(e, lanes);
}

// Integer helpers that fold constants, so ramp strides stay constants.
Expr add_i(const Expr& a, const Expr& b) {
  int64_t x, y;
  if (ir::is_const_int(a, &x) && ir::is_const_int(b, &y)) return ir::IntImm::make(a.type(), x + y);
  if (ir::is_const_int(a, 0)) return b;
  if (ir::is_const_int(b, 0)) return a;
  return ir::Add::make(a, b);
}
Expr sub_i(const Expr& a, const Expr& b) {
  int64_t x, y;
  if (ir::is_const_int(a, &x) && ir::is_const_int(b, &y)) return ir::IntImm::make(a.type(), x - y);
  if (ir::is_const_int(b, 0)) return a;
  return ir::Sub::make(a, b);
}
Expr mul_i(const Expr& a, const Expr& b) {
  int64_t x, y;
  if (ir::is_const_int(a, &x) && ir::is_const_int(b, &y)) return ir::IntImm::make(a.type(), x * y);
  if (ir::is_const_int(a, 1)) return b;
  if (ir::is_const_int(b, 1)) return a;
  return ir::Mul::make(a, b);
}

// Replaces the loop variable by a ramp and widens everything that depends on it.
class Widen : public ir::IRMutator {
 public:
  Widen(const Expr& var, const Expr& min, int lanes)
      : var_(var.get()),
        lanes_(lanes),
        ramp_(ir::Ramp::make(min, ir::IntImm::make(min.type(), 1), lanes)) {}

  Expr visit_Var(const ir::Var* op, const Expr& self) override {
    if (op == var_) return ramp_;
    auto it = lets_.find(op);
    return it == lets_.end() ? self : it->second;
  }

  Expr visit_Add(const ir::Add* op, const Expr& self) override {
    Expr a = mutate(op->a), b = mutate(op->b);
    if (a.same_as(op->a) && b.same_as(op->b)) return self;
    const auto *ra = a.as<ir::Ramp>(), *rb = b.as<ir::Ramp>();
    if (ra && rb)
      return ir::Ramp::make(add_i(ra->base, rb->base), add_i(ra->stride, rb->stride), lanes_);
    if (ra && b.type().is_scalar()) return ir::Ramp::make(add_i(ra->base, b), ra->stride, lanes_);
    if (rb && a.type().is_scalar()) return ir::Ramp::make(add_i(a, rb->base), rb->stride, lanes_);
    return ir::Add::make(broadcast_to(a, lanes_), broadcast_to(b, lanes_));
  }

  Expr visit_Sub(const ir::Sub* op, const Expr& self) override {
    Expr a = mutate(op->a), b = mutate(op->b);
    if (a.same_as(op->a) && b.same_as(op->b)) return self;
    const auto *ra = a.as<ir::Ramp>(), *rb = b.as<ir::Ramp>();
    if (ra && rb)
      return ir::Ramp::make(sub_i(ra->base, rb->base), sub_i(ra->stride, rb->stride), lanes_);
    if (ra && b.type().is_scalar()) return ir::Ramp::make(sub_i(ra->base, b), ra->stride, lanes_);
    if (rb && a.type().is_scalar()) {
      return ir::Ramp::make(sub_i(a, rb->base), sub_i(ir::make_zero(rb->stride.type()), rb->stride),
                            lanes_);
    }
    return ir::Sub::make(broadcast_to(a, lanes_), broadcast_to(b, lanes_));
  }

  Expr visit_Mul(const ir::Mul* op, const Expr& self) override {
    Expr a = mutate(op->a), b = mutate(op->b);
    if (a.same_as(op->a) && b.same_as(op->b)) return self;
    const auto *ra = a.as<ir::Ramp>(), *rb = b.as<ir::Ramp>();
    if (ra && b.type().is_scalar())
      return ir::Ramp::make(mul_i(ra->base, b), mul_i(ra->stride, b), lanes_);
    if (rb && a.type().is_scalar())
      return ir::Ramp::make(mul_i(a, rb->base), mul_i(a, rb->stride), lanes_);
    return ir::Mul::make(broadcast_to(a, lanes_), broadcast_to(b, lanes_));
  }

#define KT_WIDEN_BINARY(T)                                                \
  Expr visit_##T(const ir::T* op, const Expr& self) override {            \
    Expr a = mutate(op->a), b = mutate(op->b);                            \
    if (a.same_as(op->a) && b.same_as(op->b)) return self;                \
    return ir::T::make(broadcast_to(a, lanes_), broadcast_to(b, lanes_)); \
  }
  KT_WIDEN_BINARY(Div)
  KT_WIDEN_BINARY(Mod)
  KT_WIDEN_BINARY(Min)
  KT_WIDEN_BINARY(Max)
  KT_WIDEN_BINARY(EQ)
  KT_WIDEN_BINARY(NE)
  KT_WIDEN_BINARY(LT)
  KT_WIDEN_BINARY(LE)
  KT_WIDEN_BINARY(GT)
  KT_WIDEN_BINARY(GE)
  KT_WIDEN_BINARY(And)
  KT_WIDEN_BINARY(Or)
#undef KT_WIDEN_BINARY

  Expr visit_Not(const ir::Not* op, const Expr& self) override {
    Expr a = mutate(op->a);
    return a.same_as(op->a) ? self : ir::Not::make(a);
  }

  Expr visit_Cast(const ir::Cast* op, const Expr& self) override {
    Expr v = mutate(op->value);
    if (v.same_as(op->value)) return self;
    return ir::Cast::make(op->type.with_lanes(v.type().lanes), v);
  }

  Expr visit_Select(const ir::Select* op, const Expr& self) override {
    Expr c = mutate(op->cond), t = mutate(op->true_value), f = mutate(op->false_value);
    if (c.same_as(op->cond) && t.same_as(op->true_value) && f.same_as(op->false_value)) return self;
    return ir::Select::make(broadcast_to(c, lanes_), broadcast_to(t, lanes_),
                            broadcast_to(f, lanes_));
  }

  Expr visit_Load(const ir::Load* op, const Expr& self) override {
    Expr i = mutate(op->index);
    return i.same_as(op->index) ? self : ir::Load::make(op->buffer, i);
  }

  Expr visit_Call(const ir::Call* op, const Expr& self) override {
    std::vector<Expr> args;
    bool changed = false;
    for (const auto& a : op->args) {
      args.push_back(mutate(a));
      changed = changed || !args.back().same_as(a);
    }
    if (!changed) return self;
    for (auto& a : args) a = broadcast_to(a, lanes_);
    return ir::Call::make(op->func, std::move(args));
  }

  Stmt visit_Store(const ir::Store* op, const Stmt& self) override {
    Expr v = mutate(op->value), i = mutate(op->index);
    if (v.same_as(op->value) && i.same_as(op->index)) return self;
    return ir::Store::make(op->buffer, broadcast_to(v, lanes_), broadcast_to(i, lanes_));
  }

  Stmt visit_LetStmt(const ir::LetStmt* op, const Stmt& self) override {
    Expr v = mutate(op->value);
    if (v.type().is_scalar()) {
      Stmt body = mutate(op->body);
      if (v.same_as(op->value) && body.same_as(op->body)) return self;
      return ir::LetStmt::make(op->var, v, body);
    }
    const auto* old = op->var.as<ir::Var>();
    Expr nv = ir::Var::make(old->name, v.type());
    lets_[old] = nv;
    Stmt body = mutate(op->body);
    lets_.erase(old);
    return ir::LetStmt::make(nv, v, body);
  }

 private:
  const ir::ExprNode* var_;
  int lanes_;
  Expr ramp_;
  std::unordered_map<const ir::ExprNode*, Expr> lets_;
};

class LoopVectorizer : public ir::IRMutator {
 public:
  explicit LoopVectorizer(int max_lanes) : max_lanes_(max_lanes) {}

  Stmt visit_For(const ir::For* op, const Stmt& self) override {
    bool inner_vectorized =
        op->for_kind == ir::ForKind::Vectorized && contains_loop(op->body, ir::ForKind::Vectorized);
    Stmt body = mutate(op->body);
    if (op->for_kind != ir::ForKind::Vectorized) {
      if (body.same_as(op->body)) return self;
      return ir::For::make(op->var, op->min, op->extent, op->for_kind, body);
    }
    auto serial = [&] {
      return ir::For::make(op->var, op->min, op->extent, ir::ForKind::Serial, body);
    };
    int64_t lanes = 0;
    if (inner_vectorized || !ir::is_const_int(op->extent, &lanes) ||
        lanes > 4 * int64_t(max_lanes_)) {
      return serial();
    }
    if (lanes <= 0) return ir::Evaluate::make(Expr(0));
    if (lanes == 1) return ir::LetStmt::make(op->var, op->min, body);
    if (!LegalityCheck(op->var).check(body)) {
      // A short innermost loop that cannot be widened becomes its copies in order (the
      // same semantics as the serial loop): the schedule counted it as one step when its
      // enclosing loops were unrolled (DESIGN: a vectorized loop counts once), and left as a
      // loop it sat in every copy of an unrolled tile. A conv2d_nchwc candidate with a
      // 2-lane strided ki loop under a 448-copy tile reached LLVM with 912 loops, whose
      // per-loop passes (IndVarSimplify, LoopRotate, LoopFullUnroll, LICM) took 22 of its
      // 23 s of compile.
      if (lanes <= kMaxUnrollRefusedLanes && !contains_loop(body))
        return unroll_loops(ir::For::make(op->var, op->min, op->extent, ir::ForKind::Unrolled, body));
      return serial();
    }
    return Widen(op->var, op->min, int(lanes)).mutate(body);
  }

 private:
  int max_lanes_;
};

}  // namespace

Stmt vectorize_loops(const Stmt& s, int max_lanes) {
  return LoopVectorizer(std::max(1, max_lanes)).mutate(s);
}

}  // namespace ktune::passes
