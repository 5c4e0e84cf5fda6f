// Lowering: State -> loop-nest Stmt (DESIGN §5).
//
// The pipeline, in order: inline the bodies of inlined stages into their consumers; assign
// buffers (inputs and outputs are arguments, root intermediates are heap allocations, stages
// computed at another are allocated inside it with the size of the region it needs); build
// each root stage's loop nest from its leaf iterators, with stages computed at a loop placed
// at the top of that loop's body; infer the region of each such stage from its consumer's
// reads (interval analysis over the consumer's inner loops); guard split tails. Deterministic:
// the same state always lowers to the same Stmt.
#pragma once

#include <string>

#include "ktune/ir/ir.h"
#include "ktune/schedule/state.h"

namespace ktune::schedule {

// Lowers `state` into a function named `name` whose arguments are the DAG's inputs in order,
// then its outputs. Throws InvalidCandidate when the state cannot be lowered.
ir::LoweredFunc lower(const State& state, const std::string& name);

}  // namespace ktune::schedule
