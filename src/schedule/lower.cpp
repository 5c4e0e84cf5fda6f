// Lowering a State to a loop nest (see lower.h for the pipeline). The Lowerer walks the
// stages in topological order; a stage computed at another is lowered when its consumer's
// loop nest reaches the attach loop, over the region the consumer's inner loops read.
#include "ktune/schedule/lower.h"

#include <algorithm>
#include <map>
#include <optional>

#include "ktune/ir/ir_ops.h"
#include "ktune/ir/simplify.h"
#include "ktune/ir/visitor.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"
#include "ktune/support/util.h"
#include "ktune/ir/printer.h"

namespace ktune::schedule {

using ir::Expr;
using ir::Stmt;

namespace {

// How to address the elements of a tensor in the current scope: a buffer holding the region
// [offsets, offsets + shape) of the tensor.
struct TensorBinding {
  ir::Buffer buffer;
  std::vector<Expr> offsets;  // per dim; empty = all zero
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // per dim, in elements; empty = dense row-major
};

// Row-major strides of `shape` with the stage's storage_align padding applied: the stride of
// an aligned dimension is rounded up to the next value that is `offset` modulo `factor`.
std::vector<int64_t> aligned_strides(const std::vector<int64_t>& shape, const std::vector<StorageAlignment>& align) {
  std::vector<int64_t> strides(shape.size());
  int64_t stride = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    for (const StorageAlignment& a : align)
      if (a.dim == int(d)) stride += floor_mod(a.offset - stride, a.factor);
    strides[d] = stride;
    stride *= shape[d];
  }
  return strides;
}

// A buffer for (a region of) a stage's tensor of extents `shape`, padded as the stage's
// storage_align steps ask (then the buffer is one-dimensional, of the padded size).
TensorBinding make_binding(const std::string& name, ir::Type dtype, const std::vector<int64_t>& shape,
                           std::vector<Expr> offsets, const std::vector<StorageAlignment>& align,
                           ir::MemoryScope scope) {
  if (align.empty() || shape.empty())
    return {ir::make_buffer(name, dtype, shape, scope), std::move(offsets), shape, {}};
  std::vector<int64_t> strides = aligned_strides(shape, align);
  int64_t size = 1;  // one past the largest flat index
  for (size_t d = 0; d < shape.size(); ++d) size += (shape[d] - 1) * strides[d];
  for (int64_t e : shape)
    if (e == 0) size = 0;
  return {ir::make_buffer(name, dtype, {size}, scope), std::move(offsets), shape, std::move(strides)};
}

Expr flat_index(const TensorBinding& b, const std::vector<Expr>& idx) {
  Expr flat;
  for (size_t d = 0; d < idx.size(); ++d) {
    Expr i = b.offsets.empty() ? idx[d] : idx[d] - b.offsets[d];
    if (!b.strides.empty()) flat = d == 0 ? i * Expr(b.strides[d]) : flat + i * Expr(b.strides[d]);
    else flat = d == 0 ? i : flat * Expr(b.shape[d]) + i;
  }
  return flat.defined() ? flat : Expr(0);
}

constexpr int64_t kManySteps = int64_t(1) << 40;
int64_t saturating_add(int64_t a, int64_t b) { return std::min(kManySteps, a + b); }
int64_t saturating_mul(int64_t a, int64_t b) { return a > kManySteps / std::max<int64_t>(b, 1) ? kManySteps : a * b; }

// Statements a loop nest executes (stores and evaluates; loops of unknown extent count as
// many; a vectorized loop runs its body once, as vectors), for the unroll pragma.
int64_t dynamic_steps(const Stmt& s) {
  if (!s.defined()) return 0;
  switch (s.kind()) {
    case ir::StmtKind::For: {
      const auto* f = s.as<ir::For>();
      int64_t e = 0;
      if (!ir::is_const_int(f->extent, &e)) return kManySteps;
      return f->for_kind == ir::ForKind::Vectorized ? dynamic_steps(f->body) : saturating_mul(dynamic_steps(f->body), e);
    }
    case ir::StmtKind::Block: {
      int64_t n = 0;
      for (const Stmt& x : s.as<ir::Block>()->stmts) n = saturating_add(n, dynamic_steps(x));
      return n;
    }
    case ir::StmtKind::IfThenElse: {
      const auto* i = s.as<ir::IfThenElse>();
      return std::max(dynamic_steps(i->then_case), dynamic_steps(i->else_case));
    }
    case ir::StmtKind::Allocate: return dynamic_steps(s.as<ir::Allocate>()->body);
    case ir::StmtKind::LetStmt: return dynamic_steps(s.as<ir::LetStmt>()->body);
    default: return 1;
  }
}

ir::ForKind for_kind(Annotation a) {
  switch (a) {
    case Annotation::None: return ir::ForKind::Serial;
    case Annotation::Parallel: return ir::ForKind::Parallel;
    case Annotation::Vectorize: return ir::ForKind::Vectorized;
    case Annotation::Unroll: return ir::ForKind::Unrolled;
    case Annotation::BlockIdxX: return ir::ForKind::BlockIdxX;
    case Annotation::BlockIdxY: return ir::ForKind::BlockIdxY;
    case Annotation::BlockIdxZ: return ir::ForKind::BlockIdxZ;
    case Annotation::ThreadIdxX: return ir::ForKind::ThreadIdxX;
    case Annotation::ThreadIdxY: return ir::ForKind::ThreadIdxY;
    case Annotation::ThreadIdxZ: return ir::ForKind::ThreadIdxZ;
    case Annotation::VThread: return ir::ForKind::VThread;
  }
  return ir::ForKind::Serial;
}

// Replaces reads of inlined tensors by their definitions.
class InlineReads : public ir::IRMutator {
 public:
  struct Def {
    std::vector<Expr> axes;
    Expr body;
  };
  std::map<std::string, Def> defs;

  Expr visit_TensorRead(const ir::TensorRead* op, const Expr& self) override {
    Expr e = IRMutator::visit_TensorRead(op, self);
    const auto* t = e.as<ir::TensorRead>();
    auto it = defs.find(t->tensor);
    if (it == defs.end()) return e;
    ir::VarMap m;
    for (size_t d = 0; d < it->second.axes.size(); ++d) m[it->second.axes[d].get()] = t->indices[d];
    return ir::substitute(it->second.body, m);
  }
};

// Replaces tensor reads by loads through the bindings in scope.
class ReadsToLoads : public ir::IRMutator {
 public:
  ReadsToLoads(const std::map<std::string, TensorBinding>& b, const std::string& stage) : bindings_(b), stage_(stage) {}
  Expr visit_TensorRead(const ir::TensorRead* op, const Expr& self) override {
    Expr e = IRMutator::visit_TensorRead(op, self);
    const auto* t = e.as<ir::TensorRead>();
    auto it = bindings_.find(t->tensor);
    KT_CANDIDATE_CHECK(it != bindings_.end(), "stage ", stage_, " reads ", t->tensor,
                       ", which is not computed where ", stage_, " runs (computed inside another stage?)");
    Expr load = ir::Load::make(it->second.buffer, flat_index(it->second, t->indices));
    return load.type() == t->type ? load : ir::cast(t->type, load);
  }

 private:
  const std::map<std::string, TensorBinding>& bindings_;
  const std::string& stage_;
};

struct Interval {
  Expr lo, hi;
};

class Lowerer {
 public:
  explicit Lowerer(const State& st) : st_(st) {}

  ir::LoweredFunc run(const std::string& name) {
    const te::ComputeDAG& dag = st_.dag();
    ir::LoweredFunc f;
    f.name = name;
    for (int i : dag.inputs()) {
      const auto& op = dag.ops[i];
      auto buf = ir::make_buffer(op.name, op.dtype, op.shape);
      bindings_[op.name] = {buf, {}, op.shape, {}};
      f.args.push_back(buf);
    }
    expand_inlined_bodies();
    attached_.assign(st_.num_stages(), {});
    for (int s = 0; s < st_.num_stages(); ++s) {
      const Stage& stage = st_.stage(s);
      if (stage.location != ComputeLocation::At) continue;
      KT_CANDIDATE_CHECK(stage.attach_stage >= 0 && stage.attach_stage < st_.num_stages(), "stage ",
                         stage.op.name, " is attached to a stage that does not exist");
      KT_CANDIDATE_CHECK(st_.stage(stage.attach_stage).location != ComputeLocation::Inlined, "stage ",
                         stage.op.name, " is computed at ", st_.stage(stage.attach_stage).op.name,
                         ", which is inlined");
      attached_[stage.attach_stage].push_back(s);
    }
    std::vector<ir::Buffer> outputs_in_order(dag.outputs().size());
    std::vector<Stmt> nests;
    std::vector<ir::Buffer> root_temps;
    for (int s = 0; s < st_.num_stages(); ++s) {
      const Stage& stage = st_.stage(s);
      if (stage.location != ComputeLocation::Root) continue;
      const te::Operation& op = ops_[s];
      bindings_[op.name] = make_binding(op.name, op.dtype, op.shape, {}, stage.storage_align, ir::MemoryScope::Global);
      const ir::Buffer buf = bindings_[op.name].buffer;
      if (op.is_output) {
        auto outs = dag.outputs();
        for (size_t k = 0; k < outs.size(); ++k)
          if (dag.ops[outs[k]].name == op.name) outputs_in_order[k] = buf;
      } else {
        root_temps.push_back(buf);
      }
      std::vector<int64_t> ext;
      for (const auto& a : op.axes) ext.push_back(a.extent);
      for (const auto& a : op.reduce_axes) ext.push_back(a.extent);
      nests.push_back(lower_stage(s, ext, {}, false));
    }
    for (size_t k = 0; k < outputs_in_order.size(); ++k)
      KT_CANDIDATE_CHECK(outputs_in_order[k] != nullptr, "an output is not computed at root");
    for (auto& b : outputs_in_order) f.args.push_back(b);
    Stmt body = ir::Block::make(nests);
    for (auto it = root_temps.rbegin(); it != root_temps.rend(); ++it) body = ir::Allocate::make(*it, body);
    f.body = ir::simplify(body);
    debug(3) << "lowered " << name << ":\n" << ir::to_string(f.body) << "\n";
    return f;
  }

 private:
  // Stage ops with reads of inlined stages replaced by their definitions.
  void expand_inlined_bodies() {
    InlineReads inliner;
    for (int s = 0; s < st_.num_stages(); ++s) {
      te::Operation op = st_.stage(s).op;
      if (op.body.defined()) op.body = inliner.mutate(op.body);
      if (st_.stage(s).location == ComputeLocation::Inlined) {
        InlineReads::Def def;
        for (const auto& a : op.axes) def.axes.push_back(a.var);
        def.body = op.body;
        inliner.defs[op.name] = def;
      }
      ops_.push_back(std::move(op));
    }
  }

  // Interval of an index expression when the variables in `inner` range over their loops.
  std::optional<Interval> interval(const Expr& e, const ir::BoundsMap& inner) {
    if (e.as<ir::IntImm>()) return Interval{e, e};
    if (const auto* v = e.as<ir::Var>()) {
      auto it = inner.find(v);
      if (it == inner.end()) return Interval{e, e};
      return Interval{Expr(it->second.min), Expr(it->second.max)};
    }
    auto bin = [&](const Expr& a, const Expr& b) -> std::optional<std::pair<Interval, Interval>> {
      auto x = interval(a, inner), y = interval(b, inner);
      if (!x || !y) return std::nullopt;
      return std::make_pair(*x, *y);
    };
    if (const auto* op = e.as<ir::Add>()) {
      auto r = bin(op->a, op->b);
      if (!r) return std::nullopt;
      return Interval{r->first.lo + r->second.lo, r->first.hi + r->second.hi};
    }
    if (const auto* op = e.as<ir::Sub>()) {
      auto r = bin(op->a, op->b);
      if (!r) return std::nullopt;
      return Interval{r->first.lo - r->second.hi, r->first.hi - r->second.lo};
    }
    if (const auto* op = e.as<ir::Mul>()) {
      int64_t c;
      Expr other;
      if (ir::is_const_int(op->b, &c)) other = op->a;
      else if (ir::is_const_int(op->a, &c)) other = op->b;
      else return std::nullopt;
      auto x = interval(other, inner);
      if (!x) return std::nullopt;
      return c >= 0 ? Interval{x->lo * Expr(c), x->hi * Expr(c)} : Interval{x->hi * Expr(c), x->lo * Expr(c)};
    }
    if (const auto* op = e.as<ir::Div>()) {
      int64_t c;
      if (!ir::is_const_int(op->b, &c) || c <= 0) return std::nullopt;
      auto x = interval(op->a, inner);
      if (!x) return std::nullopt;
      return Interval{x->lo / Expr(c), x->hi / Expr(c)};
    }
    if (const auto* op = e.as<ir::Mod>()) {
      int64_t c;
      if (!ir::is_const_int(op->b, &c) || c <= 0) return std::nullopt;
      auto x = interval(op->a, inner);
      if (!x) return std::nullopt;
      if (ir::can_prove(ir::simplify(x->lo == x->hi, bounds_))) return Interval{x->lo % Expr(c), x->lo % Expr(c)};
      return Interval{Expr(0), Expr(c - 1)};
    }
    if (const auto* op = e.as<ir::Min>()) {
      auto r = bin(op->a, op->b);
      if (!r) return std::nullopt;
      return Interval{ir::min(r->first.lo, r->second.lo), ir::min(r->first.hi, r->second.hi)};
    }
    if (const auto* op = e.as<ir::Max>()) {
      auto r = bin(op->a, op->b);
      if (!r) return std::nullopt;
      return Interval{ir::max(r->first.lo, r->second.lo), ir::max(r->first.hi, r->second.hi)};
    }
    return std::nullopt;
  }

  struct Region {
    std::vector<Expr> lo;
    std::vector<int64_t> extent;
    bool may_exceed = false;  // the region can reach outside the tensor: guard the producer
  };

  // An expression that reads tensors, with the variables that range over their loops where
  // it is evaluated (the others are fixed).
  struct Reader {
    Expr body;
    ir::BoundsMap inner;
  };

  // Region of tensor `producer` read by `readers`: the union over their reads when the
  // variables in each reader's `inner` run over their ranges.
  Region infer_region(const te::Operation& producer, const std::vector<Reader>& readers) {
    const size_t ndim = producer.shape.size();
    std::vector<std::optional<Interval>> acc(ndim);
    std::vector<bool> unknown(ndim, false);
    for (const Reader& rd : readers) {
      ir::post_order_visit(rd.body, [&](const Expr& e) {
        const auto* t = e.as<ir::TensorRead>();
        if (!t || t->tensor != producer.name) return;
        for (size_t d = 0; d < ndim; ++d) {
          auto iv = interval(t->indices[d], rd.inner);
          if (!iv) {
            unknown[d] = true;
            continue;
          }
          if (!acc[d]) acc[d] = iv;
          else acc[d] = Interval{ir::min(acc[d]->lo, iv->lo), ir::max(acc[d]->hi, iv->hi)};
        }
      });
    }
    Region r;
    for (size_t d = 0; d < ndim; ++d) {
      const int64_t full = producer.shape[d];
      Expr lo = Expr(0);
      int64_t ext = full;
      if (acc[d] && !unknown[d]) {
        Expr l = ir::simplify(acc[d]->lo, bounds_);
        auto span = ir::const_bounds(ir::simplify(acc[d]->hi - l, bounds_), bounds_);
        auto lb = ir::const_bounds(l, bounds_);
        if (span && lb && span->max + 1 < full) {
          lo = l;
          ext = std::max<int64_t>(1, span->max + 1);
          if (lb->min < 0 || lb->max + ext > full) r.may_exceed = true;
        }
      }
      r.lo.push_back(lo);
      r.extent.push_back(ext);
    }
    return r;
  }

  // The stage attached to `s` that `x` is computed in (x itself when attached to s), or -1.
  int scope_in(int s, int x) const {
    for (int guard = 0; x >= 0 && guard <= st_.num_stages(); ++guard) {
      const Stage& xs = st_.stage(x);
      if (xs.location != ComputeLocation::At) return -1;
      if (xs.attach_stage == s) return x;
      x = xs.attach_stage;
    }
    return -1;
  }

  // Region of stage p, computed at loop `attach_pos[p]` of stage s (whose body in its leaf
  // variables is `body`): what s's inner loops read, plus what the other stages computed
  // inside that loop read (`regions` holds those attached to s directly; stages nested
  // deeper count with their whole domain).
  Region attached_region(int s, int p, const Expr& body, const std::vector<Expr>& leaf_vars,
                         const std::vector<int64_t>& leaf_ext, const std::map<int, int>& attach_pos,
                         const std::map<int, Region>& regions) {
    const int pos = attach_pos.at(p);
    const te::Operation& pop = ops_[p];
    ir::BoundsMap inner;
    for (size_t k = pos + 1; k < leaf_vars.size(); ++k) inner[leaf_vars[k].get()] = {0, leaf_ext[k] - 1};
    std::vector<Reader> readers = {{body, inner}};
    for (int x = 0; x < st_.num_stages(); ++x) {
      if (x == p || !reads_of(ops_[x], pop.name)) continue;
      const int top = scope_in(s, x);
      if (top < 0) continue;  // outside this loop nest: fails later, when its reads find no binding
      const int xpos = attach_pos.at(top);
      KT_CANDIDATE_CHECK(xpos > pos || (xpos == pos && top > p), "stage ", ops_[x].name, " reads ", pop.name,
                         " but is computed before it, outside the loop of ", st_.stage(s).op.name,
                         " where ", pop.name, " is computed");
      // x's axes over its region (directly attached) or its whole domain (nested deeper).
      const te::Operation& xop = ops_[x];
      Reader rd{Expr(), inner};
      ir::VarMap m;
      auto it = regions.find(x);
      const bool direct = top == x && it != regions.end();
      for (size_t d = 0; d < xop.axes.size(); ++d) {
        Expr v = ir::Var::make(xop.name + ".region" + std::to_string(d));
        const int64_t ext = direct ? it->second.extent[d] : xop.axes[d].extent;
        rd.inner[v.get()] = {0, ext - 1};
        m[xop.axes[d].var.get()] = direct ? it->second.lo[d] + v : v;
      }
      for (const auto& a : xop.reduce_axes) {
        Expr v = ir::Var::make(xop.name + ".region_r");
        rd.inner[v.get()] = {0, a.extent - 1};
        m[a.var.get()] = v;
      }
      rd.body = ir::substitute(xop.body, m);
      readers.push_back(std::move(rd));
    }
    return infer_region(pop, readers);
  }

  static bool reads_of(const te::Operation& op, const std::string& tensor) {
    bool found = false;
    if (op.body.defined())
      ir::post_order_visit(op.body, [&](const Expr& e) {
        if (const auto* t = e.as<ir::TensorRead>()) found = found || t->tensor == tensor;
      });
    return found;
  }

  // Lowers stage s whose root iterators have extents `root_ext` (spatial then reduce) and
  // whose spatial region starts at `root_min` (empty = at 0). `guard_bounds`: also guard the
  // absolute indices against the tensor's shape.
  Stmt lower_stage(int s, const std::vector<int64_t>& root_ext, const std::vector<Expr>& root_min, bool guard_bounds) {
    const Stage& stage = st_.stage(s);
    const te::Operation& op = ops_[s];
    const size_t nsp = op.axes.size();
    const std::vector<int64_t> ext = infer_iter_extents(stage, root_ext);
    const int n = int(stage.leaf.size());

    std::vector<Expr> value(stage.iters.size());
    std::vector<Expr> leaf_vars(n);
    std::vector<int64_t> leaf_ext(n);
    for (int p = 0; p < n; ++p) {
      const int id = stage.leaf[p];
      leaf_vars[p] = ir::Var::make(op.name + "." + stage.iters[id].name);
      leaf_ext[p] = ext[id];
      value[id] = leaf_vars[p];
      bounds_[leaf_vars[p].get()] = {0, ext[id] - 1};
    }
    std::vector<Expr> guards;
    for (auto r = stage.relations.rbegin(); r != stage.relations.rend(); ++r) {
      if (const auto* sp = std::get_if<SplitRelation>(&*r)) {
        Expr v = value[sp->children[0]];
        int64_t last = ext[sp->children[0]] - 1;  // the largest value the loops reach
        for (size_t k = 0; k < sp->lengths.size(); ++k) {
          v = v * Expr(sp->lengths[k]) + value[sp->children[k + 1]];
          last = last * sp->lengths[k] + ext[sp->children[k + 1]] - 1;
        }
        KT_CHECK(v.defined(), "split child without a value");
        value[sp->parent] = v;
        if (last + 1 != ext[sp->parent]) guards.push_back(v < Expr(ext[sp->parent]));
      } else {
        const auto& fu = std::get<FuseRelation>(*r);
        const Expr f = value[fu.child];
        int64_t stride = 1;
        for (size_t k = fu.parents.size(); k-- > 0;) {
          Expr pk = stride == 1 ? f : f / Expr(stride);
          if (k > 0) pk = pk % Expr(ext[fu.parents[k]]);
          value[fu.parents[k]] = pk;
          stride *= ext[fu.parents[k]];
        }
      }
    }
    for (int id = 0; id < stage.num_root_iters(); ++id)
      KT_CANDIDATE_CHECK(value[id].defined(), "stage ", op.name, ": loop ", stage.iters[id].name,
                         " is no longer reachable from the loop nest");

    // Absolute index of each spatial axis; reduce axis values.
    ir::VarMap axis_map;
    std::vector<Expr> abs_idx, rel_idx;
    for (size_t d = 0; d < nsp; ++d) {
      Expr a = root_min.empty() ? value[d] : root_min[d] + value[d];
      rel_idx.push_back(value[d]);
      abs_idx.push_back(a);
      axis_map[op.axes[d].var.get()] = a;
      if (guard_bounds) {
        guards.push_back(a < Expr(op.shape[d]));
        guards.push_back(a >= Expr(0));
      }
    }
    for (size_t j = 0; j < op.reduce_axes.size(); ++j) axis_map[op.reduce_axes[j].var.get()] = value[nsp + j];
    const Expr body_sub = ir::substitute(op.body, axis_map);

    // Attached stages: their regions, buffers and bindings (needed before translating reads).
    // A region covers the reads of the consumer's inner loops and of every stage computed in
    // the same scope that reads it, so regions are inferred readers first (reverse
    // topological order), then the nests are built in order.
    std::map<int, std::vector<std::pair<int, Stmt>>> at_pos;  // leaf pos -> (stage, nest)
    std::vector<std::pair<int, ir::Buffer>> local_bufs;       // leaf pos -> buffer
    std::map<int, int> attach_pos;                            // attached stage -> leaf pos
    for (int p_stage : attached_[s]) {
      const Stage& ps = st_.stage(p_stage);
      const int pos = stage.leaf_position(ps.attach_iter);
      KT_CANDIDATE_CHECK(pos >= 0, "stage ", ps.op.name, " is computed at a loop of ", op.name,
                         " that was split or fused afterwards");
      attach_pos[p_stage] = pos;
    }
    std::map<int, Region> regions;
    for (auto it = attached_[s].rbegin(); it != attached_[s].rend(); ++it)
      regions[*it] = attached_region(s, *it, body_sub, leaf_vars, leaf_ext, attach_pos, regions);
    for (int p_stage : attached_[s]) {
      const Stage& ps = st_.stage(p_stage);
      const int pos = attach_pos.at(p_stage);
      const te::Operation& pop = ops_[p_stage];
      const Region& reg = regions.at(p_stage);
      bindings_[pop.name] = make_binding(pop.name, pop.dtype, reg.extent, reg.lo, ps.storage_align, ir::MemoryScope::Local);
      const ir::Buffer buf = bindings_[pop.name].buffer;
      std::vector<int64_t> pext = reg.extent;
      for (const auto& a : pop.reduce_axes) pext.push_back(a.extent);
      Stmt nest = lower_stage(p_stage, pext, reg.lo, reg.may_exceed);
      at_pos[pos].push_back({p_stage, nest});
      local_bufs.push_back({pos, buf});
    }

    // The stage's own buffer and the update / init statements.
    const TensorBinding& self = bindings_.at(op.name);
    const Expr store_idx = flat_index(self, abs_idx);
    Expr value_expr = ReadsToLoads(bindings_, op.name).mutate(body_sub);
    if (value_expr.type() != op.dtype) value_expr = ir::cast(op.dtype, value_expr);
    Stmt update, init;
    switch (op.reduce) {
      case te::ReduceKind::None: update = ir::Store::make(self.buffer, value_expr, store_idx); break;
      case te::ReduceKind::Sum:
      case te::ReduceKind::Max:
      case te::ReduceKind::Min: {
        Expr old = ir::Load::make(self.buffer, store_idx);
        Expr comb = op.reduce == te::ReduceKind::Sum   ? old + value_expr
                    : op.reduce == te::ReduceKind::Max ? ir::max(old, value_expr)
                                                       : ir::min(old, value_expr);
        update = ir::Store::make(self.buffer, comb, store_idx);
        Expr id = op.reduce == te::ReduceKind::Sum   ? ir::make_zero(op.dtype)
                  : op.reduce == te::ReduceKind::Max ? ir::type_min(op.dtype)
                                                     : ir::type_max(op.dtype);
        init = ir::Store::make(self.buffer, id, store_idx);
        break;
      }
    }
    std::vector<Expr> reduce_vars;
    for (int p = 0; p < n; ++p)
      if (stage.leaf_iter(p).kind == IterKind::Reduce) reduce_vars.push_back(leaf_vars[p]);
    Expr all_guard, spatial_guard;
    for (const Expr& g : guards) {
      all_guard = all_guard.defined() ? (all_guard && g) : g;
      bool uses_reduce = false;
      for (const Expr& rv : reduce_vars) uses_reduce = uses_reduce || ir::uses_var(g, rv);
      if (!uses_reduce) spatial_guard = spatial_guard.defined() ? (spatial_guard && g) : g;
    }
    if (all_guard.defined()) update = ir::IfThenElse::make(all_guard, update);
    if (init.defined() && spatial_guard.defined()) init = ir::IfThenElse::make(spatial_guard, init);

    // Loop kinds, with the auto-unroll pragma applied from the innermost loop outwards.
    std::vector<ir::ForKind> kinds(n);
    for (int p = 0; p < n; ++p) kinds[p] = for_kind(stage.leaf_iter(p).annotation);
    // As TVM's auto_unroll_max_step, a loop is unrolled while the steps its body runs (the
    // update, and the nests of stages computed inside it) times its extent fit. A vectorized
    // loop counts once: it becomes one vector statement (TVM vectorizes before it unrolls).
    if (stage.auto_unroll_max_step > 0) {
      int64_t steps = 1;
      for (int p = n - 1; p >= 0; --p) {
        if (kinds[p] != ir::ForKind::Serial && kinds[p] != ir::ForKind::Vectorized && kinds[p] != ir::ForKind::Unrolled) break;
        auto at = at_pos.find(p);
        if (at != at_pos.end())
          for (auto& [ps, st] : at->second) steps = saturating_add(steps, dynamic_steps(st));
        if (kinds[p] != ir::ForKind::Vectorized) steps = saturating_mul(steps, leaf_ext[p]);
        if (steps > stage.auto_unroll_max_step) break;
        if (kinds[p] == ir::ForKind::Serial) kinds[p] = ir::ForKind::Unrolled;
      }
    }

    int first_reduce = n;
    for (int p = 0; p < n; ++p)
      if (stage.leaf_iter(p).kind == IterKind::Reduce) {
        first_reduce = p;
        break;
      }

    // A register tile: the innermost run of unrolled spatial loops (around at most one
    // vectorized loop) is emitted longest loop outermost. Its iterations are independent
    // (each updates its own element), so any order computes the same; with the short loop
    // innermost, the operands only that loop indexes are reused by the next copies of the body
    // and few of them are live at once. (A 2 x 14 tile of accumulators whose 14 input
    // broadcasts were reused across the 2 outer copies kept 28 + 14 vectors live and spilled,
    // at a third of the speed.)
    std::vector<int> order(n);
    for (int p = 0; p < n; ++p) order[p] = p;
    const int tile_end = n > 0 && kinds[n - 1] == ir::ForKind::Vectorized ? n - 1 : n;
    int tile_begin = tile_end;
    while (tile_begin > 0 && kinds[tile_begin - 1] == ir::ForKind::Unrolled &&
           stage.leaf_iter(tile_begin - 1).kind == IterKind::Spatial)
      --tile_begin;
    bool attached_in_tile = false;
    for (int p = tile_begin; p < n; ++p) attached_in_tile = attached_in_tile || at_pos.count(p) > 0;
    if (!attached_in_tile)
      std::stable_sort(order.begin() + tile_begin, order.begin() + tile_end,
                       [&](int a, int b) { return leaf_ext[a] > leaf_ext[b]; });

    // Init nest: the spatial loops inside the first reduction loop, with fresh variables.
    auto build_init = [&]() -> Stmt {
      ir::VarMap fresh;
      std::vector<std::tuple<Expr, int64_t, ir::ForKind>> loops;
      for (int p = first_reduce + 1; p < n; ++p) {
        if (stage.leaf_iter(p).kind != IterKind::Spatial) continue;
        Expr v = ir::Var::make(op.name + "." + stage.leaf_iter(p).name + ".init");
        fresh[leaf_vars[p].get()] = v;
        loops.emplace_back(v, leaf_ext[p], kinds[p]);
      }
      Stmt body = ir::substitute(init, fresh);
      for (auto it = loops.rbegin(); it != loops.rend(); ++it)
        body = ir::For::make(std::get<0>(*it), Expr(0), Expr(std::get<1>(*it)), std::get<2>(*it), body);
      return body;
    };

    Stmt nest = update;
    for (int k = n - 1; k >= 0; --k) {
      const int p = order[k];
      auto at = at_pos.find(p);
      if (at != at_pos.end()) {
        std::vector<Stmt> seq;
        for (auto& [ps, st] : at->second) seq.push_back(st);
        seq.push_back(nest);
        nest = ir::Block::make(seq);
        for (auto& [lp, buf] : local_bufs)
          if (lp == p) nest = ir::Allocate::make(buf, nest);
      }
      nest = ir::For::make(leaf_vars[p], Expr(0), Expr(leaf_ext[p]), kinds[p], nest);
      if (p == first_reduce && init.defined()) nest = ir::Block::make({build_init(), nest});
    }
    if (n == 0 || (first_reduce == n && init.defined())) {
      // Only possible when a reduction has no reduce loops left (fully fused away cannot
      // happen) or a scalar stage: initialize before the nest.
      if (init.defined()) nest = ir::Block::make({init, nest});
    }
    for (auto& [lp, buf] : local_bufs) bindings_.erase(buf->name);
    return nest;
  }

  const State& st_;
  std::vector<te::Operation> ops_;
  std::map<std::string, TensorBinding> bindings_;
  std::vector<std::vector<int>> attached_;
  ir::BoundsMap bounds_;
};

}  // namespace

ir::LoweredFunc lower(const State& state, const std::string& name) {
  return Lowerer(state).run(name);
}

}  // namespace ktune::schedule
