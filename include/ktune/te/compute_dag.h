// Tensor expressions: the ComputeDAG that a kernel file instantiates to.
//
// A ComputeDAG is a list of operations in topological order: placeholders (the kernel's
// inputs) first, then compute operations in the order the file defines them. A compute op
// defines every element of its tensor by an expression (`body`) over its spatial axes and,
// for a reduction, its reduce axes; the body reads other tensors through ir::TensorRead.
// Axis variables are i64 ir::Var nodes ranging over [0, extent). Ops marked `output` are the
// kernel's results; other compute ops are intermediates the schedule may inline, compute
// at a consumer, or materialize.
//
// Note on the module split: te builds its expressions with the IR's Expr nodes (as TVM's te
// uses tir expressions) rather than keeping a second expression tree, so te depends on ir.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ktune/ir/ir.h"

namespace ktune::te {

enum class ReduceKind : uint8_t { None, Sum, Max, Min };
const char* reduce_kind_name(ReduceKind k);

// A loop axis of an operation: var in [0, extent).
struct Axis {
  ir::Expr var;  // an ir::Var of type i64
  int64_t extent;
};

struct Operation {
  enum class Kind : uint8_t { Placeholder, Compute };
  Kind kind = Kind::Compute;
  std::string name;
  ir::Type dtype = ir::Type::f32();
  std::vector<int64_t> shape;  // == extents of `axes` for a compute op
  bool is_const = false;       // placeholder whose values are known ahead (weights)
  bool is_output = false;      // compute op that is a kernel result

  // Compute ops only.
  std::vector<Axis> axes;         // one per dimension, in order
  std::vector<Axis> reduce_axes;  // empty unless reduce != None
  ReduceKind reduce = ReduceKind::None;
  ir::Expr body;  // value of one element (for a reduction: the reduced term)

  bool is_placeholder() const { return kind == Kind::Placeholder; }
  int64_t num_elements() const;
};

struct ComputeDAG {
  std::string kernel;                                   // kernel name
  std::vector<std::pair<std::string, int64_t>> params;  // integer parameters as bound
  std::string dtype;                                    // value of a `dtype` parameter, if any
  std::vector<Operation> ops;                           // topological order

  // Index of the op named `name`, or -1.
  int find(const std::string& name) const;
  const Operation& op(const std::string& name) const;
  // Indices of placeholders, and of outputs, in order: the kernel's argument order.
  std::vector<int> inputs() const;
  std::vector<int> outputs() const;
  // Indices of the compute ops that read op `i`.
  std::vector<int> consumers(int i) const;
  // Names of the tensors op `i` reads (in order of first appearance, no repeats).
  std::vector<std::string> reads(int i) const;

  // Floating-point operations of one run: per compute op, elements x (reduce extent) x
  // (arithmetic nodes in the body, + 1 for the reduction combine when reducing).
  double flop_count() const;
  // Canonical text of the DAG (ops, shapes, bodies); its hash identifies the workload.
  std::string canonical_text() const;
  std::string hash() const;  // 16 hex digits of fnv1a64(canonical_text())
};

}  // namespace ktune::te
