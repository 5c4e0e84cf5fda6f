// Text form of the IR for debug dumps, golden tests and error messages. Expressions are
// fully parenthesized so the text is unambiguous; statements are indented two spaces per
// level. The format is meant for people and for diffing, not for parsing back.
#include "ktune/ir/printer.h"

#include <charconv>
#include <cmath>
#include <sstream>

#include "ktune/support/util.h"

namespace ktune::ir {

namespace {

std::string float_text(Type t, double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  std::to_chars_result r = t.bits == 32 && t.code == TypeCode::Float
                               ? std::to_chars(buf, buf + sizeof buf, float(v))
                               : std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

class Printer {
 public:
  explicit Printer(std::ostream& os) : os_(os) {}

  void print(const Expr& e) {
    if (!e.defined()) {
      os_ << "<undefined>";
      return;
    }
    switch (e.kind()) {
      case ExprKind::IntImm: {
        const IntImm* op = e.as<IntImm>();
        if (op->type.is_bool()) os_ << (op->value ? "true" : "false");
        else if (op->type.bits == 64) os_ << op->value;
        else os_ << "(" << op->type.to_string() << ")" << op->value;
        return;
      }
      case ExprKind::FloatImm: {
        const FloatImm* op = e.as<FloatImm>();
        std::string s = float_text(op->type, op->value);
        if (op->type == Type::f32()) os_ << s << "f";
        else if (op->type == Type::f64()) os_ << s;
        else os_ << "(" << op->type.to_string() << ")" << s;
        return;
      }
      case ExprKind::Var: os_ << e.as<Var>()->name; return;
      case ExprKind::Cast: {
        const Cast* op = e.as<Cast>();
        os_ << op->type.to_string() << "(";
        print(op->value);
        os_ << ")";
        return;
      }
      case ExprKind::Add: return infix(e.as<Add>(), " + ");
      case ExprKind::Sub: return infix(e.as<Sub>(), " - ");
      case ExprKind::Mul: return infix(e.as<Mul>(), "*");
      case ExprKind::Div: return infix(e.as<Div>(), "/");
      case ExprKind::Mod: return infix(e.as<Mod>(), " % ");
      case ExprKind::Min: return call("min", {e.as<Min>()->a, e.as<Min>()->b});
      case ExprKind::Max: return call("max", {e.as<Max>()->a, e.as<Max>()->b});
      case ExprKind::EQ: return infix(e.as<EQ>(), " == ");
      case ExprKind::NE: return infix(e.as<NE>(), " != ");
      case ExprKind::LT: return infix(e.as<LT>(), " < ");
      case ExprKind::LE: return infix(e.as<LE>(), " <= ");
      case ExprKind::GT: return infix(e.as<GT>(), " > ");
      case ExprKind::GE: return infix(e.as<GE>(), " >= ");
      case ExprKind::And: return infix(e.as<And>(), " && ");
      case ExprKind::Or: return infix(e.as<Or>(), " || ");
      case ExprKind::Not:
        os_ << "!";
        print(e.as<Not>()->a);
        return;
      case ExprKind::Select: {
        const Select* op = e.as<Select>();
        return call("select", {op->cond, op->true_value, op->false_value});
      }
      case ExprKind::Load: {
        const Load* op = e.as<Load>();
        os_ << op->buffer->name << "[";
        print(op->index);
        os_ << "]";
        return;
      }
      case ExprKind::Ramp: {
        const Ramp* op = e.as<Ramp>();
        os_ << "ramp(";
        print(op->base);
        os_ << ", ";
        print(op->stride);
        os_ << ", " << op->lanes << ")";
        return;
      }
      case ExprKind::Broadcast: {
        const Broadcast* op = e.as<Broadcast>();
        os_ << "x" << op->lanes << "(";
        print(op->value);
        os_ << ")";
        return;
      }
      case ExprKind::Call: {
        const Call* op = e.as<Call>();
        return call(intrinsic_name(op->func), op->args);
      }
      case ExprKind::TensorRead: {
        const TensorRead* op = e.as<TensorRead>();
        os_ << op->tensor << "(";
        list(op->indices);
        os_ << ")";
        return;
      }
    }
  }

  void print(const Stmt& s) {
    if (!s.defined()) return;
    switch (s.kind()) {
      case StmtKind::For: {
        const For* op = s.as<For>();
        indent();
        if (op->for_kind != ForKind::Serial) os_ << for_kind_name(op->for_kind) << " ";
        os_ << "for (";
        print(op->var);
        os_ << ", ";
        print(op->min);
        os_ << ", ";
        print(op->extent);
        os_ << ") {\n";
        nested(op->body);
        indent();
        os_ << "}\n";
        return;
      }
      case StmtKind::Store: {
        const Store* op = s.as<Store>();
        indent();
        os_ << op->buffer->name << "[";
        print(op->index);
        os_ << "] = ";
        print(op->value);
        os_ << "\n";
        return;
      }
      case StmtKind::Allocate: {
        const Allocate* op = s.as<Allocate>();
        indent();
        os_ << "allocate " << op->buffer->name << "[" << op->buffer->dtype.to_string() << " * "
            << op->buffer->num_elements() << "] " << scope_name(op->buffer->scope) << " {\n";
        nested(op->body);
        indent();
        os_ << "}\n";
        return;
      }
      case StmtKind::IfThenElse: {
        const IfThenElse* op = s.as<IfThenElse>();
        indent();
        os_ << "if (";
        print(op->cond);
        os_ << ") {\n";
        nested(op->then_case);
        Stmt rest = op->else_case;
        // else-if chains print flat.
        while (rest.defined()) {
          const IfThenElse* elif = rest.as<IfThenElse>();
          indent();
          if (elif) {
            os_ << "} else if (";
            print(elif->cond);
            os_ << ") {\n";
            nested(elif->then_case);
            rest = elif->else_case;
          } else {
            os_ << "} else {\n";
            nested(rest);
            rest = Stmt();
          }
        }
        indent();
        os_ << "}\n";
        return;
      }
      case StmtKind::Block:
        for (const Stmt& x : s.as<Block>()->stmts) print(x);
        return;
      case StmtKind::Barrier:
        indent();
        os_ << "barrier(" << scope_name(s.as<Barrier>()->scope) << ")\n";
        return;
      case StmtKind::Evaluate:
        indent();
        print(s.as<Evaluate>()->value);
        os_ << "\n";
        return;
      case StmtKind::LetStmt: {
        const LetStmt* op = s.as<LetStmt>();
        indent();
        os_ << "let ";
        print(op->var);
        os_ << " = ";
        print(op->value);
        os_ << "\n";
        print(op->body);
        return;
      }
    }
  }

  void print(const LoweredFunc& f) {
    os_ << "func " << f.name << "(";
    bool first = true;
    for (const Buffer& b : f.args) {
      if (!first) os_ << ", ";
      first = false;
      os_ << b->name << ": " << b->dtype.to_string() << "["
          << join(b->shape, ", ", [](int64_t d) { return std::to_string(d); }) << "]";
    }
    os_ << ") {\n";
    nested(f.body);
    os_ << "}\n";
  }

 private:
  template <typename Node>
  void infix(const Node* op, const char* sym) {
    os_ << "(";
    print(op->a);
    os_ << sym;
    print(op->b);
    os_ << ")";
  }

  void list(const std::vector<Expr>& es) {
    for (size_t i = 0; i < es.size(); ++i) {
      if (i) os_ << ", ";
      print(es[i]);
    }
  }

  void call(const char* name, const std::vector<Expr>& args) {
    os_ << name << "(";
    list(args);
    os_ << ")";
  }

  void indent() {
    for (int i = 0; i < depth_; ++i) os_ << "  ";
  }

  void nested(const Stmt& s) {
    ++depth_;
    print(s);
    --depth_;
  }

  std::ostream& os_;
  int depth_ = 0;
};

}  // namespace

std::string to_string(const Expr& e) {
  std::ostringstream os;
  Printer(os).print(e);
  return os.str();
}

std::string to_string(const Stmt& s) {
  std::ostringstream os;
  Printer(os).print(s);
  return os.str();
}

std::string to_string(const LoweredFunc& f) {
  std::ostringstream os;
  Printer(os).print(f);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Expr& e) {
  Printer(os).print(e);
  return os;
}

std::ostream& operator<<(std::ostream& os, const Stmt& s) {
  Printer(os).print(s);
  return os;
}

}  // namespace ktune::ir
