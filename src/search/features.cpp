// Program features (features.h). One walk over the lowered loop nest keeps the stack of
// enclosing loops, lets, guards and allocations; each Store becomes a row computed from its
// value and index expressions and that stack.
//
// Buffer regions are estimated without building expressions: an index is differentiated by
// each enclosing loop variable (its stride along that loop), and the span of values it takes
// while the loops from depth L inwards run is the sum of |stride| x (extent - 1) for an
// affine index, or a recursive estimate when the index has div/mod (fused loops) or
// min/max/select. The distinct elements touched are then min(span + 1, product of the
// extents of the loops the index depends on).
//
// Guards matter on this IR: a stage computed inside another keeps its split lengths when its
// region shrinks, so lowering may run a loop nest many times larger than the region behind a
// guard (half of the random matmul schedules did). The work of a guarded store is its loop
// iterations times the fraction that passes the guards (interval arithmetic on the compared
// expressions), and the guard's own cost is the iterations of the loops down to the
// innermost one it depends on.
#include "ktune/search/features.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "ktune/ir/ir_ops.h"
#include "ktune/ir/visitor.h"
#include "ktune/schedule/lower.h"
#include "ktune/support/error.h"

namespace ktune::search {

namespace {

constexpr double kCacheLineBytes = 64;
constexpr int kTopBuffers = 5;
constexpr int kCurvePoints = 10;

// Operation kinds counted per store (Ansor's MathOpCounter classes).
enum OpKind : int {
  kMad,  // a + b*c (an FMA once contracted)
  kAddSub,
  kMul,
  kDivMod,
  kCmp,        // comparisons, min, max
  kMathFunc,   // exp, sqrt, log, tanh, sigmoid
  kOtherFunc,  // abs, casts
  kNumOpKinds
};
const char* const kOpNames[kNumOpKinds] = {"mad", "addsub",    "mul",       "divmod",
                                           "cmp", "math_func", "other_func"};

// Where the loops of one annotation kind are, relative to the store (one-hot).
enum LoopPos : int {
  kPosNone,
  kPosInnerSpatial,
  kPosMiddleSpatial,
  kPosOuterSpatial,
  kPosInnerReduce,
  kPosMiddleReduce,
  kPosOuterReduce,
  kPosMixed,
  kNumPos
};
const char* const kPosNames[kNumPos] = {"none",          "inner_spatial", "middle_spatial",
                                        "outer_spatial", "inner_reduce",  "middle_reduce",
                                        "outer_reduce",  "mixed"};

const char* const kAnnotNames[3] = {"vec", "unroll", "parallel"};
const ir::ForKind kAnnotKinds[3] = {ir::ForKind::Vectorized, ir::ForKind::Unrolled,
                                    ir::ForKind::Parallel};

const char* const kBufferFeatureNames[] = {"acc_read",
                                           "acc_write",
                                           "acc_readwrite",
                                           "bytes",
                                           "unique_bytes",
                                           "lines",
                                           "unique_lines",
                                           "reuse_loop",
                                           "reuse_serial",
                                           "reuse_none",
                                           "reuse_dis_iter",
                                           "reuse_dis_bytes",
                                           "reuse_ct",
                                           "bytes_d_reuse_ct",
                                           "unique_bytes_d_reuse_ct",
                                           "lines_d_reuse_ct",
                                           "unique_lines_d_reuse_ct",
                                           "stride"};
constexpr int kBufferFeatures = int(std::size(kBufferFeatureNames));

// Column offsets of the groups in a row.
constexpr int kOffOps = 0;                                // float ops, int ops, bool, select
constexpr int kOffAnnot = kOffOps + 2 * kNumOpKinds + 2;  // 3 x (num, prod, len, pos[8])
constexpr int kAnnotFeatures = 3 + kNumPos;
constexpr int kOffGpu = kOffAnnot + 3 * kAnnotFeatures;  // is_gpu, 7 binding extents
constexpr int kOffBuffers = kOffGpu + 8;
constexpr int kOffCurve = kOffBuffers + kTopBuffers * kBufferFeatures;
constexpr int kOffAlloc = kOffCurve + kCurvePoints;  // size, prod, outer, inner
constexpr int kOffOuter = kOffAlloc + 4;  // outer_prod, num_loops, 3 guard features, masked_select
constexpr int kOffTile = kOffOuter + 6;  // register tile, traffic per cache level, innermost loop
constexpr int kWidth = kOffTile + 10;

std::vector<std::string> make_names() {
  std::vector<std::string> n;
  for (const char* ty : {"float_", "int_"})
    for (const char* op : kOpNames) n.push_back(std::string(ty) + op);
  n.push_back("bool_op");
  n.push_back("select_op");
  for (const char* a : kAnnotNames) {
    for (const char* f : {"_num", "_prod", "_len"}) n.push_back(std::string(a) + f);
    for (const char* p : kPosNames) n.push_back(std::string(a) + "_pos_" + p);
  }
  for (const char* g : {"is_gpu", "blockIdx_x_len", "blockIdx_y_len", "blockIdx_z_len",
                        "threadIdx_x_len", "threadIdx_y_len", "threadIdx_z_len", "vthread_len"})
    n.push_back(g);
  for (int b = 0; b < kTopBuffers; ++b)
    for (const char* f : kBufferFeatureNames)
      n.push_back(std::string("B") + std::to_string(b) + "." + f);
  for (int k = 0; k < kCurvePoints; ++k)
    n.push_back(std::string("arith_intensity_") + std::to_string(k));
  for (const char* f :
       {"alloc_size", "alloc_prod", "alloc_outer_prod", "alloc_inner_prod", "outer_prod",
        "num_loops", "guarded", "guard_pass", "guard_evals", "masked_select", "acc_vectors",
        "acc_reduce_len", "traffic_reg", "intensity_reg", "traffic_l1", "intensity_l1",
        "traffic_l2", "intensity_l2", "inner_len", "inner_strided"})
    n.push_back(f);
  KT_CHECK(int(n.size()) == kWidth, "feature names do not match the row layout");
  return n;
}

// log2(1 + x): every count and size is log-scaled.
float slog(double x) { return float(std::log2(1.0 + std::max(0.0, x))); }

// Counts the operations of a store by kind and collects its loads. Index arithmetic counts
// as integer operations (as in Ansor); `value_ops` counts the stored value's arithmetic only
// (a multiply-add counts two), for the arithmetic intensity.
class OpCounter : public ir::IRVisitor {
 public:
  std::array<double, 2 * kNumOpKinds + 2> counts{};
  double value_ops = 0;
  std::vector<const ir::Load*> loads;  // in program order
  bool has_select = false;

  void count_index(const ir::Expr& e) {
    const bool saved = in_index_;
    in_index_ = true;
    visit(e);
    in_index_ = saved;
  }

  void visit_Add(const ir::Add* op) override { add_or_mad(op->type, op->a, op->b); }
  void visit_Sub(const ir::Sub* op) override { add_or_mad(op->type, op->a, op->b); }
  void visit_Mul(const ir::Mul* op) override { binary(op->type, kMul, op->a, op->b); }
  void visit_Div(const ir::Div* op) override { binary(op->type, kDivMod, op->a, op->b); }
  void visit_Mod(const ir::Mod* op) override { binary(op->type, kDivMod, op->a, op->b); }
  void visit_Min(const ir::Min* op) override { binary(op->type, kCmp, op->a, op->b); }
  void visit_Max(const ir::Max* op) override { binary(op->type, kCmp, op->a, op->b); }
  void visit_EQ(const ir::EQ* op) override { binary(op->a.type(), kCmp, op->a, op->b); }
  void visit_NE(const ir::NE* op) override { binary(op->a.type(), kCmp, op->a, op->b); }
  void visit_LT(const ir::LT* op) override { binary(op->a.type(), kCmp, op->a, op->b); }
  void visit_LE(const ir::LE* op) override { binary(op->a.type(), kCmp, op->a, op->b); }
  void visit_GT(const ir::GT* op) override { binary(op->a.type(), kCmp, op->a, op->b); }
  void visit_GE(const ir::GE* op) override { binary(op->a.type(), kCmp, op->a, op->b); }
  void visit_And(const ir::And* op) override { logic(op->a, op->b); }
  void visit_Or(const ir::Or* op) override { logic(op->a, op->b); }
  void visit_Not(const ir::Not* op) override { logic(op->a, ir::Expr()); }
  void visit_Select(const ir::Select* op) override {
    counts[2 * kNumOpKinds + 1] += 1;
    has_select = has_select || !in_index_;
    IRVisitor::visit_Select(op);
  }
  void visit_Cast(const ir::Cast* op) override {
    add(op->type, kOtherFunc, 1);
    visit(op->value);
  }
  void visit_Call(const ir::Call* op) override {
    add(op->type, op->func == ir::Intrinsic::Abs ? kOtherFunc : kMathFunc, 1);
    for (const ir::Expr& a : op->args) visit(a);
  }
  void visit_Load(const ir::Load* op) override {
    loads.push_back(op);
    count_index(op->index);
  }

 private:
  void add(ir::Type t, OpKind k, double flops) {
    counts[(t.is_float() ? 0 : kNumOpKinds) + k] += 1;
    if (!in_index_) value_ops += flops;
  }
  void binary(ir::Type t, OpKind k, const ir::Expr& a, const ir::Expr& b) {
    add(t, k, 1);
    visit(a);
    visit(b);
  }
  void add_or_mad(ir::Type t, const ir::Expr& a, const ir::Expr& b) {
    const ir::Mul* m = a.as<ir::Mul>() ? a.as<ir::Mul>() : b.as<ir::Mul>();
    if (!m) return binary(t, kAddSub, a, b);
    add(t, kMad, 2);
    visit(m->a);
    visit(m->b);
    visit(a.as<ir::Mul>() ? b : a);
  }
  void logic(const ir::Expr& a, const ir::Expr& b) {
    counts[2 * kNumOpKinds] += 1;
    visit(a);
    visit(b);
  }

  bool in_index_ = false;
};

std::pair<const ir::Expr*, const ir::Expr*> min_max_operands(const ir::Expr& e) {
  if (const auto* op = e.as<ir::Min>()) return {&op->a, &op->b};
  const auto* op = e.as<ir::Max>();
  return {&op->a, &op->b};
}

struct Loop {
  int64_t extent;
  ir::ForKind kind;
};

// One access of a buffer by a store: the store itself or one of its loads.
struct Access {
  const ir::BufferNode* buffer;
  const ir::Expr* index;
  bool write;
};

// What a store does to one buffer (all its accesses together).
struct BufferUse {
  const ir::BufferNode* buffer;
  int accesses = 0;
  bool read = false, write = false;
  std::vector<double> stride;  // per loop depth: largest |stride| over the accesses
  std::vector<double> elems;   // per depth L (0..n): distinct elements while loops L.. run
};

class Extractor : public ir::IRVisitor {
 public:
  explicit Extractor(const target::Target& t)
      : gpu_(t.kind != target::TargetKind::CPU), vector_bytes_(std::max(16, t.vector_bits / 8)) {}

  ProgramFeatures out;

  void visit_For(const ir::For* op) override {
    int64_t e = 1;
    if (!ir::is_const_int(op->extent, &e) || e < 1) e = 1;
    depth_[op->var.get()] = int(loops_.size());
    loops_.push_back({e, op->for_kind});
    visit(op->body);
    loops_.pop_back();
    depth_.erase(op->var.get());
  }
  void visit_LetStmt(const ir::LetStmt* op) override {
    lets_[op->var.get()] = &op->value;
    visit(op->body);
    lets_.erase(op->var.get());
  }
  void visit_IfThenElse(const ir::IfThenElse* op) override {
    const double saved = pass_, f = pass_fraction(op->cond);
    const int saved_depth = guard_depth_;
    ++guards_;
    guard_depth_ = std::max(guard_depth_, deepest_loop(op->cond) + 1);
    pass_ = saved * f;
    visit(op->then_case);
    pass_ = saved * (1 - f);
    visit(op->else_case);
    pass_ = saved;
    guard_depth_ = saved_depth;
    --guards_;
  }
  void visit_Allocate(const ir::Allocate* op) override {
    allocs_[op->buffer.get()] = loop_product(0, int(loops_.size()));
    visit(op->body);
  }
  void visit_Store(const ir::Store* op) override;

 private:
  double loop_product(int from, int to) const {
    double p = 1;
    for (int d = from; d < to; ++d) p *= double(loops_[d].extent);
    return p;
  }

  // Adds d(index)/d(loop var at each depth) * scale into `stride`; sets `affine` false when
  // the index is not affine in the loop variables.
  void strides(const ir::Expr& e, double scale, std::vector<double>& stride, bool& affine) const {
    switch (e.kind()) {
      case ir::ExprKind::Var: {
        if (auto it = depth_.find(e.get()); it != depth_.end())
          stride[it->second] += scale;
        else if (auto l = lets_.find(e.get()); l != lets_.end())
          strides(*l->second, scale, stride, affine);
        return;
      }
      case ir::ExprKind::Add: {
        const auto* op = e.as<ir::Add>();
        strides(op->a, scale, stride, affine);
        strides(op->b, scale, stride, affine);
        return;
      }
      case ir::ExprKind::Sub: {
        const auto* op = e.as<ir::Sub>();
        strides(op->a, scale, stride, affine);
        strides(op->b, -scale, stride, affine);
        return;
      }
      case ir::ExprKind::Mul: {
        const auto* op = e.as<ir::Mul>();
        int64_t c;
        if (ir::is_const_int(op->b, &c)) return strides(op->a, scale * double(c), stride, affine);
        if (ir::is_const_int(op->a, &c)) return strides(op->b, scale * double(c), stride, affine);
        affine = false;
        strides(op->a, scale, stride, affine);
        strides(op->b, scale, stride, affine);
        return;
      }
      case ir::ExprKind::Div: {
        const auto* op = e.as<ir::Div>();
        int64_t c;
        affine = false;
        return strides(op->a, ir::is_const_int(op->b, &c) && c != 0 ? scale / double(c) : scale,
                       stride, affine);
      }
      case ir::ExprKind::Mod:
        affine = false;
        return strides(e.as<ir::Mod>()->a, scale, stride, affine);
      case ir::ExprKind::Min:
      case ir::ExprKind::Max: {
        auto [a, b] = min_max_operands(e);
        affine = false;
        strides(*a, scale, stride, affine);
        strides(*b, scale, stride, affine);
        return;
      }
      case ir::ExprKind::Select: {
        const auto* op = e.as<ir::Select>();
        affine = false;
        strides(op->true_value, scale, stride, affine);
        strides(op->false_value, scale, stride, affine);
        return;
      }
      case ir::ExprKind::Cast:
        return strides(e.as<ir::Cast>()->value, scale, stride, affine);
      default:
        return;
    }
  }

  // max - min of the index while the loops at depths >= level run (the others fixed), for
  // indices that are not affine.
  double span(const ir::Expr& e, int level) const {
    switch (e.kind()) {
      case ir::ExprKind::Var: {
        if (auto it = depth_.find(e.get()); it != depth_.end())
          return it->second >= level ? double(loops_[it->second].extent - 1) : 0;
        if (auto l = lets_.find(e.get()); l != lets_.end()) return span(*l->second, level);
        return 0;
      }
      case ir::ExprKind::Add:
        return span(e.as<ir::Add>()->a, level) + span(e.as<ir::Add>()->b, level);
      case ir::ExprKind::Sub:
        return span(e.as<ir::Sub>()->a, level) + span(e.as<ir::Sub>()->b, level);
      case ir::ExprKind::Mul: {
        const auto* op = e.as<ir::Mul>();
        int64_t c;
        if (ir::is_const_int(op->b, &c)) return std::abs(double(c)) * span(op->a, level);
        if (ir::is_const_int(op->a, &c)) return std::abs(double(c)) * span(op->b, level);
        return (span(op->a, level) + 1) * (span(op->b, level) + 1) - 1;
      }
      case ir::ExprKind::Div: {
        const auto* op = e.as<ir::Div>();
        int64_t c;
        const double s = span(op->a, level);
        return ir::is_const_int(op->b, &c) && c != 0 ? std::ceil(s / std::abs(double(c))) : s;
      }
      case ir::ExprKind::Mod: {
        const auto* op = e.as<ir::Mod>();
        int64_t c;
        const double s = span(op->a, level);
        return ir::is_const_int(op->b, &c) && c != 0 ? std::min(s, std::abs(double(c)) - 1) : s;
      }
      case ir::ExprKind::Min:
      case ir::ExprKind::Max: {
        auto [a, b] = min_max_operands(e);
        return std::max(span(*a, level), span(*b, level));
      }
      case ir::ExprKind::Select: {
        const auto* op = e.as<ir::Select>();
        return std::max(span(op->true_value, level), span(op->false_value, level));
      }
      case ir::ExprKind::Cast:
        return span(e.as<ir::Cast>()->value, level);
      default:
        return 0;
    }
  }

  // Adds one access to its buffer's use: strides and distinct elements per loop level.
  void add_access(BufferUse& u, const Access& a) const {
    const int n = int(loops_.size());
    std::vector<double> stride(n, 0.0);
    bool affine = true;
    strides(*a.index, 1.0, stride, affine);
    ++u.accesses;
    u.read = u.read || !a.write;
    u.write = u.write || a.write;
    const double size = double(std::max<int64_t>(1, a.buffer->num_elements()));
    double sp = 0, prod = 1;
    for (int level = n; level >= 0; --level) {
      if (level < n) {
        const double s = std::abs(stride[level]);
        u.stride[level] = std::max(u.stride[level], s);
        if (s > 1e-12) prod *= double(loops_[level].extent);
        sp = affine ? sp + s * double(loops_[level].extent - 1) : span(*a.index, level);
      }
      const double elems = std::min({sp + 1, prod, size});
      u.elems[level] = std::max(u.elems[level], elems);
    }
  }

  // Writes the vectorize / unroll / parallel group for loops of kind `kind`.
  void annotation_features(float* f, ir::ForKind kind,
                           const std::vector<double>& store_stride) const {
    const int n = int(loops_.size());
    int num = 0, pos = kPosNone;
    double prod = 1, len = 0;
    for (int d = 0; d < n; ++d) {
      if (loops_[d].kind != kind) continue;
      ++num;
      prod *= double(loops_[d].extent);
      len = double(loops_[d].extent);  // the innermost one wins
      const bool spatial = std::abs(store_stride[d]) > 1e-12;
      const int p = d == n - 1 ? (spatial ? kPosInnerSpatial : kPosInnerReduce)
                    : d == 0   ? (spatial ? kPosOuterSpatial : kPosOuterReduce)
                               : (spatial ? kPosMiddleSpatial : kPosMiddleReduce);
      pos = pos == kPosNone || pos == p ? p : kPosMixed;
    }
    f[0] = float(num);
    f[1] = slog(num ? prod : 0);
    f[2] = slog(len);
    f[3 + pos] = 1;
  }

  // Depth of the innermost enclosing loop whose variable `e` uses (through lets), or -1.
  // Unrolled loops do not count: unrolling makes their variables constants, and a guard on
  // them folds away.
  int deepest_loop(const ir::Expr& e) const {
    int d = -1;
    ir::post_order_visit(e, [&](const ir::Expr& x) {
      if (auto it = depth_.find(x.get()); it != depth_.end()) {
        if (loops_[it->second].kind != ir::ForKind::Unrolled) d = std::max(d, it->second);
      } else if (auto l = lets_.find(x.get()); l != lets_.end()) {
        d = std::max(d, deepest_loop(*l->second));
      }
    });
    return d;
  }

  struct Range {
    double lo, hi;
  };

  // Bounds of an integer expression while every enclosing loop runs (interval arithmetic;
  // unknown values are unbounded).
  Range range(const ir::Expr& e) const {
    constexpr double inf = std::numeric_limits<double>::infinity();
    auto pair = [&](const ir::Expr& a, const ir::Expr& b) {
      return std::make_pair(range(a), range(b));
    };
    switch (e.kind()) {
      case ir::ExprKind::IntImm:
        return {double(e.as<ir::IntImm>()->value), double(e.as<ir::IntImm>()->value)};
      case ir::ExprKind::Var: {
        if (auto it = depth_.find(e.get()); it != depth_.end())
          return {0, double(loops_[it->second].extent - 1)};
        if (auto l = lets_.find(e.get()); l != lets_.end()) return range(*l->second);
        return {-inf, inf};
      }
      case ir::ExprKind::Add: {
        auto [a, b] = pair(e.as<ir::Add>()->a, e.as<ir::Add>()->b);
        return {a.lo + b.lo, a.hi + b.hi};
      }
      case ir::ExprKind::Sub: {
        auto [a, b] = pair(e.as<ir::Sub>()->a, e.as<ir::Sub>()->b);
        return {a.lo - b.hi, a.hi - b.lo};
      }
      case ir::ExprKind::Mul: {
        auto [a, b] = pair(e.as<ir::Mul>()->a, e.as<ir::Mul>()->b);
        const double c[4] = {a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi};
        if (std::any_of(c, c + 4, [](double x) { return std::isnan(x); })) return {-inf, inf};
        return {*std::min_element(c, c + 4), *std::max_element(c, c + 4)};
      }
      case ir::ExprKind::Div: {
        const auto* op = e.as<ir::Div>();
        int64_t c;
        if (!ir::is_const_int(op->b, &c) || c <= 0) return {-inf, inf};
        const Range a = range(op->a);
        return {std::floor(a.lo / double(c)), std::floor(a.hi / double(c))};
      }
      case ir::ExprKind::Mod: {
        const auto* op = e.as<ir::Mod>();
        int64_t c;
        if (!ir::is_const_int(op->b, &c) || c <= 0) return {-inf, inf};
        const Range a = range(op->a);
        if (std::floor(a.lo / double(c)) != std::floor(a.hi / double(c))) return {0, double(c - 1)};
        return {a.lo - double(c) * std::floor(a.lo / double(c)),
                a.hi - double(c) * std::floor(a.lo / double(c))};
      }
      case ir::ExprKind::Min: {
        auto [a, b] = pair(e.as<ir::Min>()->a, e.as<ir::Min>()->b);
        return {std::min(a.lo, b.lo), std::min(a.hi, b.hi)};
      }
      case ir::ExprKind::Max: {
        auto [a, b] = pair(e.as<ir::Max>()->a, e.as<ir::Max>()->b);
        return {std::max(a.lo, b.lo), std::max(a.hi, b.hi)};
      }
      case ir::ExprKind::Select: {
        auto [a, b] = pair(e.as<ir::Select>()->true_value, e.as<ir::Select>()->false_value);
        return {std::min(a.lo, b.lo), std::max(a.hi, b.hi)};
      }
      case ir::ExprKind::Cast:
        return range(e.as<ir::Cast>()->value);
      default:
        return {-inf, inf};
    }
  }

  // The fraction of the enclosing loops' iterations for which `cond` holds, taking the
  // values of a compared expression as spread evenly over its bounds (exact for the guards
  // of split tails and region edges, which compare an affine index with a constant).
  double pass_fraction(const ir::Expr& cond) const {
    switch (cond.kind()) {
      case ir::ExprKind::And:
        return pass_fraction(cond.as<ir::And>()->a) * pass_fraction(cond.as<ir::And>()->b);
      case ir::ExprKind::Or:
        return std::min(1.0,
                        pass_fraction(cond.as<ir::Or>()->a) + pass_fraction(cond.as<ir::Or>()->b));
      case ir::ExprKind::Not:
        return 1 - pass_fraction(cond.as<ir::Not>()->a);
      case ir::ExprKind::IntImm:
        return cond.as<ir::IntImm>()->value ? 1 : 0;
      case ir::ExprKind::LT:
        return compare_fraction(cond.as<ir::LT>()->a, cond.as<ir::LT>()->b, -1, false);
      case ir::ExprKind::LE:
        return compare_fraction(cond.as<ir::LE>()->a, cond.as<ir::LE>()->b, -1, true);
      case ir::ExprKind::GT:
        return compare_fraction(cond.as<ir::GT>()->a, cond.as<ir::GT>()->b, 1, false);
      case ir::ExprKind::GE:
        return compare_fraction(cond.as<ir::GE>()->a, cond.as<ir::GE>()->b, 1, true);
      default:
        return 1;
    }
  }

  // Fraction of values of `a` below (dir -1) or above (dir 1) `b` (or equal, with `eq`).
  double compare_fraction(const ir::Expr& a, const ir::Expr& b, int dir, bool eq) const {
    Range x = range(a), y = range(b);
    if (x.lo == x.hi && y.lo != y.hi) {  // constant on the left: mirror
      std::swap(x, y);
      dir = -dir;
    }
    if (!std::isfinite(x.lo) || !std::isfinite(x.hi) || !std::isfinite(y.lo) ||
        !std::isfinite(y.hi))
      return 1;
    const double c = (y.lo + y.hi) / 2, n = x.hi - x.lo + 1;
    const double count = dir < 0 ? c - x.lo + (eq ? 1 : 0) : x.hi - c + (eq ? 1 : 0);
    return std::clamp(count / n, 0.0, 1.0);
  }

  std::unordered_map<const ir::ExprNode*, int> depth_;
  std::unordered_map<const ir::ExprNode*, const ir::Expr*> lets_;
  std::unordered_map<const ir::BufferNode*, double> allocs_;  // loop product outside the Allocate
  std::vector<Loop> loops_;
  int guards_ = 0;
  double pass_ = 1;      // fraction of the loop iterations that pass the enclosing guards
  int guard_depth_ = 0;  // loops down to the innermost one the enclosing guards depend on
  const bool gpu_;
  const double vector_bytes_;
};

void Extractor::visit_Store(const ir::Store* op) {
  const int n = int(loops_.size());
  const size_t row = out.data.size();
  out.data.resize(row + kWidth, 0.0f);
  float* f = out.data.data() + row;
  const double iters = loop_product(0, n);  // of the enclosing loops
  const double execs = iters * pass_;       // of the store, behind its guards

  // Arithmetic, times the executions of the store.
  OpCounter ops;
  ops.count_index(op->index);
  ops.visit(op->value);
  for (size_t k = 0; k < ops.counts.size(); ++k) f[kOffOps + k] = slog(ops.counts[k] * execs);

  // Buffers: the store and its loads, grouped by buffer in order of first access.
  std::vector<Access> accesses = {{op->buffer.get(), &op->index, true}};
  for (const ir::Load* l : ops.loads) accesses.push_back({l->buffer.get(), &l->index, false});
  std::vector<BufferUse> uses;
  for (const Access& a : accesses) {
    auto it = std::find_if(uses.begin(), uses.end(),
                           [&](const BufferUse& u) { return u.buffer == a.buffer; });
    if (it == uses.end()) {
      uses.push_back({a.buffer, 0, false, false, std::vector<double>(n, 0.0),
                      std::vector<double>(n + 1, 0.0)});
      it = uses.end() - 1;
    }
    add_access(*it, a);
  }

  // Loop annotations; a loop is spatial for this store when the stored index moves with it.
  std::vector<double> store_stride(n, 0.0);
  bool affine = true;
  strides(op->index, 1.0, store_stride, affine);
  for (int k = 0; k < 3; ++k)
    annotation_features(f + kOffAnnot + k * kAnnotFeatures, kAnnotKinds[k], store_stride);

  // GPU bindings (extents multiply when a kind is bound more than once).
  f[kOffGpu] = gpu_ ? 1 : 0;
  const ir::ForKind gpu_kinds[7] = {ir::ForKind::BlockIdxX,  ir::ForKind::BlockIdxY,
                                    ir::ForKind::BlockIdxZ,  ir::ForKind::ThreadIdxX,
                                    ir::ForKind::ThreadIdxY, ir::ForKind::ThreadIdxZ,
                                    ir::ForKind::VThread};
  for (int g = 0; g < 7; ++g) {
    double ext = 0;
    for (const Loop& l : loops_)
      if (l.kind == gpu_kinds[g]) ext = (ext == 0 ? 1 : ext) * double(l.extent);
    f[kOffGpu + 1 + g] = slog(ext);
  }

  // Bytes touched by all buffers while the loops from depth L inwards run.
  std::vector<double> touched(n + 1, 0.0);
  for (const BufferUse& u : uses)
    for (int level = 0; level <= n; ++level)
      touched[level] += u.elems[level] * u.buffer->dtype.bytes();

  // Per buffer: access type, bytes and lines, reuse, stride; the five largest by bytes.
  const double inner_ext = n ? double(loops_[n - 1].extent) : 1;
  struct BufferRow {
    double bytes;
    std::array<float, kBufferFeatures> f;
  };
  std::vector<BufferRow> rows;
  for (const BufferUse& u : uses) {
    const double eb = u.buffer->dtype.bytes();
    BufferRow r{};
    r.bytes = execs * eb * u.accesses;
    const double unique_bytes = u.elems[0] * eb;
    const double s_in = n ? u.stride[n - 1] : 0;
    const double lines =
        execs / inner_ext *
        std::max(1.0, inner_ext * std::min(s_in * eb, kCacheLineBytes) / kCacheLineBytes) *
        u.accesses;
    double s_min = 0;
    for (double s : u.stride)
      if (s > 1e-12) s_min = s_min == 0 ? s : std::min(s_min, s);
    const double unique_lines =
        s_min == 0 ? 1
                   : std::max(1.0, u.elems[0] *
                                       std::min(1.0, std::max(1.0, s_min) * eb / kCacheLineBytes));
    // Reuse: across the innermost loop the buffer's accesses do not move with, else between
    // the accesses of this one statement (a read-modify-write), else none.
    int reuse_loop = -1;
    for (int d = n - 1; d >= 0 && reuse_loop < 0; --d)
      if (u.stride[d] <= 1e-12) reuse_loop = d;
    double dis_iter = 0, dis_bytes = 0, ct = 0;
    int reuse_kind = 2;
    if (reuse_loop >= 0) {
      reuse_kind = 0;
      dis_iter = loop_product(reuse_loop + 1, n);
      dis_bytes = touched[reuse_loop + 1];
      ct = double(loops_[reuse_loop].extent);
    } else if (u.accesses > 1) {
      reuse_kind = 1;
      dis_iter = 1;
      dis_bytes = eb * u.accesses;
      ct = u.accesses - 1;
    }
    double stride = 0;
    for (int d = n - 1; d >= 0; --d)
      if (u.stride[d] > 1e-12) {
        stride = u.stride[d];
        break;
      }
    const double div = std::max(1.0, ct);
    r.f = {float(u.read && !u.write),
           float(u.write && !u.read),
           float(u.read && u.write),
           slog(r.bytes),
           slog(unique_bytes),
           slog(lines),
           slog(unique_lines),
           float(reuse_kind == 0),
           float(reuse_kind == 1),
           float(reuse_kind == 2),
           slog(dis_iter),
           slog(dis_bytes),
           slog(ct),
           slog(r.bytes / div),
           slog(unique_bytes / div),
           slog(lines / div),
           slog(unique_lines / div),
           slog(stride)};
    rows.push_back(r);
  }
  // The five buffers with the most bytes, in the order the statement accesses them (the
  // stored buffer first), so that a column keeps meaning the same tensor across schedules.
  std::vector<int> order(rows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return rows[a].bytes > rows[b].bytes; });
  order.resize(std::min<size_t>(order.size(), kTopBuffers));
  std::sort(order.begin(), order.end());
  for (size_t b = 0; b < order.size(); ++b)
    std::copy(rows[order[b]].f.begin(), rows[order[b]].f.end(),
              f + kOffBuffers + b * kBufferFeatures);

  // Arithmetic intensity (value operations / bytes touched) as the loops are added from the
  // innermost outwards, sampled at evenly spaced points of log2(operations).
  if (ops.value_ops > 0) {
    std::vector<double> x, y;  // innermost first
    double work = ops.value_ops * pass_;
    for (int level = n; level >= 0; --level) {
      if (level < n) work *= double(loops_[level].extent);
      if (level < n || n == 0) {
        x.push_back(std::log2(1 + work));
        y.push_back(work / std::max(1.0, touched[level]));
      }
    }
    size_t p = 0;
    for (int k = 0; k < kCurvePoints; ++k) {
      const double want = x.back() * (k + 1) / kCurvePoints;
      while (p + 1 < x.size() && x[p] < want - 1e-9) ++p;
      double v = y[p];
      if (p > 0 && x[p] > x[p - 1])
        v = y[p - 1] + (y[p] - y[p - 1]) * (want - x[p - 1]) / (x[p] - x[p - 1]);
      f[kOffCurve + k] = slog(v);
    }
  }

  // Allocation of the stored buffer (arguments count as allocated once, outside the nest).
  const double alloc_bytes = double(op->buffer->num_elements()) * op->buffer->dtype.bytes();
  auto al = allocs_.find(op->buffer.get());
  const double alloc_outer = al == allocs_.end() ? 1 : al->second;
  f[kOffAlloc + 0] = slog(alloc_bytes);
  f[kOffAlloc + 1] = slog(alloc_bytes * alloc_outer);
  f[kOffAlloc + 2] = slog(alloc_outer);
  f[kOffAlloc + 3] = slog(iters / alloc_outer);

  f[kOffOuter + 0] = slog(iters);
  f[kOffOuter + 1] = float(n);
  f[kOffOuter + 2] = guards_ > 0 ? 1 : 0;
  f[kOffOuter + 3] = float(pass_);
  f[kOffOuter + 4] = guards_ > 0 ? slog(loop_product(0, guard_depth_)) : 0;
  f[kOffOuter + 5] = ops.has_select ? 1 : 0;

  // Register tile: the stored elements the loops inside the innermost loop the store does
  // not move with (its reduction loop) keep live, in vector registers.
  const BufferUse& stored = uses[0];
  for (int d = n - 1; d >= 0; --d)
    if (stored.stride[d] <= 1e-12) {
      f[kOffTile + 0] = slog(stored.elems[d + 1] * stored.buffer->dtype.bytes() / vector_bytes_);
      f[kOffTile + 1] = slog(double(loops_[d].extent));
      break;
    }
  // Traffic into each storage level: the bytes of the largest loop-nest tile that fits it
  // (the loops from some depth inwards), once per iteration of the loops outside it, and the
  // value operations per byte of that traffic.
  const double capacities[3] = {16 * vector_bytes_, 32 * 1024.0, 1024 * 1024.0};
  for (int c = 0; c < 3; ++c) {
    int level = n;
    while (level > 0 && touched[level - 1] <= capacities[c]) --level;
    const double traffic = touched[level] * loop_product(0, level) * pass_;
    f[kOffTile + 2 + 2 * c] = slog(traffic);
    f[kOffTile + 3 + 2 * c] = slog(ops.value_ops * execs / std::max(1.0, traffic));
  }
  // The innermost loop and the buffers that do not move along it contiguously.
  f[kOffTile + 8] = slog(inner_ext);
  int strided = 0;
  for (const BufferUse& u : uses) strided += n && u.stride[n - 1] > 1 + 1e-12;
  f[kOffTile + 9] = float(strided);
}

}  // namespace

int ProgramFeatures::rows() const { return int(data.size()) / kWidth; }

int feature_width() { return kWidth; }

const std::vector<std::string>& feature_names() {
  static const std::vector<std::string> names = make_names();
  return names;
}

ProgramFeatures extract_features(const ir::LoweredFunc& f, const target::Target& t) {
  Extractor x(t);
  x.visit(f.body);
  return std::move(x.out);
}

ProgramFeatures extract_features(const schedule::State& state, const target::Target& t) {
  return extract_features(schedule::lower(state, "features"), t);
}

}  // namespace ktune::search
