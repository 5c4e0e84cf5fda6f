// Loop vectorization: loops marked ForKind::Vectorized become vector code (Ramp/Broadcast).
#pragma once

#include "ktune/ir/ir.h"

namespace ktune::passes {

// Replaces every For of kind Vectorized by its body computed over all iterations at once:
// the loop variable becomes Ramp(min, 1, L), loop-invariant scalars are Broadcast where they
// meet vectors, and Load/Store take vector indices (a Ramp of stride 1 is contiguous).
//
// A loop is vectorized when its extent L is a constant with 2 <= L <= 4 * max_lanes, its
// body is straight-line (Store, LetStmt, Block, Evaluate, and IfThenElse whose condition does
// not depend on the loop variable; no loops or allocations) and executing all iterations
// lane by lane gives the serial result: every buffer that is stored in the body is accessed
// at one index only, and that index moves with the loop variable by a constant non-zero
// stride. (A store whose index does not depend on the loop variable while its value does is
// a reduction over the vectorized variable and would race.) Otherwise, and for a loop that
// contains another Vectorized loop (only the innermost is vectorized), the loop is demoted
// to Serial: correctness first. An extent of 1 becomes a LetStmt of the variable.
ir::Stmt vectorize_loops(const ir::Stmt& s, int max_lanes);

}  // namespace ktune::passes
