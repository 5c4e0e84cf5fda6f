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
// Splits loop `iter` like the earlier split step number `src_step_id` (an index into the
// state's step history) split its loop, so that e.g. an element-wise consumer follows its
// producer's tiling (Ansor's FollowSplitStep). With the source lengths l1..lk, the loop is
// split into n_split + 1 loops with lengths [l1, ..., l(n_split-1), l(n_split)*...*lk]
// (1 <= n_split <= k + 1; n_split = k + 1 appends a loop of extent 1). Unlike split, the
// lengths may multiply to more than the extent (the outer loop then runs once; the tail is
// guarded), since they come from another loop.
struct FollowSplitStep {
  int stage, iter, src_step_id, n_split;
};
// Splits loop `iter` into two by the product L of lengths[level] of the earlier split steps
// `src_step_ids` (Ansor's FollowFusedSplitStep, e.g. a fused cache loop split by the thread
// count of its consumer). factor_or_nparts = true: the inner loop has extent L; false: the
// outer loop has at most L iterations (inner extent ceil(extent / L)). L may exceed the
// extent, as for follow_split.
struct FollowFusedSplitStep {
  int stage, iter;
  std::vector<int> src_step_ids;
  int level;
  bool factor_or_nparts;
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
// the stage (from the innermost outwards) while the steps they run <= value: a loop's
// extent times its body's steps, the update and the nests of stages computed inside it (a
// vectorized loop counts once: its body becomes one vector statement).
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

// Factors the reduction of `stage` over the reduction loop at position `iter` (Ansor/TVM
// rfactor): a new stage "<name>.rf" is inserted before `stage`; it has the op's spatial axes
// with the loop `iter` inserted as a spatial axis at position `factor_iter_id`
// (0..number of spatial axes), and reduces over the stage's other reduction loops (with
// their splits and fuses folded into its definition, split tails masked by the reduction's
// identity). `stage` then reduces over that one axis of "<name>.rf" and starts afresh (its
// loops are the op's axes again). The stage must be at root and nothing computed inside it;
// the stage indices of later stages shift by one.
struct RfactorStep {
  int stage, iter, factor_iter_id;
};
// Pads the stride of the buffer dimension of `stage` at loop `iter` (an unsplit spatial
// axis) so that stride % factor == offset (0 <= offset < factor), e.g. to keep the rows of a
// cache tile off the same cache set. Allocations grow to the padded size. Only for stages
// whose buffer ktune allocates (not outputs).
struct StorageAlignStep {
  int stage, iter;
  int64_t factor, offset;
};

using StepVariant = std::variant<SplitStep, FollowSplitStep, FollowFusedSplitStep, FuseStep, ReorderStep,
                                 AnnotateStep, PragmaStep, ComputeAtStep, ComputeInlineStep, ComputeRootStep,
                                 CacheWriteStep, CacheReadStep, RfactorStep, StorageAlignStep>;

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
