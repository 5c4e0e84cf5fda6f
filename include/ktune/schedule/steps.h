// Schedule steps: one primitive transformation each, in a closed std::variant (STYLE 6).
// Each step knows how to apply itself to a State, print itself and round-trip through JSON.
//
// Stages are named by index into State::stages() at the time the step applies; iterators by
// their position in the stage's current loop order (outermost = 0), as in Ansor. Applying a
// step that does not fit the state throws InvalidCandidate with a message naming the step.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "ktune/schedule/state.h"

namespace ktune::schedule {

// Splits loop `iter` into lengths.size()+1 loops; `lengths` are the inner extents, outermost
// first (split(i, [4, 8]) gives i.0 (extent ceil(E/32)), i.1 (4), i.2 (8)).
struct SplitStep {
  int stage, iter;
  std::vector<int64_t> lengths;
};
// Fuses the consecutive loops [iters.front(), iters.back()] into one (same kind required).
struct FuseStep {
  int stage;
  std::vector<int> iters;
};
// New loop order: order[k] is the current position of the loop that goes to position k.
struct ReorderStep {
  int stage;
  std::vector<int> order;
};
struct AnnotateStep {
  int stage, iter;
  Annotation annotation;
};
// Stage-level pragma on a loop: "auto_unroll_max_step" = value unrolls the inner loops of
// the stage (from the innermost outwards) while the product of their extents <= value.
struct PragmaStep {
  int stage, iter;
  std::string name;
  int64_t value;
};
// Computes `stage` inside loop `target_iter` of `target_stage` (a consumer of it).
struct ComputeAtStep {
  int stage, target_stage, target_iter;
};
struct ComputeInlineStep {
  int stage;
};
struct ComputeRootStep {
  int stage;
};
// Adds a stage "<name>.local" before `stage` that computes its op into a buffer of the given
// scope; `stage` becomes a copy of it. The stage must not have been transformed yet.
struct CacheWriteStep {
  int stage;
  ir::MemoryScope scope;
};

// Adds a stage "<tensor>.<scope>" that copies tensor (an input or a stage's output) and makes
// the `readers` stages read the copy. Computed at a loop of a reader, the copy holds only the
// region that loop reads, contiguously: packing a panel of a matrix, say. The new stage goes
// before the first reader.
struct CacheReadStep {
  std::string tensor;
  ir::MemoryScope scope;
  std::vector<int> readers;
};

using StepVariant = std::variant<SplitStep, FuseStep, ReorderStep, AnnotateStep, PragmaStep,
                                 ComputeAtStep, ComputeInlineStep, ComputeRootStep,
                                 CacheWriteStep, CacheReadStep>;

struct Step {
  StepVariant v;
  template <typename T>
  Step(T s) : v(std::move(s)) {}  // NOLINT(google-explicit-constructor)

  // Name of the step kind: "split", "fuse", ...
  std::string kind() const;
  // Applies to `state`'s stages (State::apply records it).
  void apply_to(State& state) const;
  // Readable one-line form, using the names in `state` (the state *before* the step).
  std::string to_string(const State& before) const;
  // Compact form independent of names (identity of candidates): "split(2,0,[4,8])".
  std::string key() const;
  nlohmann::json to_json() const;
  // Throws UserError naming the problem for a malformed step (unknown kind, missing field).
  static Step from_json(const nlohmann::json& j);
};

nlohmann::json steps_to_json(const std::vector<Step>& steps);
std::vector<Step> steps_from_json(const nlohmann::json& j);
// Replays steps on the naive state of `dag`; throws InvalidCandidate naming the failing step.
State replay(std::shared_ptr<const te::ComputeDAG> dag, const std::vector<Step>& steps);
// The candidate's canonical text: one key per step, joined by ';'.
std::string canonical_key(const std::vector<Step>& steps);

}  // namespace ktune::schedule
