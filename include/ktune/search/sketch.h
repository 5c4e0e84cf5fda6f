// Sketch generation (DESIGN §6, after Ansor's sketch policy) and annotation.
//
// A sketch is a step list whose split lengths are still holes. Rules are small named classes
// kept in an ordered table per target kind; they are tried on each stage from the last to
// the first, and each returns a condition (skip / apply / apply and skip the remaining rules)
// and an action producing new (sketch, next stage) pairs. A user-written kernel gets sketches
// without any kernel-specific code: the rules look only at the ComputeDAG's structure (data
// reuse, element-wise consumers, reductions).
//
// Annotation turns a sketch into a complete schedule: it replays the steps, filling each
// split hole with a random ordered factorization of the loop's extent (a fused consumer's
// follow_split steps then follow its producer's tiling), then changes the compute location
// of untiled stages, splits the innermost spatial loop of untiled root stages by a random
// divisor (<= 64), fuses the outer spatial loops of each root stage into one parallel loop,
// vectorizes the innermost spatial loop, and picks an unroll pragma from {0, 16, 64, 512} (for a
// register tile, mostly the smallest that covers its accumulators).
// The innermost factors are drawn with the target in mind (DESIGN §6, "register tile"):
//  - spatial splits of a tiled reduction: the innermost level is the register tile of
//    accumulators held across the inner reduction loop. Mostly (p = 0.85) its lengths are
//    drawn so that the accumulators (innermost lengths multiplied, the vector axis counted
//    in whole vectors) fit the target's vector registers less 4 for loads and broadcasts
//    (28 zmm on AVX-512, 12 on AVX2), the last axis drawn filling at least a quarter of
//    that budget when it can; otherwise innermost <= 64, mostly whole vectors on the last
//    spatial axis (the vector axis);
//  - reduction splits: the inner reduction loop (the loop the register tile accumulates
//    over) may take any divisor of the extent, half the time one >= 32 (a long loop);
//  - a pack stage (cache_read for packing) is mostly (p = 0.75) put where its panel is
//    reused: at root or at a consumer loop inside which the packed panel fits the L2 cache
//    and the loops the packed tensor does not depend on repeat it >= 16 times.
#pragma once

#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ktune/schedule/steps.h"
#include "ktune/target/target.h"

namespace ktune::search {

// A split whose lengths annotation fills (a random ordered factorization of the loop's
// extent). A fused consumer that follows its producer's tiling does so with a FollowSplitStep,
// which is not a hole: replaying it after the producer's split is filled gives the tie.
struct SplitHole {
  int step;  // index in Sketch::steps
};

struct Sketch {
  std::vector<schedule::Step> steps;  // split steps of holes carry placeholder lengths of 1
  std::vector<SplitHole> holes;
  std::vector<std::string> tiled;     // stages tiled by a rule (annotation leaves their location)
  std::vector<std::string> at_root;   // stages a rule keeps at root (annotation leaves them there)
  std::vector<std::string> rules;     // "C.local: multi_level_tiling_with_fusion(level 2)", ...

  // Readable: one step per line, holes shown as '?'.
  std::string to_string(std::shared_ptr<const te::ComputeDAG> dag) const;
};

// The state a rule works on: the sketch so far and the state it produces.
struct SketchState {
  schedule::State state;
  Sketch sketch;
  void apply(const schedule::Step& s) {
    state.apply(s);
    sketch.steps.push_back(s);
  }
};

class SketchRule {
 public:
  enum class Condition { Skip, Apply, ApplyAndSkipRest };
  virtual ~SketchRule() = default;
  virtual const char* name() const = 0;
  virtual Condition condition(const SketchState& s, int stage) const = 0;
  virtual std::vector<std::pair<SketchState, int>> apply(const SketchState& s, int stage) const = 0;
};

// The ordered rule table for a target kind (CPU: AlwaysInline, InlineOrRootGuarded,
// AddCacheWrite, AddCachePack, MultiLevelTilingWithFusion, MultiLevelTiling,
// TileLayoutChange, SkipStage).
const std::vector<std::unique_ptr<SketchRule>>& sketch_rules(target::TargetKind kind);

std::vector<Sketch> generate_sketches(std::shared_ptr<const te::ComputeDAG> dag, const target::Target& t);

// Counts of rejected annotations by reason (invalid states never reach the compiler).
using RejectCounts = std::map<std::string, int>;

// The tile sizes of a state's reduction stages (the multi-level tiling of the computation, on
// `C` or on its cache stage `C.local` alike): per split, keyed by the loop's name, its extent
// and the number of parts, the lengths. Sketches of one DAG tile the same loops, so the tile
// sizes of a candidate of one sketch fill the holes of another (a transplant).
using TileSizes = std::map<std::tuple<std::string, int64_t, int>, std::vector<int64_t>>;

class Annotator {
 public:
  Annotator(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, uint64_t seed);
  // A complete, valid schedule from the sketch; nullopt-like: throws InvalidCandidate when
  // the annotation produced an invalid state (the caller counts the reason and retries).
  // With `tiles`, the holes of reduction stages that it has take its lengths; the rest of the
  // annotation is drawn as usual.
  schedule::State annotate(const Sketch& sketch, const TileSizes* tiles = nullptr);
  // The tile sizes of `st` (a state of this annotator's DAG).
  TileSizes tile_sizes(const schedule::State& st) const;
  std::mt19937_64& rng() { return rng_; }

 private:
  // An ordered factorization of `extent` into `parts` factors, innermost drawn from
  // `inner` (divisors of extent, non-empty), the others uniformly; returns all but the outermost.
  std::vector<int64_t> random_lengths(int64_t extent, int parts, const std::vector<int64_t>& inner);
  // The allowed innermost factors of one split hole (see the file comment); `acc` is the
  // accumulator count of the stage's register tile so far (updated), `last_spatial` whether
  // no other spatial hole of the stage follows.
  std::vector<int64_t> inner_choices(int64_t extent, bool spatial, bool reduction_stage, bool vector_axis,
                                     int64_t lanes, bool last_spatial, bool register_tile, int64_t acc);
  // Applies the sketch's steps to `st`, drawing the lengths of its split holes (from `tiles`
  // where given); `acc` gets each stage's accumulator count, `register_tile` (kept between
  // calls) whether a stage's tile follows the register budget. Returns the number of holes
  // whose lengths it drew.
  int fill_holes(const Sketch& sketch, const TileSizes* tiles, schedule::State& st, std::map<int, int64_t>& acc,
                  std::map<int, bool>& register_tile);
  int pack_location(const schedule::State& st, int stage, int consumer);
  void change_compute_locations(schedule::State& st, const Sketch& sk);
  void split_innermost(schedule::State& st, const Sketch& sk);
  void parallelize(schedule::State& st);
  void vectorize(schedule::State& st);
  // `tile`: per stage with a register tile, its accumulator count (the unroll step mostly covers it).
  void unroll(schedule::State& st, const Sketch& sk, const std::map<int, int64_t>& tile);

  std::shared_ptr<const te::ComputeDAG> dag_;
  target::Target target_;
  std::mt19937_64 rng_;
};

// The accumulator budget of a register tile: the target's vector registers
// (Target::vector_registers) less 4 for loads and broadcasts.
int register_tile_budget(const target::Target& t);
// The register tile of a reduction stage, in vectors: the product of the extents of the
// spatial loops inside its innermost reduction loop, a vectorized loop counted in whole
// vectors of the target. 0 for a stage without a reduction loop.
int64_t register_tile_vectors(const schedule::Stage& stage, const target::Target& t);
// The vector registers a register tile needs: its accumulators (register_tile_vectors, the
// innermost loop of the last spatial axis counted in vectors even before it is annotated),
// and per reduction step the operands held across the tile: each read's distinct vectors
// (reads along the vector axis) or broadcasts (the others) among the tile's loops, all but
// the largest read's, which streams through one register. E.g. a matmul tile of 4 rows x 64
// columns on AVX-512: 16 + 4 + 1 = 21; a conv2d_nchwc tile of 7 columns x 4 channel blocks:
// 28 + 4 + 1 = 33, one too many (it spills).
int64_t register_tile_registers(const schedule::Stage& stage, const target::Target& t);

}  // namespace ktune::search
