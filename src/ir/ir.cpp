// Node constructors of the loop-nest IR and the names of its enums. The make() functions
// are the one place where node invariants are checked (operand types agree, loop variables
// are Vars, indices are integers), so every pass can rely on them.
#include "ktune/ir/ir.h"

#include <cmath>
#include <limits>

#include "half.h"
#include "ktune/ir/ir_ops.h"
#include "ktune/ir/printer.h"
#include "ktune/support/error.h"

namespace ktune::ir {

// ---------------------------------------------------------------------------------------
// Type

std::string Type::to_string() const {
  std::string s;
  switch (code) {
    case TypeCode::Int: s = "i" + std::to_string(bits); break;
    case TypeCode::Float: s = "f" + std::to_string(bits); break;
    case TypeCode::BFloat: s = "bf" + std::to_string(bits); break;
    case TypeCode::Bool: s = "bool"; break;
  }
  if (lanes != 1) s += "x" + std::to_string(lanes);
  return s;
}

std::optional<Type> Type::parse(std::string_view s) {
  if (s == "f32") return f32();
  if (s == "f64") return f64();
  if (s == "f16") return f16();
  if (s == "bf16") return bf16();
  if (s == "i8") return i8();
  if (s == "i32") return i32();
  if (s == "i64") return i64();
  if (s == "bool") return boolean();
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------
// Names

const char* kind_name(ExprKind k) {
  switch (k) {
#define KT_X(n) \
  case ExprKind::n: return #n;
    KTUNE_EXPR_NODES(KT_X)
#undef KT_X
  }
  return "?";
}

const char* kind_name(StmtKind k) {
  switch (k) {
#define KT_X(n) \
  case StmtKind::n: return #n;
    KTUNE_STMT_NODES(KT_X)
#undef KT_X
  }
  return "?";
}

const char* scope_name(MemoryScope s) {
  switch (s) {
    case MemoryScope::Global: return "global";
    case MemoryScope::Shared: return "shared";
    case MemoryScope::Local: return "local";
  }
  return "?";
}

const char* intrinsic_name(Intrinsic f) {
  switch (f) {
    case Intrinsic::Exp: return "exp";
    case Intrinsic::Sqrt: return "sqrt";
    case Intrinsic::Log: return "log";
    case Intrinsic::Tanh: return "tanh";
    case Intrinsic::Abs: return "abs";
    case Intrinsic::Sigmoid: return "sigmoid";
  }
  return "?";
}

const char* for_kind_name(ForKind k) {
  switch (k) {
    case ForKind::Serial: return "serial";
    case ForKind::Parallel: return "parallel";
    case ForKind::Vectorized: return "vectorized";
    case ForKind::Unrolled: return "unrolled";
    case ForKind::BlockIdxX: return "blockIdx.x";
    case ForKind::BlockIdxY: return "blockIdx.y";
    case ForKind::BlockIdxZ: return "blockIdx.z";
    case ForKind::ThreadIdxX: return "threadIdx.x";
    case ForKind::ThreadIdxY: return "threadIdx.y";
    case ForKind::ThreadIdxZ: return "threadIdx.z";
    case ForKind::VThread: return "vthread";
  }
  return "?";
}

bool is_gpu_binding(ForKind k) {
  switch (k) {
    case ForKind::BlockIdxX:
    case ForKind::BlockIdxY:
    case ForKind::BlockIdxZ:
    case ForKind::ThreadIdxX:
    case ForKind::ThreadIdxY:
    case ForKind::ThreadIdxZ:
    case ForKind::VThread: return true;
    default: return false;
  }
}

// ---------------------------------------------------------------------------------------
// Buffers

int64_t BufferNode::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Buffer make_buffer(std::string name, Type dtype, std::vector<int64_t> shape, MemoryScope scope) {
  KT_CHECK(dtype.is_scalar(), "buffer ", name, " has a vector element type ", dtype.to_string());
  for (int64_t d : shape) KT_CHECK(d >= 0, "buffer ", name, " has a negative extent");
  auto b = std::make_shared<BufferNode>();
  b->name = std::move(name);
  b->dtype = dtype;
  b->shape = std::move(shape);
  b->scope = scope;
  return b;
}

// ---------------------------------------------------------------------------------------
// Expressions

Expr::Expr(int v) : Expr(IntImm::make(Type::i64(), v)) {}
Expr::Expr(int64_t v) : Expr(IntImm::make(Type::i64(), v)) {}
Expr::Expr(double v) : Expr(FloatImm::make(Type::f32(), v)) {}

namespace {

// Wraps an integer to the range of its type (two's complement), as the hardware would.
int64_t wrap_int(Type t, int64_t v) {
  if (t.is_bool()) return v != 0;
  switch (t.bits) {
    case 8: return int8_t(v);
    case 16: return int16_t(v);
    case 32: return int32_t(v);
    default: return v;
  }
}

double round_float(Type t, double v) {
  if (t.code == TypeCode::BFloat) return detail::bf16_to_float(detail::float_to_bf16(float(v)));
  if (t.bits == 16) return detail::half_to_float(detail::float_to_half(float(v)));
  if (t.bits == 32) return double(float(v));
  return v;
}

template <typename T, typename... Args>
Expr make_expr(Args&&... args) {
  return Expr(std::make_shared<const T>(std::forward<Args>(args)...));
}

template <typename T, typename... Args>
Stmt make_stmt(Args&&... args) {
  return Stmt(std::make_shared<const T>(std::forward<Args>(args)...));
}

constexpr bool is_comparison(ExprKind k) {
  return k == ExprKind::EQ || k == ExprKind::NE || k == ExprKind::LT || k == ExprKind::LE ||
         k == ExprKind::GT || k == ExprKind::GE;
}

// Converts an integer constant to another integer type (or widens an index expression) so
// loop bounds and lets agree with their variable's type.
Expr coerce_int(Expr e, Type t) {
  if (e.type() == t) return e;
  KT_CHECK(e.type().is_int() && t.is_int(), "expected ", t.to_string(), ", got ",
           e.type().to_string(), ": ", to_string(e));
  if (const IntImm* imm = e.as<IntImm>()) return IntImm::make(t, imm->value);
  return Cast::make(t, e);
}

}  // namespace

Expr IntImm::make(Type t, int64_t v) {
  KT_CHECK(t.is_int() || t.is_bool(), "IntImm of type ", t.to_string());
  if (!t.is_scalar()) return Broadcast::make(make(t.element_of(), v), t.lanes);
  return make_expr<IntImm>(t, wrap_int(t, v));
}

Expr FloatImm::make(Type t, double v) {
  KT_CHECK(t.is_float(), "FloatImm of type ", t.to_string());
  if (!t.is_scalar()) return Broadcast::make(make(t.element_of(), v), t.lanes);
  return make_expr<FloatImm>(t, round_float(t, v));
}

Expr Var::make(std::string name, Type t) { return make_expr<Var>(t, std::move(name)); }

Expr Cast::make(Type t, Expr v) {
  KT_CHECK(v.defined(), "Cast of an undefined expression");
  if (t.is_scalar() && !v.type().is_scalar()) t = t.with_lanes(v.type().lanes);
  KT_CHECK(t.lanes == v.type().lanes, "Cast changes lanes: ", v.type().to_string(), " to ",
           t.to_string());
  if (t == v.type()) return v;
  return make_expr<Cast>(t, std::move(v));
}

template <ExprKind K>
Expr BinaryNode<K>::make(Expr a, Expr b) {
  KT_CHECK(a.defined() && b.defined(), "undefined operand of ", kind_name(K));
  if (a.type() != b.type()) match_types(a, b);
  Type t = a.type();
  if constexpr (is_comparison(K)) {
    t = Type::boolean(t.lanes);
  } else if constexpr (K == ExprKind::And || K == ExprKind::Or) {
    KT_CHECK(t.is_bool(), kind_name(K), " of non-bool operands: ", to_string(a), ", ",
             to_string(b));
  } else {
    KT_CHECK(!t.is_bool(), "arithmetic ", kind_name(K), " on bool operands: ", to_string(a),
             ", ", to_string(b));
  }
  return make_expr<BinaryNode<K>>(t, std::move(a), std::move(b));
}

#define KT_X(n) template struct BinaryNode<ExprKind::n>;
KTUNE_BINARY_NODES(KT_X)
#undef KT_X

Expr Not::make(Expr a) {
  KT_CHECK(a.defined() && a.type().is_bool(), "Not of a non-bool expression");
  Type t = a.type();
  return make_expr<Not>(t, std::move(a));
}

Expr Select::make(Expr cond, Expr t, Expr f) {
  KT_CHECK(cond.defined() && t.defined() && f.defined(), "undefined operand of Select");
  KT_CHECK(cond.type().is_bool(), "Select condition is not bool: ", to_string(cond));
  if (t.type() != f.type()) match_types(t, f);
  int lanes = t.type().lanes;
  if (cond.type().lanes != lanes) {
    KT_CHECK(cond.type().is_scalar(), "Select condition lanes differ from its values");
    // A scalar condition selects whole vectors; keep it scalar.
  }
  Type ty = t.type();
  return make_expr<Select>(ty, std::move(cond), std::move(t), std::move(f));
}

Expr Load::make(Buffer b, Expr index) {
  KT_CHECK(b != nullptr && index.defined(), "Load of an undefined buffer or index");
  KT_CHECK(index.type().is_int(), "Load index of ", b->name, " is not an integer: ",
           to_string(index));
  Type t = b->dtype.with_lanes(index.type().lanes);
  return make_expr<Load>(t, std::move(b), std::move(index));
}

Expr Ramp::make(Expr base, Expr stride, int lanes) {
  KT_CHECK(base.defined() && stride.defined(), "undefined operand of Ramp");
  KT_CHECK(lanes >= 1, "Ramp with ", lanes, " lanes");
  KT_CHECK(base.type().is_scalar() && stride.type().is_scalar(), "Ramp of vectors");
  if (base.type() != stride.type()) match_types(base, stride);
  KT_CHECK(base.type().is_int() || base.type().is_float(), "Ramp of non-numbers");
  Type t = base.type().with_lanes(lanes);
  return make_expr<Ramp>(t, std::move(base), std::move(stride), lanes);
}

Expr Broadcast::make(Expr value, int lanes) {
  KT_CHECK(value.defined(), "Broadcast of an undefined expression");
  KT_CHECK(value.type().is_scalar(), "Broadcast of a vector: ", to_string(value));
  KT_CHECK(lanes >= 1, "Broadcast to ", lanes, " lanes");
  if (lanes == 1) return value;
  Type t = value.type().with_lanes(lanes);
  return make_expr<Broadcast>(t, std::move(value), lanes);
}

Expr Call::make(Intrinsic f, std::vector<Expr> args) {
  KT_CHECK(!args.empty() && args[0].defined(), intrinsic_name(f), " needs an argument");
  KT_CHECK(args[0].type().is_float() || f == Intrinsic::Abs, intrinsic_name(f),
           " of a non-float: ", to_string(args[0]));
  Type t = args[0].type();
  return make_expr<Call>(t, f, std::move(args));
}

Expr TensorRead::make(Type t, std::string tensor, std::vector<Expr> indices) {
  for (const Expr& i : indices)
    KT_CHECK(i.defined() && i.type().is_int(), "index of ", tensor, " is not an integer");
  return make_expr<TensorRead>(t, std::move(tensor), std::move(indices));
}

// ---------------------------------------------------------------------------------------
// Statements

Stmt For::make(Expr var, Expr min, Expr extent, ForKind kind, Stmt body) {
  KT_CHECK(var.as<Var>() != nullptr, "For variable is not a Var");
  KT_CHECK(var.type().is_int() && var.type().is_scalar(), "For variable is not an integer");
  KT_CHECK(body.defined(), "For without a body");
  min = coerce_int(std::move(min), var.type());
  extent = coerce_int(std::move(extent), var.type());
  return make_stmt<For>(std::move(var), std::move(min), std::move(extent), kind,
                        std::move(body));
}

Stmt Store::make(Buffer b, Expr value, Expr index) {
  KT_CHECK(b != nullptr && value.defined() && index.defined(), "undefined operand of Store");
  KT_CHECK(index.type().is_int(), "Store index of ", b->name, " is not an integer: ",
           to_string(index));
  Type want = b->dtype.with_lanes(index.type().lanes);
  if (value.type().element_of() != b->dtype) {
    // Constants are converted to the buffer's type; anything else needs an explicit cast.
    if (const IntImm* imm = value.as<IntImm>()) {
      value = b->dtype.is_float() ? make_const(b->dtype, double(imm->value))
                                  : IntImm::make(b->dtype, imm->value);
    } else if (const FloatImm* f = value.as<FloatImm>()) {
      value = make_const(b->dtype, f->value);
    }
  }
  if (value.type().is_scalar() && want.lanes > 1) value = Broadcast::make(value, want.lanes);
  KT_CHECK(value.type() == want, "Store of ", value.type().to_string(), " into ", b->name,
           "[", index.type().to_string(), "] of ", b->dtype.to_string(), ": ", to_string(value));
  return make_stmt<Store>(std::move(b), std::move(value), std::move(index));
}

Stmt Allocate::make(Buffer b, Stmt body) {
  KT_CHECK(b != nullptr && body.defined(), "undefined operand of Allocate");
  return make_stmt<Allocate>(std::move(b), std::move(body));
}

Stmt IfThenElse::make(Expr cond, Stmt then_case, Stmt else_case) {
  KT_CHECK(cond.defined() && cond.type().is_bool() && cond.type().is_scalar(),
           "IfThenElse condition is not a scalar bool");
  KT_CHECK(then_case.defined(), "IfThenElse without a then case");
  return make_stmt<IfThenElse>(std::move(cond), std::move(then_case), std::move(else_case));
}

Stmt Block::make(std::vector<Stmt> stmts) {
  std::vector<Stmt> flat;
  flat.reserve(stmts.size());
  for (Stmt& s : stmts) {
    if (!s.defined()) continue;
    if (const Block* b = s.as<Block>()) {
      flat.insert(flat.end(), b->stmts.begin(), b->stmts.end());  // already flat
    } else {
      flat.push_back(std::move(s));
    }
  }
  if (flat.size() == 1) return flat[0];
  return make_stmt<Block>(std::move(flat));
}

Stmt Barrier::make(MemoryScope scope) { return make_stmt<Barrier>(scope); }

Stmt Evaluate::make(Expr v) {
  KT_CHECK(v.defined(), "Evaluate of an undefined expression");
  return make_stmt<Evaluate>(std::move(v));
}

Stmt LetStmt::make(Expr var, Expr value, Stmt body) {
  KT_CHECK(var.as<Var>() != nullptr, "LetStmt variable is not a Var");
  KT_CHECK(value.defined() && body.defined(), "undefined operand of LetStmt");
  if (value.type() != var.type() && var.type().is_int()) value = coerce_int(value, var.type());
  KT_CHECK(value.type() == var.type(), "LetStmt value type ", value.type().to_string(),
           " differs from its variable's ", var.type().to_string());
  return make_stmt<LetStmt>(std::move(var), std::move(value), std::move(body));
}

}  // namespace ktune::ir
