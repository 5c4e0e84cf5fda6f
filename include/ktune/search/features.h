// Program features for the cost model (DESIGN §7, after Ansor's per-store features).
//
// A candidate is lowered and its loop nest walked; every statement that stores to a buffer
// gives one row of feature_width() floats: arithmetic counts by kind, the extents of the
// vectorized / unrolled / parallel loops around it, GPU binding extents, for the (up to) five
// buffers it touches most: bytes, cache lines, reuse and stride, the arithmetic-intensity
// curve over the enclosing loops, allocation sizes, the product of the outer loops and the
// fraction of their iterations that pass the store's guards. Counts and sizes are
// log-scaled (log2(1 + x)). A program's predicted score is the sum of its rows' predictions.
// docs/architecture.md lists the columns.
#pragma once

#include <string>
#include <vector>

#include "ktune/ir/ir.h"
#include "ktune/schedule/state.h"
#include "ktune/target/target.h"

namespace ktune::search {

struct ProgramFeatures {
  std::vector<float> data;  // rows() * feature_width() values, row-major
  int rows() const;
};

// Values per row, and a name for each (for dumps and docs).
int feature_width();
const std::vector<std::string>& feature_names();

// Lowers `state` and extracts its rows. Throws InvalidCandidate when it cannot be lowered.
ProgramFeatures extract_features(const schedule::State& state, const target::Target& t);
// The rows of an already lowered state (schedule::lower), for callers that lowered it anyway.
ProgramFeatures extract_features(const ir::LoweredFunc& f, const target::Target& t);

}  // namespace ktune::search
