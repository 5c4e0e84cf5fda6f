// The simplifier. Lowering produces index arithmetic full of x*1, +0, (i*8 + j)/8 and loops
// of extent 1; every later stage (vectorization, code generation, the cost model's
// features) is simpler and faster on folded IR.
//
// Integer expressions are rewritten through a linear form: a list of (term, coefficient)
// pairs plus a constant, where a term is a Var or any subexpression that is not a sum or a
// product by a constant. Terms keep the order of their first appearance, so the output is
// deterministic and reads like the input. Div and Mod by a positive constant split the form
// into a part divisible by the constant and a remainder whose range decides the result.
//
// Soundness rules: i64 arithmetic is assumed not to overflow (it is index arithmetic);
// narrower integers wrap, so for them only ring rearrangements (+ - * by constants, exact
// modulo 2^bits) and decisions whose operands have known, in-range bounds are made. Floats
// are only constant-folded and stripped of exact identities (x*1, x+0, x/1).
#include "ktune/ir/simplify.h"

#include <cmath>
#include <limits>
#include <numeric>

#include "ktune/ir/ir_ops.h"
#include "ktune/ir/visitor.h"
#include "ktune/support/error.h"
#include "ktune/support/util.h"

namespace ktune::ir {

namespace {

using i128 = __int128;

// ---------------------------------------------------------------------------------------
// Small helpers

int64_t wrap_add(int64_t a, int64_t b) { return int64_t(uint64_t(a) + uint64_t(b)); }
int64_t wrap_mul(int64_t a, int64_t b) { return int64_t(uint64_t(a) * uint64_t(b)); }

void int_range(Type t, i128* lo, i128* hi) {
  if (t.is_bool()) {
    *lo = 0;
    *hi = 1;
  } else if (t.bits >= 64) {
    *lo = std::numeric_limits<int64_t>::min();
    *hi = std::numeric_limits<int64_t>::max();
  } else {
    *lo = -(i128(1) << (t.bits - 1));
    *hi = (i128(1) << (t.bits - 1)) - 1;
  }
}

std::optional<IntBounds> fit(Type t, i128 lo, i128 hi) {
  i128 tlo, thi;
  int_range(t, &tlo, &thi);
  if (lo < tlo || hi > thi || lo > hi) return std::nullopt;
  return IntBounds{int64_t(lo), int64_t(hi)};
}

std::optional<IntBounds> full_range(Type t) {
  i128 lo, hi;
  int_range(t, &lo, &hi);
  return IntBounds{int64_t(lo), int64_t(hi)};
}

bool is_int_scalar(const Expr& e) { return e.type().is_int() && e.type().is_scalar(); }
bool is_index_type(Type t) { return t.is_int() && t.bits == 64; }

const FloatImm* as_float_const(const Expr& e) {
  if (const Broadcast* b = e.as<Broadcast>()) return b->value.as<FloatImm>();
  return e.as<FloatImm>();
}

bool is_const_float(const Expr& e, double v) {
  const FloatImm* f = as_float_const(e);
  return f && f->value == v;
}

// Structural equality. Vars and buffers compare by identity.
bool deep_equal(const Expr& a, const Expr& b) {
  if (a.same_as(b)) return true;
  if (!a.defined() || !b.defined()) return false;
  if (a.kind() != b.kind() || a.type() != b.type()) return false;
  switch (a.kind()) {
    case ExprKind::IntImm: return a.as<IntImm>()->value == b.as<IntImm>()->value;
    case ExprKind::FloatImm: {
      double x = a.as<FloatImm>()->value, y = b.as<FloatImm>()->value;
      return x == y || (x != x && y != y);
    }
    case ExprKind::Var: return false;  // identity only
    case ExprKind::Cast: return deep_equal(a.as<Cast>()->value, b.as<Cast>()->value);
#define KT_BIN(n)                                                                     \
  case ExprKind::n: {                                                                 \
    const n *x = a.as<n>(), *y = b.as<n>();                                           \
    return deep_equal(x->a, y->a) && deep_equal(x->b, y->b);                          \
  }
      KTUNE_BINARY_NODES(KT_BIN)
#undef KT_BIN
    case ExprKind::Not: return deep_equal(a.as<Not>()->a, b.as<Not>()->a);
    case ExprKind::Select: {
      const Select *x = a.as<Select>(), *y = b.as<Select>();
      return deep_equal(x->cond, y->cond) && deep_equal(x->true_value, y->true_value) &&
             deep_equal(x->false_value, y->false_value);
    }
    case ExprKind::Load: {
      const Load *x = a.as<Load>(), *y = b.as<Load>();
      return x->buffer == y->buffer && deep_equal(x->index, y->index);
    }
    case ExprKind::Ramp: {
      const Ramp *x = a.as<Ramp>(), *y = b.as<Ramp>();
      return x->lanes == y->lanes && deep_equal(x->base, y->base) &&
             deep_equal(x->stride, y->stride);
    }
    case ExprKind::Broadcast: {
      const Broadcast *x = a.as<Broadcast>(), *y = b.as<Broadcast>();
      return x->lanes == y->lanes && deep_equal(x->value, y->value);
    }
    case ExprKind::Call: {
      const Call *x = a.as<Call>(), *y = b.as<Call>();
      if (x->func != y->func || x->args.size() != y->args.size()) return false;
      for (size_t i = 0; i < x->args.size(); ++i)
        if (!deep_equal(x->args[i], y->args[i])) return false;
      return true;
    }
    case ExprKind::TensorRead: {
      const TensorRead *x = a.as<TensorRead>(), *y = b.as<TensorRead>();
      if (x->tensor != y->tensor || x->indices.size() != y->indices.size()) return false;
      for (size_t i = 0; i < x->indices.size(); ++i)
        if (!deep_equal(x->indices[i], y->indices[i])) return false;
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// Interval bounds of integer (and bool) expressions, over all lanes. Every node's interval
// must fit its type, so an expression with bounds never wraps when evaluated.

std::optional<IntBounds> bounds_rec(const Expr& e, const BoundsMap& m);

std::optional<IntBounds> bounds_impl(const Expr& e, const BoundsMap& m) {
  Type t = e.type();
  switch (e.kind()) {
    case ExprKind::IntImm: {
      int64_t v = e.as<IntImm>()->value;
      return IntBounds{v, v};
    }
    case ExprKind::Var: {
      auto it = m.find(e.get());
      if (it != m.end()) return it->second;
      return std::nullopt;
    }
    case ExprKind::Cast: {
      const Expr& v = e.as<Cast>()->value;
      if (t.is_bool()) return std::nullopt;
      if (v.type().is_int() || v.type().is_bool()) {
        auto b = bounds_rec(v, m);
        if (b) return fit(t, b->min, b->max);
      }
      return std::nullopt;
    }
    case ExprKind::Add: {
      auto a = bounds_rec(e.as<Add>()->a, m), b = bounds_rec(e.as<Add>()->b, m);
      if (!a || !b) return std::nullopt;
      return fit(t, i128(a->min) + b->min, i128(a->max) + b->max);
    }
    case ExprKind::Sub: {
      auto a = bounds_rec(e.as<Sub>()->a, m), b = bounds_rec(e.as<Sub>()->b, m);
      if (!a || !b) return std::nullopt;
      return fit(t, i128(a->min) - b->max, i128(a->max) - b->min);
    }
    case ExprKind::Mul: {
      auto a = bounds_rec(e.as<Mul>()->a, m), b = bounds_rec(e.as<Mul>()->b, m);
      if (!a || !b) return std::nullopt;
      i128 c[4] = {i128(a->min) * b->min, i128(a->min) * b->max, i128(a->max) * b->min,
                   i128(a->max) * b->max};
      return fit(t, std::min({c[0], c[1], c[2], c[3]}), std::max({c[0], c[1], c[2], c[3]}));
    }
    case ExprKind::Div: {
      auto a = bounds_rec(e.as<Div>()->a, m), b = bounds_rec(e.as<Div>()->b, m);
      if (!a || !b || (b->min <= 0 && b->max >= 0)) return std::nullopt;
      // Floor division is monotone in each argument on a sign-constant divisor range, so
      // the extremes are at the corners.
      int64_t c[4] = {floor_div(a->min, b->min), floor_div(a->min, b->max),
                      floor_div(a->max, b->min), floor_div(a->max, b->max)};
      return fit(t, std::min({c[0], c[1], c[2], c[3]}), std::max({c[0], c[1], c[2], c[3]}));
    }
    case ExprKind::Mod: {
      auto a = bounds_rec(e.as<Mod>()->a, m), b = bounds_rec(e.as<Mod>()->b, m);
      if (!b || b->min <= 0) {
        if (b && b->max < 0) return IntBounds{b->min + 1, 0};
        return std::nullopt;
      }
      if (a && b->min == b->max) {
        int64_t c = b->min;
        if (floor_div(a->min, c) == floor_div(a->max, c))
          return IntBounds{floor_mod(a->min, c), floor_mod(a->max, c)};
      }
      if (a && a->min >= 0 && a->max < b->min) return a;
      return IntBounds{0, b->max - 1};
    }
    case ExprKind::Min:
    case ExprKind::Max: {
      bool is_min = e.kind() == ExprKind::Min;
      const Expr& ea = is_min ? e.as<Min>()->a : e.as<Max>()->a;
      const Expr& eb = is_min ? e.as<Min>()->b : e.as<Max>()->b;
      auto a = bounds_rec(ea, m), b = bounds_rec(eb, m);
      if (!a || !b) return std::nullopt;
      if (is_min) return IntBounds{std::min(a->min, b->min), std::min(a->max, b->max)};
      return IntBounds{std::max(a->min, b->min), std::max(a->max, b->max)};
    }
    case ExprKind::Select: {
      const Select* op = e.as<Select>();
      auto a = bounds_rec(op->true_value, m), b = bounds_rec(op->false_value, m);
      if (!a || !b) return std::nullopt;
      return IntBounds{std::min(a->min, b->min), std::max(a->max, b->max)};
    }
    case ExprKind::Ramp: {
      const Ramp* op = e.as<Ramp>();
      auto b = bounds_rec(op->base, m), s = bounds_rec(op->stride, m);
      if (!b || !s) return std::nullopt;
      i128 n = op->lanes - 1;
      return fit(t, b->min + std::min<i128>(0, n * s->min),
                 b->max + std::max<i128>(0, n * s->max));
    }
    case ExprKind::Broadcast: return bounds_rec(e.as<Broadcast>()->value, m);
    default: return std::nullopt;
  }
}

std::optional<IntBounds> bounds_rec(const Expr& e, const BoundsMap& m) {
  Type t = e.type();
  if (!t.is_int() && !t.is_bool()) return std::nullopt;
  auto b = bounds_impl(e, m);
  if (b) return fit(t, b->min, b->max);
  // Any value of a narrow type lies in the type's range.
  if (t.is_bool() || t.bits < 64) return full_range(t);
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------
// Linear forms of scalar integer expressions

struct LinearForm {
  std::vector<std::pair<Expr, int64_t>> terms;
  int64_t k = 0;

  void add_term(const Expr& t, int64_t c) {
    for (auto& [term, coeff] : terms) {
      if (deep_equal(term, t)) {
        coeff = wrap_add(coeff, c);
        return;
      }
    }
    terms.emplace_back(t, c);
  }

  void add(const Expr& e, int64_t scale) {
    int64_t c;
    if (const IntImm* imm = e.as<IntImm>()) {
      k = wrap_add(k, wrap_mul(imm->value, scale));
    } else if (const Add* op = e.as<Add>()) {
      add(op->a, scale);
      add(op->b, scale);
    } else if (const Sub* op = e.as<Sub>()) {
      add(op->a, scale);
      add(op->b, wrap_mul(scale, -1));
    } else if (const Mul* op = e.as<Mul>(); op && is_const_int(op->b, &c)) {
      add(op->a, wrap_mul(scale, c));
    } else if (const Mul* op = e.as<Mul>(); op && is_const_int(op->a, &c)) {
      add(op->b, wrap_mul(scale, c));
    } else {
      add_term(e, scale);
    }
  }

  bool constant() const {
    for (const auto& t : terms)
      if (t.second != 0) return false;
    return true;
  }
};

int64_t wrap_to(Type t, int64_t v) {
  switch (t.bits) {
    case 8: return int8_t(v);
    case 16: return int16_t(v);
    case 32: return int32_t(v);
    default: return v;
  }
}

// Rebuilds sum(term*coeff) + k: positive terms first, then subtracted negative ones, then
// the constant. Linearizing the result gives back the same form (the simplifier is
// idempotent on it).
Expr rebuild(const LinearForm& f, Type t) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  Expr acc;
  int64_t k = wrap_to(t, f.k);
  auto piece = [&](const Expr& term, int64_t c) {
    return c == 1 ? term : Mul::make(term, IntImm::make(t, c));
  };
  for (const auto& [term, c0] : f.terms) {
    int64_t c = wrap_to(t, c0);
    if (c <= 0 && c != kMin) continue;
    if (c == 0) continue;
    acc = acc.defined() ? Add::make(acc, piece(term, c)) : piece(term, c);
  }
  for (const auto& [term, c0] : f.terms) {
    int64_t c = wrap_to(t, c0);
    if (c >= 0 || c == kMin) continue;
    if (acc.defined()) {
      acc = Sub::make(acc, piece(term, -c));
    } else if (k != 0) {
      acc = Sub::make(IntImm::make(t, k), piece(term, -c));
      k = 0;
    } else {
      acc = Mul::make(term, IntImm::make(t, c));
    }
  }
  if (k != 0 || !acc.defined()) {
    if (!acc.defined()) return IntImm::make(t, k);
    if (k > 0 || k == kMin) return Add::make(acc, IntImm::make(t, k));
    return Sub::make(acc, IntImm::make(t, -k));
  }
  return acc;
}

// Merges (u/c)*(a*c) + (u%c)*a into u*a: floor division makes u = c*(u/c) + u%c exact.
bool merge_div_mod(LinearForm& f) {
  for (size_t i = 0; i < f.terms.size(); ++i) {
    const Div* d = f.terms[i].first.as<Div>();
    int64_t c;
    if (!d || !is_const_int(d->b, &c) || c <= 0 || f.terms[i].second % c != 0) continue;
    int64_t a = f.terms[i].second / c;
    for (size_t j = 0; j < f.terms.size(); ++j) {
      const Mod* md = f.terms[j].first.as<Mod>();
      if (!md || f.terms[j].second != a || !is_const_int(md->b, c) ||
          !deep_equal(md->a, d->a))
        continue;
      Expr u = d->a;
      f.terms.erase(f.terms.begin() + std::max(i, j));
      f.terms.erase(f.terms.begin() + std::min(i, j));
      f.add(u, a);
      return true;
    }
  }
  return false;
}

LinearForm linearize(const Expr& e) {
  LinearForm f;
  f.add(e, 1);
  while (merge_div_mod(f)) {
  }
  return f;
}

// ---------------------------------------------------------------------------------------
// Constant folding

std::optional<double> float_value(const Expr& e) {
  if (const FloatImm* f = as_float_const(e)) return f->value;
  return std::nullopt;
}

std::optional<int64_t> int_value(const Expr& e) {
  int64_t v;
  if (is_const_int(e, &v)) return v;
  return std::nullopt;
}

Expr bool_const(bool v, int lanes) { return make_const(Type::boolean(lanes), v ? 1 : 0); }

// ---------------------------------------------------------------------------------------
// The simplifier

class Simplifier : public IRMutator {
 public:
  // Expression mode reads the caller's bounds in place; statement mode (which learns
  // bounds from loops and conditions) owns its map.
  explicit Simplifier(const BoundsMap* external) : view_(external ? external : &own_) {}

  using IRMutator::mutate;

  std::optional<IntBounds> bounds_of(const Expr& e) { return bounds_rec(e, *view_); }

  // ---- expressions ----------------------------------------------------------------

  Expr visit_Cast(const Cast* op, const Expr& self) override {
    Expr v = mutate(op->value);
    Type t = op->type;
    if (const Broadcast* b = v.as<Broadcast>())
      return Broadcast::make(mutate(Cast::make(t.element_of(), b->value)), b->lanes);
    if (auto i = v.as<IntImm>()) {
      if (t.is_float()) return make_const(t, double(i->value));
      return IntImm::make(t, t.is_bool() ? i->value != 0 : i->value);
    }
    if (auto f = v.as<FloatImm>()) {
      if (t.is_float()) return FloatImm::make(t, f->value);
      if (t.is_bool()) return IntImm::make(t, f->value != 0);
      // Float to int truncates toward zero; out-of-range and NaN are left to run time.
      i128 lo, hi;
      int_range(t, &lo, &hi);
      if (f->value == f->value && f->value > double(lo) - 1 && f->value < double(hi) + 1 &&
          std::abs(f->value) < 9.2e18)
        return IntImm::make(t, int64_t(f->value));
    }
    return finish(self, v.same_as(op->value) ? self : Cast::make(t, v));
  }

  Expr visit_Add(const Add* op, const Expr& self) override { return arith(op, self); }
  Expr visit_Sub(const Sub* op, const Expr& self) override { return arith(op, self); }
  Expr visit_Mul(const Mul* op, const Expr& self) override { return arith(op, self); }

  Expr visit_Div(const Div* op, const Expr& self) override {
    Expr a = mutate(op->a), b = mutate(op->b);
    Type t = op->type;
    if (auto r = fold_vector(ExprKind::Div, a, b)) return *r;
    if (t.is_float()) {
      auto x = float_value(a), y = float_value(b);
      if (x && y) return make_const(t, *x / *y);
      if (is_const_float(b, 1)) return a;
      return rebuilt<Div>(self, op, a, b);
    }
    int64_t c;
    if (is_const_int(b, &c) && c > 0) {
      if (t.is_scalar()) return finish(self, div_by_const(a, c));
      if (auto r = ramp_div_mod(a, c, /*is_div=*/true)) return *r;
    }
    auto x = int_value(a), y = int_value(b);
    if (x && y && *y != 0) return IntImm::make(t, floor_div(*x, *y));
    return rebuilt<Div>(self, op, a, b);
  }

  Expr visit_Mod(const Mod* op, const Expr& self) override {
    Expr a = mutate(op->a), b = mutate(op->b);
    Type t = op->type;
    if (auto r = fold_vector(ExprKind::Mod, a, b)) return *r;
    if (t.is_float()) {
      auto x = float_value(a), y = float_value(b);
      if (x && y) return make_const(t, *x - *y * std::floor(*x / *y));
      return rebuilt<Mod>(self, op, a, b);
    }
    int64_t c;
    if (is_const_int(b, &c) && c > 0) {
      if (t.is_scalar()) return finish(self, mod_by_const(a, c));
      if (auto r = ramp_div_mod(a, c, /*is_div=*/false)) return *r;
    }
    auto x = int_value(a), y = int_value(b);
    if (x && y && *y != 0) return IntImm::make(t, floor_mod(*x, *y));
    return rebuilt<Mod>(self, op, a, b);
  }

  Expr visit_Min(const Min* op, const Expr& self) override { return min_max(op, self, true); }
  Expr visit_Max(const Max* op, const Expr& self) override { return min_max(op, self, false); }

  Expr visit_EQ(const EQ* op, const Expr& self) override { return compare(op, self); }
  Expr visit_NE(const NE* op, const Expr& self) override { return compare(op, self); }
  Expr visit_LT(const LT* op, const Expr& self) override { return compare(op, self); }
  Expr visit_LE(const LE* op, const Expr& self) override { return compare(op, self); }
  Expr visit_GT(const GT* op, const Expr& self) override { return compare(op, self); }
  Expr visit_GE(const GE* op, const Expr& self) override { return compare(op, self); }

  Expr visit_And(const And* op, const Expr& self) override {
    Expr a = mutate(op->a), b = mutate(op->b);
    if (is_const_int(a, 0) || is_const_int(b, 1)) return a;
    if (is_const_int(a, 1)) return b;
    if (is_const_int(b, 0)) return b;
    if (deep_equal(a, b)) return a;
    return rebuilt<And>(self, op, a, b);
  }

  Expr visit_Or(const Or* op, const Expr& self) override {
    Expr a = mutate(op->a), b = mutate(op->b);
    if (is_const_int(a, 1) || is_const_int(b, 0)) return a;
    if (is_const_int(a, 0)) return b;
    if (is_const_int(b, 1)) return b;
    if (deep_equal(a, b)) return a;
    return rebuilt<Or>(self, op, a, b);
  }

  Expr visit_Not(const Not* op, const Expr& self) override {
    Expr a = mutate(op->a);
    int64_t v;
    if (is_const_int(a, &v)) return bool_const(v == 0, op->type.lanes);
    if (const Not* n = a.as<Not>()) return n->a;
    // Integer comparisons negate exactly (floats do not, because of NaN).
    if (a->kind >= ExprKind::EQ && a->kind <= ExprKind::GE) {
      Expr x, y;
      binary_operands(a, &x, &y);
      if (x.type().is_int()) {
        switch (a.kind()) {
          case ExprKind::EQ: return mutate(NE::make(x, y));
          case ExprKind::NE: return mutate(EQ::make(x, y));
          case ExprKind::LT: return mutate(GE::make(x, y));
          case ExprKind::LE: return mutate(GT::make(x, y));
          case ExprKind::GT: return mutate(LE::make(x, y));
          case ExprKind::GE: return mutate(LT::make(x, y));
          default: break;
        }
      }
    }
    return a.same_as(op->a) ? self : Not::make(a);
  }

  Expr visit_Select(const Select* op, const Expr& self) override {
    Expr c = mutate(op->cond), t = mutate(op->true_value), f = mutate(op->false_value);
    int64_t v;
    if (is_const_int(c, &v)) return v ? t : f;
    if (deep_equal(t, f)) return t;
    if (c.same_as(op->cond) && t.same_as(op->true_value) && f.same_as(op->false_value))
      return self;
    return finish(self, Select::make(c, t, f));
  }

  Expr visit_Ramp(const Ramp* op, const Expr& self) override {
    Expr b = mutate(op->base), s = mutate(op->stride);
    if (is_const_int(s, 0) || is_const_float(s, 0)) return Broadcast::make(b, op->lanes);
    if (b.same_as(op->base) && s.same_as(op->stride)) return self;
    return Ramp::make(b, s, op->lanes);
  }

  // ---- statements -----------------------------------------------------------------

  Stmt visit_For(const For* op, const Stmt& self) override {
    Expr mn = mutate(op->min), ext = mutate(op->extent);
    int64_t n;
    if (is_const_int(ext, &n) && n <= 0) return no_op();
    if (is_const_int(ext, 1)) return mutate(substitute(op->body, {{op->var.get(), mn}}));
    Stmt body;
    {
      std::optional<IntBounds> vb;
      auto bm = bounds_of(mn), be = bounds_of(ext);
      if (bm && be && be->max >= 1) vb = fit(op->var.type(), bm->min, i128(bm->max) + be->max - 1);
      ScopedBound sb(this, op->var.get(), vb);
      body = mutate(op->body);
    }
    if (is_no_op(body)) return no_op();
    if (mn.same_as(op->min) && ext.same_as(op->extent) && body.same_as(op->body)) return self;
    return For::make(op->var, mn, ext, op->for_kind, body);
  }

  Stmt visit_IfThenElse(const IfThenElse* op, const Stmt& self) override {
    Expr c = mutate(op->cond);
    int64_t v;
    if (is_const_int(c, &v)) {
      if (v) return mutate(op->then_case);
      return op->else_case.defined() ? mutate(op->else_case) : no_op();
    }
    Stmt then_case;
    {
      // Inside the then case the condition holds: tighten bounds of compared variables.
      std::vector<std::pair<const ExprNode*, std::optional<IntBounds>>> saved;
      learn(c, saved);
      then_case = mutate(op->then_case);
      for (auto it = saved.rbegin(); it != saved.rend(); ++it) restore(it->first, it->second);
    }
    Stmt else_case = mutate(op->else_case);
    if (else_case.defined() && is_no_op(else_case)) else_case = Stmt();
    if (is_no_op(then_case) && !else_case.defined()) return no_op();
    if (c.same_as(op->cond) && then_case.same_as(op->then_case) &&
        else_case.same_as(op->else_case))
      return self;
    if (is_no_op(then_case)) return IfThenElse::make(mutate(Not::make(c)), else_case);
    return IfThenElse::make(c, then_case, else_case);
  }

  Stmt visit_Block(const Block* op, const Stmt& self) override {
    std::vector<Stmt> stmts;
    bool changed = false;
    for (const Stmt& s : op->stmts) {
      Stmt r = mutate(s);
      changed |= !r.same_as(s);
      if (is_no_op(r)) {
        changed = true;
        continue;
      }
      stmts.push_back(r);
    }
    if (!changed) return self;
    if (stmts.empty()) return no_op();
    return Block::make(std::move(stmts));
  }

  Stmt visit_Allocate(const Allocate* op, const Stmt& self) override {
    Stmt body = mutate(op->body);
    if (is_no_op(body)) return no_op();
    return body.same_as(op->body) ? self : Allocate::make(op->buffer, body);
  }

  Stmt visit_LetStmt(const LetStmt* op, const Stmt& self) override {
    Expr v = mutate(op->value);
    if (v.as<IntImm>() || v.as<FloatImm>() || v.as<Var>())
      return mutate(substitute(op->body, {{op->var.get(), v}}));
    Stmt body;
    {
      ScopedBound sb(this, op->var.get(), bounds_of(v));
      body = mutate(op->body);
    }
    if (!uses_var(body, op->var)) return body;
    if (v.same_as(op->value) && body.same_as(op->body)) return self;
    return LetStmt::make(op->var, v, body);
  }

  Stmt visit_Evaluate(const Evaluate* op, const Stmt& self) override {
    Expr v = mutate(op->value);
    if (v.as<IntImm>() || v.as<FloatImm>()) return no_op();
    return v.same_as(op->value) ? self : Evaluate::make(v);
  }

 private:
  // Sets a variable's bounds for the lifetime of the object.
  class ScopedBound {
   public:
    ScopedBound(Simplifier* s, const ExprNode* v, std::optional<IntBounds> b) : s_(s), v_(v) {
      auto it = s->own_.find(v);
      if (it != s->own_.end()) old_ = it->second;
      if (b) s->own_[v] = *b;
      else s->own_.erase(v);
    }
    ~ScopedBound() { s_->restore(v_, old_); }

   private:
    Simplifier* s_;
    const ExprNode* v_;
    std::optional<IntBounds> old_;
  };

  void restore(const ExprNode* v, const std::optional<IntBounds>& b) {
    if (b) own_[v] = *b;
    else own_.erase(v);
  }

  static Stmt no_op() { return Block::make({}); }
  static bool is_no_op(const Stmt& s) {
    const Block* b = s.as<Block>();
    return b && b->stmts.empty();
  }

  static void binary_operands(const Expr& e, Expr* a, Expr* b) {
    switch (e.kind()) {
#define KT_CASE(n)          \
  case ExprKind::n:         \
    *a = e.as<n>()->a;      \
    *b = e.as<n>()->b;      \
    return;
      KTUNE_BINARY_NODES(KT_CASE)
#undef KT_CASE
      default: KT_CHECK(false, "not a binary node: ", kind_name(e.kind()));
    }
  }

  // Records what `cond` (known true) says about variables, saving their old bounds.
  void learn(const Expr& cond,
             std::vector<std::pair<const ExprNode*, std::optional<IntBounds>>>& saved) {
    if (const And* a = cond.as<And>()) {
      learn(a->a, saved);
      learn(a->b, saved);
      return;
    }
    if (cond.kind() < ExprKind::EQ || cond.kind() > ExprKind::GE || cond.kind() == ExprKind::NE)
      return;
    Expr x, y;
    binary_operands(cond, &x, &y);
    if (!is_int_scalar(x)) return;
    ExprKind k = cond.kind();
    if (!x.as<Var>() && y.as<Var>()) {
      std::swap(x, y);
      k = k == ExprKind::LT ? ExprKind::GT
          : k == ExprKind::LE ? ExprKind::GE
          : k == ExprKind::GT ? ExprKind::LT
          : k == ExprKind::GE ? ExprKind::LE
                              : k;
    }
    if (!x.as<Var>()) return;
    auto yb = bounds_of(y);
    if (!yb) return;
    i128 lo, hi;
    int_range(x.type(), &lo, &hi);
    auto it = own_.find(x.get());
    std::optional<IntBounds> old;
    if (it != own_.end()) {
      old = it->second;
      lo = old->min;
      hi = old->max;
    }
    switch (k) {
      case ExprKind::LT: hi = std::min<i128>(hi, i128(yb->max) - 1); break;
      case ExprKind::LE: hi = std::min<i128>(hi, yb->max); break;
      case ExprKind::GT: lo = std::max<i128>(lo, i128(yb->min) + 1); break;
      case ExprKind::GE: lo = std::max<i128>(lo, yb->min); break;
      case ExprKind::EQ:
        lo = std::max<i128>(lo, yb->min);
        hi = std::min<i128>(hi, yb->max);
        break;
      default: return;
    }
    if (lo > hi) return;  // the branch is dead; keep the old facts, they are still true
    saved.emplace_back(x.get(), old);
    own_[x.get()] = IntBounds{int64_t(lo), int64_t(hi)};
  }

  // Returns self when `r` is structurally the node it replaces.
  static Expr finish(const Expr& self, const Expr& r) {
    return r.same_as(self) || deep_equal(r, self) ? self : r;
  }

  template <typename Node>
  static Expr rebuilt(const Expr& self, const Node* op, const Expr& a, const Expr& b) {
    if (a.same_as(op->a) && b.same_as(op->b)) return self;
    return Node::make(a, b);
  }

  // Folds ops on broadcasts and ramps: x4(a) + x4(b) -> x4(a + b), ramp + x4(c), etc.
  std::optional<Expr> fold_vector(ExprKind k, const Expr& a, const Expr& b) {
    if (a.type().is_scalar()) return std::nullopt;
    const Broadcast* ba = a.as<Broadcast>();
    const Broadcast* bb = b.as<Broadcast>();
    int lanes = a.type().lanes;
    auto scalar = [&](const Expr& x, const Expr& y) -> Expr {
      switch (k) {
        case ExprKind::Add: return mutate(Add::make(x, y));
        case ExprKind::Sub: return mutate(Sub::make(x, y));
        case ExprKind::Mul: return mutate(Mul::make(x, y));
        case ExprKind::Div: return mutate(Div::make(x, y));
        case ExprKind::Mod: return mutate(Mod::make(x, y));
        case ExprKind::Min: return mutate(Min::make(x, y));
        case ExprKind::Max: return mutate(Max::make(x, y));
        case ExprKind::EQ: return mutate(EQ::make(x, y));
        case ExprKind::NE: return mutate(NE::make(x, y));
        case ExprKind::LT: return mutate(LT::make(x, y));
        case ExprKind::LE: return mutate(LE::make(x, y));
        case ExprKind::GT: return mutate(GT::make(x, y));
        case ExprKind::GE: return mutate(GE::make(x, y));
        default: KT_CHECK(false, "fold_vector of ", kind_name(k)); return Expr();
      }
    };
    if (ba && bb) return Broadcast::make(scalar(ba->value, bb->value), lanes);
    if (!a.type().is_int()) return std::nullopt;  // float ramps do not reassociate exactly
    const Ramp* ra = a.as<Ramp>();
    const Ramp* rb = b.as<Ramp>();
    switch (k) {
      case ExprKind::Add:
        if (ra && bb) return mutate(Ramp::make(ra->base + bb->value, ra->stride, lanes));
        if (ba && rb) return mutate(Ramp::make(ba->value + rb->base, rb->stride, lanes));
        if (ra && rb)
          return mutate(Ramp::make(ra->base + rb->base, ra->stride + rb->stride, lanes));
        break;
      case ExprKind::Sub:
        if (ra && bb) return mutate(Ramp::make(ra->base - bb->value, ra->stride, lanes));
        if (ba && rb) return mutate(Ramp::make(ba->value - rb->base, -rb->stride, lanes));
        if (ra && rb)
          return mutate(Ramp::make(ra->base - rb->base, ra->stride - rb->stride, lanes));
        break;
      case ExprKind::Mul:
        if (ra && bb) return mutate(Ramp::make(ra->base * bb->value, ra->stride * bb->value, lanes));
        if (ba && rb) return mutate(Ramp::make(ba->value * rb->base, ba->value * rb->stride, lanes));
        break;
      default: break;
    }
    return std::nullopt;
  }

  // Add, Sub, Mul.
  template <typename Node>
  Expr arith(const Node* op, const Expr& self) {
    constexpr ExprKind K = Node::kKind;
    Expr a = mutate(op->a), b = mutate(op->b);
    Type t = op->type;
    if (auto r = fold_vector(K, a, b)) return *r;
    if (t.is_float()) {
      auto x = float_value(a), y = float_value(b);
      if (x && y && t.is_scalar()) {
        double r = K == ExprKind::Add ? *x + *y : K == ExprKind::Sub ? *x - *y : *x * *y;
        return make_const(t, r);
      }
      if (K == ExprKind::Add && is_const_float(a, 0)) return b;
      if (K != ExprKind::Mul && is_const_float(b, 0)) return a;
      if (K == ExprKind::Mul && is_const_float(b, 1)) return a;
      if (K == ExprKind::Mul && is_const_float(a, 1)) return b;
      return rebuilt<Node>(self, op, a, b);
    }
    if (!t.is_scalar()) return rebuilt<Node>(self, op, a, b);
    // Scalar integers: through the linear form.
    if (K == ExprKind::Mul && !is_const_int(a) && !is_const_int(b)) {
      return rebuilt<Node>(self, op, a, b);
    }
    LinearForm f;
    f.add(a, 1);
    f.add(b, K == ExprKind::Sub ? -1 : 1);
    if (K == ExprKind::Mul) {
      f = LinearForm();
      int64_t c;
      if (is_const_int(b, &c)) f.add(a, c);
      else if (is_const_int(a, &c)) f.add(b, c);
    }
    while (merge_div_mod(f)) {
    }
    return finish(self, rebuild(f, t));
  }

  // a / c for a scalar integer a and a constant c > 0.
  Expr div_by_const(const Expr& a, int64_t c) {
    Type t = a.type();
    if (c == 1) return a;
    if (auto x = int_value(a)) return IntImm::make(t, floor_div(*x, c));
    int64_t c2;
    if (const Div* d = a.as<Div>(); d && is_const_int(d->b, &c2) && c2 > 0) {
      i128 cc = i128(c) * c2;  // (u / c2) / c == u / (c2 * c) for positive divisors
      if (cc <= std::numeric_limits<int64_t>::max()) return div_by_const(d->a, int64_t(cc));
    }
    if (!is_index_type(t)) {
      auto ab = bounds_of(a);
      if (ab && floor_div(ab->min, c) == floor_div(ab->max, c))
        return IntImm::make(t, floor_div(ab->min, c));
      return Div::make(a, IntImm::make(t, c));
    }
    LinearForm f = linearize(a), q, r;
    for (const auto& [term, coeff] : f.terms) {
      if (coeff == 0) continue;
      if (coeff % c == 0) q.terms.emplace_back(term, coeff / c);
      else r.terms.emplace_back(term, coeff);
    }
    q.k = floor_div(f.k, c);
    if (r.terms.empty()) return rebuild(q, t);
    r.k = floor_mod(f.k, c);
    Expr rem = rebuild(r, t);
    if (auto rb = bounds_of(rem); rb && floor_div(rb->min, c) == floor_div(rb->max, c)) {
      q.k += floor_div(rb->min, c);
      return rebuild(q, t);
    }
    if (q.constant()) {
      if (auto ab = bounds_of(a); ab && floor_div(ab->min, c) == floor_div(ab->max, c))
        return IntImm::make(t, floor_div(ab->min, c));
      return Div::make(a, IntImm::make(t, c));
    }
    q.add_term(div_by_const(rem, c), 1);  // rem has no part divisible by c: no loop
    return rebuild(q, t);
  }

  // a % c for a scalar integer a and a constant c > 0.
  Expr mod_by_const(const Expr& a, int64_t c) {
    Type t = a.type();
    if (c == 1) return IntImm::make(t, 0);
    if (auto x = int_value(a)) return IntImm::make(t, floor_mod(*x, c));
    int64_t c2;
    if (const Mod* m = a.as<Mod>(); m && is_const_int(m->b, &c2) && c2 > 0) {
      if (c2 % c == 0) return mod_by_const(m->a, c);  // (u % (k*c)) % c == u % c
      if (c % c2 == 0) return a;                      // already in [0, c2) within [0, c)
    }
    if (!is_index_type(t)) {
      auto ab = bounds_of(a);
      if (ab && floor_div(ab->min, c) == floor_div(ab->max, c))
        return mutate(Sub::make(a, IntImm::make(t, c * floor_div(ab->min, c))));
      return Mod::make(a, IntImm::make(t, c));
    }
    LinearForm f = linearize(a), r;
    bool dropped = false;
    for (const auto& [term, coeff] : f.terms) {
      if (coeff == 0) continue;
      if (coeff % c == 0) dropped = true;
      else r.terms.emplace_back(term, coeff);
    }
    r.k = r.terms.empty() ? floor_mod(f.k, c) : f.k;
    if (!r.terms.empty() && (f.k < 0 || f.k >= c)) {
      r.k = floor_mod(f.k, c);
      dropped = true;
    }
    Expr rem = rebuild(r, t);
    if (auto rb = bounds_of(rem); rb && floor_div(rb->min, c) == floor_div(rb->max, c)) {
      r.k -= c * floor_div(rb->min, c);
      return rebuild(r, t);
    }
    if (!dropped) return Mod::make(a, IntImm::make(t, c));
    return mod_by_const(rem, c);  // rem has nothing left to drop: no loop
  }

  // ramp(b, s, n) / c and ramp(b, s, n) % c for an index ramp, when the lanes stay in one
  // block of c (div: broadcast of b / c; mod: ramp of b % c), or s is a multiple of c.
  std::optional<Expr> ramp_div_mod(const Expr& a, int64_t c, bool is_div) {
    const Ramp* r = a.as<Ramp>();
    int64_t s;
    if (!r || !is_index_type(a.type()) || !is_const_int(r->stride, &s)) return std::nullopt;
    if (s % c == 0) {
      if (is_div)
        return mutate(Ramp::make(Div::make(r->base, IntImm::make(r->base.type(), c)),
                                 IntImm::make(r->base.type(), s / c), r->lanes));
      return Broadcast::make(mutate(Mod::make(r->base, IntImm::make(r->base.type(), c))),
                             r->lanes);
    }
    // base = c*q + rem; the lanes add [min(0, (n-1)s), max(0, (n-1)s)] to rem.
    LinearForm f = linearize(r->base), q, rm;
    for (const auto& [term, coeff] : f.terms) {
      if (coeff == 0) continue;
      if (coeff % c == 0) q.terms.emplace_back(term, coeff / c);
      else rm.terms.emplace_back(term, coeff);
    }
    q.k = floor_div(f.k, c);
    rm.k = floor_mod(f.k, c);
    Type t = r->base.type();
    auto rb = bounds_of(rebuild(rm, t));
    if (!rb) return std::nullopt;
    i128 span = i128(r->lanes - 1) * s;
    i128 lo = rb->min + std::min<i128>(0, span), hi = rb->max + std::max<i128>(0, span);
    if (lo < std::numeric_limits<int64_t>::min() / 2 || hi > std::numeric_limits<int64_t>::max() / 2)
      return std::nullopt;
    int64_t blk = floor_div(int64_t(lo), c);
    if (blk != floor_div(int64_t(hi), c)) return std::nullopt;
    if (is_div) {
      q.k += blk;
      return Broadcast::make(rebuild(q, t), r->lanes);
    }
    rm.k -= c * blk;
    return Ramp::make(rebuild(rm, t), r->stride, r->lanes);
  }

  template <typename Node>
  Expr min_max(const Node* op, const Expr& self, bool is_min) {
    Expr a = mutate(op->a), b = mutate(op->b);
    Type t = op->type;
    if (auto r = fold_vector(Node::kKind, a, b)) return *r;
    if (deep_equal(a, b)) return a;
    if (t.is_float()) {
      auto x = float_value(a), y = float_value(b);
      if (x && y && t.is_scalar()) return make_const(t, is_min ? std::fmin(*x, *y) : std::fmax(*x, *y));
      return rebuilt<Node>(self, op, a, b);
    }
    if (auto le = decide(ExprKind::LE, a, b)) return (*le == is_min) ? a : b;
    return rebuilt<Node>(self, op, a, b);
  }

  template <typename Node>
  Expr compare(const Node* op, const Expr& self) {
    constexpr ExprKind K = Node::kKind;
    Expr a = mutate(op->a), b = mutate(op->b);
    int lanes = op->type.lanes;
    if (auto r = fold_vector(K, a, b)) return *r;
    if (auto d = decide(K, a, b)) return bool_const(*d, lanes);
    return rebuilt<Node>(self, op, a, b);
  }

  // Decides a comparison of two integer, float-constant or bool-constant operands.
  std::optional<bool> decide(ExprKind k, const Expr& a, const Expr& b) {
    auto x = float_value(a), y = float_value(b);
    if (x && y) {
      switch (k) {
        case ExprKind::EQ: return *x == *y;
        case ExprKind::NE: return *x != *y;
        case ExprKind::LT: return *x < *y;
        case ExprKind::LE: return *x <= *y;
        case ExprKind::GT: return *x > *y;
        case ExprKind::GE: return *x >= *y;
        default: return std::nullopt;
      }
    }
    if (!a.type().is_int() && !a.type().is_bool()) return std::nullopt;
    // The range of a - b. Index (i64) arithmetic does not overflow, so its linear form is
    // exact; narrower integers may wrap and only get the interval of each side.
    if (deep_equal(a, b)) return k == ExprKind::EQ || k == ExprKind::LE || k == ExprKind::GE;
    std::optional<IntBounds> d;
    if (is_int_scalar(a) && is_index_type(a.type())) {
      LinearForm f;
      f.add(a, 1);
      f.add(b, -1);
      while (merge_div_mod(f)) {
      }
      d = bounds_of(rebuild(f, a.type()));
    }
    i128 lo, hi;
    if (d) {
      lo = d->min;
      hi = d->max;
    } else {
      auto ab = bounds_of(a), bb = bounds_of(b);
      if (!ab || !bb) return std::nullopt;
      lo = i128(ab->min) - bb->max;
      hi = i128(ab->max) - bb->min;
    }
    switch (k) {
      case ExprKind::EQ:
        if (lo == 0 && hi == 0) return true;
        if (lo > 0 || hi < 0) return false;
        break;
      case ExprKind::NE:
        if (lo == 0 && hi == 0) return false;
        if (lo > 0 || hi < 0) return true;
        break;
      case ExprKind::LT:
        if (hi < 0) return true;
        if (lo >= 0) return false;
        break;
      case ExprKind::LE:
        if (hi <= 0) return true;
        if (lo > 0) return false;
        break;
      case ExprKind::GT:
        if (lo > 0) return true;
        if (hi <= 0) return false;
        break;
      case ExprKind::GE:
        if (lo >= 0) return true;
        if (hi < 0) return false;
        break;
      default: break;
    }
    return std::nullopt;
  }

  BoundsMap own_;
  const BoundsMap* view_;
};

}  // namespace

Expr simplify(const Expr& e, const BoundsMap& bounds) {
  if (!e.defined()) return e;
  return Simplifier(&bounds).mutate(e);
}

Stmt simplify(const Stmt& s) {
  if (!s.defined()) return s;
  return Simplifier(nullptr).mutate(s);
}

std::optional<IntBounds> const_bounds(const Expr& e, const BoundsMap& bounds) {
  if (!e.defined()) return std::nullopt;
  auto a = bounds_rec(e, bounds);
  auto b = bounds_rec(simplify(e, bounds), bounds);
  if (a && b) return IntBounds{std::max(a->min, b->min), std::min(a->max, b->max)};
  return a ? a : b;
}

bool can_prove(const Expr& cond, const BoundsMap& bounds) {
  return is_const_int(simplify(cond, bounds), 1);
}

}  // namespace ktune::ir
