// The loop-nest IR: immutable, reference-counted expression and statement nodes.
//
// Every node kind is listed once, in KTUNE_EXPR_NODES / KTUNE_STMT_NODES; the kind enums and
// the visitor/mutator method lists are generated from those lists (STYLE 1). Nodes are built
// with make() (or the operator helpers in ir_ops.h) and downcast with as<T>() on the kind tag.
//
// Semantics worth knowing:
//  - Integer Div and Mod are floor division and floor modulo (the sign of Mod follows the
//    divisor). Index expressions are i64.
//  - Load/Store take a *flat* element index into a Buffer. A vector index (Ramp) loads or
//    stores several lanes; a Ramp with stride 1 is a contiguous access.
//  - For iterates var over [min, min + extent) (extent is a count, exclusive upper bound).
//    Its kind says how: serial, parallel (over the CPU thread pool), vectorized, unrolled,
//    or bound to a GPU grid dimension (blockIdx / threadIdx / vthread).
//  - Allocate introduces a buffer of `extent` elements in a memory scope (global heap,
//    GPU shared memory, or thread-local registers/stack) that lives for its body.
//  - TensorRead names an element of a tensor of the kernel language by multi-dimensional
//    indices. It only appears in compute definitions; lowering replaces it by Load.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ktune/ir/type.h"

namespace ktune::ir {

// The binary nodes (operands a and b; comparisons and And/Or give bool): the part of
// KTUNE_EXPR_NODES that passes treat alike.
#define KTUNE_BINARY_NODES(X) \
  X(Add)                      \
  X(Sub)                      \
  X(Mul)                      \
  X(Div)                      \
  X(Mod)                      \
  X(Min)                      \
  X(Max)                      \
  X(EQ)                       \
  X(NE)                       \
  X(LT)                       \
  X(LE)                       \
  X(GT)                       \
  X(GE)                       \
  X(And)                      \
  X(Or)

#define KTUNE_EXPR_NODES(X) \
  X(IntImm)                 \
  X(FloatImm)               \
  X(Var)                    \
  X(Cast)                   \
  KTUNE_BINARY_NODES(X)     \
  X(Not)                    \
  X(Select)                 \
  X(Load)                   \
  X(Ramp)                   \
  X(Broadcast)              \
  X(Call)                   \
  X(TensorRead)

#define KTUNE_STMT_NODES(X) \
  X(For)                    \
  X(Store)                  \
  X(Allocate)               \
  X(IfThenElse)             \
  X(Block)                  \
  X(Barrier)                \
  X(Evaluate)               \
  X(LetStmt)

enum class ExprKind : uint8_t {
#define KT_X(n) n,
  KTUNE_EXPR_NODES(KT_X)
#undef KT_X
};
enum class StmtKind : uint8_t {
#define KT_X(n) n,
  KTUNE_STMT_NODES(KT_X)
#undef KT_X
};

const char* kind_name(ExprKind k);
const char* kind_name(StmtKind k);

struct ExprNode {
  ExprNode(ExprKind k, Type t) : kind(k), type(t) {}
  virtual ~ExprNode() = default;
  const ExprKind kind;
  const Type type;
};

struct StmtNode {
  explicit StmtNode(StmtKind k) : kind(k) {}
  virtual ~StmtNode() = default;
  const StmtKind kind;
};

// Handle to an immutable expression node. Copying a handle shares the node.
class Expr {
 public:
  Expr() = default;
  explicit Expr(std::shared_ptr<const ExprNode> n) : node_(std::move(n)) {}
  // Integer constants convert to i64 IntImm, doubles to f32 FloatImm, for terse builders.
  Expr(int v);      // NOLINT(google-explicit-constructor)
  Expr(int64_t v);  // NOLINT(google-explicit-constructor)
  Expr(double v);   // NOLINT(google-explicit-constructor)

  bool defined() const { return node_ != nullptr; }
  const ExprNode* get() const { return node_.get(); }
  const ExprNode* operator->() const { return node_.get(); }
  Type type() const { return node_->type; }
  ExprKind kind() const { return node_->kind; }
  bool same_as(const Expr& o) const { return node_ == o.node_; }

  template <typename T>
  const T* as() const {
    return node_ && node_->kind == T::kKind ? static_cast<const T*>(node_.get()) : nullptr;
  }

 private:
  std::shared_ptr<const ExprNode> node_;
};

class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(std::shared_ptr<const StmtNode> n) : node_(std::move(n)) {}
  bool defined() const { return node_ != nullptr; }
  const StmtNode* get() const { return node_.get(); }
  const StmtNode* operator->() const { return node_.get(); }
  StmtKind kind() const { return node_->kind; }
  bool same_as(const Stmt& o) const { return node_ == o.node_; }

  template <typename T>
  const T* as() const {
    return node_ && node_->kind == T::kKind ? static_cast<const T*>(node_.get()) : nullptr;
  }

 private:
  std::shared_ptr<const StmtNode> node_;
};

// ---------------------------------------------------------------------------------------
// Buffers

enum class MemoryScope : uint8_t { Global, Shared, Local };
const char* scope_name(MemoryScope s);

// A named region of memory. Identity is the node (two buffers with one name are distinct).
// `shape` is the logical shape (row-major); Load/Store index it flat.
struct BufferNode {
  std::string name;
  Type dtype;
  std::vector<int64_t> shape;
  MemoryScope scope = MemoryScope::Global;
  int64_t num_elements() const;
};
using Buffer = std::shared_ptr<const BufferNode>;
Buffer make_buffer(std::string name, Type dtype, std::vector<int64_t> shape,
                   MemoryScope scope = MemoryScope::Global);

// ---------------------------------------------------------------------------------------
// Expression nodes

struct IntImm : ExprNode {
  static constexpr ExprKind kKind = ExprKind::IntImm;
  IntImm(Type t, int64_t v) : ExprNode(kKind, t), value(v) {}
  int64_t value;
  static Expr make(Type t, int64_t v);
};

struct FloatImm : ExprNode {
  static constexpr ExprKind kKind = ExprKind::FloatImm;
  FloatImm(Type t, double v) : ExprNode(kKind, t), value(v) {}
  double value;
  static Expr make(Type t, double v);
};

// A variable: a loop variable, a let-bound value, or a shape parameter. Identity is the node.
struct Var : ExprNode {
  static constexpr ExprKind kKind = ExprKind::Var;
  Var(Type t, std::string n) : ExprNode(kKind, t), name(std::move(n)) {}
  std::string name;
  static Expr make(std::string name, Type t = Type::i64());
};

struct Cast : ExprNode {
  static constexpr ExprKind kKind = ExprKind::Cast;
  Cast(Type t, Expr v) : ExprNode(kKind, t), value(std::move(v)) {}
  Expr value;
  static Expr make(Type t, Expr v);
};

// Binary arithmetic, comparison and logic nodes share one shape. Comparisons have a bool
// type with the operands' lanes.
template <ExprKind K>
struct BinaryNode : ExprNode {
  static constexpr ExprKind kKind = K;
  BinaryNode(Type t, Expr x, Expr y) : ExprNode(K, t), a(std::move(x)), b(std::move(y)) {}
  Expr a, b;
  static Expr make(Expr a, Expr b);
};
using Add = BinaryNode<ExprKind::Add>;
using Sub = BinaryNode<ExprKind::Sub>;
using Mul = BinaryNode<ExprKind::Mul>;
using Div = BinaryNode<ExprKind::Div>;
using Mod = BinaryNode<ExprKind::Mod>;
using Min = BinaryNode<ExprKind::Min>;
using Max = BinaryNode<ExprKind::Max>;
using EQ = BinaryNode<ExprKind::EQ>;
using NE = BinaryNode<ExprKind::NE>;
using LT = BinaryNode<ExprKind::LT>;
using LE = BinaryNode<ExprKind::LE>;
using GT = BinaryNode<ExprKind::GT>;
using GE = BinaryNode<ExprKind::GE>;
using And = BinaryNode<ExprKind::And>;
using Or = BinaryNode<ExprKind::Or>;

struct Not : ExprNode {
  static constexpr ExprKind kKind = ExprKind::Not;
  Not(Type t, Expr v) : ExprNode(kKind, t), a(std::move(v)) {}
  Expr a;
  static Expr make(Expr a);
};

struct Select : ExprNode {
  static constexpr ExprKind kKind = ExprKind::Select;
  Select(Type t, Expr c, Expr x, Expr y)
      : ExprNode(kKind, t), cond(std::move(c)), true_value(std::move(x)), false_value(std::move(y)) {}
  Expr cond, true_value, false_value;
  static Expr make(Expr cond, Expr t, Expr f);
};

// Reads buffer[index]; the result has the buffer's element type with the index's lanes.
struct Load : ExprNode {
  static constexpr ExprKind kKind = ExprKind::Load;
  Load(Type t, Buffer b, Expr i) : ExprNode(kKind, t), buffer(std::move(b)), index(std::move(i)) {}
  Buffer buffer;
  Expr index;
  static Expr make(Buffer b, Expr index);
};

// The vector [base, base + stride, ..., base + (lanes-1)*stride].
struct Ramp : ExprNode {
  static constexpr ExprKind kKind = ExprKind::Ramp;
  Ramp(Type t, Expr b, Expr s, int l) : ExprNode(kKind, t), base(std::move(b)), stride(std::move(s)), lanes(l) {}
  Expr base, stride;
  int lanes;
  static Expr make(Expr base, Expr stride, int lanes);
};

// A scalar repeated over `lanes` lanes.
struct Broadcast : ExprNode {
  static constexpr ExprKind kKind = ExprKind::Broadcast;
  Broadcast(Type t, Expr v, int l) : ExprNode(kKind, t), value(std::move(v)), lanes(l) {}
  Expr value;
  int lanes;
  static Expr make(Expr value, int lanes);
};

// Pure math intrinsics. All take and return the type of their first argument.
enum class Intrinsic : uint8_t { Exp, Sqrt, Log, Tanh, Abs, Sigmoid };
const char* intrinsic_name(Intrinsic f);

struct Call : ExprNode {
  static constexpr ExprKind kKind = ExprKind::Call;
  Call(Type t, Intrinsic f, std::vector<Expr> a) : ExprNode(kKind, t), func(f), args(std::move(a)) {}
  Intrinsic func;
  std::vector<Expr> args;
  static Expr make(Intrinsic f, std::vector<Expr> args);
};

// tensor[indices...] in a compute definition, before lowering. `tensor` names an input or a
// compute op of the ComputeDAG.
struct TensorRead : ExprNode {
  static constexpr ExprKind kKind = ExprKind::TensorRead;
  TensorRead(Type t, std::string n, std::vector<Expr> i)
      : ExprNode(kKind, t), tensor(std::move(n)), indices(std::move(i)) {}
  std::string tensor;
  std::vector<Expr> indices;
  static Expr make(Type t, std::string tensor, std::vector<Expr> indices);
};

// ---------------------------------------------------------------------------------------
// Statement nodes

enum class ForKind : uint8_t {
  Serial,
  Parallel,
  Vectorized,
  Unrolled,
  BlockIdxX,
  BlockIdxY,
  BlockIdxZ,
  ThreadIdxX,
  ThreadIdxY,
  ThreadIdxZ,
  VThread,
};
const char* for_kind_name(ForKind k);
bool is_gpu_binding(ForKind k);

struct For : StmtNode {
  static constexpr StmtKind kKind = StmtKind::For;
  For(Expr v, Expr m, Expr e, ForKind k, Stmt b)
      : StmtNode(kKind), var(std::move(v)), min(std::move(m)), extent(std::move(e)), for_kind(k), body(std::move(b)) {}
  Expr var;  // a Var
  Expr min, extent;
  ForKind for_kind;
  Stmt body;
  static Stmt make(Expr var, Expr min, Expr extent, ForKind kind, Stmt body);
};

struct Store : StmtNode {
  static constexpr StmtKind kKind = StmtKind::Store;
  Store(Buffer b, Expr v, Expr i) : StmtNode(kKind), buffer(std::move(b)), value(std::move(v)), index(std::move(i)) {}
  Buffer buffer;
  Expr value, index;
  static Stmt make(Buffer b, Expr value, Expr index);
};

struct Allocate : StmtNode {
  static constexpr StmtKind kKind = StmtKind::Allocate;
  Allocate(Buffer b, Stmt s) : StmtNode(kKind), buffer(std::move(b)), body(std::move(s)) {}
  Buffer buffer;  // size and scope come from the buffer
  Stmt body;
  static Stmt make(Buffer b, Stmt body);
};

struct IfThenElse : StmtNode {
  static constexpr StmtKind kKind = StmtKind::IfThenElse;
  IfThenElse(Expr c, Stmt t, Stmt e)
      : StmtNode(kKind), cond(std::move(c)), then_case(std::move(t)), else_case(std::move(e)) {}
  Expr cond;
  Stmt then_case, else_case;  // else_case may be undefined
  static Stmt make(Expr cond, Stmt then_case, Stmt else_case = Stmt());
};

struct Block : StmtNode {
  static constexpr StmtKind kKind = StmtKind::Block;
  explicit Block(std::vector<Stmt> s) : StmtNode(kKind), stmts(std::move(s)) {}
  std::vector<Stmt> stmts;
  // Flattens nested blocks; a single statement is returned as is.
  static Stmt make(std::vector<Stmt> stmts);
};

// Synchronizes the threads of a GPU block (scope Shared) or is a no-op elsewhere.
struct Barrier : StmtNode {
  static constexpr StmtKind kKind = StmtKind::Barrier;
  explicit Barrier(MemoryScope s) : StmtNode(kKind), scope(s) {}
  MemoryScope scope;
  static Stmt make(MemoryScope scope = MemoryScope::Shared);
};

struct Evaluate : StmtNode {
  static constexpr StmtKind kKind = StmtKind::Evaluate;
  explicit Evaluate(Expr v) : StmtNode(kKind), value(std::move(v)) {}
  Expr value;
  static Stmt make(Expr v);
};

struct LetStmt : StmtNode {
  static constexpr StmtKind kKind = StmtKind::LetStmt;
  LetStmt(Expr v, Expr val, Stmt b) : StmtNode(kKind), var(std::move(v)), value(std::move(val)), body(std::move(b)) {}
  Expr var;  // a Var
  Expr value;
  Stmt body;
  static Stmt make(Expr var, Expr value, Stmt body);
};

// A lowered kernel: its buffer arguments (inputs then outputs) and its body.
struct LoweredFunc {
  std::string name;
  std::vector<Buffer> args;
  Stmt body;
};

}  // namespace ktune::ir
