// The schedule state: a light loop structure over the stages of a ComputeDAG (DESIGN §5).
//
// Like Ansor's State (tvm/auto_scheduler/loop_state.h), it holds only what the search needs
// to reason about and to replay: per stage, the ordered loop iterators with their extents,
// kinds and annotations, and where the stage is computed. Loops are not materialized; the
// lowering (lower.h) builds the loop nest from the state.
//
// Iterators of a stage live in a pool indexed by a stable id; the stage's `leaf` list gives
// the current loop order (outermost first) as ids. Root iterators (ids 0..n-1) are the
// op's spatial axes followed by its reduce axes. Split and Fuse record a Relation from
// which lowering recovers each root axis as an expression of the leaf loop variables:
//   split:  parent = ((c0 * l1 + c1) * l2 + c2) ...   (c0 is outermost, lengths l1..lk)
//   fuse:   fused  = ((p0 * e1 + p1) * e2 + p2) ...   (e = extents of the parents)
// A split whose lengths do not divide the extent is legal: the outer extent rounds up and
// the lowered code guards the tail.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "ktune/te/compute_dag.h"

namespace ktune::schedule {

enum class IterKind : uint8_t { Spatial, Reduce };

// How a loop runs. GPU bindings are part of the state from the start (the GPU wave adds
// their code generators and rules).
enum class Annotation : uint8_t {
  None,
  Parallel,
  Vectorize,
  Unroll,
  BlockIdxX,
  BlockIdxY,
  BlockIdxZ,
  ThreadIdxX,
  ThreadIdxY,
  ThreadIdxZ,
  VThread,
};
const char* annotation_name(Annotation a);  // "none", "parallel", "vectorize", ...
bool parse_annotation(const std::string& s, Annotation* out);

struct Iterator {
  std::string name;
  int64_t extent = 1;
  IterKind kind = IterKind::Spatial;
  Annotation annotation = Annotation::None;
};

struct SplitRelation {
  int parent;
  std::vector<int> children;     // outermost first; children.size() == lengths.size() + 1
  std::vector<int64_t> lengths;  // extents of children[1..], outermost first
};
struct FuseRelation {
  std::vector<int> parents;  // outermost first
  int child;
};
using Relation = std::variant<SplitRelation, FuseRelation>;

enum class ComputeLocation : uint8_t { Root, Inlined, At };

// storage_align on a dimension of a stage's buffer: the stride of `dim` (in elements) is
// padded up to the next value with stride % factor == offset (after TVM's storage_align).
struct StorageAlignment {
  int dim;
  int64_t factor, offset;
};

struct Stage {
  te::Operation op;              // the op this stage computes (cache stages have derived ops)
  std::vector<Iterator> iters;   // pool, indexed by id
  std::vector<int> leaf;         // loop order, outermost first (ids into iters)
  std::vector<Relation> relations;
  ComputeLocation location = ComputeLocation::Root;
  int attach_stage = -1;  // for At: the stage index computed around this one
  int attach_iter = -1;   // for At: iterator id in attach_stage
  int64_t auto_unroll_max_step = 0;  // pragma: unroll inner loops while their product fits
  std::vector<StorageAlignment> storage_align;  // at most one per dimension of the buffer

  const Iterator& leaf_iter(int pos) const { return iters[leaf[pos]]; }
  int num_root_iters() const { return int(op.axes.size() + op.reduce_axes.size()); }
  // Position of iterator `id` in `leaf`, or -1.
  int leaf_position(int id) const;
};

// A stage computing `op` with its root loops in axis order (spatial, then reduce), at root.
Stage initial_stage(const te::Operation& op);

struct Step;

// A schedule under construction. Copyable (the search copies states freely).
class State {
 public:
  State() = default;
  // The naive schedule: one stage per compute op, loops in axis order, all at root.
  explicit State(std::shared_ptr<const te::ComputeDAG> dag);

  const te::ComputeDAG& dag() const { return *dag_; }
  std::shared_ptr<const te::ComputeDAG> dag_ptr() const { return dag_; }
  const std::vector<Stage>& stages() const { return stages_; }
  std::vector<Stage>& mutable_stages() { return stages_; }
  const Stage& stage(int i) const { return stages_.at(i); }
  Stage& mutable_stage(int i) { return stages_.at(i); }
  int num_stages() const { return int(stages_.size()); }
  // Index of the stage computing tensor `name`, or -1.
  int stage_index(const std::string& name) const;

  // The steps applied so far, in order (the candidate's identity together with the DAG).
  const std::vector<Step>& steps() const;
  // Applies a step and records it. Throws InvalidCandidate (naming the step) when the step
  // does not apply to this state.
  void apply(const Step& step);

  // One line per step, as the steps print themselves.
  std::string steps_text() const;
  // Loop-structure dump for humans: stages, loops with extents and annotations.
  std::string to_string() const;

 private:
  std::shared_ptr<const te::ComputeDAG> dag_;
  std::vector<Stage> stages_;
  std::shared_ptr<std::vector<Step>> steps_;  // copy-on-write via clone in apply()
};

// Recomputes every iterator extent of a stage from given root extents through the relations
// (used by lowering for stages computed inside others, whose root extents shrink). A split
// loop runs no further than its parent's extent reaches: min(length, ceil(E / S)), S being
// the product of the lengths inside it (the strides stay the lengths).
std::vector<int64_t> infer_iter_extents(const Stage& stage, const std::vector<int64_t>& root_extents);

// Whether the body of `op` reads the tensor `name`.
bool reads_tensor(const te::Operation& op, const std::string& name);

}  // namespace ktune::schedule
