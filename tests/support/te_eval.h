// Direct evaluation of a ComputeDAG from its definition, element by element, independent
// of scheduling, lowering and code generation: the oracle of the lowering tests.
#pragma once

#include <cmath>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "ktune/ir/ir.h"
#include "ktune/support/util.h"
#include "ktune/te/compute_dag.h"

namespace ktune::testing {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<double> data;
  double at(const std::vector<int64_t>& idx) const {
    int64_t f = 0;
    for (size_t d = 0; d < idx.size(); ++d) f = f * shape[d] + idx[d];
    return data.at(f);
  }
};

class TeEvaluator {
 public:
  std::map<std::string, Tensor> tensors;
  std::unordered_map<const ir::ExprNode*, int64_t> vars;

  double eval(const ir::Expr& e) {
    using K = ir::ExprKind;
    switch (e.kind()) {
      case K::IntImm: return double(e.as<ir::IntImm>()->value);
      case K::FloatImm: return e.as<ir::FloatImm>()->value;
      case K::Var: return double(vars.at(e.get()));
      case K::Cast: {
        double v = eval(e.as<ir::Cast>()->value);
        if (e.type().is_int()) return std::trunc(v);
        if (e.type().bits == 32 && e.type().is_float()) return double(float(v));
        return v;
      }
#define BIN(n, expr)                         \
  case K::n: {                               \
    const auto* o = e.as<ir::n>();           \
    double a = eval(o->a), b = eval(o->b);   \
    return expr;                             \
  }
      BIN(Add, a + b)
      BIN(Sub, a - b)
      BIN(Mul, a * b)
      BIN(Div, e.type().is_int() ? double(floor_div(int64_t(a), int64_t(b))) : a / b)
      BIN(Mod, double(floor_mod(int64_t(a), int64_t(b))))
      BIN(Min, std::min(a, b))
      BIN(Max, std::max(a, b))
      BIN(EQ, a == b)
      BIN(NE, a != b)
      BIN(LT, a < b)
      BIN(LE, a <= b)
      BIN(GT, a > b)
      BIN(GE, a >= b)
      BIN(And, a != 0 && b != 0)
      BIN(Or, a != 0 || b != 0)
#undef BIN
      case K::Not: return eval(e.as<ir::Not>()->a) == 0;
      case K::Select: {
        const auto* s = e.as<ir::Select>();
        return eval(s->cond) != 0 ? eval(s->true_value) : eval(s->false_value);
      }
      case K::Call: {
        const auto* c = e.as<ir::Call>();
        double a = eval(c->args[0]);
        switch (c->func) {
          case ir::Intrinsic::Exp: return std::exp(a);
          case ir::Intrinsic::Sqrt: return std::sqrt(a);
          case ir::Intrinsic::Log: return std::log(a);
          case ir::Intrinsic::Tanh: return std::tanh(a);
          case ir::Intrinsic::Abs: return std::fabs(a);
          case ir::Intrinsic::Sigmoid: return 1 / (1 + std::exp(-a));
        }
        return 0;
      }
      case K::TensorRead: {
        const auto* t = e.as<ir::TensorRead>();
        std::vector<int64_t> idx;
        for (const auto& i : t->indices) idx.push_back(int64_t(eval(i)));
        const Tensor& T = tensors.at(t->tensor);
        for (size_t d = 0; d < idx.size(); ++d)
          if (idx[d] < 0 || idx[d] >= T.shape[d]) throw std::out_of_range("te_eval: read out of bounds of " + t->tensor);
        return T.at(idx);
      }
      default: throw std::runtime_error("te_eval: unsupported node");
    }
  }

  // Evaluates every compute op of the DAG (inputs must be in `tensors`).
  void run(const te::ComputeDAG& dag) {
    for (const auto& op : dag.ops) {
      if (op.is_placeholder()) continue;
      Tensor out{op.shape, std::vector<double>(op.num_elements())};
      std::vector<int64_t> idx(op.shape.size(), 0);
      for (int64_t flat = 0; flat < op.num_elements(); ++flat) {
        int64_t rem = flat;
        for (size_t d = op.shape.size(); d-- > 0;) {
          idx[d] = rem % op.shape[d];
          rem /= op.shape[d];
          vars[op.axes[d].var.get()] = idx[d];
        }
        out.data[flat] = op.reduce == te::ReduceKind::None ? eval(op.body) : reduce(op, 0);
      }
      tensors[op.name] = std::move(out);
    }
  }

 private:
  double reduce(const te::Operation& op, size_t r) {
    if (r == op.reduce_axes.size()) return eval(op.body);
    double acc = op.reduce == te::ReduceKind::Sum ? 0 : op.reduce == te::ReduceKind::Max ? -INFINITY : INFINITY;
    for (int64_t i = 0; i < op.reduce_axes[r].extent; ++i) {
      vars[op.reduce_axes[r].var.get()] = i;
      double v = reduce(op, r + 1);
      acc = op.reduce == te::ReduceKind::Sum ? acc + v : op.reduce == te::ReduceKind::Max ? std::max(acc, v) : std::min(acc, v);
    }
    return acc;
  }
};

}  // namespace ktune::testing
