// Loop unrolling: loops marked ForKind::Unrolled become copies of their body.
#pragma once

#include "ktune/ir/ir.h"

namespace ktune::passes {

// The largest extent unroll_loops expands; longer Unrolled loops become Serial.
inline constexpr int64_t kMaxUnrollExtent = 512;
// The most statements (stores, evaluates, loops, ifs, ...) one unrolled loop may expand to;
// a loop whose copies would exceed it stays a Serial loop. Nested unrolled loops multiply,
// and a body holding other loop nests (a stage computed inside) is large: without the limit
// a schedule can ask for code that takes LLVM minutes to compile. At 4,096 a conv2d_nchwc
// candidate still took 15 s (InstCombine alone 7 s on its 87,000-instruction function), 1.5 s at
// 1,024; the best kernels of the CPU benchmark's 17 tunes are the same object code either way.
inline constexpr int64_t kMaxUnrolledStatements = 1024;

// Replaces every For of kind Unrolled whose extent is a constant <= kMaxUnrollExtent by one
// copy of its body per iteration, with the loop variable substituted by min + i (inner
// loops first, so nested unrolled loops expand fully). An Unrolled loop with a non-constant
// or larger extent, or whose copies would exceed kMaxUnrolledStatements, is demoted to
// Serial. Other loops are kept.
ir::Stmt unroll_loops(const ir::Stmt& s);

}  // namespace ktune::passes
