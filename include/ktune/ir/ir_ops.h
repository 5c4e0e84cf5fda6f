// Terse expression builders: operators on Expr and small constructors. Scalars broadcast to
// the other operand's lanes; int constants take the other operand's integer type; int64
// constants next to a float operand become float constants of that type.
#pragma once

#include "ktune/ir/ir.h"

namespace ktune::ir {

Expr operator+(Expr a, Expr b);
Expr operator-(Expr a, Expr b);
Expr operator*(Expr a, Expr b);
Expr operator/(Expr a, Expr b);
Expr operator%(Expr a, Expr b);
Expr operator-(Expr a);
Expr operator<(Expr a, Expr b);
Expr operator<=(Expr a, Expr b);
Expr operator>(Expr a, Expr b);
Expr operator>=(Expr a, Expr b);
Expr operator==(Expr a, Expr b);
Expr operator!=(Expr a, Expr b);
Expr operator&&(Expr a, Expr b);
Expr operator||(Expr a, Expr b);
Expr operator!(Expr a);
Expr min(Expr a, Expr b);
Expr max(Expr a, Expr b);
Expr select(Expr c, Expr t, Expr f);
Expr cast(Type t, Expr v);

Expr make_const(Type t, double v);
Expr make_zero(Type t);
// Identity elements of reductions: lowest / highest finite-or-infinite value of a type.
Expr type_min(Type t);
Expr type_max(Type t);

// Constant value of an integer immediate (after broadcasts), if the expression is one.
bool is_const_int(const Expr& e, int64_t* value = nullptr);
bool is_const_int(const Expr& e, int64_t value);
// (Without this overload, is_const_int(e, 0) would be ambiguous with the pointer form.)
inline bool is_const_int(const Expr& e, int value) { return is_const_int(e, int64_t(value)); }

// Brings two operands to a common type (used by the builders and the parser).
void match_types(Expr& a, Expr& b);

}  // namespace ktune::ir
