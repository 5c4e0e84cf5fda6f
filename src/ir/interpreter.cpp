// The IR interpreter: ktune's reference semantics, against which compiled candidates are
// verified. It is a tree walk, but over a compiled copy of the IR: every variable gets a
// slot in a value array and every buffer a slot in a buffer table when the program is
// compiled, and every expression node owns the scratch space for its result, so evaluating
// a node costs a switch and a few loads, never a map lookup or an allocation.
//
// Values: integers are kept as int64 and wrapped to their type's width after every
// operation (like the hardware); bools as 0/1; floats as double, rounded to their type by
// Cast and by stores. Local buffers (Allocate) are filled with NaN (floats) or a garbage
// pattern (integers) so that reading before writing shows up in the results.
#include "ktune/ir/interpreter.h"

#include <cmath>
#include <cstring>
#include <deque>
#include <unordered_set>
#include <limits>

#include "half.h"
#include "ktune/ir/printer.h"
#include "ktune/support/error.h"
#include "ktune/support/util.h"

namespace ktune::ir {

namespace {

union Lane {
  int64_t i;
  double f;
};

struct BufferSlot {
  const BufferNode* buffer = nullptr;
  void* data = nullptr;
  int64_t size = 0;
};

struct ENode {
  ExprKind kind;
  Type type;
  int lanes = 1;
  bool is_float = false;
  int wrap_bits = 64;     // integer width to wrap results to
  const ENode* a = nullptr;
  const ENode* b = nullptr;
  const ENode* c = nullptr;
  int slot = -1;          // offset in the variable values (Var) or buffer slot (Load)
  int64_t ival = 0;
  double fval = 0;
  Intrinsic func = Intrinsic::Exp;
  const Expr* source = nullptr;  // for error messages
  mutable std::vector<Lane> out;
};

struct SNode {
  StmtKind kind;
  const ENode* a = nullptr;  // For min / Store value / If cond / Let value / Evaluate
  const ENode* b = nullptr;  // For extent / Store index
  int slot = -1;             // For/Let var slot, Store/Allocate buffer slot
  const SNode* body = nullptr;
  const SNode* else_body = nullptr;
  std::vector<const SNode*> stmts;
  std::vector<unsigned char>* local = nullptr;  // Allocate: its storage
};

int64_t wrap(int64_t v, int bits) {
  switch (bits) {
    case 1: return v != 0;
    case 8: return int8_t(v);
    case 16: return int16_t(v);
    case 32: return int32_t(v);
    default: return v;
  }
}

double round_to(Type t, double v) {
  if (t.code == TypeCode::BFloat) return detail::bf16_to_float(detail::float_to_bf16(float(v)));
  if (t.bits == 16) return detail::half_to_float(detail::float_to_half(float(v)));
  if (t.bits == 32) return double(float(v));
  return v;
}

int64_t float_to_int(double v) {
  if (!(v == v)) return 0;
  if (v >= 9.223372036854775807e18) return std::numeric_limits<int64_t>::max();
  if (v <= -9.223372036854775808e18) return std::numeric_limits<int64_t>::min();
  return int64_t(v);
}

class Interpreter {
 public:
  // ---- compilation ----------------------------------------------------------------

  const SNode* compile(const Stmt& s) {
    if (!s.defined()) return nullptr;
    SNode& n = snodes_.emplace_back();
    n.kind = s.kind();
    switch (s.kind()) {
      case StmtKind::For: {
        const For* op = s.as<For>();
        n.a = compile(op->min);
        n.b = compile(op->extent);
        n.slot = bind_var(op->var);
        n.body = compile(op->body);
        unbind_var(op->var);
        break;
      }
      case StmtKind::Store: {
        const Store* op = s.as<Store>();
        n.a = compile(op->value);
        n.b = compile(op->index);
        n.slot = buffer_slot(op->buffer.get());
        break;
      }
      case StmtKind::Allocate: {
        const Allocate* op = s.as<Allocate>();
        n.slot = buffer_slot(op->buffer.get());
        n.local = &locals_.emplace_back();
        n.body = compile(op->body);
        break;
      }
      case StmtKind::IfThenElse: {
        const IfThenElse* op = s.as<IfThenElse>();
        n.a = compile(op->cond);
        n.body = compile(op->then_case);
        n.else_body = compile(op->else_case);
        break;
      }
      case StmtKind::Block:
        for (const Stmt& x : s.as<Block>()->stmts) n.stmts.push_back(compile(x));
        break;
      case StmtKind::Barrier: break;
      case StmtKind::Evaluate: n.a = compile(s.as<Evaluate>()->value); break;
      case StmtKind::LetStmt: {
        const LetStmt* op = s.as<LetStmt>();
        n.a = compile(op->value);
        n.slot = bind_var(op->var);
        n.body = compile(op->body);
        unbind_var(op->var);
        break;
      }
    }
    return &n;
  }

  const ENode* compile(const Expr& e) {
    KT_CHECK(e.defined(), "interpreting an undefined expression");
    ENode& n = enodes_.emplace_back();
    n.kind = e.kind();
    n.type = e.type();
    n.lanes = e.type().lanes;
    n.is_float = e.type().is_float();
    n.wrap_bits = e.type().is_bool() ? 1 : e.type().bits;
    n.source = &sources_.emplace_back(e);
    n.out.resize(n.lanes);
    switch (e.kind()) {
      case ExprKind::IntImm: n.ival = e.as<IntImm>()->value; break;
      case ExprKind::FloatImm: n.fval = e.as<FloatImm>()->value; break;
      case ExprKind::Var: {
        auto it = var_slots_.find(e.get());
        KT_CHECK(it != var_slots_.end(), "interpreter: unbound variable ", e.as<Var>()->name);
        n.slot = var_offset_[it->second];
        break;
      }
      case ExprKind::Cast: n.a = compile(e.as<Cast>()->value); break;
#define KT_BIN(k)                 \
  case ExprKind::k:               \
    n.a = compile(e.as<k>()->a);  \
    n.b = compile(e.as<k>()->b);  \
    break;
        KTUNE_BINARY_NODES(KT_BIN)
#undef KT_BIN
      case ExprKind::Not: n.a = compile(e.as<Not>()->a); break;
      case ExprKind::Select: {
        const Select* op = e.as<Select>();
        n.a = compile(op->cond);
        n.b = compile(op->true_value);
        n.c = compile(op->false_value);
        break;
      }
      case ExprKind::Load: {
        const Load* op = e.as<Load>();
        n.a = compile(op->index);
        n.slot = buffer_slot(op->buffer.get());
        break;
      }
      case ExprKind::Ramp:
        n.a = compile(e.as<Ramp>()->base);
        n.b = compile(e.as<Ramp>()->stride);
        break;
      case ExprKind::Broadcast: n.a = compile(e.as<Broadcast>()->value); break;
      case ExprKind::Call: {
        const Call* op = e.as<Call>();
        KT_CHECK(op->args.size() == 1, "interpreter: ", intrinsic_name(op->func), " takes one argument");
        n.func = op->func;
        n.a = compile(op->args[0]);
        break;
      }
      case ExprKind::TensorRead:
        KT_CHECK(false, "interpreter: TensorRead ", to_string(e), " was not lowered");
    }
    return &n;
  }

  void bind(const BufferNode* b, void* data) {
    KT_CHECK(data != nullptr, "interpreter: buffer ", b->name, " bound to null");
    BufferSlot& s = buffers_[buffer_slot(b)];
    s.data = data;
    s.size = b->num_elements();
  }

  void check_bound() {
    for (const BufferSlot& s : buffers_)
      KT_CHECK(s.data || allocated_.count(s.buffer), "interpreter: buffer ", s.buffer->name,
               " is neither bound nor allocated");
  }

  void prepare() { vars_.assign(var_lanes_.size() > 0 ? total_var_lanes_ : 1, Lane{0}); }

  // ---- execution ------------------------------------------------------------------

  void run(const SNode* s) {
    if (!s) return;
    switch (s->kind) {
      case StmtKind::For: {
        int64_t mn = eval(s->a)[0].i, ext = eval(s->b)[0].i;
        Lane* v = &vars_[var_offset_[s->slot]];
        for (int64_t i = mn; i < mn + ext; ++i) {
          v->i = i;
          run(s->body);
        }
        return;
      }
      case StmtKind::Store: {
        const Lane* val = eval(s->a);
        const Lane* idx = eval(s->b);
        store(s->slot, s->b, idx, s->a->type, val);
        return;
      }
      case StmtKind::Allocate: {
        BufferSlot& slot = buffers_[s->slot];
        BufferSlot saved = slot;
        const BufferNode* b = slot.buffer;
        int64_t n = b->num_elements();
        std::vector<unsigned char>& mem = *s->local;
        if (mem.empty()) mem.resize(size_t(n) * b->dtype.bytes() + 1);
        poison(b->dtype, mem.data(), n);
        slot.data = mem.data();
        slot.size = n;
        run(s->body);
        slot = saved;
        return;
      }
      case StmtKind::IfThenElse:
        if (eval(s->a)[0].i) run(s->body);
        else run(s->else_body);
        return;
      case StmtKind::Block:
        for (const SNode* x : s->stmts) run(x);
        return;
      case StmtKind::Barrier: return;
      case StmtKind::Evaluate: eval(s->a); return;
      case StmtKind::LetStmt: {
        const Lane* v = eval(s->a);
        std::memcpy(&vars_[var_offset_[s->slot]], v, sizeof(Lane) * s->a->lanes);
        run(s->body);
        return;
      }
    }
  }

  std::unordered_set<const BufferNode*> allocated_;

 private:
  int bind_var(const Expr& v) {
    int slot = int(var_offset_.size());
    var_offset_.push_back(total_var_lanes_);
    var_lanes_.push_back(v.type().lanes);
    total_var_lanes_ += v.type().lanes;
    var_slots_[v.get()] = slot;
    return slot;
  }
  void unbind_var(const Expr& v) { var_slots_.erase(v.get()); }

  int buffer_slot(const BufferNode* b) {
    auto it = buffer_slots_.find(b);
    if (it != buffer_slots_.end()) return it->second;
    int slot = int(buffers_.size());
    buffers_.push_back(BufferSlot{b, nullptr, 0});
    buffer_slots_[b] = slot;
    return slot;
  }

  static void poison(Type t, unsigned char* p, int64_t n) {
    if (t.is_float()) {
      for (int64_t i = 0; i < n; ++i) write_elem(t, p, i, std::numeric_limits<double>::quiet_NaN(), 0);
    } else {
      std::memset(p, 0xA5, size_t(n) * t.bytes());
    }
  }

  static void write_elem(Type t, unsigned char* p, int64_t i, double f, int64_t v) {
    switch (t.code) {
      case TypeCode::Float:
        if (t.bits == 32) {
          float x = float(f);
          std::memcpy(p + i * 4, &x, 4);
        } else if (t.bits == 64) {
          std::memcpy(p + i * 8, &f, 8);
        } else {
          uint16_t h = detail::float_to_half(float(f));
          std::memcpy(p + i * 2, &h, 2);
        }
        return;
      case TypeCode::BFloat: {
        uint16_t h = detail::float_to_bf16(float(f));
        std::memcpy(p + i * 2, &h, 2);
        return;
      }
      case TypeCode::Bool: p[i] = v != 0; return;
      case TypeCode::Int:
        switch (t.bits) {
          case 8: p[i] = uint8_t(v); return;
          case 16: {
            int16_t x = int16_t(v);
            std::memcpy(p + i * 2, &x, 2);
            return;
          }
          case 32: {
            int32_t x = int32_t(v);
            std::memcpy(p + i * 4, &x, 4);
            return;
          }
          default: std::memcpy(p + i * 8, &v, 8); return;
        }
    }
  }

  static Lane read_elem(Type t, const unsigned char* p, int64_t i) {
    Lane r{0};
    switch (t.code) {
      case TypeCode::Float:
        if (t.bits == 32) {
          float x;
          std::memcpy(&x, p + i * 4, 4);
          r.f = x;
        } else if (t.bits == 64) {
          std::memcpy(&r.f, p + i * 8, 8);
        } else {
          uint16_t h;
          std::memcpy(&h, p + i * 2, 2);
          r.f = detail::half_to_float(h);
        }
        return r;
      case TypeCode::BFloat: {
        uint16_t h;
        std::memcpy(&h, p + i * 2, 2);
        r.f = detail::bf16_to_float(h);
        return r;
      }
      case TypeCode::Bool: r.i = p[i] != 0; return r;
      case TypeCode::Int:
        switch (t.bits) {
          case 8: r.i = int8_t(p[i]); return r;
          case 16: {
            int16_t x;
            std::memcpy(&x, p + i * 2, 2);
            r.i = x;
            return r;
          }
          case 32: {
            int32_t x;
            std::memcpy(&x, p + i * 4, 4);
            r.i = x;
            return r;
          }
          default: std::memcpy(&r.i, p + i * 8, 8); return r;
        }
    }
    return r;
  }

  [[noreturn]] void out_of_bounds(const char* what, const BufferSlot& b, int64_t i,
                                  const ENode* index) {
    throw InternalError(::ktune::detail::concat("interpreter: out-of-bounds ", what, " of ",
                                       b.buffer->name, "[", i, "] (", b.buffer->name, " has ",
                                       b.size, " elements; index ", to_string(*index->source),
                                       ")"));
  }

  void store(int slot, const ENode* index, const Lane* idx, Type vt, const Lane* val) {
    BufferSlot& b = buffers_[slot];
    KT_CHECK(b.data, "interpreter: store to ", b.buffer->name, " outside its allocation");
    Type t = b.buffer->dtype;
    unsigned char* p = static_cast<unsigned char*>(b.data);
    bool from_float = vt.is_float();
    for (int l = 0; l < index->lanes; ++l) {
      int64_t i = idx[l].i;
      if (i < 0 || i >= b.size) out_of_bounds("store", b, i, index);
      write_elem(t, p, i, from_float ? val[l].f : double(val[l].i), from_float ? float_to_int(val[l].f) : val[l].i);
    }
  }

  const Lane* eval(const ENode* n) {
    Lane* out = n->out.data();
    const int L = n->lanes;
    switch (n->kind) {
      case ExprKind::IntImm: out[0].i = n->ival; return out;
      case ExprKind::FloatImm: out[0].f = n->fval; return out;
      case ExprKind::Var: return &vars_[n->slot];
      case ExprKind::Cast: {
        const Lane* a = eval(n->a);
        bool from_float = n->a->is_float;
        for (int l = 0; l < L; ++l) {
          if (n->is_float) {
            out[l].f = round_to(n->type, from_float ? a[l].f : double(a[l].i));
          } else if (n->type.is_bool()) {
            out[l].i = from_float ? a[l].f != 0 : a[l].i != 0;
          } else {
            out[l].i = wrap(from_float ? float_to_int(a[l].f) : a[l].i, n->wrap_bits);
          }
        }
        return out;
      }
      case ExprKind::Add: {
        const Lane *a = eval(n->a), *b = eval(n->b);
        if (n->is_float)
          for (int l = 0; l < L; ++l) out[l].f = a[l].f + b[l].f;
        else
          for (int l = 0; l < L; ++l)
            out[l].i = wrap(int64_t(uint64_t(a[l].i) + uint64_t(b[l].i)), n->wrap_bits);
        return out;
      }
      case ExprKind::Sub: {
        const Lane *a = eval(n->a), *b = eval(n->b);
        if (n->is_float)
          for (int l = 0; l < L; ++l) out[l].f = a[l].f - b[l].f;
        else
          for (int l = 0; l < L; ++l)
            out[l].i = wrap(int64_t(uint64_t(a[l].i) - uint64_t(b[l].i)), n->wrap_bits);
        return out;
      }
      case ExprKind::Mul: {
        const Lane *a = eval(n->a), *b = eval(n->b);
        if (n->is_float)
          for (int l = 0; l < L; ++l) out[l].f = a[l].f * b[l].f;
        else
          for (int l = 0; l < L; ++l)
            out[l].i = wrap(int64_t(uint64_t(a[l].i) * uint64_t(b[l].i)), n->wrap_bits);
        return out;
      }
      case ExprKind::Div: {
        const Lane *a = eval(n->a), *b = eval(n->b);
        if (n->is_float) {
          for (int l = 0; l < L; ++l) out[l].f = a[l].f / b[l].f;
        } else {
          for (int l = 0; l < L; ++l) {
            if (b[l].i == 0) throw InternalError("interpreter: integer division by zero in " + to_string(*n->source));
            if (b[l].i == -1) out[l].i = wrap(int64_t(0 - uint64_t(a[l].i)), n->wrap_bits);
            else out[l].i = floor_div(a[l].i, b[l].i);
          }
        }
        return out;
      }
      case ExprKind::Mod: {
        const Lane *a = eval(n->a), *b = eval(n->b);
        if (n->is_float) {
          for (int l = 0; l < L; ++l) out[l].f = a[l].f - b[l].f * std::floor(a[l].f / b[l].f);
        } else {
          for (int l = 0; l < L; ++l) {
            if (b[l].i == 0) throw InternalError("interpreter: integer modulo by zero in " + to_string(*n->source));
            out[l].i = b[l].i == -1 ? 0 : floor_mod(a[l].i, b[l].i);
          }
        }
        return out;
      }
      case ExprKind::Min: {
        const Lane *a = eval(n->a), *b = eval(n->b);
        if (n->is_float)
          for (int l = 0; l < L; ++l) out[l].f = std::fmin(a[l].f, b[l].f);
        else
          for (int l = 0; l < L; ++l) out[l].i = std::min(a[l].i, b[l].i);
        return out;
      }
      case ExprKind::Max: {
        const Lane *a = eval(n->a), *b = eval(n->b);
        if (n->is_float)
          for (int l = 0; l < L; ++l) out[l].f = std::fmax(a[l].f, b[l].f);
        else
          for (int l = 0; l < L; ++l) out[l].i = std::max(a[l].i, b[l].i);
        return out;
      }
#define KT_CMP(k, op)                                                         \
  case ExprKind::k: {                                                         \
    const Lane *a = eval(n->a), *b = eval(n->b);                              \
    if (n->a->is_float)                                                       \
      for (int l = 0; l < L; ++l) out[l].i = a[l].f op b[l].f;                \
    else                                                                      \
      for (int l = 0; l < L; ++l) out[l].i = a[l].i op b[l].i;                \
    return out;                                                               \
  }
        KT_CMP(EQ, ==)
        KT_CMP(NE, !=)
        KT_CMP(LT, <)
        KT_CMP(LE, <=)
        KT_CMP(GT, >)
        KT_CMP(GE, >=)
#undef KT_CMP
      case ExprKind::And: {
        const Lane* a = eval(n->a);
        if (L == 1 && !a[0].i) {
          out[0].i = 0;
          return out;
        }
        const Lane* b = eval(n->b);
        for (int l = 0; l < L; ++l) out[l].i = a[l].i && b[l].i;
        return out;
      }
      case ExprKind::Or: {
        const Lane* a = eval(n->a);
        if (L == 1 && a[0].i) {
          out[0].i = 1;
          return out;
        }
        const Lane* b = eval(n->b);
        for (int l = 0; l < L; ++l) out[l].i = a[l].i || b[l].i;
        return out;
      }
      case ExprKind::Not: {
        const Lane* a = eval(n->a);
        for (int l = 0; l < L; ++l) out[l].i = !a[l].i;
        return out;
      }
      case ExprKind::Select: {
        // Only the selected side is evaluated (a guarded load must not trap); when vector
        // lanes disagree both sides are evaluated with loads made non-trapping.
        const Lane* c = eval(n->a);
        int cl = n->a->lanes;
        bool all = true, none = true;
        for (int l = 0; l < cl; ++l) {
          all &= c[l].i != 0;
          none &= c[l].i == 0;
        }
        if (all) return eval(n->b);
        if (none) return eval(n->c);
        ++speculative_;
        const Lane *t = eval(n->b), *f = eval(n->c);
        --speculative_;
        for (int l = 0; l < L; ++l) out[l] = c[l].i ? t[l] : f[l];
        return out;
      }
      case ExprKind::Load: {
        const Lane* idx = eval(n->a);
        const BufferSlot& b = buffers_[n->slot];
        KT_CHECK(b.data, "interpreter: load from ", b.buffer->name, " outside its allocation");
        Type t = b.buffer->dtype;
        const unsigned char* p = static_cast<const unsigned char*>(b.data);
        for (int l = 0; l < L; ++l) {
          int64_t i = idx[l].i;
          if (i < 0 || i >= b.size) {
            if (speculative_) {
              out[l].i = 0;
              if (n->is_float) out[l].f = std::numeric_limits<double>::quiet_NaN();
              continue;
            }
            out_of_bounds("load", b, i, n->a);
          }
          out[l] = read_elem(t, p, i);
        }
        return out;
      }
      case ExprKind::Ramp: {
        const Lane *b = eval(n->a), *s = eval(n->b);
        if (n->is_float)
          for (int l = 0; l < L; ++l) out[l].f = b[0].f + double(l) * s[0].f;
        else
          for (int l = 0; l < L; ++l)
            out[l].i = wrap(int64_t(uint64_t(b[0].i) + uint64_t(l) * uint64_t(s[0].i)), n->wrap_bits);
        return out;
      }
      case ExprKind::Broadcast: {
        Lane v = eval(n->a)[0];
        for (int l = 0; l < L; ++l) out[l] = v;
        return out;
      }
      case ExprKind::Call: {
        const Lane* a = eval(n->a);
        if (!n->is_float) {
          KT_CHECK(n->func == Intrinsic::Abs, "interpreter: integer ", intrinsic_name(n->func));
          for (int l = 0; l < L; ++l) out[l].i = wrap(a[l].i < 0 ? int64_t(0 - uint64_t(a[l].i)) : a[l].i, n->wrap_bits);
          return out;
        }
        for (int l = 0; l < L; ++l) {
          double x = a[l].f;
          switch (n->func) {
            case Intrinsic::Exp: out[l].f = std::exp(x); break;
            case Intrinsic::Sqrt: out[l].f = std::sqrt(x); break;
            case Intrinsic::Log: out[l].f = std::log(x); break;
            case Intrinsic::Tanh: out[l].f = std::tanh(x); break;
            case Intrinsic::Abs: out[l].f = std::fabs(x); break;
            case Intrinsic::Sigmoid: out[l].f = 1.0 / (1.0 + std::exp(-x)); break;
          }
        }
        return out;
      }
      case ExprKind::TensorRead: break;
    }
    KT_CHECK(false, "interpreter: cannot evaluate ", kind_name(n->kind));
    return out;
  }

  std::deque<ENode> enodes_;
  std::deque<SNode> snodes_;
  std::deque<Expr> sources_;
  std::deque<std::vector<unsigned char>> locals_;
  std::unordered_map<const ExprNode*, int> var_slots_;
  std::vector<int> var_offset_;
  std::vector<int> var_lanes_;
  int total_var_lanes_ = 0;
  std::vector<Lane> vars_;
  std::unordered_map<const BufferNode*, int> buffer_slots_;
  std::vector<BufferSlot> buffers_;
  int speculative_ = 0;
};

class AllocCollector {
 public:
  static void collect(const Stmt& s, std::unordered_set<const BufferNode*>& out) {
    if (!s.defined()) return;
    switch (s.kind()) {
      case StmtKind::For: collect(s.as<For>()->body, out); return;
      case StmtKind::Allocate:
        out.insert(s.as<Allocate>()->buffer.get());
        collect(s.as<Allocate>()->body, out);
        return;
      case StmtKind::IfThenElse:
        collect(s.as<IfThenElse>()->then_case, out);
        collect(s.as<IfThenElse>()->else_case, out);
        return;
      case StmtKind::Block:
        for (const Stmt& x : s.as<Block>()->stmts) collect(x, out);
        return;
      case StmtKind::LetStmt: collect(s.as<LetStmt>()->body, out); return;
      default: return;
    }
  }
};

}  // namespace

void interpret(const Stmt& body, const BufferBindings& bindings) {
  Interpreter interp;
  for (const auto& [buffer, data] : bindings) interp.bind(buffer, data);
  AllocCollector::collect(body, interp.allocated_);
  const SNode* root = interp.compile(body);
  interp.check_bound();
  interp.prepare();
  interp.run(root);
}

void interpret(const LoweredFunc& f, const std::vector<void*>& args) {
  KT_CHECK(args.size() == f.args.size(), "interpreter: ", f.name, " takes ", f.args.size(),
           " buffers, got ", args.size());
  BufferBindings b;
  for (size_t i = 0; i < args.size(); ++i) b[f.args[i].get()] = args[i];
  interpret(f.body, b);
}

}  // namespace ktune::ir
