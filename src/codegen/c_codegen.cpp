// C source emission: the loop nest as one C99 function (see c_codegen.h for the rules).
#include "ktune/codegen/c_codegen.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "ktune/ir/ir_ops.h"
#include "ktune/ir/simplify.h"
#include "ktune/passes/unroll.h"
#include "ktune/passes/vectorize.h"
#include "ktune/support/error.h"

namespace ktune::codegen {

namespace {

using ir::Expr;
using ir::Stmt;

constexpr int64_t kMaxStackArrayBytes = 64 * 1024;

const std::set<std::string>& reserved_words() {
  static const std::set<std::string> words = {
      "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum",
      "extern", "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return",
      "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void",
      "volatile", "while", "_Bool", "_Complex", "_Imaginary", "bool", "true", "false", "main", "abs",
      "exp", "log", "sqrt", "tanh", "fmin", "fmax", "floor", "fabs", "expf", "logf", "sqrtf", "tanhf",
      "fminf", "fmaxf", "floorf", "fabsf", "llabs", "malloc", "free", "int8_t", "int16_t", "int32_t",
      "int64_t", "uint8_t", "INFINITY", "NAN", "INT64_C", "INT64_MIN"};
  return words;
}

// A C identifier from an IR name: other characters become '_'; never a keyword, never
// starting with a digit, never a `ktune_` helper name.
std::string sanitize(const std::string& name) {
  std::string s;
  for (char c : name) s += (std::isalnum(static_cast<unsigned char>(c)) || c == '_') ? c : '_';
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) s = "v" + s;
  if (reserved_words().count(s) || s.rfind("ktune_", 0) == 0 || s.rfind("KTUNE_", 0) == 0) s += "_";
  return s;
}

std::string float_literal(ir::Type t, double v) {
  const bool f32 = t.bits == 32;
  if (std::isnan(v)) return "NAN";
  if (std::isinf(v)) return v < 0 ? "-INFINITY" : "INFINITY";
  char buf[64];
  std::to_chars_result r = f32 ? std::to_chars(buf, buf + sizeof buf, float(v)) : std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return f32 ? s + "f" : s;
}

// Precedence of C operators, lower binds tighter (atoms 0).
enum Prec : int { kAtom = 0, kUnary = 2, kMul = 3, kAdd = 4, kRel = 6, kEq = 7, kAnd = 11, kOr = 12, kCond = 13 };

struct Text {
  std::string s;
  int prec = kAtom;
};

class CEmitter {
 public:
  CEmitter(const ir::LoweredFunc& f, const target::Target& t, int num_inputs)
      : f_(f), num_inputs_(num_inputs), max_lanes_(std::max(4, t.vector_lanes(32))) {}

  CSource run() {
    for (size_t i = 0; i < f_.args.size(); ++i) buffer_name(f_.args[i].get());
    std::ostringstream sig;
    sig << "void " << f_.name << "(" << params(/*restrict_ptrs=*/true) << ")";
    body_.clear();
    indent_ = 1;
    emit(f_.body);

    CSource out;
    std::ostringstream os;
    os << "#include <math.h>\n#include <stdint.h>\n#include <stdlib.h>\n\n"
       << "/* Parallel and simd loops use OpenMP when compiled with -fopenmp; otherwise they run\n"
       << "   serially with the same results. */\n"
       << "#ifdef _OPENMP\n"
       << "#define KTUNE_PARALLEL_FOR _Pragma(\"omp parallel for schedule(static)\")\n"
       << "#define KTUNE_SIMD _Pragma(\"omp simd\")\n"
       << "#else\n#define KTUNE_PARALLEL_FOR\n#define KTUNE_SIMD\n#endif\n"
       << "/* A local buffer initialized under a guard that GCC cannot follow draws a false\n"
       << "   \"may be used uninitialized\"; every element read has been written. */\n"
       << "#if defined(__GNUC__) && !defined(__clang__)\n"
       << "#pragma GCC diagnostic ignored \"-Wmaybe-uninitialized\"\n#endif\n\n";
    for (const auto& h : helpers_) os << h.second << "\n";
    if (!helpers_.empty()) os << "\n";
    os << sig.str() << " {\n";
    for (const auto& b : f_.args)
      if (!referenced_.count(b.get())) os << "  (void)" << buffers_.at(b.get()) << ";  /* not read by this kernel */\n";
    os << body_.str() << "}\n";
    out.code = os.str();
    out.parallel_loops = parallel_loops_;
    out.simd_loops = simd_loops_;
    return out;
  }

  std::vector<std::string> arg_names() {
    std::vector<std::string> names;
    for (const auto& b : f_.args) names.push_back(buffer_name(b.get()));
    return names;
  }

  std::string params(bool restrict_ptrs) {
    std::string s;
    for (size_t i = 0; i < f_.args.size(); ++i) {
      const ir::BufferNode* b = f_.args[i].get();
      s += i ? ", " : "";
      s += (int(i) < num_inputs_ ? "const " : "") + c_type_name(b->dtype.element_of()) + "* " +
           (restrict_ptrs ? "restrict " : "") + buffer_name(b);
    }
    return s;
  }

 private:
  // ---- names -------------------------------------------------------------------------

  std::string fresh(const std::string& base) {
    std::string name = sanitize(base);
    if (used_.insert(name).second) return name;
    for (int i = 1;; ++i) {
      std::string n = name + "_" + std::to_string(i);
      if (used_.insert(n).second) return n;
    }
  }

  std::string buffer_name(const ir::BufferNode* b) {
    auto it = buffers_.find(b);
    if (it != buffers_.end()) return it->second;
    return buffers_[b] = fresh(b->name);
  }

  // Binds a variable to a fresh C name (and optionally bounds) for a C++ scope.
  class Binding {
   public:
    Binding(CEmitter& e, const ir::Var* v) : e_(e), v_(v) {
      auto it = e.vars_.find(v);
      if (it != e.vars_.end()) old_name_ = it->second;
      auto bt = e.bounds_.find(v);
      if (bt != e.bounds_.end()) old_bounds_ = bt->second;
      e.bounds_.erase(v);
      name_ = e.fresh(v->name);
      e.vars_[v] = name_;
    }
    ~Binding() {
      if (old_name_.empty())
        e_.vars_.erase(v_);
      else
        e_.vars_[v_] = old_name_;
      if (old_bounds_)
        e_.bounds_[v_] = *old_bounds_;
      else
        e_.bounds_.erase(v_);
    }
    void set_bounds(ir::IntBounds b) { e_.bounds_[v_] = b; }
    const std::string& name() const { return name_; }

   private:
    CEmitter& e_;
    const ir::Var* v_;
    std::string name_, old_name_;
    std::optional<ir::IntBounds> old_bounds_;
  };

  // ---- types and helpers -------------------------------------------------------------

  // Type of a value in a register: bool is an int there.
  static std::string value_type(ir::Type t) { return t.is_bool() ? "int" : c_type_name(t.element_of()); }

  static std::string type_suffix(ir::Type t) {
    if (t.is_float()) return t.bits == 32 ? "f32" : "f64";
    return "i" + std::to_string(t.bits);
  }

  // Registers a static helper function (emitted once, before the kernel) and returns its name.
  std::string helper(const std::string& op, ir::Type t) {
    const std::string name = "ktune_" + op + "_" + type_suffix(t);
    if (helpers_.count(name)) return name;
    const std::string T = c_type_name(t.element_of());
    std::string def = "static inline " + T + " " + name + "(" + T + " a, " + T + " b) { ";
    if (op == "floordiv") {
      def += T + " q = (" + T + ")(a / b); return (a % b != 0 && ((a < 0) != (b < 0))) ? (" + T + ")(q - 1) : q; }";
    } else if (op == "floormod") {
      if (t.is_float()) {
        def += "return a - b * " + std::string(t.bits == 32 ? "floorf" : "floor") + "(a / b); }";
      } else {
        def += T + " r = (" + T + ")(a % b); return (r != 0 && ((r < 0) != (b < 0))) ? (" + T + ")(r + b) : r; }";
      }
    } else if (op == "min") {
      def += "return a < b ? a : b; }";
    } else if (op == "max") {
      def += "return a > b ? a : b; }";
    } else {
      KT_CHECK(false, "unknown helper ", op);
    }
    helpers_[name] = def;
    return name;
  }

  // ---- expressions -------------------------------------------------------------------

  static std::string wrap(const Text& t, int max_prec) { return t.prec > max_prec ? "(" + t.s + ")" : t.s; }

  Text binary(const Expr& a, const Expr& b, const char* op, int prec) {
    Text ta = expr(a), tb = expr(b);
    // GCC's -Wparentheses wants `&&` inside `||` and comparisons inside comparisons in
    // parentheses; otherwise the usual rule (the right operand binds tighter).
    int left_max = prec, right_max = prec - 1;
    if (prec == kOr) left_max = right_max = kEq;
    if (prec == kRel || prec == kEq) left_max = right_max = kAdd;
    return {wrap(ta, left_max) + " " + op + " " + wrap(tb, right_max), prec};
  }

  // Integer arithmetic narrower than int is computed in int by C; bring it back to the
  // IR's type so that wrap-around matches.
  Text narrow(Text t, ir::Type type) {
    if (type.is_int() && type.bits < 32) return {"(" + c_type_name(type) + ")(" + t.s + ")", kUnary};
    return t;
  }

  Text call(const std::string& fn, std::initializer_list<Text> args) {
    std::string s = fn + "(";
    bool first = true;
    for (const Text& a : args) {
      s += (first ? "" : ", ") + a.s;
      first = false;
    }
    return {s + ")", kAtom};
  }

  bool provably_nonnegative(const Expr& e) {
    auto b = ir::const_bounds(e, bounds_);
    return b && b->min >= 0;
  }

  Text expr(const Expr& e) {
    KT_CANDIDATE_CHECK(e.type().lanes == 1, "vector expression of type ", e.type().to_string(),
                       " reached the C code generator (it emits scalar loops)");
    switch (e.kind()) {
      case ir::ExprKind::IntImm: {
        const auto* op = e.as<ir::IntImm>();
        if (op->type.is_bool()) return {op->value ? "1" : "0", kAtom};
        if (op->type.bits == 64 && op->value == std::numeric_limits<int64_t>::min()) return {"INT64_MIN", kAtom};
        std::string s;
        const int64_t mag = op->value < 0 ? -op->value : op->value;
        if (op->type.bits == 64 && mag > std::numeric_limits<int32_t>::max())
          s = "INT64_C(" + std::to_string(mag) + ")";
        else
          s = std::to_string(mag);
        if (op->type.bits < 32) s = "(" + c_type_name(op->type) + ")" + s;
        if (op->value < 0) return {"-" + s, kUnary};
        return {s, op->type.bits < 32 ? kUnary : kAtom};
      }
      case ir::ExprKind::FloatImm: {
        const auto* op = e.as<ir::FloatImm>();
        c_type_name(op->type);  // rejects f16/bf16
        std::string s = float_literal(op->type, op->value);
        return {s, s[0] == '-' ? kUnary : kAtom};
      }
      case ir::ExprKind::Var: {
        const auto* op = e.as<ir::Var>();
        auto it = vars_.find(op);
        KT_CHECK(it != vars_.end(), "variable ", op->name, " is used outside its scope");
        return {it->second, kAtom};
      }
      case ir::ExprKind::Cast:
        return cast(e.as<ir::Cast>());
      case ir::ExprKind::Add:
        return narrow(binary(e.as<ir::Add>()->a, e.as<ir::Add>()->b, "+", kAdd), e.type());
      case ir::ExprKind::Sub:
        return narrow(binary(e.as<ir::Sub>()->a, e.as<ir::Sub>()->b, "-", kAdd), e.type());
      case ir::ExprKind::Mul:
        return narrow(binary(e.as<ir::Mul>()->a, e.as<ir::Mul>()->b, "*", kMul), e.type());
      case ir::ExprKind::Div:
        return div_mod(e.as<ir::Div>()->a, e.as<ir::Div>()->b, false);
      case ir::ExprKind::Mod:
        return div_mod(e.as<ir::Mod>()->a, e.as<ir::Mod>()->b, true);
      case ir::ExprKind::Min:
        return min_max(e.as<ir::Min>()->a, e.as<ir::Min>()->b, true);
      case ir::ExprKind::Max:
        return min_max(e.as<ir::Max>()->a, e.as<ir::Max>()->b, false);
      case ir::ExprKind::EQ:
        return binary(e.as<ir::EQ>()->a, e.as<ir::EQ>()->b, "==", kEq);
      case ir::ExprKind::NE:
        return binary(e.as<ir::NE>()->a, e.as<ir::NE>()->b, "!=", kEq);
      case ir::ExprKind::LT:
        return binary(e.as<ir::LT>()->a, e.as<ir::LT>()->b, "<", kRel);
      case ir::ExprKind::LE:
        return binary(e.as<ir::LE>()->a, e.as<ir::LE>()->b, "<=", kRel);
      case ir::ExprKind::GT:
        return binary(e.as<ir::GT>()->a, e.as<ir::GT>()->b, ">", kRel);
      case ir::ExprKind::GE:
        return binary(e.as<ir::GE>()->a, e.as<ir::GE>()->b, ">=", kRel);
      case ir::ExprKind::And:
        return binary(e.as<ir::And>()->a, e.as<ir::And>()->b, "&&", kAnd);
      case ir::ExprKind::Or:
        return binary(e.as<ir::Or>()->a, e.as<ir::Or>()->b, "||", kOr);
      case ir::ExprKind::Not:
        return {"!" + wrap(expr(e.as<ir::Not>()->a), kUnary), kUnary};
      case ir::ExprKind::Select: {
        // C's ?: evaluates only the chosen arm: a padding select never reads out of bounds.
        const auto* op = e.as<ir::Select>();
        Text c = expr(op->cond), t = expr(op->true_value), f = expr(op->false_value);
        return {wrap(c, kOr) + " ? " + wrap(t, kOr) + " : " + wrap(f, kOr), kCond};
      }
      case ir::ExprKind::Load: {
        const auto* op = e.as<ir::Load>();
        std::string s = buffer_ref(op->buffer.get()) + "[" + expr(op->index).s + "]";
        if (op->buffer->dtype.is_bool()) return {s + " != 0", kEq};
        return {s, kAtom};
      }
      case ir::ExprKind::Call:
        return intrinsic(e.as<ir::Call>());
      case ir::ExprKind::Ramp:
      case ir::ExprKind::Broadcast:
        KT_CHECK(false, "vector node reached the C code generator");
        break;
      case ir::ExprKind::TensorRead:
        KT_CHECK(false, "TensorRead of ", e.as<ir::TensorRead>()->tensor,
                 " reached code generation (lowering should have replaced it)");
        break;
    }
    KT_CHECK(false, "unhandled expression kind");
    return {};
  }

  std::string buffer_ref(const ir::BufferNode* b) {
    auto it = buffers_.find(b);
    KT_CHECK(it != buffers_.end() && live_buffers_.count(b), "buffer ", b->name, " is used outside its allocation");
    referenced_.insert(b);
    return it->second;
  }

  Text cast(const ir::Cast* op) {
    ir::Type to = op->type, from = op->value.type();
    Text v = expr(op->value);
    if (to.element_of() == from.element_of()) return v;
    if (to.is_bool()) return {wrap(v, kRel) + (from.is_float() ? " != 0.0" : " != 0"), kEq};
    return {"(" + c_type_name(to) + ")" + wrap(v, kUnary), kUnary};
  }

  Text div_mod(const Expr& a, const Expr& b, bool is_mod) {
    ir::Type t = a.type();
    if (t.is_float()) {
      if (!is_mod) return binary(a, b, "/", kMul);
      return call(helper("floormod", t), {expr(a), expr(b)});
    }
    KT_CANDIDATE_CHECK(t.is_int(), "division of ", t.to_string(), " values");
    int64_t c = 0;
    if (ir::is_const_int(b, &c) && c > 0 && provably_nonnegative(a))
      return narrow(binary(a, b, is_mod ? "%" : "/", kMul), t);
    return call(helper(is_mod ? "floormod" : "floordiv", t), {expr(a), expr(b)});
  }

  Text min_max(const Expr& a, const Expr& b, bool is_min) {
    ir::Type t = a.type();
    if (t.is_float()) {
      std::string fn = std::string(is_min ? "fmin" : "fmax") + (t.bits == 32 ? "f" : "");
      return call(fn, {expr(a), expr(b)});
    }
    if (t.is_bool()) return binary(a, b, is_min ? "&&" : "||", is_min ? kAnd : kOr);
    return call(helper(is_min ? "min" : "max", t), {expr(a), expr(b)});
  }

  Text intrinsic(const ir::Call* op) {
    KT_CHECK(!op->args.empty(), "intrinsic ", ir::intrinsic_name(op->func), " without arguments");
    ir::Type t = op->args[0].type();
    Text x = expr(op->args[0]);
    if (op->func == ir::Intrinsic::Abs && !t.is_float()) {
      if (t.bits == 64) return call("llabs", {x});
      return narrow(call("abs", {x}), t);
    }
    KT_CANDIDATE_CHECK(t.is_float(), "intrinsic ", ir::intrinsic_name(op->func), " needs a float argument, got ",
                       t.to_string());
    const std::string f = t.bits == 32 ? "f" : "";
    switch (op->func) {
      case ir::Intrinsic::Exp:
        return call("exp" + f, {x});
      case ir::Intrinsic::Sqrt:
        return call("sqrt" + f, {x});
      case ir::Intrinsic::Log:
        return call("log" + f, {x});
      case ir::Intrinsic::Tanh:
        return call("tanh" + f, {x});
      case ir::Intrinsic::Abs:
        return call("fabs" + f, {x});
      case ir::Intrinsic::Sigmoid: {
        const std::string one = t.bits == 32 ? "1.0f" : "1.0";
        return {one + " / (" + one + " + exp" + f + "(-" + wrap(x, kUnary) + "))", kMul};
      }
    }
    KT_CHECK(false, "unhandled intrinsic");
    return {};
  }

  // ---- statements --------------------------------------------------------------------

  void line(const std::string& s) { body_ << std::string(size_t(2 * indent_), ' ') << s << "\n"; }

  void emit(const Stmt& s) {
    switch (s.kind()) {
      case ir::StmtKind::For:
        emit_for(s.as<ir::For>(), s);
        return;
      case ir::StmtKind::Store: {
        const auto* op = s.as<ir::Store>();
        std::string v = expr(op->value).s;
        if (op->buffer->dtype.is_bool()) v = "(uint8_t)(" + v + ")";
        line(buffer_ref(op->buffer.get()) + "[" + expr(op->index).s + "] = " + v + ";");
        return;
      }
      case ir::StmtKind::Allocate:
        emit_allocate(s.as<ir::Allocate>());
        return;
      case ir::StmtKind::IfThenElse: {
        const auto* op = s.as<ir::IfThenElse>();
        line("if (" + expr(op->cond).s + ") {");
        block(op->then_case);
        if (op->else_case.defined()) {
          line("} else {");
          block(op->else_case);
        }
        line("}");
        return;
      }
      case ir::StmtKind::Block:
        for (const auto& c : s.as<ir::Block>()->stmts) emit(c);
        return;
      case ir::StmtKind::Barrier:
        line("/* barrier: nothing to do on a CPU */");
        return;
      case ir::StmtKind::Evaluate: {
        const Expr& v = s.as<ir::Evaluate>()->value;
        if (!v.as<ir::IntImm>() && !v.as<ir::FloatImm>()) line("(void)(" + expr(v).s + ");");
        return;
      }
      case ir::StmtKind::LetStmt: {
        // A fresh name per binding: the declaration can stay in the current block.
        const auto* op = s.as<ir::LetStmt>();
        const auto* var = op->var.as<ir::Var>();
        KT_CHECK(var, "let variable is not a Var");
        std::string value = expr(op->value).s;
        std::optional<ir::IntBounds> bnd;
        if (op->value.type().is_int()) bnd = ir::const_bounds(op->value, bounds_);
        Binding bind(*this, var);
        if (bnd) bind.set_bounds(*bnd);
        line("const " + value_type(var->type) + " " + bind.name() + " = " + value + ";");
        emit(op->body);
        return;
      }
    }
    KT_CHECK(false, "unhandled statement kind");
  }

  void block(const Stmt& s) {
    ++indent_;
    emit(s);
    --indent_;
  }

  // True when running all iterations of this Vectorized loop lane by lane gives the serial
  // result, which is what `omp simd` asserts: the rule of passes::vectorize_loops, asked
  // of the loop itself (after unrolling, as the LLVM path runs it).
  bool simd_safe(const Stmt& loop) {
    Stmt v = passes::vectorize_loops(passes::unroll_loops(loop), max_lanes_);
    const auto* f = v.as<ir::For>();
    return !(f && f->for_kind == ir::ForKind::Serial);
  }

  void emit_for(const ir::For* op, const Stmt& self) {
    const auto* var = op->var.as<ir::Var>();
    KT_CHECK(var, "loop variable is not a Var");
    if (ir::is_gpu_binding(op->for_kind))
      throw InvalidCandidate(detail::concat("GPU loop kind on a CPU target (loop over ", var->name, " is ",
                                            ir::for_kind_name(op->for_kind), ")"));
    int64_t cmin = 0, cext = 0;
    const bool const_min = ir::is_const_int(op->min, &cmin);
    const bool const_ext = ir::is_const_int(op->extent, &cext);
    Text min = expr(op->min), ext = expr(op->extent);
    std::string end;
    if (const_min && const_ext)
      end = std::to_string(cmin + cext);
    else if (const_min && cmin == 0)
      end = wrap(ext, kAdd);
    else
      end = wrap(min, kAdd) + " + " + wrap(ext, kAdd - 1);

    bool parallel = false;
    switch (op->for_kind) {
      case ir::ForKind::Parallel:
        if (!in_parallel_) {
          line("KTUNE_PARALLEL_FOR");
          parallel = true;
          ++parallel_loops_;
        }
        break;
      case ir::ForKind::Vectorized:
        if (simd_safe(self)) {
          line("KTUNE_SIMD");
          ++simd_loops_;
        }
        break;
      case ir::ForKind::Unrolled:
        if (const_ext && cext > 1 && cext <= passes::kMaxUnrollExtent)
          line("#pragma GCC unroll " + std::to_string(cext));
        break;
      default:
        break;
    }
    Binding bind(*this, var);
    if (const_min && const_ext && cext > 0) bind.set_bounds({cmin, cmin + cext - 1});
    const std::string& i = bind.name();
    line("for (" + value_type(var->type) + " " + i + " = " + min.s + "; " + i + " < " + end + "; ++" + i + ") {");
    const bool saved = in_parallel_;
    in_parallel_ = in_parallel_ || parallel;
    block(op->body);
    in_parallel_ = saved;
    line("}");
  }

  void emit_allocate(const ir::Allocate* op) {
    const ir::BufferNode* buf = op->buffer.get();
    const ir::Type et = buf->dtype.element_of();
    const int64_t n = buf->num_elements();
    KT_CANDIDATE_CHECK(n >= 0, "allocation of ", buf->name, " with ", n, " elements");
    const std::string T = c_type_name(et);
    const std::string name = fresh(buf->name);
    const auto saved = buffers_.find(buf) == buffers_.end() ? std::string() : buffers_[buf];
    buffers_[buf] = name;
    live_buffers_.insert(buf);
    const bool heap = buf->scope == ir::MemoryScope::Global || n * et.bytes() > kMaxStackArrayBytes;
    line("{");
    ++indent_;
    if (heap) {
      line(T + "* " + name + " = (" + T + "*)malloc(sizeof(" + T + ") * " + std::to_string(std::max<int64_t>(n, 1)) +
           ");  /* " + ir::scope_name(buf->scope) + " */");
      emit(op->body);
      line("free(" + name + ");");
    } else {
      line(T + " " + name + "[" + std::to_string(std::max<int64_t>(n, 1)) + "];  /* " + ir::scope_name(buf->scope) +
           " */");
      emit(op->body);
    }
    --indent_;
    line("}");
    live_buffers_.erase(buf);
    if (saved.empty())
      buffers_.erase(buf);
    else {
      buffers_[buf] = saved;
      live_buffers_.insert(buf);
    }
  }

 public:
  void mark_args_live() {
    for (const auto& b : f_.args) live_buffers_.insert(b.get());
  }

 private:
  const ir::LoweredFunc& f_;
  int num_inputs_;
  int max_lanes_;
  std::ostringstream body_;
  int indent_ = 1;
  std::unordered_set<std::string> used_;
  std::unordered_map<const ir::ExprNode*, std::string> vars_;
  std::unordered_map<const ir::BufferNode*, std::string> buffers_;
  std::unordered_set<const ir::BufferNode*> live_buffers_, referenced_;
  std::map<std::string, std::string> helpers_;
  ir::BoundsMap bounds_;
  bool in_parallel_ = false;
  int parallel_loops_ = 0, simd_loops_ = 0;
};

}  // namespace

std::string c_type_name(ir::Type t) {
  switch (t.code) {
    case ir::TypeCode::Float:
      if (t.bits == 32) return "float";
      if (t.bits == 64) return "double";
      break;
    case ir::TypeCode::Int:
      if (t.bits == 8 || t.bits == 16 || t.bits == 32 || t.bits == 64) return "int" + std::to_string(t.bits) + "_t";
      break;
    case ir::TypeCode::Bool:
      return "uint8_t";
    case ir::TypeCode::BFloat:
      break;
  }
  throw InvalidCandidate(detail::concat("dtype ", t.element_of().to_string(), " is not supported by the C code generator"));
}

CSource emit_c(const ir::LoweredFunc& f, const target::Target& t, int num_inputs) {
  KT_CHECK(num_inputs >= 0 && num_inputs <= int(f.args.size()), "bad input count ", num_inputs);
  ir::LoweredFunc g = f;
  g.body = ir::simplify(f.body);
  CEmitter e(g, t, num_inputs);
  e.mark_args_live();
  return e.run();
}

std::vector<std::string> c_param_names(const ir::LoweredFunc& f) {
  CEmitter e(f, target::Target{}, 0);
  return e.arg_names();
}

std::string c_prototype(const ir::LoweredFunc& f, int num_inputs) {
  CEmitter e(f, target::Target{}, num_inputs);
  return "void " + f.name + "(" + e.params(/*restrict_ptrs=*/false) + ")";
}

}  // namespace ktune::codegen
