// Simplification of index and value expressions.
//
// Integer expressions are brought to a canonical linear form (sum of constant * term plus a
// constant) so that affine index arithmetic folds: (x*8 + 7) - x*8 -> 7. Constants fold
// everywhere; min/max/select/comparisons with constant or provable operands fold; Div and
// Mod by constants simplify when the operand's range is known from enclosing loops.
// Statements: loops of extent 1 become lets, provably true/false conditions disappear.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>

#include "ktune/ir/ir.h"

namespace ktune::ir {

// Inclusive integer bounds known for variables (e.g. loop variables: [min, min+extent-1]).
struct IntBounds {
  int64_t min, max;
};
using BoundsMap = std::unordered_map<const ExprNode*, IntBounds>;

Expr simplify(const Expr& e, const BoundsMap& bounds = {});
Stmt simplify(const Stmt& s);

// Constant bounds of an integer expression given bounds of its variables, if derivable.
std::optional<IntBounds> const_bounds(const Expr& e, const BoundsMap& bounds = {});

// True when the boolean expression is provably true under the bounds.
bool can_prove(const Expr& cond, const BoundsMap& bounds = {});

}  // namespace ktune::ir
