// The schedule steps: apply, print, and JSON form of each. Every check that can fail on a
// search-generated or user-written schedule throws InvalidCandidate naming the step.
#include "ktune/schedule/steps.h"

#include <algorithm>
#include <numeric>

#include "ktune/ir/ir_ops.h"
#include "ktune/ir/visitor.h"
#include "ktune/schedule/json_checked.h"
#include "ktune/support/error.h"
#include "ktune/support/util.h"

namespace ktune::schedule {

using nlohmann::json;

namespace {

template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
overloaded(Ts...) -> overloaded<Ts...>;

const char* scope_str(ir::MemoryScope s) { return ir::scope_name(s); }

Stage& stage_of(State& st, int stage, const char* step) {
  KT_CANDIDATE_CHECK(stage >= 0 && stage < st.num_stages(), step, ": stage ", stage,
                     " does not exist (the state has ", st.num_stages(), " stages)");
  return st.mutable_stage(stage);
}

void check_iter(const Stage& s, int iter, const char* step) {
  KT_CANDIDATE_CHECK(iter >= 0 && iter < int(s.leaf.size()), step, ": stage ", s.op.name,
                     " has no loop at position ", iter, " (it has ", s.leaf.size(), " loops)");
}

constexpr int64_t kMaxFollowLength = int64_t(1) << 24;
constexpr int64_t kMaxAlignFactor = int64_t(1) << 20;

// Splits the loop at position `iter` of stage `stage` by `lengths`; `what` names the step
// in messages ("split", "follow_split", ...). `may_exceed`: the lengths may multiply to more
// than the extent (follow steps take them from another loop; the outer loop then has one
// iteration and the tail is guarded).
void split_loop(State& st, int stage_idx, int iter, const std::vector<int64_t>& lengths, const char* what,
                bool may_exceed = false) {
  Stage& stage = stage_of(st, stage_idx, what);
  check_iter(stage, iter, what);
  const int id = stage.leaf[iter];
  const Iterator parent = stage.iters[id];
  KT_CANDIDATE_CHECK(!lengths.empty(), what, " of ", stage.op.name, ".", parent.name, ": no lengths given");
  // Follow steps may exceed the extent, but not absurdly (a hostile log could overflow).
  const int64_t bound = may_exceed ? std::max<int64_t>(parent.extent, kMaxFollowLength) : parent.extent;
  int64_t prod = 1;
  for (int64_t l : lengths) {
    KT_CANDIDATE_CHECK(l >= 1, what, " of ", stage.op.name, ".", parent.name, ": length ", l, " is not positive");
    KT_CANDIDATE_CHECK(l <= bound / prod, what, " of ", stage.op.name, ".", parent.name,
                       may_exceed ? ": lengths multiply to more than " : ": lengths multiply to more than the extent ",
                       bound);
    prod *= l;
  }
  SplitRelation rel{id, {}, lengths};
  std::vector<int> new_ids;
  for (size_t k = 0; k <= lengths.size(); ++k) {
    Iterator it;
    it.name = parent.name + "." + std::to_string(k);
    it.kind = parent.kind;
    it.extent = k == 0 ? ceil_div(parent.extent, prod) : lengths[k - 1];
    stage.iters.push_back(it);
    new_ids.push_back(int(stage.iters.size()) - 1);
  }
  rel.children = new_ids;
  stage.relations.push_back(rel);
  stage.leaf.erase(stage.leaf.begin() + iter);
  stage.leaf.insert(stage.leaf.begin() + iter, new_ids.begin(), new_ids.end());
}

void apply(const SplitStep& s, State& st) { split_loop(st, s.stage, s.iter, s.lengths, "split"); }

// The split step number `id` of the state's history, for a follow step.
const SplitStep& source_split(const State& st, int id, const char* what, const std::string& stage_name) {
  const auto& steps = st.steps();
  KT_CANDIDATE_CHECK(id >= 0 && id < int(steps.size()), what, " on ", stage_name, ": source step ", id,
                     " does not exist (", steps.size(), " steps come before it)");
  const auto* src = std::get_if<SplitStep>(&steps[id].v);
  KT_CANDIDATE_CHECK(src != nullptr, what, " on ", stage_name, ": source step ", id, " is a ", steps[id].kind(),
                     ", not a split");
  return *src;
}

std::vector<int64_t> follow_split_lengths(const FollowSplitStep& s, const State& st) {
  const std::string name = s.stage >= 0 && s.stage < st.num_stages() ? st.stage(s.stage).op.name : "?";
  const SplitStep& src = source_split(st, s.src_step_id, "follow_split", name);
  const int k = int(src.lengths.size());
  KT_CANDIDATE_CHECK(s.n_split >= 1 && s.n_split <= k + 1, "follow_split on ", name, ": n_split ", s.n_split,
                     " is not in 1..", k + 1, " (step ", s.src_step_id, " has ", k, " lengths)");
  std::vector<int64_t> lengths(src.lengths.begin(), src.lengths.begin() + (s.n_split - 1));
  int64_t last = 1;
  for (int j = s.n_split - 1; j < k; ++j) last *= src.lengths[j];
  lengths.push_back(last);
  return lengths;
}

void apply(const FollowSplitStep& s, State& st) {
  split_loop(st, s.stage, s.iter, follow_split_lengths(s, st), "follow_split", true);
}

int64_t follow_fused_split_length(const FollowFusedSplitStep& s, const State& st) {
  const std::string name = s.stage >= 0 && s.stage < st.num_stages() ? st.stage(s.stage).op.name : "?";
  KT_CANDIDATE_CHECK(!s.src_step_ids.empty(), "follow_fused_split on ", name, ": no source steps given");
  int64_t len = 1;
  for (int id : s.src_step_ids) {
    const SplitStep& src = source_split(st, id, "follow_fused_split", name);
    KT_CANDIDATE_CHECK(s.level >= 0 && s.level < int(src.lengths.size()), "follow_fused_split on ", name,
                       ": level ", s.level, " is not in 0..", int(src.lengths.size()) - 1, " (step ", id,
                       " has ", src.lengths.size(), " lengths)");
    KT_CANDIDATE_CHECK(src.lengths[s.level] <= kMaxFollowLength / len, "follow_fused_split on ", name,
                       ": the lengths multiply to more than ", kMaxFollowLength);
    len *= src.lengths[s.level];
  }
  return len;
}

void apply(const FollowFusedSplitStep& s, State& st) {
  const int64_t len = follow_fused_split_length(s, st);
  Stage& stage = stage_of(st, s.stage, "follow_fused_split");
  check_iter(stage, s.iter, "follow_fused_split");
  const int64_t extent = stage.leaf_iter(s.iter).extent;
  // nparts: at most `len` outer iterations.
  const int64_t inner = s.factor_or_nparts ? len : ceil_div(extent, std::max<int64_t>(len, 1));
  split_loop(st, s.stage, s.iter, {inner}, "follow_fused_split", true);
}

void apply(const FuseStep& s, State& st) {
  Stage& stage = stage_of(st, s.stage, "fuse");
  KT_CANDIDATE_CHECK(s.iters.size() >= 2, "fuse on ", stage.op.name, ": needs at least two loops");
  for (size_t k = 0; k < s.iters.size(); ++k) {
    check_iter(stage, s.iters[k], "fuse");
    KT_CANDIDATE_CHECK(k == 0 || s.iters[k] == s.iters[k - 1] + 1, "fuse on ", stage.op.name,
                       ": loops must be consecutive");
  }
  FuseRelation rel;
  Iterator fused;
  fused.extent = 1;
  fused.kind = stage.leaf_iter(s.iters[0]).kind;
  for (size_t k = 0; k < s.iters.size(); ++k) {
    const Iterator& it = stage.leaf_iter(s.iters[k]);
    KT_CANDIDATE_CHECK(it.kind == fused.kind, "fuse on ", stage.op.name,
                       ": cannot fuse a spatial loop with a reduction loop (", it.name, ")");
    fused.name += (k ? "@" : "") + it.name;
    fused.extent *= it.extent;
    rel.parents.push_back(stage.leaf[s.iters[k]]);
  }
  stage.iters.push_back(fused);
  rel.child = int(stage.iters.size()) - 1;
  stage.relations.push_back(rel);
  stage.leaf.erase(stage.leaf.begin() + s.iters.front(), stage.leaf.begin() + s.iters.back() + 1);
  stage.leaf.insert(stage.leaf.begin() + s.iters.front(), rel.child);
  // Stages computed at one of the fused loops are now computed at the fused loop.
  for (Stage& other : st.mutable_stages())
    if (other.location == ComputeLocation::At && other.attach_stage == s.stage &&
        std::find(rel.parents.begin(), rel.parents.end(), other.attach_iter) != rel.parents.end())
      other.attach_iter = rel.child;
}

void apply(const ReorderStep& s, State& st) {
  Stage& stage = stage_of(st, s.stage, "reorder");
  std::vector<int> sorted = s.order;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int> expect(stage.leaf.size());
  std::iota(expect.begin(), expect.end(), 0);
  KT_CANDIDATE_CHECK(sorted == expect, "reorder on ", stage.op.name, ": the order must be a permutation of 0..",
                     stage.leaf.size() - 1);
  std::vector<int> leaf;
  for (int p : s.order) leaf.push_back(stage.leaf[p]);
  stage.leaf = leaf;
}

void apply(const AnnotateStep& s, State& st) {
  Stage& stage = stage_of(st, s.stage, "annotate");
  check_iter(stage, s.iter, "annotate");
  Iterator& it = stage.iters[stage.leaf[s.iter]];
  KT_CANDIDATE_CHECK(!(it.kind == IterKind::Reduce &&
                       (s.annotation == Annotation::Parallel || s.annotation == Annotation::Vectorize)),
                     "annotate ", stage.op.name, ".", it.name, " ", annotation_name(s.annotation),
                     ": a reduction loop cannot be ", annotation_name(s.annotation), "d");
  it.annotation = s.annotation;
}

void apply(const PragmaStep& s, State& st) {
  Stage& stage = stage_of(st, s.stage, "pragma");
  check_iter(stage, s.iter, "pragma");
  KT_CANDIDATE_CHECK(s.name == "auto_unroll_max_step", "pragma on ", stage.op.name, ": unknown pragma '",
                     s.name, "' (known: auto_unroll_max_step)");
  KT_CANDIDATE_CHECK(s.value >= 0, "pragma auto_unroll_max_step on ", stage.op.name, ": negative value");
  stage.auto_unroll_max_step = s.value;
}

void apply(const ComputeAtStep& s, State& st) {
  Stage& stage = stage_of(st, s.stage, "compute_at");
  Stage& target = stage_of(st, s.target_stage, "compute_at");
  KT_CANDIDATE_CHECK(s.stage != s.target_stage, "compute_at ", stage.op.name, ": a stage cannot be computed at itself");
  check_iter(target, s.target_iter, "compute_at");
  KT_CANDIDATE_CHECK(reads_tensor(target.op, stage.op.name), "compute_at ", stage.op.name, " at ",
                     target.op.name, ": ", target.op.name, " does not read ", stage.op.name);
  KT_CANDIDATE_CHECK(!stage.op.is_output, "compute_at ", stage.op.name, ": an output is computed at root");
  KT_CANDIDATE_CHECK(target.location != ComputeLocation::Inlined, "compute_at ", stage.op.name, " at ",
                     target.op.name, ": the target is inlined");
  stage.location = ComputeLocation::At;
  stage.attach_stage = s.target_stage;
  stage.attach_iter = target.leaf[s.target_iter];
}

void apply(const ComputeInlineStep& s, State& st) {
  Stage& stage = stage_of(st, s.stage, "compute_inline");
  KT_CANDIDATE_CHECK(!stage.op.is_output, "compute_inline ", stage.op.name, ": an output cannot be inlined");
  KT_CANDIDATE_CHECK(stage.op.reduce == te::ReduceKind::None, "compute_inline ", stage.op.name,
                     ": a reduction cannot be inlined");
  for (const Stage& other : st.stages())
    KT_CANDIDATE_CHECK(!(other.location == ComputeLocation::At && other.attach_stage == s.stage),
                       "compute_inline ", stage.op.name, ": ", other.op.name, " is computed inside it");
  stage.location = ComputeLocation::Inlined;
  stage.attach_stage = stage.attach_iter = -1;
}

void apply(const ComputeRootStep& s, State& st) {
  Stage& stage = stage_of(st, s.stage, "compute_root");
  stage.location = ComputeLocation::Root;
  stage.attach_stage = stage.attach_iter = -1;
}

void apply(const CacheWriteStep& s, State& st) {
  Stage& stage = stage_of(st, s.stage, "cache_write");
  KT_CANDIDATE_CHECK(stage.relations.empty() && stage.location == ComputeLocation::Root,
                     "cache_write on ", stage.op.name, ": must come before other steps on the stage");
  KT_CANDIDATE_CHECK(st.stage_index(stage.op.name + ".local") < 0, "cache_write on ", stage.op.name, ": ",
                     stage.op.name, ".local exists already");
  Stage cache = stage;
  cache.op.name = stage.op.name + ".local";
  cache.op.is_output = false;
  // The original stage becomes an element-wise copy of the cache stage.
  Stage copy;
  copy.op = stage.op;
  std::vector<ir::Expr> idx;
  for (const auto& a : copy.op.axes) idx.push_back(a.var);
  copy.op.body = ir::TensorRead::make(copy.op.dtype, cache.op.name, idx);
  copy.op.reduce = te::ReduceKind::None;
  copy.op.reduce_axes.clear();
  for (size_t i = 0; i < copy.op.axes.size(); ++i) copy.iters.push_back(stage.iters[i]);
  for (size_t i = 0; i < copy.iters.size(); ++i) copy.leaf.push_back(int(i));
  copy.auto_unroll_max_step = stage.auto_unroll_max_step;
  auto& stages = st.mutable_stages();
  for (Stage& other : stages)
    if (other.attach_stage >= s.stage) ++other.attach_stage;
  stages[s.stage] = copy;
  stages.insert(stages.begin() + s.stage, cache);
}

// Rewrites reads of tensor `from` into reads of `to`.
class RenameReads : public ir::IRMutator {
 public:
  RenameReads(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  ir::Expr visit_TensorRead(const ir::TensorRead* op, const ir::Expr& self) override {
    ir::Expr e = IRMutator::visit_TensorRead(op, self);
    const auto* t = e.as<ir::TensorRead>();
    if (t->tensor != from_) return e;
    return ir::TensorRead::make(t->type, to_, t->indices);
  }

 private:
  std::string from_, to_;
};

void apply(const CacheReadStep& s, State& st) {
  const te::ComputeDAG& dag = st.dag();
  const te::Operation* src = nullptr;
  if (int i = dag.find(s.tensor); i >= 0 && dag.ops[i].is_placeholder()) src = &dag.ops[i];
  if (int i = st.stage_index(s.tensor); i >= 0) src = &st.stage(i).op;
  KT_CANDIDATE_CHECK(src != nullptr, "cache_read: no tensor named '", s.tensor, "'");
  KT_CANDIDATE_CHECK(!s.readers.empty(), "cache_read of ", s.tensor, ": no reader stages given");
  const std::string name = s.tensor + "." + scope_str(s.scope);
  KT_CANDIDATE_CHECK(st.stage_index(name) < 0, "cache_read of ", s.tensor, ": stage ", name, " exists already");
  int first = st.num_stages();
  for (int r : s.readers) {
    stage_of(st, r, "cache_read");
    KT_CANDIDATE_CHECK(reads_tensor(st.stage(r).op, s.tensor), "cache_read of ", s.tensor, ": stage ",
                       st.stage(r).op.name, " does not read it");
    first = std::min(first, r);
  }
  te::Operation copy;
  copy.name = name;
  copy.dtype = src->dtype;
  copy.shape = src->shape;
  std::vector<ir::Expr> idx;
  for (size_t d = 0; d < src->shape.size(); ++d) {
    ir::Expr v = ir::Var::make("ax" + std::to_string(d));
    copy.axes.push_back({v, src->shape[d]});
    idx.push_back(v);
  }
  copy.body = ir::TensorRead::make(src->dtype, s.tensor, idx);
  Stage stage;
  stage.op = copy;
  for (const auto& a : copy.axes) stage.iters.push_back({a.var.as<ir::Var>()->name, a.extent, IterKind::Spatial});
  for (size_t i = 0; i < stage.iters.size(); ++i) stage.leaf.push_back(int(i));
  auto& stages = st.mutable_stages();
  RenameReads rename(s.tensor, name);
  for (int r : s.readers) stages[r].op.body = rename.mutate(stages[r].op.body);
  for (Stage& other : stages)
    if (other.attach_stage >= first) ++other.attach_stage;
  stages.insert(stages.begin() + first, stage);
}

bool is_attached_to(const State& st, int stage) {
  for (const Stage& other : st.stages())
    if (other.location == ComputeLocation::At && other.attach_stage == stage) return true;
  return false;
}

void apply(const RfactorStep& s, State& st) {
  const Stage& stage = stage_of(st, s.stage, "rfactor");
  check_iter(stage, s.iter, "rfactor");
  const te::Operation& op = stage.op;
  const int fid = stage.leaf[s.iter];
  const Iterator& fit = stage.iters[fid];
  KT_CANDIDATE_CHECK(fit.kind == IterKind::Reduce, "rfactor of ", op.name, ".", fit.name,
                     ": it is a spatial loop, not a reduction loop");
  const int nsp = int(op.axes.size());
  KT_CANDIDATE_CHECK(s.factor_iter_id >= 0 && s.factor_iter_id <= nsp, "rfactor of ", op.name, ".", fit.name,
                     ": factor_iter_id ", s.factor_iter_id, " is not in 0..", nsp);
  KT_CANDIDATE_CHECK(stage.location == ComputeLocation::Root, "rfactor of ", op.name,
                     ": the stage must be computed at root");
  KT_CANDIDATE_CHECK(!is_attached_to(st, s.stage), "rfactor of ", op.name, ": a stage is computed inside it");
  const std::string rf_name = op.name + ".rf";
  KT_CANDIDATE_CHECK(st.stage_index(rf_name) < 0, "rfactor of ", op.name, ": ", rf_name, " exists already");

  // The root reduce axes as expressions of the leaf reduction loops (as lowering does).
  std::vector<ir::Expr> value(stage.iters.size());
  ir::Expr factor_var;
  std::vector<te::Axis> rf_reduce;
  for (int id : stage.leaf) {
    const Iterator& it = stage.iters[id];
    if (it.kind != IterKind::Reduce) continue;
    ir::Expr v = ir::Var::make(it.name);
    value[id] = v;
    if (id == fid) factor_var = v;
    else rf_reduce.push_back({v, it.extent});
  }
  ir::Expr guard;
  for (auto r = stage.relations.rbegin(); r != stage.relations.rend(); ++r) {
    if (const auto* sp = std::get_if<SplitRelation>(&*r)) {
      if (stage.iters[sp->parent].kind != IterKind::Reduce) continue;
      ir::Expr v = value[sp->children[0]];
      int64_t covered = stage.iters[sp->children[0]].extent;
      for (size_t k = 0; k < sp->lengths.size(); ++k) {
        v = v * ir::Expr(sp->lengths[k]) + value[sp->children[k + 1]];
        covered *= sp->lengths[k];
      }
      value[sp->parent] = v;
      const int64_t ext = stage.iters[sp->parent].extent;
      if (covered != ext) guard = guard.defined() ? (guard && v < ir::Expr(ext)) : (v < ir::Expr(ext));
    } else {
      const auto& fu = std::get<FuseRelation>(*r);
      if (stage.iters[fu.child].kind != IterKind::Reduce) continue;
      int64_t stride = 1;
      for (size_t k = fu.parents.size(); k-- > 0;) {
        ir::Expr pk = stride == 1 ? value[fu.child] : value[fu.child] / ir::Expr(stride);
        if (k > 0) pk = pk % ir::Expr(stage.iters[fu.parents[k]].extent);
        value[fu.parents[k]] = pk;
        stride *= stage.iters[fu.parents[k]].extent;
      }
    }
  }
  ir::VarMap m;
  for (size_t j = 0; j < op.reduce_axes.size(); ++j) {
    KT_CHECK(value[nsp + j].defined(), "rfactor: reduce axis without a value");
    m[op.reduce_axes[j].var.get()] = value[nsp + j];
  }
  ir::Expr body = ir::substitute(op.body, m);
  if (guard.defined()) {
    const ir::Type t = body.type();
    const ir::Expr id = op.reduce == te::ReduceKind::Sum   ? ir::make_zero(t)
                        : op.reduce == te::ReduceKind::Max ? ir::type_min(t)
                                                           : ir::type_max(t);
    body = ir::select(guard, body, id);
  }

  te::Operation rf = op;
  rf.name = rf_name;
  rf.is_output = false;
  rf.axes.insert(rf.axes.begin() + s.factor_iter_id, te::Axis{factor_var, fit.extent});
  rf.shape.insert(rf.shape.begin() + s.factor_iter_id, fit.extent);
  rf.reduce_axes = rf_reduce;
  rf.reduce = rf_reduce.empty() ? te::ReduceKind::None : op.reduce;
  rf.body = body;

  te::Operation red = op;
  ir::Expr rv = ir::Var::make(fit.name);
  red.reduce_axes = {te::Axis{rv, fit.extent}};
  std::vector<ir::Expr> idx;
  for (const auto& a : op.axes) idx.push_back(a.var);
  idx.insert(idx.begin() + s.factor_iter_id, rv);
  red.body = ir::TensorRead::make(op.dtype, rf_name, idx);

  auto& stages = st.mutable_stages();
  for (Stage& other : stages)
    if (other.attach_stage >= s.stage) ++other.attach_stage;
  stages[s.stage] = initial_stage(red);
  stages.insert(stages.begin() + s.stage, initial_stage(rf));
}

void apply(const StorageAlignStep& s, State& st) {
  Stage& stage = stage_of(st, s.stage, "storage_align");
  check_iter(stage, s.iter, "storage_align");
  const int id = stage.leaf[s.iter];
  const Iterator& it = stage.iters[id];
  KT_CANDIDATE_CHECK(s.factor >= 1, "storage_align on ", stage.op.name, ".", it.name, ": factor ", s.factor,
                     " is not positive");
  KT_CANDIDATE_CHECK(s.factor <= kMaxAlignFactor, "storage_align on ", stage.op.name, ".", it.name, ": factor ",
                     s.factor, " is larger than ", kMaxAlignFactor);
  KT_CANDIDATE_CHECK(s.offset >= 0 && s.offset < s.factor, "storage_align on ", stage.op.name, ".", it.name,
                     ": offset ", s.offset, " is not in 0..", s.factor - 1);
  KT_CANDIDATE_CHECK(id < int(stage.op.axes.size()), "storage_align on ", stage.op.name, ".", it.name,
                     ": the loop is not a spatial axis of the tensor (reduction, split or fused loop)");
  KT_CANDIDATE_CHECK(!stage.op.is_output, "storage_align on ", stage.op.name,
                     ": the layout of an output is fixed");
  auto& aligns = stage.storage_align;
  aligns.erase(std::remove_if(aligns.begin(), aligns.end(), [&](const StorageAlignment& a) { return a.dim == id; }),
               aligns.end());
  aligns.push_back({id, s.factor, s.offset});
}

std::string ints(const std::vector<int64_t>& v) {
  return "[" + join(v, ", ", [](int64_t x) { return std::to_string(x); }) + "]";
}

std::string iter_name(const State& st, int stage, int iter) {
  if (stage < 0 || stage >= st.num_stages()) return "?";
  const Stage& s = st.stage(stage);
  if (iter < 0 || iter >= int(s.leaf.size())) return "?";
  return s.leaf_iter(iter).name;
}
std::string stage_name(const State& st, int stage) {
  return stage >= 0 && stage < st.num_stages() ? st.stage(stage).op.name : "?";
}

template <typename T>
T get_field(const json& j, const char* kind, const char* field) {
  KT_USER_CHECK(j.contains(field), "step '", kind, "' is missing the field '", field, "'");
  KT_USER_CHECK(json_holds<T>(j.at(field)), "step '", kind, "': field '", field, "' has the wrong type");
  try {
    return j.at(field).get<T>();
  } catch (const json::exception&) {
    throw UserError(detail::concat("step '", kind, "': field '", field, "' has the wrong type"));
  }
}

}  // namespace

bool reads_tensor(const te::Operation& op, const std::string& name) {
  bool found = false;
  if (op.body.defined())
    ir::post_order_visit(op.body, [&](const ir::Expr& e) {
      if (const auto* t = e.as<ir::TensorRead>()) found = found || t->tensor == name;
    });
  return found;
}

std::string Step::kind() const {
  return std::visit(overloaded{
                        [](const SplitStep&) { return "split"; },
                        [](const FollowSplitStep&) { return "follow_split"; },
                        [](const FollowFusedSplitStep&) { return "follow_fused_split"; },
                        [](const FuseStep&) { return "fuse"; },
                        [](const ReorderStep&) { return "reorder"; },
                        [](const AnnotateStep&) { return "annotate"; },
                        [](const PragmaStep&) { return "pragma"; },
                        [](const ComputeAtStep&) { return "compute_at"; },
                        [](const ComputeInlineStep&) { return "compute_inline"; },
                        [](const ComputeRootStep&) { return "compute_root"; },
                        [](const CacheWriteStep&) { return "cache_write"; },
                        [](const RfactorStep&) { return "rfactor"; },
                        [](const StorageAlignStep&) { return "storage_align"; },
                        [](const CacheReadStep&) { return "cache_read"; },
                    },
                    v);
}

void Step::apply_to(State& state) const {
  std::visit([&](const auto& s) { apply(s, state); }, v);
}

std::string Step::to_string(const State& st) const {
  return std::visit(
      overloaded{
          [&](const SplitStep& s) {
            return "split(" + stage_name(st, s.stage) + ", " + iter_name(st, s.stage, s.iter) + ", " + ints(s.lengths) + ")";
          },
          [&](const FollowSplitStep& s) {
            return "follow_split(" + stage_name(st, s.stage) + ", " + iter_name(st, s.stage, s.iter) + ", step " +
                   std::to_string(s.src_step_id) + ", n_split=" + std::to_string(s.n_split) + ")";
          },
          [&](const FollowFusedSplitStep& s) {
            return "follow_fused_split(" + stage_name(st, s.stage) + ", " + iter_name(st, s.stage, s.iter) +
                   ", steps [" + join(s.src_step_ids, ", ", [](int i) { return std::to_string(i); }) +
                   "], level=" + std::to_string(s.level) + ", " + (s.factor_or_nparts ? "factor" : "nparts") + ")";
          },
          [&](const FuseStep& s) {
            return "fuse(" + stage_name(st, s.stage) + ", [" +
                   join(s.iters, ", ", [&](int i) { return iter_name(st, s.stage, i); }) + "])";
          },
          [&](const ReorderStep& s) {
            return "reorder(" + stage_name(st, s.stage) + ", [" +
                   join(s.order, ", ", [&](int i) { return iter_name(st, s.stage, i); }) + "])";
          },
          [&](const AnnotateStep& s) {
            return "annotate(" + stage_name(st, s.stage) + ", " + iter_name(st, s.stage, s.iter) + ", " +
                   annotation_name(s.annotation) + ")";
          },
          [&](const PragmaStep& s) {
            return "pragma(" + stage_name(st, s.stage) + ", " + iter_name(st, s.stage, s.iter) + ", " + s.name + "=" +
                   std::to_string(s.value) + ")";
          },
          [&](const ComputeAtStep& s) {
            return "compute_at(" + stage_name(st, s.stage) + ", " + stage_name(st, s.target_stage) + ", " +
                   iter_name(st, s.target_stage, s.target_iter) + ")";
          },
          [&](const ComputeInlineStep& s) { return "compute_inline(" + stage_name(st, s.stage) + ")"; },
          [&](const ComputeRootStep& s) { return "compute_root(" + stage_name(st, s.stage) + ")"; },
          [&](const CacheWriteStep& s) {
            return "cache_write(" + stage_name(st, s.stage) + ", " + scope_str(s.scope) + ")";
          },
          [&](const RfactorStep& s) {
            return "rfactor(" + stage_name(st, s.stage) + ", " + iter_name(st, s.stage, s.iter) +
                   ", factor_iter_id=" + std::to_string(s.factor_iter_id) + ")";
          },
          [&](const StorageAlignStep& s) {
            return "storage_align(" + stage_name(st, s.stage) + ", " + iter_name(st, s.stage, s.iter) + ", " +
                   std::to_string(s.factor) + ", " + std::to_string(s.offset) + ")";
          },
          [&](const CacheReadStep& s) {
            return "cache_read(" + s.tensor + ", " + scope_str(s.scope) + ", [" +
                   join(s.readers, ", ", [&](int r) { return stage_name(st, r); }) + "])";
          },
      },
      v);
}

json Step::to_json() const {
  json j = std::visit(
      overloaded{
          [](const SplitStep& s) { return json{{"stage", s.stage}, {"iter", s.iter}, {"lengths", s.lengths}}; },
          [](const FollowSplitStep& s) {
            return json{{"stage", s.stage}, {"iter", s.iter}, {"src_step_id", s.src_step_id}, {"n_split", s.n_split}};
          },
          [](const FollowFusedSplitStep& s) {
            return json{{"stage", s.stage},
                        {"iter", s.iter},
                        {"src_step_ids", s.src_step_ids},
                        {"level", s.level},
                        {"factor_or_nparts", s.factor_or_nparts}};
          },
          [](const FuseStep& s) { return json{{"stage", s.stage}, {"iters", s.iters}}; },
          [](const ReorderStep& s) { return json{{"stage", s.stage}, {"order", s.order}}; },
          [](const AnnotateStep& s) {
            return json{{"stage", s.stage}, {"iter", s.iter}, {"annotation", annotation_name(s.annotation)}};
          },
          [](const PragmaStep& s) {
            return json{{"stage", s.stage}, {"iter", s.iter}, {"name", s.name}, {"value", s.value}};
          },
          [](const ComputeAtStep& s) {
            return json{{"stage", s.stage}, {"target_stage", s.target_stage}, {"target_iter", s.target_iter}};
          },
          [](const ComputeInlineStep& s) { return json{{"stage", s.stage}}; },
          [](const ComputeRootStep& s) { return json{{"stage", s.stage}}; },
          [](const CacheWriteStep& s) { return json{{"stage", s.stage}, {"scope", scope_str(s.scope)}}; },
          [](const RfactorStep& s) {
            return json{{"stage", s.stage}, {"iter", s.iter}, {"factor_iter_id", s.factor_iter_id}};
          },
          [](const StorageAlignStep& s) {
            return json{{"stage", s.stage}, {"iter", s.iter}, {"factor", s.factor}, {"offset", s.offset}};
          },
          [](const CacheReadStep& s) {
            return json{{"tensor", s.tensor}, {"scope", scope_str(s.scope)}, {"readers", s.readers}};
          },
      },
      v);
  j["kind"] = kind();
  return j;
}

std::string Step::key() const { return to_json().dump(); }

Step Step::from_json(const json& j) {
  KT_USER_CHECK(j.is_object(), "a step must be a JSON object, got ", j.dump());
  KT_USER_CHECK(j.contains("kind") && j["kind"].is_string(), "a step needs a string field 'kind': ", j.dump());
  const std::string k = j["kind"].get<std::string>();
  const char* kc = k.c_str();
  auto stage = [&] { return get_field<int>(j, kc, "stage"); };
  if (k == "split") return SplitStep{stage(), get_field<int>(j, kc, "iter"), get_field<std::vector<int64_t>>(j, kc, "lengths")};
  if (k == "follow_split")
    return FollowSplitStep{stage(), get_field<int>(j, kc, "iter"), get_field<int>(j, kc, "src_step_id"),
                           get_field<int>(j, kc, "n_split")};
  if (k == "follow_fused_split")
    return FollowFusedSplitStep{stage(), get_field<int>(j, kc, "iter"),
                                get_field<std::vector<int>>(j, kc, "src_step_ids"), get_field<int>(j, kc, "level"),
                                get_field<bool>(j, kc, "factor_or_nparts")};
  if (k == "fuse") return FuseStep{stage(), get_field<std::vector<int>>(j, kc, "iters")};
  if (k == "reorder") return ReorderStep{stage(), get_field<std::vector<int>>(j, kc, "order")};
  if (k == "annotate") {
    Annotation a;
    const auto name = get_field<std::string>(j, kc, "annotation");
    KT_USER_CHECK(parse_annotation(name, &a), "step 'annotate': unknown annotation '", name, "'");
    return AnnotateStep{stage(), get_field<int>(j, kc, "iter"), a};
  }
  if (k == "pragma")
    return PragmaStep{stage(), get_field<int>(j, kc, "iter"), get_field<std::string>(j, kc, "name"),
                      get_field<int64_t>(j, kc, "value")};
  if (k == "compute_at")
    return ComputeAtStep{stage(), get_field<int>(j, kc, "target_stage"), get_field<int>(j, kc, "target_iter")};
  if (k == "compute_inline") return ComputeInlineStep{stage()};
  if (k == "compute_root") return ComputeRootStep{stage()};
  auto scope = [&] {
    const auto sc = get_field<std::string>(j, kc, "scope");
    if (sc == "local") return ir::MemoryScope::Local;
    if (sc == "shared") return ir::MemoryScope::Shared;
    if (sc == "global") return ir::MemoryScope::Global;
    throw UserError("step '" + k + "': unknown scope '" + sc + "' (local, shared, global)");
  };
  if (k == "cache_write") return CacheWriteStep{stage(), scope()};
  if (k == "cache_read")
    return CacheReadStep{get_field<std::string>(j, kc, "tensor"), scope(), get_field<std::vector<int>>(j, kc, "readers")};
  if (k == "rfactor")
    return RfactorStep{stage(), get_field<int>(j, kc, "iter"), get_field<int>(j, kc, "factor_iter_id")};
  if (k == "storage_align")
    return StorageAlignStep{stage(), get_field<int>(j, kc, "iter"), get_field<int64_t>(j, kc, "factor"),
                            get_field<int64_t>(j, kc, "offset")};
  throw UserError("unknown step kind '" + k +
                  "' (known: split, follow_split, follow_fused_split, fuse, reorder, annotate, pragma, "
                  "compute_at, compute_inline, compute_root, cache_write, cache_read, rfactor, "
                  "storage_align)");
}

json steps_to_json(const std::vector<Step>& steps) {
  json a = json::array();
  for (const auto& s : steps) a.push_back(s.to_json());
  return a;
}

std::vector<Step> steps_from_json(const json& j) {
  KT_USER_CHECK(j.is_array(), "steps must be a JSON array");
  std::vector<Step> out;
  for (size_t i = 0; i < j.size(); ++i) {
    try {
      out.push_back(Step::from_json(j[i]));
    } catch (const UserError& e) {
      throw UserError("step " + std::to_string(i) + ": " + e.what());
    }
  }
  return out;
}

State replay(std::shared_ptr<const te::ComputeDAG> dag, const std::vector<Step>& steps) {
  State st(std::move(dag));
  for (size_t i = 0; i < steps.size(); ++i) {
    try {
      st.apply(steps[i]);
    } catch (const InvalidCandidate& e) {
      throw InvalidCandidate("step " + std::to_string(i) + " (" + steps[i].kind() + "): " + e.what());
    }
  }
  return st;
}

std::string canonical_key(const std::vector<Step>& steps) {
  return join(steps, ";", [](const Step& s) { return s.key(); });
}

}  // namespace ktune::schedule
