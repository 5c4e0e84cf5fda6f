// Small ComputeDAGs built directly with the IR builders (independent of the kernel parser)
// and a helper that lowers a state, interprets it and compares with the TE evaluator.
#pragma once

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ktune/ir/interpreter.h"
#include "ktune/ir/ir_ops.h"
#include "ktune/schedule/lower.h"
#include "ktune/schedule/state.h"
#include "support/te_eval.h"

namespace ktune::testing {

inline te::Operation placeholder(const std::string& name, std::vector<int64_t> shape) {
  te::Operation op;
  op.kind = te::Operation::Kind::Placeholder;
  op.name = name;
  op.shape = std::move(shape);
  return op;
}

using BodyFn = std::function<ir::Expr(const std::vector<ir::Expr>& ax, const std::vector<ir::Expr>& rd)>;

inline te::Operation compute(const std::string& name, std::vector<int64_t> shape, BodyFn body,
                             std::vector<int64_t> reduce_ext = {}, te::ReduceKind rk = te::ReduceKind::None,
                             bool output = false) {
  te::Operation op;
  op.name = name;
  op.shape = shape;
  op.is_output = output;
  op.reduce = reduce_ext.empty() ? te::ReduceKind::None : rk;
  std::vector<ir::Expr> ax, rd;
  const char* names = "ijklmn";
  for (size_t d = 0; d < shape.size(); ++d) {
    ax.push_back(ir::Var::make(std::string(1, names[d])));
    op.axes.push_back({ax.back(), shape[d]});
  }
  for (size_t r = 0; r < reduce_ext.size(); ++r) {
    rd.push_back(ir::Var::make("r" + std::to_string(r)));
    op.reduce_axes.push_back({rd.back(), reduce_ext[r]});
  }
  op.body = body(ax, rd);
  return op;
}

inline ir::Expr rd(const std::string& t, std::vector<ir::Expr> idx) {
  return ir::TensorRead::make(ir::Type::f32(), t, std::move(idx));
}

inline std::shared_ptr<const te::ComputeDAG> matmul_dag(int64_t M, int64_t N, int64_t K) {
  auto dag = std::make_shared<te::ComputeDAG>();
  dag->kernel = "matmul";
  dag->params = {{"M", M}, {"N", N}, {"K", K}};
  dag->ops.push_back(placeholder("A", {M, K}));
  dag->ops.push_back(placeholder("B", {K, N}));
  dag->ops.push_back(compute(
      "C", {M, N}, [](auto& a, auto& r) { return rd("A", {a[0], r[0]}) * rd("B", {r[0], a[1]}); }, {K},
      te::ReduceKind::Sum, true));
  return dag;
}

// D = A·B; Y = max(D + bias, 0).
inline std::shared_ptr<const te::ComputeDAG> dense_relu_dag(int64_t M, int64_t N, int64_t K) {
  auto dag = std::make_shared<te::ComputeDAG>();
  dag->kernel = "dense_bias_relu";
  dag->ops.push_back(placeholder("A", {M, K}));
  dag->ops.push_back(placeholder("W", {K, N}));
  dag->ops.push_back(placeholder("bias", {N}));
  dag->ops.push_back(compute(
      "D", {M, N}, [](auto& a, auto& r) { return rd("A", {a[0], r[0]}) * rd("W", {r[0], a[1]}); }, {K},
      te::ReduceKind::Sum));
  dag->ops.push_back(compute(
      "Y", {M, N}, [](auto& a, auto&) { return ir::max(rd("D", {a[0], a[1]}) + rd("bias", {a[1]}), ir::make_zero(ir::Type::f32())); },
      {}, te::ReduceKind::None, true));
  return dag;
}

// 1-D convolution with zero padding through an intermediate padded input.
inline std::shared_ptr<const te::ComputeDAG> conv1d_dag(int64_t C, int64_t W, int64_t K, int64_t S, int64_t pad) {
  auto dag = std::make_shared<te::ComputeDAG>();
  dag->kernel = "conv1d";
  const int64_t Wp = W + 2 * pad, Q = Wp - S + 1;
  dag->ops.push_back(placeholder("I", {C, W}));
  dag->ops.push_back(placeholder("Wt", {K, C, S}));
  dag->ops.push_back(compute("Ipad", {C, Wp}, [&](auto& a, auto&) {
    return ir::select(a[1] >= ir::Expr(pad) && a[1] < ir::Expr(W + pad), rd("I", {a[0], a[1] - ir::Expr(pad)}),
                      ir::make_zero(ir::Type::f32()));
  }));
  dag->ops.push_back(compute(
      "O", {K, Q}, [](auto& a, auto& r) { return rd("Ipad", {r[0], a[1] + r[1]}) * rd("Wt", {a[0], r[0], r[1]}); },
      {C, S}, te::ReduceKind::Sum, true));
  return dag;
}

// Row softmax in four stages.
inline std::shared_ptr<const te::ComputeDAG> softmax_dag(int64_t M, int64_t N) {
  auto dag = std::make_shared<te::ComputeDAG>();
  dag->kernel = "softmax";
  dag->ops.push_back(placeholder("X", {M, N}));
  dag->ops.push_back(compute("mx", {M}, [](auto& a, auto& r) { return rd("X", {a[0], r[0]}); }, {N}, te::ReduceKind::Max));
  dag->ops.push_back(compute("e", {M, N}, [](auto& a, auto&) {
    return ir::Call::make(ir::Intrinsic::Exp, {rd("X", {a[0], a[1]}) - rd("mx", {a[0]})});
  }));
  dag->ops.push_back(compute("sm", {M}, [](auto& a, auto& r) { return rd("e", {a[0], r[0]}); }, {N}, te::ReduceKind::Sum));
  dag->ops.push_back(compute("Y", {M, N}, [](auto& a, auto&) { return rd("e", {a[0], a[1]}) / rd("sm", {a[0]}); },
                             {}, te::ReduceKind::None, true));
  return dag;
}

// Lowers `st`, interprets it on random inputs and returns the max relative L2 error of the
// outputs against the TE evaluator.
inline double check_lowering(const schedule::State& st, uint64_t seed = 7) {
  const te::ComputeDAG& dag = st.dag();
  ir::LoweredFunc f = schedule::lower(st, "k");
  TeEvaluator ev;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<std::vector<float>> storage;
  std::vector<void*> args;
  for (int i : dag.inputs()) {
    const auto& op = dag.ops[i];
    Tensor t{op.shape, {}};
    storage.emplace_back(op.num_elements());
    for (auto& x : storage.back()) {
      x = u(rng);
      t.data.push_back(x);
    }
    ev.tensors[op.name] = t;
  }
  for (int i : dag.outputs()) storage.emplace_back(dag.ops[i].num_elements(), NAN);
  for (auto& s : storage) args.push_back(s.data());
  ir::interpret(f, args);
  ev.run(dag);
  double worst = 0;
  size_t k = dag.inputs().size();
  for (int i : dag.outputs()) {
    const Tensor& want = ev.tensors.at(dag.ops[i].name);
    const auto& got = storage[k++];
    double num = 0, den = 0;
    for (size_t e = 0; e < got.size(); ++e) {
      double d = double(got[e]) - want.data[e];
      num += d * d;
      den += want.data[e] * want.data[e];
    }
    double err = std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
    if (std::isnan(err)) err = INFINITY;
    worst = std::max(worst, err);
  }
  return worst;
}

}  // namespace ktune::testing
