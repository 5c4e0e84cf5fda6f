// The IR interpreter: executes a Stmt on host memory. It is ktune's reference semantics;
// every compiled candidate is checked against it (or against the naive schedule compiled,
// for shapes too large to interpret). Loops of every kind run serially, in order. Floats
// are computed in double and rounded to the buffer's type when stored; f16/bf16 are
// converted on load and store. Integer Div/Mod are floor division/modulo.
#pragma once

#include <unordered_map>

#include "ktune/ir/ir.h"

namespace ktune::ir {

// Memory bound to each buffer argument; local buffers (Allocate) are created by the
// interpreter. Pointers must hold num_elements() elements of the buffer's dtype.
using BufferBindings = std::unordered_map<const BufferNode*, void*>;

// Runs `body`. Throws InternalError on an out-of-bounds access (with the buffer and index).
void interpret(const Stmt& body, const BufferBindings& bindings);
void interpret(const LoweredFunc& f, const std::vector<void*>& args);

}  // namespace ktune::ir
