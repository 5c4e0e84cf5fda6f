// Loop unrolling: loops marked ForKind::Unrolled become copies of their body.
#pragma once

#include "ktune/ir/ir.h"

namespace ktune::passes {

// The largest extent unroll_loops expands; longer Unrolled loops become Serial.
inline constexpr int64_t kMaxUnrollExtent = 512;

// Replaces every For of kind Unrolled whose extent is a constant <= kMaxUnrollExtent by one
// copy of its body per iteration, with the loop variable substituted by min + i (inner
// loops first, so nested unrolled loops expand fully). An Unrolled loop with a non-constant
// or larger extent is demoted to Serial. Other loops are kept.
ir::Stmt unroll_loops(const ir::Stmt& s);

}  // namespace ktune::passes
