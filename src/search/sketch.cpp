// Sketch generation rules for CPUs and annotation (see sketch.h).
#include "ktune/search/sketch.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "ktune/ir/visitor.h"
#include "ktune/support/error.h"
#include "ktune/support/util.h"

namespace ktune::search {

using namespace schedule;

namespace {

// ---- DAG structure queries ------------------------------------------------------------------

struct Read {
  std::string tensor;
  std::vector<ir::Expr> indices;
};

std::vector<Read> reads_of(const te::Operation& op) {
  std::vector<Read> out;
  if (!op.body.defined()) return out;
  ir::post_order_visit(op.body, [&](const ir::Expr& e) {
    if (const auto* t = e.as<ir::TensorRead>()) out.push_back({t->tensor, t->indices});
  });
  return out;
}

bool uses(const std::vector<ir::Expr>& idx, const ir::Expr& var) {
  for (const auto& i : idx)
    if (ir::uses_var(i, var)) return true;
  return false;
}

// Data reuse (Ansor's NeedsMultiLevelTiling): a reduction one of whose reads misses a spatial
// axis, so tiling that axis reuses the data read.
bool needs_tiling(const te::Operation& op) {
  if (op.reduce == te::ReduceKind::None) return false;
  for (const Read& r : reads_of(op))
    for (const auto& a : op.axes)
      if (a.extent > 1 && !uses(r.indices, a.var)) return true;
  return false;
}

// A tensor read inside an arm of a select (padding: select(h >= pad && ..., I[h - pad], 0)).
bool has_guarded_read(const te::Operation& op) {
  bool found = false;
  auto reads = [](const ir::Expr& e) {
    bool r = false;
    ir::post_order_visit(e, [&](const ir::Expr& x) { r = r || x.as<ir::TensorRead>() != nullptr; });
    return r;
  };
  if (op.body.defined())
    ir::post_order_visit(op.body, [&](const ir::Expr& e) {
      if (const auto* sel = e.as<ir::Select>()) found = found || reads(sel->true_value) || reads(sel->false_value);
    });
  return found;
}

bool has_call(const te::Operation& op) {
  bool found = false;
  ir::post_order_visit(op.body, [&](const ir::Expr& e) { found = found || e.as<ir::Call>() != nullptr; });
  return found;
}

std::vector<int> consumers(const State& st, int s) {
  std::vector<int> out;
  const std::string& name = st.stage(s).op.name;
  for (int c = 0; c < st.num_stages(); ++c) {
    if (c == s) continue;
    for (const Read& r : reads_of(st.stage(c).op))
      if (r.tensor == name) {
        out.push_back(c);
        break;
      }
  }
  return out;
}

// The single element-wise consumer reading the stage at exactly its own axes, or -1.
int matched_consumer(const State& st, int s) {
  auto cs = consumers(st, s);
  if (cs.size() != 1) return -1;
  const te::Operation& p = st.stage(s).op;
  const te::Operation& c = st.stage(cs[0]).op;
  if (p.is_output) return -1;  // an output stays at root: it cannot be computed inside its consumer
  if (c.reduce != te::ReduceKind::None || c.shape != p.shape) return -1;
  if (st.stage(cs[0]).location != ComputeLocation::Root || !st.stage(cs[0]).relations.empty()) return -1;
  for (const Read& r : reads_of(c)) {
    if (r.tensor != p.name) continue;
    for (size_t d = 0; d < r.indices.size(); ++d)
      if (!r.indices[d].same_as(c.axes[d].var)) return -1;
  }
  return cs[0];
}

bool is_placeholder_or_inlined(const State& st, const std::string& name) {
  const int d = st.dag().find(name);
  if (d >= 0 && st.dag().ops[d].is_placeholder()) return true;
  const int s = st.stage_index(name);
  return s >= 0 && st.stage(s).location == ComputeLocation::Inlined;
}

// Tensors worth packing for a tiled stage: inputs (or inlined stages) read with a reduction
// axis in a dimension other than the last, so the inner loops stride across rows. A tensor
// already packed for another stage (its TENSOR.local exists) is not packed again.
std::vector<std::string> pack_candidates(const State& st, int s) {
  const te::Operation& op = st.stage(s).op;
  std::vector<std::string> out;
  for (const Read& r : reads_of(op)) {
    if (!is_placeholder_or_inlined(st, r.tensor) || r.indices.size() < 2) continue;
    if (std::find(out.begin(), out.end(), r.tensor) != out.end() || st.stage_index(r.tensor + ".local") >= 0)
      continue;
    for (size_t d = 0; d + 1 < r.indices.size(); ++d) {
      bool reduce_here = false;
      for (const auto& a : op.reduce_axes) reduce_here = reduce_here || ir::uses_var(r.indices[d], a.var);
      if (reduce_here) {
        out.push_back(r.tensor);
        break;
      }
    }
  }
  return out;
}

bool is_pack_stage(const Sketch& sk, const std::string& name) {
  return name.size() > 6 && name.compare(name.size() - 6, 6, ".local") == 0 &&
         std::find(sk.tiled.begin(), sk.tiled.end(), name) == sk.tiled.end() &&
         std::find(sk.rules.begin(), sk.rules.end(), "pack " + name) != sk.rules.end();
}

// ---- multi-level tiling ---------------------------------------------------------------------

struct Tiling {
  std::vector<int> split_step;  // per root axis: index of its split step, or -1
};

// Splits every spatial loop into the S levels and every reduction loop into the R levels of
// `structure` and orders them by it. The stage must not have been transformed yet.
Tiling tile(SketchState& ss, int s, const std::string& structure) {
  const Stage& stage = ss.state.stage(s);
  const int nsp = int(stage.op.axes.size()), nrd = int(stage.op.reduce_axes.size());
  const int nroot = nsp + nrd;
  const int S = int(std::count(structure.begin(), structure.end(), 'S'));
  const int R = int(std::count(structure.begin(), structure.end(), 'R'));
  Tiling t;
  t.split_step.assign(nroot, -1);
  std::vector<int> levels(nroot, 1);
  for (int a = nroot - 1; a >= 0; --a) {
    const int parts = a < nsp ? S : R;
    if (ss.state.stage(s).leaf_iter(a).extent == 1 || parts <= 1) continue;
    levels[a] = parts;
    t.split_step[a] = int(ss.sketch.steps.size());
    ss.sketch.holes.push_back({t.split_step[a]});
    ss.apply(SplitStep{s, a, std::vector<int64_t>(parts - 1, 1)});
  }
  auto pos = [&](int axis, int level) {
    int p = 0;
    for (int a = 0; a < axis; ++a) p += levels[a];
    return p + level;
  };
  std::vector<int> order;
  int sl = 0, rl = 0;
  for (char c : structure) {
    const bool spatial = c == 'S';
    const int level = spatial ? sl++ : rl++;
    for (int a = spatial ? 0 : nsp; a < (spatial ? nsp : nroot); ++a) {
      if (levels[a] == 1 && level != 0) continue;
      order.push_back(pos(a, level));
    }
  }
  ss.apply(ReorderStep{s, order});
  ss.sketch.tiled.push_back(ss.state.stage(s).op.name);
  return t;
}

// ---- the rules -----------------------------------------------------------------------------

using Cond = SketchRule::Condition;
using Next = std::vector<std::pair<SketchState, int>>;

// Ansor's strict inlineability: element-wise, not an output, no expensive call.
bool strictly_inlineable(const SketchState& ss, int s) {
  const Stage& st = ss.state.stage(s);
  return !st.op.is_output && st.op.reduce == te::ReduceKind::None && !has_call(st.op) &&
         st.location == ComputeLocation::Root && !is_pack_stage(ss.sketch, st.op.name) && st.relations.empty();
}

class AlwaysInline : public SketchRule {
 public:
  const char* name() const override { return "always_inline"; }
  Cond condition(const SketchState& ss, int s) const override {
    return strictly_inlineable(ss, s) && !has_guarded_read(ss.state.stage(s).op) ? Cond::ApplyAndSkipRest : Cond::Skip;
  }
  Next apply(const SketchState& ss, int s) const override {
    SketchState n = ss;
    n.apply(ComputeInlineStep{s});
    n.sketch.rules.push_back(n.state.stage(s).op.name + ": always_inline");
    return {{n, s - 1}};
  }
};

// ktune's rule: a strictly inlineable stage that reads inside a select (padding) is inlined
// in one sketch and kept at root in another. Inlined, its condition and guarded load sit in
// the consumer's innermost loop, once per element read: a convolution's register tile of
// broadcasts then needs an address select per broadcast, about half the speed of the same
// schedule reading a padded copy (conv2d_nchwc, C=K=128, 28x28). Kept, it is one pass over
// the padded tensor, parallel and vectorized like any root stage.
class InlineOrRootGuarded : public SketchRule {
 public:
  const char* name() const override { return "inline_or_root_guarded"; }
  Cond condition(const SketchState& ss, int s) const override {
    return strictly_inlineable(ss, s) && has_guarded_read(ss.state.stage(s).op) ? Cond::ApplyAndSkipRest : Cond::Skip;
  }
  Next apply(const SketchState& ss, int s) const override {
    const std::string& name = ss.state.stage(s).op.name;
    SketchState inl = ss;
    inl.apply(ComputeInlineStep{s});
    inl.sketch.rules.push_back(name + ": always_inline");
    SketchState root = ss;
    root.sketch.at_root.push_back(name);
    root.sketch.rules.push_back(name + ": root_guarded");
    return {{inl, s - 1}, {root, s - 1}};
  }
};

class AddCacheWrite : public SketchRule {
 public:
  const char* name() const override { return "add_cache_write"; }
  Cond condition(const SketchState& ss, int s) const override {
    const Stage& st = ss.state.stage(s);
    if (!needs_tiling(st.op) || matched_consumer(ss.state, s) >= 0 || !st.relations.empty()) return Cond::Skip;
    for (const Read& r : reads_of(st.op))  // packing comes after the cache write, not before
      if (is_pack_stage(ss.sketch, r.tensor)) return Cond::Skip;
    return Cond::Apply;
  }
  Next apply(const SketchState& ss, int s) const override {
    SketchState n = ss;
    n.apply(CacheWriteStep{s, ir::MemoryScope::Local});
    n.sketch.rules.push_back(n.state.stage(s + 1).op.name + ": add_cache_write");
    return {{n, s}};
  }
};

class AddCachePack : public SketchRule {
 public:
  const char* name() const override { return "add_cache_pack"; }
  Cond condition(const SketchState& ss, int s) const override {
    const Stage& st = ss.state.stage(s);
    if (!needs_tiling(st.op) || !st.relations.empty()) return Cond::Skip;
    return pack_candidates(ss.state, s).empty() ? Cond::Skip : Cond::Apply;
  }
  Next apply(const SketchState& ss, int s) const override {
    SketchState n = ss;
    int reader = s;
    for (const std::string& t : pack_candidates(ss.state, s)) {
      n.apply(CacheReadStep{t, ir::MemoryScope::Local, {reader}});
      n.sketch.rules.push_back("pack " + t + ".local");
      ++reader;
    }
    n.sketch.rules.push_back(n.state.stage(reader).op.name + ": add_cache_pack");
    return {{n, reader}};
  }
};

class MultiLevelTilingWithFusion : public SketchRule {
 public:
  const char* name() const override { return "multi_level_tiling_with_fusion"; }
  Cond condition(const SketchState& ss, int s) const override {
    const Stage& st = ss.state.stage(s);
    return needs_tiling(st.op) && st.relations.empty() && matched_consumer(ss.state, s) >= 0 ? Cond::ApplyAndSkipRest
                                                                                              : Cond::Skip;
  }
  Next apply(const SketchState& ss, int s) const override {
    Next out;
    for (int level : {1, 2}) {
      SketchState n = ss;
      const int c = matched_consumer(n.state, s);
      Tiling t = tile(n, s, "SSRSRS");
      const int nsp = int(n.state.stage(c).op.axes.size());
      std::vector<int> levels(nsp, 1);
      for (int a = nsp - 1; a >= 0; --a) {
        if (t.split_step[a] < 0) continue;
        // The consumer follows the producer's split: level 1 takes the product of its inner
        // lengths, level 2 the first one and the product of the rest. A follow step keeps the
        // tie through mutations (the search edits only the free split).
        n.apply(FollowSplitStep{c, a, t.split_step[a], level});
        levels[a] = level + 1;
      }
      std::vector<int> order;
      int loops_outer = 0;
      for (int l = 0; l <= level; ++l)
        for (int a = 0; a < nsp; ++a) {
          if (levels[a] == 1 && l != 0) continue;  // an unsplit loop sits in the outermost group
          int p = 0;
          for (int b = 0; b < a; ++b) p += levels[b];
          order.push_back(p + l);
          if (l < level) ++loops_outer;
        }
      n.apply(ReorderStep{c, order});
      KT_CHECK(loops_outer >= 1, "fusion without outer loops");
      n.apply(ComputeAtStep{s, c, loops_outer - 1});
      n.sketch.tiled.push_back(n.state.stage(c).op.name);
      n.sketch.rules.push_back(n.state.stage(s).op.name + ": multi_level_tiling_with_fusion(level " +
                               std::to_string(level) + ")");
      out.push_back({n, s - 1});
    }
    return out;
  }
};

class MultiLevelTiling : public SketchRule {
 public:
  const char* name() const override { return "multi_level_tiling"; }
  Cond condition(const SketchState& ss, int s) const override {
    const Stage& st = ss.state.stage(s);
    return needs_tiling(st.op) && st.relations.empty() ? Cond::ApplyAndSkipRest : Cond::Skip;
  }
  Next apply(const SketchState& ss, int s) const override {
    SketchState n = ss;
    tile(n, s, "SSRSRS");
    n.sketch.rules.push_back(n.state.stage(s).op.name + ": multi_level_tiling");
    return {{n, s - 1}};
  }
};

// ktune's own rule: an element-wise stage that reads a tensor in another index order (a
// transposition or layout change) gets a two-level tiling "SS", so that both the reads and
// the writes of a tile stay in cache; the untiled sketch is kept as well.
class TileLayoutChange : public SketchRule {
 public:
  const char* name() const override { return "tile_layout_change"; }
  Cond condition(const SketchState& ss, int s) const override {
    const Stage& st = ss.state.stage(s);
    if (st.op.reduce != te::ReduceKind::None || st.location != ComputeLocation::Root || !st.relations.empty() ||
        st.op.axes.size() < 2)
      return Cond::Skip;
    for (const Read& r : reads_of(st.op)) {
      // The position of each axis among the read's indices; out of order = a layout change.
      int last = -1;
      bool ordered = true;
      for (const auto& a : st.op.axes)
        for (size_t d = 0; d < r.indices.size(); ++d)
          if (ir::uses_var(r.indices[d], a.var)) {
            if (int(d) < last) ordered = false;
            last = int(d);
            break;
          }
      if (!ordered) return Cond::Apply;
    }
    return Cond::Skip;
  }
  Next apply(const SketchState& ss, int s) const override {
    SketchState n = ss;
    tile(n, s, "SS");
    n.sketch.rules.push_back(n.state.stage(s).op.name + ": tile_layout_change");
    return {{n, s - 1}};
  }
};

class SkipStage : public SketchRule {
 public:
  const char* name() const override { return "skip_stage"; }
  Cond condition(const SketchState&, int) const override { return Cond::Apply; }
  Next apply(const SketchState& ss, int s) const override { return {{ss, s - 1}}; }
};

}  // namespace

const std::vector<std::unique_ptr<SketchRule>>& sketch_rules(target::TargetKind kind) {
  static const std::vector<std::unique_ptr<SketchRule>> cpu = [] {
    std::vector<std::unique_ptr<SketchRule>> r;
    r.push_back(std::make_unique<AlwaysInline>());
    r.push_back(std::make_unique<InlineOrRootGuarded>());
    r.push_back(std::make_unique<AddCacheWrite>());
    r.push_back(std::make_unique<AddCachePack>());
    r.push_back(std::make_unique<MultiLevelTilingWithFusion>());
    r.push_back(std::make_unique<MultiLevelTiling>());
    r.push_back(std::make_unique<TileLayoutChange>());
    r.push_back(std::make_unique<SkipStage>());
    return r;
  }();
  KT_USER_CHECK(kind == target::TargetKind::CPU, "sketch rules for ", target::kind_name(kind),
                " targets are not available yet");
  return cpu;
}

std::vector<Sketch> generate_sketches(std::shared_ptr<const te::ComputeDAG> dag, const target::Target& t) {
  const auto& rules = sketch_rules(t.kind);
  SketchState init{State(dag), {}};
  std::vector<std::pair<SketchState, int>> cur = {{init, init.state.num_stages() - 1}};
  std::vector<Sketch> out;
  while (!cur.empty()) {
    std::vector<std::pair<SketchState, int>> next;
    for (auto& [ss, s] : cur) {
      if (s < 0) {
        out.push_back(ss.sketch);
        continue;
      }
      for (const auto& rule : rules) {
        const auto cond = rule->condition(ss, s);
        if (cond == SketchRule::Condition::Skip) continue;
        for (auto& n : rule->apply(ss, s)) next.push_back(std::move(n));
        if (cond == SketchRule::Condition::ApplyAndSkipRest) break;
      }
    }
    cur = std::move(next);
    KT_CHECK(out.size() < 10000, "sketch generation does not terminate");
  }
  return out;
}

std::string Sketch::to_string(std::shared_ptr<const te::ComputeDAG> dag) const {
  std::ostringstream os;
  for (const auto& r : rules)
    if (r.rfind("pack ", 0) != 0) os << "# " << r << "\n";
  State st(dag);
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string line = steps[i].to_string(st);
    const auto* sp = std::get_if<SplitStep>(&steps[i].v);
    const auto hole = std::find_if(holes.begin(), holes.end(), [&](const SplitHole& h) { return h.step == int(i); });
    if (sp && hole != holes.end())
      line = line.substr(0, line.rfind('[')) + "[" +
             join(sp->lengths, ", ", [](int64_t) { return std::string("?"); }) + "])";
    if (const auto* fs = std::get_if<FollowSplitStep>(&steps[i].v)) line += "  # follows step " + std::to_string(fs->src_step_id);
    os << line << "\n";
    st.apply(steps[i]);
  }
  return os.str();
}

// ---- annotation ------------------------------------------------------------------------------

Annotator::Annotator(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, uint64_t seed)
    : dag_(std::move(dag)), target_(std::move(t)), rng_(seed) {}

int register_tile_budget(const target::Target& t) { return std::max(1, t.vector_registers() - 4); }

namespace {
// The root axes (indices into op.axes, then op.reduce_axes) each iterator of `cs` derives from.
std::vector<std::vector<int>> root_axes(const Stage& cs) {
  const int nroot = cs.num_root_iters();
  std::vector<std::vector<int>> roots(cs.iters.size());
  for (int r = 0; r < nroot && r < int(roots.size()); ++r) roots[r] = {r};
  for (const Relation& rel : cs.relations) {
    if (const auto* sp = std::get_if<SplitRelation>(&rel)) {
      for (int ch : sp->children) roots[ch] = roots[sp->parent];
    } else if (const auto* fu = std::get_if<FuseRelation>(&rel)) {
      roots[fu->child].clear();
      for (int p : fu->parents) roots[fu->child].insert(roots[fu->child].end(), roots[p].begin(), roots[p].end());
    }
  }
  return roots;
}

// The position of the stage's innermost reduction loop, -1 when it has none.
int last_reduce_loop(const Stage& stage) {
  int last = -1;
  for (int p = 0; p < int(stage.leaf.size()); ++p)
    if (stage.leaf_iter(p).kind == IterKind::Reduce) last = p;
  return last;
}

const ir::Expr& root_var(const te::Operation& op, int a) {
  const int nsp = int(op.axes.size());
  return a < nsp ? op.axes[a].var : op.reduce_axes[a - nsp].var;
}
}  // namespace

int64_t register_tile_registers(const Stage& stage, const target::Target& t) {
  const int last_reduce = last_reduce_loop(stage);
  if (last_reduce < 0) return 0;
  const int n = int(stage.leaf.size());
  const int nsp = int(stage.op.axes.size());
  const int64_t lanes = std::max(1, t.vector_lanes(stage.op.dtype.bits));
  const auto roots = root_axes(stage);
  // The vector loop: annotated so, or (before vectorize() ran) the innermost loop of the last
  // spatial axis, which the annotation vectorizes.
  auto vector_loop = [&](int p) {
    return lanes > 1 && (stage.leaf_iter(p).annotation == Annotation::Vectorize ||
                         (p == n - 1 && nsp > 0 && roots[stage.leaf[p]] == std::vector<int>{nsp - 1}));
  };
  auto vectors = [&](int p) { return (stage.leaf_iter(p).extent + lanes - 1) / lanes; };
  int64_t acc = 1;
  for (int p = last_reduce + 1; p < n; ++p) acc *= vector_loop(p) ? vectors(p) : stage.leaf_iter(p).extent;
  // Per reduction step, each read brings its distinct elements in the tile: vectors when it
  // reads along the vector axis, broadcasts otherwise. All but the largest read stay in
  // registers across the tile; the largest streams through one.
  int64_t sum = 0, largest = 0;
  for (const Read& r : reads_of(stage.op)) {
    const bool vector_read = nsp > 0 && uses(r.indices, stage.op.axes[nsp - 1].var);
    int64_t count = 1;
    for (int p = last_reduce + 1; p < n; ++p) {
      const auto& axes = roots[stage.leaf[p]];
      if (std::none_of(axes.begin(), axes.end(), [&](int a) { return uses(r.indices, root_var(stage.op, a)); }))
        continue;
      count *= vector_loop(p) && vector_read ? vectors(p) : stage.leaf_iter(p).extent;
    }
    sum += count;
    largest = std::max(largest, count);
  }
  return acc + sum - largest + (sum > 0 ? 1 : 0);
}

int64_t register_tile_vectors(const Stage& stage, const target::Target& t) {
  const int last_reduce = last_reduce_loop(stage);
  if (last_reduce < 0) return 0;
  const int64_t lanes = std::max(1, t.vector_lanes(stage.op.dtype.bits));
  int64_t tile = 1;
  for (int p = last_reduce + 1; p < int(stage.leaf.size()); ++p) {
    const Iterator& it = stage.leaf_iter(p);
    tile *= it.annotation == Annotation::Vectorize ? (it.extent + lanes - 1) / lanes : it.extent;
  }
  return tile;
}

std::vector<int64_t> Annotator::random_lengths(int64_t extent, int parts, const std::vector<int64_t>& inner) {
  // An ordered factorization extent = f0 * f1 * ... * f(parts-1) (f0 outermost); returns
  // f1..f(parts-1).
  std::vector<int64_t> f(parts);
  int64_t rest = extent;
  for (int k = parts - 1; k >= 1; --k) {
    const std::vector<int64_t> ds = k == parts - 1 ? inner : divisors(rest);
    f[k] = ds[std::uniform_int_distribution<size_t>(0, ds.size() - 1)(rng_)];
    rest /= f[k];
  }
  return {f.begin() + 1, f.end()};
}

std::vector<int64_t> Annotator::inner_choices(int64_t extent, bool spatial, bool reduction_stage, bool vector_axis,
                                              int64_t lanes, bool last_spatial, bool register_tile, int64_t acc) {
  std::uniform_real_distribution<double> u(0, 1);
  const std::vector<int64_t> all = divisors(extent);
  auto filter = [](const std::vector<int64_t>& v, auto keep) {
    std::vector<int64_t> out;
    for (int64_t d : v)
      if (keep(d)) out.push_back(d);
    return out;
  };
  if (!spatial) {
    // The inner reduction loop: the register tile accumulates over it; often long.
    if (reduction_stage && u(rng_) < 0.5) {
      auto longer = filter(all, [](int64_t d) { return d >= 32; });
      if (!longer.empty()) return longer;
    }
    return filter(all, [&](int64_t d) { return d <= 64 || reduction_stage; });
  }
  const auto small = filter(all, [](int64_t d) { return d <= 64; });
  const auto whole = filter(small, [&](int64_t d) { return vector_axis && lanes > 1 && d % lanes == 0; });
  if (register_tile && reduction_stage) {
    const int64_t budget = register_tile_budget(target_);
    auto count = [&](int64_t d) { return vector_axis && lanes > 1 ? (d + lanes - 1) / lanes : d; };
    auto fit = filter(small, [&](int64_t d) { return acc * count(d) <= budget; });
    if (vector_axis && lanes > 1 && u(rng_) < 0.9) {
      auto v = filter(fit, [&](int64_t d) { return d % lanes == 0; });
      if (!v.empty()) fit = v;
    }
    if (last_spatial) {
      auto full = filter(fit, [&](int64_t d) { return 4 * acc * count(d) >= budget; });
      if (!full.empty()) fit = full;
    }
    if (!fit.empty()) return fit;
  }
  if (!whole.empty() && u(rng_) < 0.8) return whole;
  return small;
}

// A location where the pack stage's panel is reused (see sketch.h): -1 for root, a loop
// position of the consumer, or -2 when no location qualifies.
int Annotator::pack_location(const State& st, int s, int c) {
  const Stage& cs = st.stage(c);
  const int nroot = cs.num_root_iters();
  const auto roots = root_axes(cs);
  std::vector<bool> used(nroot, false);
  for (const Read& r : reads_of(cs.op)) {
    if (r.tensor != st.stage(s).op.name) continue;
    for (int a = 0; a < nroot; ++a)
      used[a] = used[a] || uses(r.indices, root_var(cs.op, a));
  }
  const int n = int(cs.leaf.size());
  std::vector<bool> leaf_used(n, false);
  for (int q = 0; q < n; ++q)
    for (int a : roots[cs.leaf[q]]) leaf_used[q] = leaf_used[q] || used[a];
  const int64_t elem_bytes = std::max(1, st.stage(s).op.dtype.bits / 8);
  std::vector<int> good;
  for (int p = -1; p < n; ++p) {
    int64_t panel = 1, reuse = 1;
    for (int q = p + 1; q < n; ++q) (leaf_used[q] ? panel : reuse) *= cs.leaf_iter(q).extent;
    if (panel * elem_bytes <= target_.l2_bytes && reuse >= 16) good.push_back(p);
  }
  if (good.empty()) return -2;
  return good[std::uniform_int_distribution<size_t>(0, good.size() - 1)(rng_)];
}

void Annotator::change_compute_locations(State& st, const Sketch& sk) {
  for (int s = st.num_stages() - 1; s >= 0; --s) {
    const Stage& stage = st.stage(s);
    if (stage.op.is_output || stage.location == ComputeLocation::Inlined) continue;
    if (std::find(sk.tiled.begin(), sk.tiled.end(), stage.op.name) != sk.tiled.end()) continue;
    if (std::find(sk.at_root.begin(), sk.at_root.end(), stage.op.name) != sk.at_root.end()) continue;
    if (stage.location == ComputeLocation::At) continue;  // placed by a rule
    auto cs = consumers(st, s);
    if (cs.size() != 1 || st.stage(cs[0]).location == ComputeLocation::Inlined) continue;
    const int c = cs[0];
    const bool pack = is_pack_stage(sk, stage.op.name);
    if (pack && std::uniform_real_distribution<double>(0, 1)(rng_) < 0.75) {
      const int p = pack_location(st, s, c);
      if (p >= 0) st.apply(ComputeAtStep{s, c, p});
      if (p >= -1) continue;
    }
    const bool inlineable = stage.op.reduce == te::ReduceKind::None && !pack;
    const int nloops = int(st.stage(c).leaf.size());
    // Choices: root, inline (when possible), or at any loop of the consumer.
    const int choices = 1 + (inlineable ? 1 : 0) + nloops;
    int pick = std::uniform_int_distribution<int>(0, choices - 1)(rng_);
    if (pick == 0) continue;
    if (inlineable && pick == 1) {
      st.apply(ComputeInlineStep{s});
      continue;
    }
    pick -= inlineable ? 2 : 1;
    st.apply(ComputeAtStep{s, c, pick});
  }
}

// Untiled stages (element-wise ones, untiled reductions) get their innermost spatial loop
// split by a random divisor (<= 64), so that parallel outer and vector inner loops exist.
void Annotator::split_innermost(State& st, const Sketch& sk) {
  for (int s = 0; s < st.num_stages(); ++s) {
    const Stage& stage = st.stage(s);
    if (stage.location != ComputeLocation::Root) continue;
    if (std::find(sk.tiled.begin(), sk.tiled.end(), stage.op.name) != sk.tiled.end()) continue;
    int pos = -1;  // the innermost spatial loop
    for (int p = int(stage.leaf.size()) - 1; p >= 0 && pos < 0; --p)
      if (stage.leaf_iter(p).kind == IterKind::Spatial) pos = p;
    if (pos < 0 || pos != int(stage.leaf.size()) - 1) continue;
    bool attached = false;
    for (const Stage& o : st.stages())
      attached = attached || (o.location == ComputeLocation::At && o.attach_stage == s && o.attach_iter == stage.leaf[pos]);
    const int64_t ext = stage.leaf_iter(pos).extent;
    if (attached || ext < 2) continue;
    std::vector<int64_t> ds;
    for (int64_t d : divisors(ext))
      if (d <= 64) ds.push_back(d);
    const int64_t f = ds[std::uniform_int_distribution<size_t>(0, ds.size() - 1)(rng_)];
    if (f > 1 && f < ext) st.apply(SplitStep{s, pos, {f}});
  }
}

void Annotator::parallelize(State& st) {
  std::uniform_real_distribution<double> u(0, 1);
  for (int s = 0; s < st.num_stages(); ++s) {
    const Stage& stage = st.stage(s);
    if (stage.location != ComputeLocation::Root) continue;
    int k = 0;
    int64_t prod = 1;
    while (k < int(stage.leaf.size()) && stage.leaf_iter(k).kind == IterKind::Spatial &&
           prod < 16 * std::max(1, target_.cores)) {
      prod *= stage.leaf_iter(k).extent;
      ++k;
    }
    // Sometimes one loop fewer, unless that leaves fewer parallel iterations than cores (a
    // padding stage of one image and one channel block would run serially).
    if (k >= 2 && u(rng_) < 0.2 && prod / stage.leaf_iter(k - 1).extent >= std::max(1, target_.cores))
      prod /= stage.leaf_iter(--k).extent;
    if (k >= 2) {
      std::vector<int> its(k);
      for (int i = 0; i < k; ++i) its[i] = i;
      st.apply(FuseStep{s, its});
    }
    if (k >= 1 && st.stage(s).leaf_iter(0).extent > 1) st.apply(AnnotateStep{s, 0, Annotation::Parallel});
  }
}

void Annotator::vectorize(State& st) {
  std::uniform_real_distribution<double> u(0, 1);
  for (int s = 0; s < st.num_stages(); ++s) {
    const Stage& stage = st.stage(s);
    if (stage.location == ComputeLocation::Inlined || stage.leaf.size() < 2) continue;
    const int last = int(stage.leaf.size()) - 1;
    const Iterator& it = stage.leaf_iter(last);
    bool has_attached = false;
    for (const Stage& o : st.stages())
      has_attached = has_attached || (o.location == ComputeLocation::At && o.attach_stage == s &&
                                      o.attach_iter == stage.leaf[last]);
    if (it.kind != IterKind::Spatial || it.extent < 2 || it.extent > 64 || has_attached ||
        it.annotation != Annotation::None)
      continue;
    if (u(rng_) < 0.9) st.apply(AnnotateStep{s, last, Annotation::Vectorize});
  }
}

void Annotator::unroll(State& st, const Sketch& sk, const std::map<int, int64_t>& tile) {
  static const int64_t kSteps[] = {0, 16, 64, 512};
  for (int s = 0; s < st.num_stages(); ++s) {
    const Stage& stage = st.stage(s);
    if (stage.location == ComputeLocation::Inlined || stage.op.reduce == te::ReduceKind::None) continue;
    int64_t v = kSteps[std::uniform_int_distribution<int>(0, 3)(rng_)];
    // A register tile stays in registers only when its loops are unrolled: mostly the smallest
    // step that covers the tile (a vectorized loop counts once), so that the long reduction
    // loop around it stays a loop.
    const auto t = tile.find(s);
    if (t != tile.end() && std::uniform_real_distribution<double>(0, 1)(rng_) < 0.8)
      for (int64_t step : kSteps)
        if (step >= t->second) {
          v = step;
          break;
        }
    if (v) st.apply(PragmaStep{s, 0, "auto_unroll_max_step", v});
  }
}

TileSizes Annotator::tile_sizes(const State& src) const {
  TileSizes out;
  State st(dag_);
  for (const Step& step : src.steps()) {
    if (const auto* sp = std::get_if<SplitStep>(&step.v)) {
      const Stage& stage = st.stage(sp->stage);
      if (stage.op.reduce != te::ReduceKind::None) {
        const Iterator& it = stage.leaf_iter(sp->iter);
        out[{it.name, it.extent, int(sp->lengths.size())}] = sp->lengths;
      }
    }
    st.apply(step);
  }
  return out;
}

State Annotator::annotate(const Sketch& sk, const TileSizes* given_tiles) {
  std::map<int, bool> register_tile;  // per stage: whether its tile sizes follow the register budget
  // Tile sizes are drawn again (a few times at most) while a register tile would need more
  // than the target's vector registers with its operands (register_tile_registers).
  for (int attempt = 0;; ++attempt) {
    State st(dag_);
    std::map<int, int64_t> acc;  // per stage: accumulators of the register tile so far
    const int drawn = fill_holes(sk, given_tiles, st, acc, register_tile);
    bool fits = true;
    for (const auto& [stage, on] : register_tile)
      if (on && st.stage(stage).op.reduce != te::ReduceKind::None &&
          register_tile_registers(st.stage(stage), target_) > target_.vector_registers())
        fits = false;
    if (!fits && drawn > 0 && attempt < 8) continue;  // given tile sizes would come out the same
    change_compute_locations(st, sk);
    split_innermost(st, sk);
    parallelize(st);
    vectorize(st);
    // The register tiles: stages whose innermost tile was drawn to the register budget.
    std::map<int, int64_t> tiles;
    for (const auto& [stage, on] : register_tile)
      if (on && acc[stage] > 1 && st.stage(stage).op.reduce != te::ReduceKind::None) tiles[stage] = acc[stage];
    unroll(st, sk, tiles);
    return st;
  }
}

int Annotator::fill_holes(const Sketch& sk, const TileSizes* given_tiles, State& st, std::map<int, int64_t>& acc,
                          std::map<int, bool>& register_tile) {
  int drawn = 0;
  auto is_hole = [&](size_t i) {
    return std::any_of(sk.holes.begin(), sk.holes.end(), [&](const SplitHole& h) { return h.step == int(i); });
  };
  for (size_t i = 0; i < sk.steps.size(); ++i) {
    if (!is_hole(i)) {
      st.apply(sk.steps[i]);
      continue;
    }
    SplitStep sp = std::get<SplitStep>(sk.steps[i].v);
    const Stage& stage = st.stage(sp.stage);
    const Iterator& it = stage.leaf_iter(sp.iter);
    const int64_t ext = it.extent;
    const bool spatial = it.kind == IterKind::Spatial;
    // The last spatial axis ends innermost in a tiling, where vectorize() finds it.
    const bool vector_axis = stage.leaf[sp.iter] == int(stage.op.axes.size()) - 1;
    const int64_t lanes = vector_axis ? target_.vector_lanes(stage.op.dtype.bits) : 1;
    // A tiling splits a stage's axes last to first: no later hole on the stage, no later spatial one.
    bool last_spatial = true;
    for (size_t j = i + 1; j < sk.steps.size() && last_spatial; ++j)
      if (is_hole(j) && std::get<SplitStep>(sk.steps[j].v).stage == sp.stage) last_spatial = false;
    if (!register_tile.count(sp.stage))
      register_tile[sp.stage] = std::uniform_real_distribution<double>(0, 1)(rng_) < 0.85;
    if (!acc.count(sp.stage)) acc[sp.stage] = 1;
    const bool reduction_stage = stage.op.reduce != te::ReduceKind::None;
    const auto given = given_tiles && reduction_stage
                           ? given_tiles->find({it.name, ext, int(sp.lengths.size())})
                           : TileSizes::const_iterator{};
    if (given_tiles && reduction_stage && given != given_tiles->end()) {
      sp.lengths = given->second;
    } else {
      const auto inner = inner_choices(ext, spatial, reduction_stage, vector_axis, lanes, last_spatial,
                                       register_tile[sp.stage], acc[sp.stage]);
      sp.lengths = random_lengths(ext, int(sp.lengths.size()) + 1, inner);
      ++drawn;
    }
    if (spatial) {
      const int64_t d = sp.lengths.back();
      acc[sp.stage] *= vector_axis && lanes > 1 ? (d + lanes - 1) / lanes : d;
    }
    st.apply(sp);
  }
  return drawn;
}

}  // namespace ktune::search
