// ComputeDAG queries: lookup, producers/consumers, FLOP count and the canonical text whose
// hash names a workload in tuning logs.
#include "ktune/te/compute_dag.h"

#include <algorithm>
#include <sstream>

#include "ktune/ir/printer.h"
#include "ktune/ir/visitor.h"
#include "ktune/support/error.h"
#include "ktune/support/util.h"
#include "parser.h"

namespace ktune::te {

const char* reduce_kind_name(ReduceKind k) {
  switch (k) {
    case ReduceKind::None: return "none";
    case ReduceKind::Sum: return "sum";
    case ReduceKind::Max: return "max";
    case ReduceKind::Min: return "min";
  }
  return "?";
}

int64_t Operation::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int ComputeDAG::find(const std::string& name) const {
  for (size_t i = 0; i < ops.size(); ++i)
    if (ops[i].name == name) return int(i);
  return -1;
}

const Operation& ComputeDAG::op(const std::string& name) const {
  int i = find(name);
  KT_CHECK(i >= 0, "kernel ", kernel, " has no tensor named '", name, "'");
  return ops[i];
}

std::vector<int> ComputeDAG::inputs() const {
  std::vector<int> out;
  for (size_t i = 0; i < ops.size(); ++i)
    if (ops[i].is_placeholder()) out.push_back(int(i));
  return out;
}

std::vector<int> ComputeDAG::outputs() const {
  std::vector<int> out;
  for (size_t i = 0; i < ops.size(); ++i)
    if (ops[i].is_output) out.push_back(int(i));
  return out;
}

std::vector<std::string> ComputeDAG::reads(int i) const {
  std::vector<std::string> out;
  const Operation& o = ops.at(i);
  if (o.is_placeholder() || !o.body.defined()) return out;
  ir::post_order_visit(o.body, [&](const ir::Expr& e) {
    if (const auto* r = e.as<ir::TensorRead>()) {
      if (std::find(out.begin(), out.end(), r->tensor) == out.end()) out.push_back(r->tensor);
    }
  });
  return out;
}

std::vector<int> ComputeDAG::consumers(int i) const {
  std::vector<int> out;
  const std::string& name = ops.at(i).name;
  for (size_t j = 0; j < ops.size(); ++j) {
    if (ops[j].is_placeholder()) continue;
    auto r = reads(int(j));
    if (std::find(r.begin(), r.end(), name) != r.end()) out.push_back(int(j));
  }
  return out;
}

namespace {

// Arithmetic of the value an element computes: Add/Sub/Mul/Div/Min/Max, intrinsic calls and
// selects. Index arithmetic (inside TensorRead indices) and select conditions are address
// and control computations, not FLOPs, so they are not counted.
int64_t count_arith(const ir::Expr& e) {
  using K = ir::ExprKind;
  switch (e.kind()) {
    case K::Add:
    case K::Sub:
    case K::Mul:
    case K::Div:
    case K::Min:
    case K::Max: {
      const ir::Expr *a, *b;
      detail::binary_operands(e, &a, &b);
      return 1 + count_arith(*a) + count_arith(*b);
    }
    case K::Mod:
    case K::EQ:
    case K::NE:
    case K::LT:
    case K::LE:
    case K::GT:
    case K::GE:
    case K::And:
    case K::Or: {
      const ir::Expr *a, *b;
      detail::binary_operands(e, &a, &b);
      return count_arith(*a) + count_arith(*b);
    }
    case K::Not: return count_arith(e.as<ir::Not>()->a);
    case K::Cast: return count_arith(e.as<ir::Cast>()->value);
    case K::Select: {
      const auto* s = e.as<ir::Select>();
      return 1 + count_arith(s->true_value) + count_arith(s->false_value);
    }
    case K::Call: {
      int64_t n = 1;
      for (const auto& a : e.as<ir::Call>()->args) n += count_arith(a);
      return n;
    }
    default: return 0;  // immediates, variables, tensor reads
  }
}

}  // namespace

double ComputeDAG::flop_count() const {
  double total = 0;
  for (const Operation& o : ops) {
    if (o.is_placeholder()) continue;
    double reduce = 1;
    for (const Axis& a : o.reduce_axes) reduce *= double(a.extent);
    double per = double(count_arith(o.body)) + (o.reduce != ReduceKind::None ? 1 : 0);
    total += double(o.num_elements()) * reduce * per;
  }
  return total;
}

std::string ComputeDAG::canonical_text() const {
  std::ostringstream os;
  os << "kernel " << kernel << "\n";
  auto shape_text = [](const std::vector<int64_t>& s) {
    std::string text = "[";
    text += join(s, ", ", [](int64_t d) { return std::to_string(d); });
    return text + "]";
  };
  for (const Operation& o : ops) {
    os << (o.is_placeholder() ? "placeholder " : "compute ") << o.name << " "
       << detail::element_type_name(o.dtype) << " " << shape_text(o.shape);
    if (o.is_const) os << " const";
    if (o.is_output) os << " output";
    if (!o.is_placeholder()) {
      ir::VarMap rename;
      for (size_t k = 0; k < o.axes.size(); ++k)
        rename[o.axes[k].var.get()] = ir::Var::make(ktune::detail::concat("ax", k), o.axes[k].var.type());
      std::vector<int64_t> rext;
      for (size_t k = 0; k < o.reduce_axes.size(); ++k) {
        rename[o.reduce_axes[k].var.get()] =
            ir::Var::make(ktune::detail::concat("r", k), o.reduce_axes[k].var.type());
        rext.push_back(o.reduce_axes[k].extent);
      }
      if (o.reduce != ReduceKind::None) os << " " << reduce_kind_name(o.reduce) << shape_text(rext);
      os << " = " << ir::to_string(ir::substitute(o.body, rename));
    }
    os << "\n";
  }
  return os.str();
}

std::string ComputeDAG::hash() const { return hex64(fnv1a64(canonical_text())); }

}  // namespace ktune::te
