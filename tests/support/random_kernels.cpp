// Random kernels, random schedules and the differential check (see random_kernels.h).
#include "support/random_kernels.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <sstream>

#include "ktune/ir/interpreter.h"
#include "ktune/ir/ir_ops.h"
#include "ktune/ir/printer.h"
#include "ktune/ir/visitor.h"
#include "ktune/schedule/lower.h"
#include "ktune/schedule/steps.h"
#include "ktune/support/error.h"
#include "ktune/support/util.h"
#include "support/te_eval.h"

namespace ktune::testing {

using ir::Expr;
using ir::Type;

namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  int64_t range(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g_); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(g_) < p; }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[size_t(range(0, int64_t(v.size()) - 1))];
  }
  template <typename T>
  void shuffle(std::vector<T>& v) {
    std::shuffle(v.begin(), v.end(), g_);
  }

 private:
  std::mt19937_64 g_;
};

// ---------------------------------------------------------------------------------------
// Kernels

// A value of the kernel being built: its expression, a bound on its magnitude, and whether
// every legal evaluation (any association, FMA contraction) computes it bit-identically.
// Only exact values feed float-to-int casts and select conditions, whose results jump.
struct Val {
  Expr e;
  double bound;
  bool exact;
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  Type dtype;
  double bound;
  bool exact;
  int reads = 0;  // by later stages
};

struct AxisVar {
  Expr var;
  int64_t extent;
};

constexpr double kFloatBound = 1e4;
constexpr double kIntBound = double(1 << 22);
constexpr int64_t kMaxElements = 2048;  // per tensor
constexpr int64_t kMaxWork = 60000;     // elements x reduction extent, per stage

int64_t product(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t x : v) p *= x;
  return p;
}

class KernelGen {
 public:
  explicit KernelGen(uint64_t seed) : r_(seed * 0x9E3779B97F4A7C15ull + 11) {}

  std::shared_ptr<const te::ComputeDAG> run(uint64_t seed) {
    const int want_stages = int(r_.range(1, 4));
    // One or two inputs to start from; more (weights) are created on demand.
    const int rank = int(r_.range(1, 3));
    add_input(pick_shape(rank, kMaxElements), r_.chance(0.15) ? Type::i32() : Type::f32());
    if (r_.chance(0.35)) add_input(pick_shape(int(r_.range(1, 3)), kMaxElements), Type::f32());
    while (int(stages_.size()) < want_stages) add_stage(want_stages - int(stages_.size()));
    auto dag = std::make_shared<te::ComputeDAG>();
    dag->kernel = "rand_" + std::to_string(seed);
    for (auto& op : inputs_) dag->ops.push_back(op);
    for (size_t s = 0; s < stages_.size(); ++s) {
      te::Operation op = stages_[s];
      const TensorInfo& t = tensors_[find(op.name)];
      op.is_output = s + 1 == stages_.size() || t.reads == 0 || r_.chance(0.08);
      dag->ops.push_back(op);
    }
    return dag;
  }

 private:
  int find(const std::string& name) const {
    for (size_t i = 0; i < tensors_.size(); ++i)
      if (tensors_[i].name == name) return int(i);
    return -1;
  }

  int64_t pick_dim(int64_t budget) {
    static const std::vector<int64_t> dims = {1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 24, 32, 127};
    for (int tries = 0; tries < 100; ++tries) {
      const int64_t d = r_.pick(dims);
      if (d <= budget) return d;
    }
    return 1;
  }

  std::vector<int64_t> pick_shape(int rank, int64_t max_elements) {
    for (;;) {
      std::vector<int64_t> s;
      for (int d = 0; d < rank; ++d) s.push_back(pick_dim(max_elements));
      if (product(s) <= max_elements) return s;
    }
  }

  int add_input(std::vector<int64_t> shape, Type t) {
    te::Operation op;
    op.kind = te::Operation::Kind::Placeholder;
    op.name = "in" + std::to_string(inputs_.size());
    op.dtype = t;
    op.shape = shape;
    inputs_.push_back(op);
    tensors_.push_back({op.name, shape, t, t.is_int() ? 8.0 : 1.0, true});
    return int(tensors_.size()) - 1;
  }

  std::vector<AxisVar> make_axes(const std::string& prefix, const std::vector<int64_t>& ext) {
    std::vector<AxisVar> v;
    for (size_t d = 0; d < ext.size(); ++d) v.push_back({ir::Var::make(prefix + std::to_string(d)), ext[d]});
    return v;
  }

  Val read(int t, std::vector<Expr> idx) {
    TensorInfo& ti = tensors_[t];
    ++ti.reads;
    return {ir::TensorRead::make(ti.dtype, ti.name, std::move(idx)), ti.bound, ti.exact};
  }

  // In-bounds indices into tensor t from the variables in scope: v + offset for a variable
  // no longer than the dimension, v % S or v / q for a longer one, or a constant.
  std::vector<Expr> map_indices(int t, const std::vector<AxisVar>& vars) {
    std::vector<Expr> idx;
    const auto shape = tensors_[t].shape;
    std::vector<int> order(vars.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
    r_.shuffle(order);
    size_t next = 0;
    for (int64_t S : shape) {
      if (next < order.size() && !r_.chance(0.1)) {
        const AxisVar& v = vars[order[next++]];
        if (v.extent <= S) {
          const int64_t off = r_.range(0, S - v.extent);
          idx.push_back(off ? v.var + Expr(off) : v.var);
        } else if (r_.chance(0.5)) {
          idx.push_back(v.var % Expr(S));
        } else {
          idx.push_back(v.var / Expr(ceil_div(v.extent, S)));
        }
      } else {
        idx.push_back(Expr(r_.range(0, S - 1)));
      }
    }
    return idx;
  }

  // A condition every evaluation decides alike: on loop variables, or on exact values.
  Expr random_condition(const std::vector<AxisVar>& vars, const Val* exact) {
    if (exact && exact->exact && r_.chance(0.4)) {
      const Type t = exact->e.type();
      return r_.chance(0.5) ? exact->e > ir::make_zero(t) : exact->e <= ir::make_const(t, t.is_int() ? 2 : 0.25);
    }
    std::vector<AxisVar> long_vars;
    for (const auto& v : vars)
      if (v.extent >= 2) long_vars.push_back(v);
    if (long_vars.empty()) return Expr(int64_t(0)) == Expr(int64_t(0));
    const AxisVar& a = r_.pick(long_vars);
    switch (r_.range(0, 3)) {
      case 0: return a.var < Expr(r_.range(1, a.extent - 1));
      case 1: return a.var % Expr(int64_t(2)) == Expr(int64_t(0));
      case 2: {
        const AxisVar& b = r_.pick(long_vars);
        return (a.var + b.var) % Expr(int64_t(3)) == Expr(int64_t(1));
      }
      default: return a.var >= Expr(r_.range(1, a.extent - 1)) && a.var < Expr(a.extent);
    }
  }

  static Val to_float(const Val& v) {
    if (v.e.type().is_float() && v.e.type().bits == 32) return v;
    return {ir::cast(Type::f32(), v.e), v.bound, v.exact && v.e.type().is_int()};
  }

  // Another value to combine with: a read of some tensor (in bounds), or a constant.
  Val other_value(const std::vector<AxisVar>& vars, Type t) {
    if (r_.chance(0.75) && !tensors_.empty()) {
      const int k = int(r_.range(0, int64_t(tensors_.size()) - 1));
      Val v = read(k, map_indices(k, vars));
      if (t.is_float()) return to_float(v);
      if (v.e.type().is_int()) return v;
      return {ir::cast(t, v.e * ir::make_const(v.e.type(), 4)), v.bound * 4, v.exact};
    }
    if (t.is_int()) {
      const int64_t c = r_.range(-5, 5);
      return {ir::make_const(t, double(c)), double(std::abs(c)), true};
    }
    static const std::vector<double> cs = {0.5, -0.25, 2.0, -1.5, 0.125, 3.0};
    const double c = r_.pick(cs);
    return {ir::make_const(t, c), std::abs(c), true};
  }

  Val grow_float(Val v, const std::vector<AxisVar>& vars) {
    switch (r_.range(0, 15)) {
      case 0: return {-v.e, v.bound, v.exact};
      case 1: return {ir::Call::make(ir::Intrinsic::Abs, {v.e}), v.bound, v.exact};
      case 2: return {ir::Call::make(ir::Intrinsic::Exp, {-ir::Call::make(ir::Intrinsic::Abs, {v.e})}), 1, false};
      case 3: {
        Expr a = ir::Call::make(ir::Intrinsic::Abs, {v.e});
        if (!v.exact) a = a + ir::make_const(Type::f32(), 1);
        return {ir::Call::make(ir::Intrinsic::Sqrt, {a}), std::sqrt(v.bound) + 1, false};
      }
      case 4: return {ir::Call::make(ir::Intrinsic::Tanh, {v.e}), 1, false};
      case 5: return {ir::Call::make(ir::Intrinsic::Sigmoid, {v.e}), 1, false};
      case 6: {
        static const std::vector<double> pow2 = {0.5, 2.0, -0.25, 4.0};
        return {v.e * ir::make_const(Type::f32(), r_.pick(pow2)), v.bound * 4, v.exact};
      }
      case 7: {
        const double c = r_.chance(0.5) ? 0.25 : -0.5;
        return {r_.chance(0.5) ? ir::min(v.e, ir::make_const(Type::f32(), c)) : ir::max(v.e, ir::make_const(Type::f32(), c)),
                v.bound + 1, v.exact};
      }
      case 8: {
        Val w = other_value(vars, Type::f32());
        return {v.e / (ir::Call::make(ir::Intrinsic::Abs, {w.e}) + ir::make_const(Type::f32(), 1)), v.bound, false};
      }
      case 9:
        if (v.exact && v.bound * 4 < (1 << 20)) {
          // Round trip through i32: integer-valued floats, exactly.
          Expr i = ir::cast(Type::i32(), v.e * ir::make_const(Type::f32(), 4));
          return {ir::cast(Type::f32(), i), v.bound * 4, true};
        }
        return v;
      case 10: {
        Val w = other_value(vars, Type::f32());
        if (v.bound * w.bound > kFloatBound) return v;
        Expr p = ir::cast(Type::f64(), v.e) * ir::cast(Type::f64(), w.e) + ir::make_const(Type::f64(), 0.5);
        return {ir::cast(Type::f32(), p), v.bound * w.bound + 0.5, false};
      }
      case 11: {
        Val w = other_value(vars, Type::f32());
        if (v.bound * w.bound > kFloatBound) return v;
        return {v.e * w.e, v.bound * w.bound, false};
      }
      case 12: {
        Val w = other_value(vars, Type::f32());
        return {r_.chance(0.5) ? v.e + w.e : v.e - w.e, v.bound + w.bound, false};
      }
      case 13: {
        Val w = other_value(vars, Type::f32());
        return {r_.chance(0.5) ? ir::min(v.e, w.e) : ir::max(v.e, w.e), std::max(v.bound, w.bound),
                v.exact && w.exact};
      }
      default: {
        Val w = other_value(vars, Type::f32());
        Expr c = random_condition(vars, r_.chance(0.5) ? &v : &w);
        return {ir::select(c, v.e, w.e), std::max(v.bound, w.bound), v.exact && w.exact};
      }
    }
  }

  Val grow_int(Val v, const std::vector<AxisVar>& vars) {
    const Type t = v.e.type();
    switch (r_.range(0, 10)) {
      case 0: return {-v.e, v.bound, true};
      case 1: return {ir::Call::make(ir::Intrinsic::Abs, {v.e}), v.bound, true};
      case 2: {
        const int64_t c = r_.pick(std::vector<int64_t>{2, 3, -1, 5});
        if (v.bound * 5 > kIntBound) return v;
        return {v.e * ir::make_const(t, double(c)), v.bound * 5, true};
      }
      case 3:
      case 4: {
        const int64_t c = r_.pick(std::vector<int64_t>{2, 3, 4, 7, -3, -2});
        if (r_.chance(0.5)) return {v.e / ir::make_const(t, double(c)), v.bound, true};
        return {v.e % ir::make_const(t, double(c)), 7, true};
      }
      case 5: {
        Val w = other_value(vars, t);
        if (v.bound * w.bound > kIntBound) return v;
        return {v.e * w.e, v.bound * w.bound, true};
      }
      case 6: {
        Val w = other_value(vars, t);
        return {r_.chance(0.5) ? v.e + w.e : v.e - w.e, v.bound + w.bound, true};
      }
      case 7: {
        Val w = other_value(vars, t);
        return {r_.chance(0.5) ? ir::min(v.e, w.e) : ir::max(v.e, w.e), std::max(v.bound, w.bound), true};
      }
      case 8: {
        Val w = other_value(vars, t);
        Expr c = random_condition(vars, &v);
        return {ir::select(c, v.e, w.e), std::max(v.bound, w.bound), true};
      }
      case 9: return to_float(v);
      default: {
        const int64_t c = r_.range(-3, 3);
        return {r_.chance(0.5) ? ir::min(v.e, ir::make_const(t, double(c))) : ir::max(v.e, ir::make_const(t, double(c))),
                std::max(v.bound, 3.0), true};
      }
    }
  }

  Val grow(Val v, const std::vector<AxisVar>& vars, int ops) {
    for (int k = 0; k < ops; ++k) v = v.e.type().is_int() ? grow_int(v, vars) : grow_float(v, vars);
    return v;
  }

  void finish_stage(const std::string& name, const std::vector<AxisVar>& sp, const std::vector<AxisVar>& rd,
                    te::ReduceKind rk, Val body) {
    te::Operation op;
    op.name = name;
    op.dtype = body.e.type();
    for (const auto& a : sp) {
      op.axes.push_back({a.var, a.extent});
      op.shape.push_back(a.extent);
    }
    double bound = body.bound;
    bool exact = body.exact;
    if (!rd.empty()) {
      op.reduce = rk;
      int64_t n = 1;
      for (const auto& a : rd) {
        op.reduce_axes.push_back({a.var, a.extent});
        n *= a.extent;
      }
      if (rk == te::ReduceKind::Sum) {
        bound *= double(n);
        exact = exact && op.dtype.is_int();
      }
    }
    op.body = body.e;
    stages_.push_back(op);
    tensors_.push_back({name, op.shape, op.dtype, bound, exact});
  }

  te::ReduceKind pick_reduce(const Val& term, int64_t n) {
    const double limit = term.e.type().is_int() ? kIntBound : kFloatBound;
    if (term.bound * double(n) <= limit && r_.chance(0.55)) return te::ReduceKind::Sum;
    return r_.chance(0.5) ? te::ReduceKind::Max : te::ReduceKind::Min;
  }

  // out = f(src transformed per dimension): same, padded (guarded select), sliced, strided,
  // reversed, wrapped (modulo), stretched (division); maybe transposed and broadcast.
  bool elementwise(int src, const std::string& name, int force_pad_dim = -1) {
    const std::vector<int64_t> shape = tensors_[src].shape;
    const size_t rank = shape.size();
    std::vector<int64_t> out;
    std::vector<int> kind(rank);
    std::vector<int64_t> param(rank, 0);
    for (size_t d = 0; d < rank; ++d) {
      const int64_t S = shape[d];
      int k = 0;
      if (force_pad_dim >= 0) {
        k = int(d) == force_pad_dim ? 1 : 0;
      } else {
        const int64_t x = r_.range(0, 99);
        k = x < 55 ? 0 : x < 67 ? 1 : x < 75 ? 2 : x < 83 ? 3 : x < 90 ? 4 : x < 95 ? 5 : 6;
      }
      kind[d] = k;
      switch (k) {
        case 0: out.push_back(S); break;
        case 1: param[d] = r_.range(1, 2); out.push_back(S + 2 * param[d]); break;   // pad
        case 2: param[d] = r_.range(0, S - 1); out.push_back(S - param[d]); break;   // slice
        case 3: out.push_back(ceil_div(S, 2)); break;                                // stride 2
        case 4: out.push_back(S); break;                                             // reverse
        case 5: param[d] = r_.range(1, 5); out.push_back(S + param[d]); break;       // i % S
        default: out.push_back(S * 2); break;                                        // i / 2
      }
    }
    std::vector<int> perm(rank);
    for (size_t d = 0; d < rank; ++d) perm[d] = int(d);
    if (rank >= 2 && force_pad_dim < 0 && r_.chance(0.2)) r_.shuffle(perm);
    std::vector<int64_t> out_shape;
    for (int p : perm) out_shape.push_back(out[p]);
    // Maybe a broadcast axis (not in the source's indices) at position `skip`.
    size_t skip = out_shape.size() + 1;
    if (out_shape.size() < 3 && force_pad_dim < 0 && r_.chance(0.15)) {
      skip = size_t(r_.range(0, int64_t(out_shape.size())));
      out_shape.insert(out_shape.begin() + skip, pick_dim(16));
    }
    if (product(out_shape) > kMaxElements) return false;
    auto axes = make_axes(name + "_i", out_shape);
    std::vector<AxisVar> mapped;
    for (size_t q = 0; q < axes.size(); ++q)
      if (q != skip) mapped.push_back(axes[q]);
    std::vector<Expr> ov(rank);  // the out variable of source dimension d
    for (size_t k = 0; k < rank; ++k) ov[perm[k]] = mapped[k].var;
    std::vector<Expr> idx(rank);
    Expr guard;
    for (size_t d = 0; d < rank; ++d) {
      const int64_t S = shape[d];
      const Expr i = ov[d];
      switch (kind[d]) {
        case 0: idx[d] = i; break;
        case 1: {
          idx[d] = i - Expr(param[d]);
          Expr g = i >= Expr(param[d]) && i < Expr(S + param[d]);
          guard = guard.defined() ? (guard && g) : g;
          break;
        }
        case 2: idx[d] = param[d] ? i + Expr(r_.range(0, param[d])) : i; break;
        case 3: idx[d] = i * Expr(int64_t(2)); break;
        case 4: idx[d] = Expr(S - 1) - i; break;
        case 5: idx[d] = i % Expr(S); break;
        default: idx[d] = i / Expr(int64_t(2)); break;
      }
    }
    Val v = read(src, idx);
    if (guard.defined()) {
      const Type t = v.e.type();
      v = {ir::select(guard, v.e, ir::make_zero(t)), v.bound, v.exact};
    }
    v = grow(v, axes, int(r_.range(force_pad_dim >= 0 ? 0 : 1, 3)));
    finish_stage(name, axes, {}, te::ReduceKind::None, v);
    return true;
  }

  // Reduce some dimensions of src: sum / max / min of f(src[...]) (and other reads).
  bool reduction(int src, const std::string& name) {
    const std::vector<int64_t> shape = tensors_[src].shape;
    const size_t rank = shape.size();
    std::vector<bool> red(rank);
    bool any = false;
    for (size_t d = 0; d < rank; ++d) any |= (red[d] = r_.chance(0.5));
    if (!any) red[size_t(r_.range(0, int64_t(rank) - 1))] = true;
    std::vector<int64_t> sp_ext, rd_ext;
    for (size_t d = 0; d < rank; ++d) (red[d] ? rd_ext : sp_ext).push_back(shape[d]);
    if (sp_ext.empty()) sp_ext.push_back(r_.chance(0.7) ? 1 : pick_dim(8));
    if (product(sp_ext) * product(rd_ext) > kMaxWork) return false;
    auto sp = make_axes(name + "_i", sp_ext);
    auto rd = make_axes(name + "_r", rd_ext);
    std::vector<Expr> idx;
    size_t si = 0, ri = 0;
    for (size_t d = 0; d < rank; ++d) idx.push_back(red[d] ? rd[ri++].var : sp[si++].var);
    std::vector<AxisVar> all = sp;
    all.insert(all.end(), rd.begin(), rd.end());
    Val term = grow(read(src, idx), all, int(r_.range(0, 2)));
    finish_stage(name, sp, rd, pick_reduce(term, product(rd_ext)), term);
    return true;
  }

  // out[..., n] = sum_k src[..., k] * W[k, n] with a new weight input W.
  bool contraction(int src, const std::string& name) {
    const std::vector<int64_t> shape = tensors_[src].shape;
    const int64_t K = shape.back();
    const int64_t N = pick_dim(32);
    std::vector<int64_t> sp_ext(shape.begin(), shape.end() - 1);
    sp_ext.push_back(N);
    if (product(sp_ext) > kMaxElements || product(sp_ext) * K > kMaxWork) return false;
    const Type t = tensors_[src].dtype.is_int() ? Type::i32() : Type::f32();
    const int w = add_input({K, N}, t);
    auto sp = make_axes(name + "_i", sp_ext);
    auto rd = make_axes(name + "_r", {K});
    std::vector<Expr> idx;
    for (size_t d = 0; d + 1 < shape.size(); ++d) idx.push_back(sp[d].var);
    idx.push_back(rd[0].var);
    Val a = read(src, idx);
    if (a.e.type() != t) a = to_float(a);
    Val b = read(w, {rd[0].var, sp.back().var});
    Val term{a.e * b.e, a.bound * b.bound, t.is_int()};
    if (term.bound * double(K) > (t.is_int() ? kIntBound : kFloatBound)) return false;
    std::vector<AxisVar> all = sp;
    all.push_back(rd[0]);
    if (r_.chance(0.3)) term = grow(term, all, 1);
    finish_stage(name, sp, rd, term.bound * double(K) <= (t.is_int() ? kIntBound : kFloatBound) ? te::ReduceKind::Sum
                                                                                                 : te::ReduceKind::Max,
                 term);
    return true;
  }

  // A window over dimension d: out[.., q, ..] = reduce_r src[.., q*s + r, ..] (pooling), or
  // a convolution that also reduces a channel dimension c against a weight W[OC, C, R].
  bool window(int src, const std::string& name) {
    const std::vector<int64_t> shape = tensors_[src].shape;
    const size_t rank = shape.size();
    const int d = int(r_.range(0, int64_t(rank) - 1));
    const int64_t S = shape[d];
    const int64_t R = r_.range(1, std::min<int64_t>(S, 5));
    const int64_t st = r_.chance(0.7) ? 1 : 2;
    const int64_t Q = (S - R) / st + 1;
    int c = -1;
    if (rank >= 2 && r_.chance(0.5)) {
      c = int(r_.range(0, int64_t(rank) - 1));
      if (c == d) c = -1;
    }
    const int64_t OC = c >= 0 ? pick_dim(8) : 0;
    std::vector<int64_t> sp_ext, rd_ext;
    for (size_t k = 0; k < rank; ++k) sp_ext.push_back(int(k) == d ? Q : int(k) == c ? OC : shape[k]);
    rd_ext.push_back(R);
    if (c >= 0) rd_ext.push_back(shape[c]);
    if (product(sp_ext) > kMaxElements || product(sp_ext) * product(rd_ext) > kMaxWork) return false;
    auto sp = make_axes(name + "_i", sp_ext);
    auto rd = make_axes(name + "_r", rd_ext);
    std::vector<Expr> idx;
    for (size_t k = 0; k < rank; ++k) {
      if (int(k) == d) idx.push_back(st == 1 ? sp[k].var + rd[0].var : sp[k].var * Expr(st) + rd[0].var);
      else if (int(k) == c) idx.push_back(rd[1].var);
      else idx.push_back(sp[k].var);
    }
    Val v = read(src, idx);
    std::vector<AxisVar> all = sp;
    all.insert(all.end(), rd.begin(), rd.end());
    if (c >= 0 || r_.chance(0.5)) {
      const Type t = v.e.type().is_int() ? Type::i32() : Type::f32();
      const int w = c >= 0 ? add_input({OC, shape[c], R}, t) : add_input({R}, t);
      Val wv = c >= 0 ? read(w, {sp[c].var, rd[1].var, rd[0].var}) : read(w, {rd[0].var});
      if (v.e.type() != t) v = to_float(v);
      v = {v.e * wv.e, v.bound * wv.bound, t.is_int()};
      if (v.bound * double(product(rd_ext)) > (t.is_int() ? kIntBound : kFloatBound)) return false;
      finish_stage(name, sp, rd, te::ReduceKind::Sum, v);
    } else {
      v = grow(v, all, int(r_.range(0, 1)));
      finish_stage(name, sp, rd, r_.chance(0.5) ? te::ReduceKind::Max : te::ReduceKind::Min, v);
    }
    return true;
  }

  void add_stage(int stages_left) {
    for (int tries = 0;; ++tries) {
      // The source: mostly the latest stage (a chain), else any tensor.
      int src = int(tensors_.size()) - 1;
      if (r_.chance(0.25)) src = int(r_.range(0, int64_t(tensors_.size()) - 1));
      const std::string name = "t" + std::to_string(stages_.size());
      const int64_t x = tries > 20 ? 0 : r_.range(0, 99);
      const size_t before = inputs_.size();
      bool ok;
      if (x < 42) {
        ok = elementwise(src, name);
      } else if (x < 67) {
        ok = reduction(src, name);
      } else if (x < 82) {
        ok = contraction(src, name);
      } else {
        // Often through an explicit padding stage first (an inlinable intermediate).
        if (stages_left >= 2 && r_.chance(0.5)) {
          const std::vector<int64_t> shape = tensors_[src].shape;
          const int d = int(r_.range(0, int64_t(shape.size()) - 1));
          if (elementwise(src, name, d)) {
            src = int(tensors_.size()) - 1;
            const std::string name2 = "t" + std::to_string(stages_.size());
            if (!window(src, name2)) elementwise(src, name2);
            return;
          }
        }
        ok = window(src, name);
      }
      if (ok) return;
      // Undo weights added by a failed attempt.
      while (inputs_.size() > before) {
        tensors_.erase(tensors_.begin() + find(inputs_.back().name));
        inputs_.pop_back();
      }
    }
  }

  Rng r_;
  std::vector<te::Operation> inputs_, stages_;
  std::vector<TensorInfo> tensors_;
};

// ---------------------------------------------------------------------------------------
// Schedules

using namespace schedule;

class StepGen {
 public:
  StepGen(State& st, uint64_t seed) : st_(st), r_(seed * 0xD1B54A32D192ED03ull + 5) {}

  void run() {
    const int n = int(r_.range(2, 14));
    // Phases in a plausible order (most steps apply); a few steps anywhere.
    for (int k = 0; k < n / 4 + 1; ++k) try_step(structure_step());
    for (int k = 0; k < n; ++k) try_step(loop_step());
    for (int k = 0; k < int(r_.range(1, 3)); ++k) try_step(location_step());
    for (int k = 0; k < n / 2 + 1; ++k) try_step(annotation_step());
    for (int k = 0; k < int(r_.range(0, 2)); ++k) try_step(any_step());
  }

 private:
  void try_step(const std::optional<Step>& s) {
    if (!s) return;
    try {
      st_.apply(*s);
    } catch (const InvalidCandidate&) {
    }
  }

  int random_stage() { return int(r_.range(0, st_.num_stages() - 1)); }
  int random_iter(int s) {
    const int n = int(st_.stage(s).leaf.size());
    return n ? int(r_.range(0, n - 1)) : 0;
  }

  std::vector<int64_t> random_lengths(int64_t extent) {
    const int parts = int(r_.range(1, 3));
    std::vector<int64_t> out;
    int64_t rest = extent;
    for (int k = 0; k < parts && rest >= 1; ++k) {
      int64_t l;
      if (r_.chance(0.5)) {
        auto ds = divisors(rest);
        if (ds.size() > 1 && r_.chance(0.7)) ds.erase(ds.begin());  // mostly not 1
        l = r_.pick(ds);
      } else {
        l = r_.range(std::min<int64_t>(rest, 2), std::max<int64_t>(1, std::min<int64_t>(rest, 17)));
      }
      out.push_back(l);
      rest /= l;
    }
    return out;
  }

  std::vector<int> split_steps() const {
    std::vector<int> ids;
    const auto& steps = st_.steps();
    for (size_t i = 0; i < steps.size(); ++i)
      if (std::holds_alternative<SplitStep>(steps[i].v)) ids.push_back(int(i));
    return ids;
  }

  std::vector<int> readers_of(const std::string& tensor) const {
    std::vector<int> out;
    for (int s = 0; s < st_.num_stages(); ++s) {
      bool reads = false;
      ir::post_order_visit(st_.stage(s).op.body, [&](const Expr& e) {
        if (const auto* t = e.as<ir::TensorRead>()) reads = reads || t->tensor == tensor;
      });
      if (reads) out.push_back(s);
    }
    return out;
  }

  std::optional<Step> structure_step() {
    const int s = random_stage();
    switch (r_.range(0, 5)) {
      case 0:
      case 1: return ComputeInlineStep{s};
      case 2: return CacheWriteStep{s, r_.chance(0.7) ? ir::MemoryScope::Local : ir::MemoryScope::Global};
      case 3: {
        std::vector<std::string> names;
        for (int i : st_.dag().inputs()) names.push_back(st_.dag().ops[i].name);
        for (const auto& stage : st_.stages()) names.push_back(stage.op.name);
        const std::string t = r_.pick(names);
        auto readers = readers_of(t);
        if (readers.empty()) return std::nullopt;
        std::vector<int> chosen;
        for (int r : readers)
          if (chosen.empty() || r_.chance(0.5)) chosen.push_back(r);
        return CacheReadStep{t, r_.chance(0.8) ? ir::MemoryScope::Local : ir::MemoryScope::Global, chosen};
      }
      case 4: {
        // rfactor: split a reduction loop first (often not dividing), then factor a part.
        const Stage& stage = st_.stage(s);
        std::vector<int> rpos;
        for (int p = 0; p < int(stage.leaf.size()); ++p)
          if (stage.leaf_iter(p).kind == IterKind::Reduce) rpos.push_back(p);
        if (rpos.empty()) return std::nullopt;
        int p = r_.pick(rpos);
        if (r_.chance(0.8) && stage.leaf_iter(p).extent >= 2) {
          try_step(SplitStep{s, p, {r_.range(1, std::min<int64_t>(stage.leaf_iter(p).extent, 9))}});
          if (r_.chance(0.5)) ++p;
        }
        return RfactorStep{s, p, int(r_.range(0, int64_t(st_.stage(s).op.axes.size())))};
      }
      default: {
        const Stage& stage = st_.stage(s);
        const int nsp = int(stage.op.axes.size());
        if (!nsp) return std::nullopt;
        const int id = int(r_.range(0, nsp - 1));
        const int pos = stage.leaf_position(id);
        if (pos < 0) return std::nullopt;
        const int64_t factor = r_.range(1, 32);
        return StorageAlignStep{s, pos, factor, r_.range(0, factor - 1)};
      }
    }
  }

  std::optional<Step> loop_step() {
    const int s = random_stage();
    if (st_.stage(s).leaf.empty()) return std::nullopt;
    const int it = random_iter(s);
    const int64_t ext = st_.stage(s).leaf_iter(it).extent;
    switch (r_.range(0, 7)) {
      case 0:
      case 1:
      case 2: return SplitStep{s, it, random_lengths(ext)};
      case 3: {
        auto ids = split_steps();
        if (ids.empty()) return std::nullopt;
        const int src = r_.pick(ids);
        const int k = int(std::get<SplitStep>(st_.steps()[src].v).lengths.size());
        return FollowSplitStep{s, it, src, int(r_.range(1, k + 1))};
      }
      case 4: {
        auto ids = split_steps();
        if (ids.empty()) return std::nullopt;
        std::vector<int> src = {r_.pick(ids)};
        if (r_.chance(0.4)) src.push_back(r_.pick(ids));
        int levels = 1 << 20;
        for (int id : src) levels = std::min(levels, int(std::get<SplitStep>(st_.steps()[id].v).lengths.size()));
        return FollowFusedSplitStep{s, it, src, int(r_.range(0, levels - 1)), r_.chance(0.6)};
      }
      case 5: {
        const int n = int(st_.stage(s).leaf.size());
        if (n < 2) return std::nullopt;
        const int a = int(r_.range(0, n - 2));
        const int b = int(std::min<int64_t>(n - 1, a + r_.range(1, 2)));
        std::vector<int> iters;
        for (int k = a; k <= b; ++k) iters.push_back(k);
        return FuseStep{s, iters};
      }
      default: {
        const int n = int(st_.stage(s).leaf.size());
        std::vector<int> order(n);
        for (int k = 0; k < n; ++k) order[k] = k;
        if (r_.chance(0.5)) r_.shuffle(order);
        else if (n >= 2) std::swap(order[r_.range(0, n - 1)], order[r_.range(0, n - 1)]);
        return ReorderStep{s, order};
      }
    }
  }

  std::optional<Step> location_step() {
    const int s = random_stage();
    switch (r_.range(0, 4)) {
      case 0: return ComputeRootStep{s};
      case 1: return ComputeInlineStep{s};
      default: {
        auto readers = readers_of(st_.stage(s).op.name);
        if (readers.empty()) return std::nullopt;
        const int c = r_.pick(readers);
        if (st_.stage(c).leaf.empty()) return std::nullopt;
        return ComputeAtStep{s, c, random_iter(c)};
      }
    }
  }

  std::optional<Step> annotation_step() {
    const int s = random_stage();
    if (st_.stage(s).leaf.empty()) return std::nullopt;
    const int it = random_iter(s);
    const Stage& stage = st_.stage(s);
    const int n = int(stage.leaf.size());
    switch (r_.range(0, 6)) {
      case 0:
      case 1: return AnnotateStep{s, r_.chance(0.6) ? 0 : it, Annotation::Parallel};
      case 2:
      case 3: return AnnotateStep{s, r_.chance(0.6) ? n - 1 : it, Annotation::Vectorize};
      case 4:
        if (stage.leaf_iter(it).extent > 16) return std::nullopt;
        return AnnotateStep{s, it, Annotation::Unroll};
      case 5: return AnnotateStep{s, it, Annotation::None};
      default: {
        static const std::vector<int64_t> v = {0, 4, 16, 64, 512};
        return PragmaStep{s, 0, "auto_unroll_max_step", r_.pick(v)};
      }
    }
  }

  std::optional<Step> any_step() {
    switch (r_.range(0, 3)) {
      case 0: return structure_step();
      case 1: return loop_step();
      case 2: return location_step();
      default: return annotation_step();
    }
  }

  State& st_;
  Rng r_;
};

double normalized_error(const runtime::HostBuffer& got, const runtime::HostBuffer& want) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < want.num_elements(); ++i) {
    const double g = got.get(i), w = want.get(i);
    if (std::isnan(g) != std::isnan(w) || std::isinf(g) != std::isinf(w)) return INFINITY;
    if (std::isnan(w) || std::isinf(w)) {
      if (std::isinf(w) && g != w) return INFINITY;
      continue;
    }
    num += (g - w) * (g - w);
    den += w * w;
  }
  // Relative L2 error with a floor for (nearly) all-zero outputs.
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-3 * std::sqrt(double(want.num_elements())));
}

double tolerance(ir::Type t) { return t.is_int() ? 0 : 1e-4; }

// Rough cost of running a lowered nest: statements executed, plus 1000 per start of a
// parallel loop (a call into the thread pool). Saturates at 1e18.
double run_cost(const ir::Stmt& s) {
  if (!s.defined()) return 0;
  switch (s.kind()) {
    case ir::StmtKind::For: {
      const auto* f = s.as<ir::For>();
      int64_t e = 0;
      if (!ir::is_const_int(f->extent, &e)) return 1e18;
      return std::min(1e18, double(e) * run_cost(f->body) + (f->for_kind == ir::ForKind::Parallel ? 1000 : 1));
    }
    case ir::StmtKind::Block: {
      double n = 0;
      for (const auto& x : s.as<ir::Block>()->stmts) n += run_cost(x);
      return std::min(n, 1e18);
    }
    case ir::StmtKind::IfThenElse: {
      const auto* i = s.as<ir::IfThenElse>();
      return 1 + std::max(run_cost(i->then_case), run_cost(i->else_case));
    }
    case ir::StmtKind::Allocate: return run_cost(s.as<ir::Allocate>()->body);
    case ir::StmtKind::LetStmt: return run_cost(s.as<ir::LetStmt>()->body);
    default: return 1;
  }
}
constexpr double kMaxRunCost = 3e7;

}  // namespace

std::shared_ptr<const te::ComputeDAG> random_kernel(uint64_t seed) { return KernelGen(seed).run(seed); }

State random_step_schedule(std::shared_ptr<const te::ComputeDAG> dag, uint64_t seed) {
  State st(std::move(dag));
  StepGen(st, seed).run();
  return st;
}

const char* diff_status_name(DiffStatus s) {
  switch (s) {
    case DiffStatus::Match: return "match";
    case DiffStatus::Invalid: return "invalid";
    case DiffStatus::Skipped: return "skipped";
    case DiffStatus::Mismatch: return "MISMATCH";
    case DiffStatus::CompileError: return "COMPILE-ERROR";
    case DiffStatus::Error: return "ERROR";
  }
  return "?";
}

DiffChecker::DiffChecker(std::shared_ptr<const te::ComputeDAG> dag, runtime::CpuRunner& runner, uint64_t input_seed)
    : dag_(std::move(dag)), runner_(runner) {
  uint64_t seed = input_seed * 1000;
  for (int i : dag_->inputs()) {
    inputs_.emplace_back(dag_->ops[i].dtype, dag_->ops[i].shape);
    inputs_.back().fill_random(seed++);
  }
  for (int i : dag_->outputs()) expected_.emplace_back(dag_->ops[i].dtype, dag_->ops[i].shape);
  ir::LoweredFunc f = lower(State(dag_), "reference");
  ir::interpret(f, args(expected_));
}

std::vector<void*> DiffChecker::args(std::vector<runtime::HostBuffer>& outs) {
  std::vector<void*> a;
  for (auto& b : inputs_) a.push_back(b.data());
  for (auto& b : outs) {
    b.poison();
    a.push_back(b.data());
  }
  return a;
}

double DiffChecker::compare(const std::vector<runtime::HostBuffer>& got, std::string* which) const {
  double worst = 0;
  for (size_t k = 0; k < got.size(); ++k) {
    const double e = normalized_error(got[k], expected_[k]);
    const double tol = tolerance(got[k].dtype());
    if (e > tol && which && which->empty()) *which = dag_->ops[dag_->outputs()[k]].name;
    worst = std::max(worst, tol > 0 ? e / tol * 1e-4 : (e > 0 ? INFINITY : 0.0));
  }
  return worst;
}

DiffResult DiffChecker::check(const State& st) {
  DiffResult r;
  ir::LoweredFunc f;
  try {
    f = lower(st, dag_->kernel);
  } catch (const InvalidCandidate& e) {
    r.status = DiffStatus::Invalid;
    r.message = e.what();
    return r;
  } catch (const std::exception& e) {
    r.status = DiffStatus::Error;
    r.message = std::string("lowering threw: ") + e.what();
    return r;
  }
  if (const double cost = run_cost(f.body); cost > kMaxRunCost) {
    r.status = DiffStatus::Skipped;
    r.message = detail::concat("too slow to run in a test: about ", cost, " steps");
    return r;
  }
  std::vector<runtime::HostBuffer> got;
  for (int i : dag_->outputs()) got.emplace_back(dag_->ops[i].dtype, dag_->ops[i].shape);
  try {
    auto k = runner_.compile(f);
    k->run(args(got));
  } catch (const InvalidCandidate& e) {
    r.status = DiffStatus::CompileError;
    r.message = e.what();
    return r;
  } catch (const std::exception& e) {
    r.status = DiffStatus::Error;
    r.message = std::string("compile or run threw: ") + e.what();
    return r;
  }
  std::string which;
  r.error = compare(got, &which);
  if (which.empty()) return r;
  r.status = DiffStatus::Mismatch;
  // Where is the bug? Interpret the scheduled function too.
  std::string verdict;
  try {
    std::vector<runtime::HostBuffer> interp;
    for (int i : dag_->outputs()) interp.emplace_back(dag_->ops[i].dtype, dag_->ops[i].shape);
    ir::interpret(f, args(interp));
    std::string w2;
    const double e2 = compare(interp, &w2);
    verdict = w2.empty() ? "the interpreter runs the lowered code correctly: a code generation bug"
                         : detail::concat("the interpreter gets the lowered code wrong too (error ", e2,
                                          "): a lowering bug");
  } catch (const std::exception& e) {
    verdict = std::string("the interpreter fails on the lowered code (a lowering bug): ") + e.what();
  }
  r.message = detail::concat("output ", which, " differs from the reference: normalized error ", r.error, "; ", verdict);
  return r;
}

double DiffChecker::reference_vs_te_eval() const {
  TeEvaluator ev;
  size_t k = 0;
  for (int i : dag_->inputs()) {
    const auto& op = dag_->ops[i];
    Tensor t{op.shape, {}};
    for (int64_t e = 0; e < inputs_[k].num_elements(); ++e) t.data.push_back(inputs_[k].get(e));
    ev.tensors[op.name] = t;
    ++k;
  }
  ev.run(*dag_);
  double worst = 0;
  k = 0;
  for (int i : dag_->outputs()) {
    const Tensor& want = ev.tensors.at(dag_->ops[i].name);
    const auto& got = expected_[k++];
    double num = 0, den = 0;
    for (int64_t e = 0; e < got.num_elements(); ++e) {
      num += (got.get(e) - want.data[e]) * (got.get(e) - want.data[e]);
      den += want.data[e] * want.data[e];
    }
    double err = std::sqrt(num) / std::max(std::sqrt(den), 1e-3 * std::sqrt(double(got.num_elements())));
    if (std::isnan(err)) err = INFINITY;
    worst = std::max(worst, err);
  }
  return worst;
}

std::string describe_case(const State& st) {
  std::ostringstream os;
  os << "--- kernel\n" << st.dag().canonical_text();
  os << "--- steps\n" << st.steps_text();
  os << "--- steps (JSON)\n" << steps_to_json(st.steps()).dump() << "\n";
  os << "--- state\n" << st.to_string();
  try {
    os << "--- lowered\n" << ir::to_string(lower(st, st.dag().kernel).body) << "\n";
  } catch (const std::exception& e) {
    os << "--- lowering failed: " << e.what() << "\n";
  }
  return os.str();
}

}  // namespace ktune::testing
