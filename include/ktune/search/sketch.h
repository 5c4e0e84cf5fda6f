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
// split hole with a random ordered factorization of the loop's extent (innermost factor
// <= 64, and for the last spatial axis mostly whole vectors of the target) (a fused
// consumer's follow_split steps then follow its producer's tiling), then
// changes the compute location of untiled stages, splits the innermost spatial
// loop of untiled root stages by a random divisor (<= 64), fuses the outer spatial loops
// of each root stage into one parallel loop, vectorizes the innermost spatial loop, and
// picks an unroll pragma from {0, 16, 64, 512}.
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

class Annotator {
 public:
  Annotator(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, uint64_t seed);
  // A complete, valid schedule from the sketch; nullopt-like: throws InvalidCandidate when
  // the annotation produced an invalid state (the caller counts the reason and retries).
  schedule::State annotate(const Sketch& sketch);
  std::mt19937_64& rng() { return rng_; }

 private:
  std::vector<int64_t> random_lengths(int64_t extent, int parts, int64_t inner_max, int64_t lanes);
  void change_compute_locations(schedule::State& st, const Sketch& sk);
  void split_innermost(schedule::State& st, const Sketch& sk);
  void parallelize(schedule::State& st);
  void vectorize(schedule::State& st);
  void unroll(schedule::State& st, const Sketch& sk);

  std::shared_ptr<const te::ComputeDAG> dag_;
  target::Target target_;
  std::mt19937_64 rng_;
};

}  // namespace ktune::search
