// Operator builders on Expr. They do the type bookkeeping that the kernel language and
// lowering would otherwise repeat: constants adopt the other operand's type, scalars
// broadcast to vectors, narrower values widen. They build nodes without folding; the
// simplifier folds.
#include "ktune/ir/ir_ops.h"

#include <cmath>
#include <limits>

#include "ktune/ir/printer.h"
#include "ktune/support/error.h"

namespace ktune::ir {

namespace {

// The scalar constant inside e (itself or under a Broadcast), or null.
const ExprNode* scalar_const(const Expr& e) {
  if (const Broadcast* b = e.as<Broadcast>()) return scalar_const(b->value);
  if (e.kind() == ExprKind::IntImm || e.kind() == ExprKind::FloatImm) return e.get();
  return nullptr;
}

double const_value(const ExprNode* n) {
  if (n->kind == ExprKind::IntImm) return double(static_cast<const IntImm*>(n)->value);
  return static_cast<const FloatImm*>(n)->value;
}

// Rebuilds the constant c with element type t (keeping c's lanes).
Expr convert_const(const Expr& e, Type elem) {
  const ExprNode* c = scalar_const(e);
  Type t = elem.with_lanes(e.type().lanes);
  if (c->kind == ExprKind::IntImm && (t.is_int() || t.is_bool()))
    return IntImm::make(t, static_cast<const IntImm*>(c)->value);
  return make_const(t, const_value(c));
}

Type wider_float(Type a, Type b) {
  if (a.is_float() && b.is_float()) {
    if (a.bits != b.bits) return a.bits > b.bits ? a : b;
    if (a.code != b.code) return Type::f32();  // f16 vs bf16
    return a;
  }
  return a.is_float() ? a : b;
}

}  // namespace

void match_types(Expr& a, Expr& b) {
  KT_CHECK(a.defined() && b.defined(), "match_types of an undefined expression");
  if (a.type() == b.type()) return;
  Type ea = a.type().element_of(), eb = b.type().element_of();
  if (ea != eb) {
    const ExprNode* ca = scalar_const(a);
    const ExprNode* cb = scalar_const(b);
    bool a_int_const = ca && ca->kind == ExprKind::IntImm && !ea.is_bool();
    bool b_int_const = cb && cb->kind == ExprKind::IntImm && !eb.is_bool();
    bool a_float_const = ca && ca->kind == ExprKind::FloatImm;
    bool b_float_const = cb && cb->kind == ExprKind::FloatImm;
    if (ea.is_bool() != eb.is_bool()) {
      // A bool next to a number becomes 0/1 of the number's type.
      if (ea.is_bool()) a = Cast::make(eb.with_lanes(a.type().lanes), a);
      else b = Cast::make(ea.with_lanes(b.type().lanes), b);
    } else if (b_int_const && !a_int_const) {
      b = convert_const(b, ea);
    } else if (a_int_const && !b_int_const) {
      a = convert_const(a, eb);
    } else if (ea.is_float() && eb.is_float() && (a_float_const != b_float_const)) {
      if (a_float_const) a = convert_const(a, eb);
      else b = convert_const(b, ea);
    } else if (ea.is_float() || eb.is_float()) {
      Type t = wider_float(ea, eb);
      if (ea != t) a = a_int_const || a_float_const ? convert_const(a, t) : Cast::make(t, a);
      if (eb != t) b = b_int_const || b_float_const ? convert_const(b, t) : Cast::make(t, b);
    } else {
      // Two integers: the narrower widens.
      Type t = ea.bits >= eb.bits ? ea : eb;
      if (ea != t) a = a_int_const ? convert_const(a, t) : Cast::make(t, a);
      if (eb != t) b = b_int_const ? convert_const(b, t) : Cast::make(t, b);
    }
  }
  int la = a.type().lanes, lb = b.type().lanes;
  if (la != lb) {
    KT_CHECK(la == 1 || lb == 1, "operands with different lane counts: ", to_string(a), " (",
             a.type().to_string(), ") and ", to_string(b), " (", b.type().to_string(), ")");
    if (la == 1) a = Broadcast::make(a, lb);
    else b = Broadcast::make(b, la);
  }
  KT_CHECK(a.type() == b.type(), "cannot match types ", a.type().to_string(), " and ",
           b.type().to_string());
}

Expr operator+(Expr a, Expr b) { return Add::make(std::move(a), std::move(b)); }
Expr operator-(Expr a, Expr b) { return Sub::make(std::move(a), std::move(b)); }
Expr operator*(Expr a, Expr b) { return Mul::make(std::move(a), std::move(b)); }
Expr operator/(Expr a, Expr b) { return Div::make(std::move(a), std::move(b)); }
Expr operator%(Expr a, Expr b) { return Mod::make(std::move(a), std::move(b)); }
Expr operator<(Expr a, Expr b) { return LT::make(std::move(a), std::move(b)); }
Expr operator<=(Expr a, Expr b) { return LE::make(std::move(a), std::move(b)); }
Expr operator>(Expr a, Expr b) { return GT::make(std::move(a), std::move(b)); }
Expr operator>=(Expr a, Expr b) { return GE::make(std::move(a), std::move(b)); }
Expr operator==(Expr a, Expr b) { return EQ::make(std::move(a), std::move(b)); }
Expr operator!=(Expr a, Expr b) { return NE::make(std::move(a), std::move(b)); }
Expr operator&&(Expr a, Expr b) { return And::make(std::move(a), std::move(b)); }
Expr operator||(Expr a, Expr b) { return Or::make(std::move(a), std::move(b)); }
Expr operator!(Expr a) { return Not::make(std::move(a)); }
Expr min(Expr a, Expr b) { return Min::make(std::move(a), std::move(b)); }
Expr max(Expr a, Expr b) { return Max::make(std::move(a), std::move(b)); }
Expr select(Expr c, Expr t, Expr f) {
  return Select::make(std::move(c), std::move(t), std::move(f));
}
Expr cast(Type t, Expr v) { return Cast::make(t, std::move(v)); }

Expr operator-(Expr a) {
  KT_CHECK(a.defined(), "negation of an undefined expression");
  if (const IntImm* i = a.as<IntImm>()) return IntImm::make(i->type, -i->value);
  if (const FloatImm* f = a.as<FloatImm>()) return FloatImm::make(f->type, -f->value);
  Expr zero = make_zero(a.type());
  return Sub::make(std::move(zero), std::move(a));
}

Expr make_const(Type t, double v) {
  if (!t.is_scalar()) return Broadcast::make(make_const(t.element_of(), v), t.lanes);
  if (t.is_float()) return FloatImm::make(t, v);
  if (t.is_bool()) return IntImm::make(t, v != 0);
  return IntImm::make(t, int64_t(v));
}

Expr make_zero(Type t) { return make_const(t, 0); }

Expr type_min(Type t) {
  if (t.is_float()) return make_const(t, -std::numeric_limits<double>::infinity());
  if (t.is_bool()) return make_const(t, 0);
  Type e = t.element_of();
  Expr c = IntImm::make(e, t.bits >= 64 ? std::numeric_limits<int64_t>::min()
                                        : -(int64_t(1) << (t.bits - 1)));
  return Broadcast::make(c, t.lanes);
}

Expr type_max(Type t) {
  if (t.is_float()) return make_const(t, std::numeric_limits<double>::infinity());
  if (t.is_bool()) return make_const(t, 1);
  Type e = t.element_of();
  Expr c = IntImm::make(e, t.bits >= 64 ? std::numeric_limits<int64_t>::max()
                                        : (int64_t(1) << (t.bits - 1)) - 1);
  return Broadcast::make(c, t.lanes);
}

bool is_const_int(const Expr& e, int64_t* value) {
  if (!e.defined()) return false;
  if (const Broadcast* b = e.as<Broadcast>()) return is_const_int(b->value, value);
  const IntImm* i = e.as<IntImm>();
  if (!i) return false;
  if (value) *value = i->value;
  return true;
}

bool is_const_int(const Expr& e, int64_t value) {
  int64_t v;
  return is_const_int(e, &v) && v == value;
}

}  // namespace ktune::ir
