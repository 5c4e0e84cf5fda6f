// Parser of the kernel language (kernels/*.kt, described for users in
// docs/kernel-language.md): source text -> KernelDef header + ComputeDAG, in one pass.
//
// The lexer turns the text into tokens with 1-based line:column positions; newlines end
// statements except inside brackets or after a token that cannot end one (an operator, a
// comma, '='). The parser is recursive descent. It evaluates parameters and derived values
// to constants as it goes (see parser.h), and builds compute bodies directly as ir::Expr.
// Every check that can fail is made where the offending token is still at hand, so each
// error names a position: `file:line:col: message`.
//
// Values while parsing are `Val`s: either a constant (an int or a float literal, a
// parameter, a derived value, or arithmetic on those, folded right away) or an IR
// expression. Constants carry no element type: like C literals, they take the type of the
// other operand (`x * 2` with x of f16 is an f16 multiply), which keeps kernels generic over
// their `dtype` parameter. Each constant also remembers which parameters it was computed
// from, so a shape error can say which parameter values made a dimension zero.
#include "parser.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <set>
#include <unordered_map>

#include "ktune/ir/ir_ops.h"
#include "ktune/ir/simplify.h"
#include "ktune/ir/visitor.h"
#include "ktune/support/error.h"
#include "ktune/support/util.h"

namespace ktune::te::detail {

std::optional<ir::Type> element_type(std::string_view name) {
  if (name == "f32") return ir::Type::f32();
  if (name == "f64") return ir::Type::f64();
  if (name == "f16") return ir::Type::f16();
  if (name == "bf16") return ir::Type::bf16();
  if (name == "i8") return ir::Type::i8();
  if (name == "i32") return ir::Type::i32();
  if (name == "i64") return ir::Type::i64();
  return std::nullopt;
}

namespace {
template <ir::ExprKind K>
bool operands_of(const ir::Expr& e, const ir::Expr** a, const ir::Expr** b) {
  const auto* n = e.as<ir::BinaryNode<K>>();
  if (!n) return false;
  *a = &n->a;
  *b = &n->b;
  return true;
}
}  // namespace

bool binary_operands(const ir::Expr& e, const ir::Expr** a, const ir::Expr** b) {
  using K = ir::ExprKind;
  return operands_of<K::Add>(e, a, b) || operands_of<K::Sub>(e, a, b) || operands_of<K::Mul>(e, a, b) ||
         operands_of<K::Div>(e, a, b) || operands_of<K::Mod>(e, a, b) || operands_of<K::Min>(e, a, b) ||
         operands_of<K::Max>(e, a, b) || operands_of<K::EQ>(e, a, b) || operands_of<K::NE>(e, a, b) ||
         operands_of<K::LT>(e, a, b) || operands_of<K::LE>(e, a, b) || operands_of<K::GT>(e, a, b) ||
         operands_of<K::GE>(e, a, b) || operands_of<K::And>(e, a, b) || operands_of<K::Or>(e, a, b);
}

std::string element_type_name(ir::Type t) {
  switch (t.code) {
    case ir::TypeCode::Float: return "f" + std::to_string(t.bits);
    case ir::TypeCode::BFloat: return "bf" + std::to_string(t.bits);
    case ir::TypeCode::Int: return "i" + std::to_string(t.bits);
    case ir::TypeCode::Bool: return "bool";
  }
  return "?";
}

namespace {

constexpr const char* kElementTypes = "f32, f64, f16, bf16, i32, i8, i64";

// ---------------------------------------------------------------------------------------
// Tokens

struct Loc {
  int line = 1, col = 1;
};

enum class Tok : uint8_t {
  Ident, Int, Float,
  LParen, RParen, LBracket, RBracket, Comma, Assign, Colon,
  Plus, Minus, Star, Slash, Percent,
  Lt, Le, Gt, Ge, EqEq, Ne, AndAnd, OrOr, Bang,
  Newline, End,
};

const char* tok_spelling(Tok t) {
  switch (t) {
    case Tok::Ident: return "a name";
    case Tok::Int: return "an integer";
    case Tok::Float: return "a number";
    case Tok::LParen: return "'('";
    case Tok::RParen: return "')'";
    case Tok::LBracket: return "'['";
    case Tok::RBracket: return "']'";
    case Tok::Comma: return "','";
    case Tok::Assign: return "'='";
    case Tok::Colon: return "':'";
    case Tok::Plus: return "'+'";
    case Tok::Minus: return "'-'";
    case Tok::Star: return "'*'";
    case Tok::Slash: return "'/'";
    case Tok::Percent: return "'%'";
    case Tok::Lt: return "'<'";
    case Tok::Le: return "'<='";
    case Tok::Gt: return "'>'";
    case Tok::Ge: return "'>='";
    case Tok::EqEq: return "'=='";
    case Tok::Ne: return "'!='";
    case Tok::AndAnd: return "'&&'";
    case Tok::OrOr: return "'||'";
    case Tok::Bang: return "'!'";
    case Tok::Newline: return "the end of the line";
    case Tok::End: return "the end of the file";
  }
  return "?";
}

// Tokens after which a line break does not end the statement.
bool continues_line(Tok t) {
  switch (t) {
    case Tok::LParen: case Tok::LBracket: case Tok::Comma: case Tok::Assign: case Tok::Colon:
    case Tok::Plus: case Tok::Minus: case Tok::Star: case Tok::Slash: case Tok::Percent:
    case Tok::Lt: case Tok::Le: case Tok::Gt: case Tok::Ge: case Tok::EqEq: case Tok::Ne:
    case Tok::AndAnd: case Tok::OrOr: case Tok::Bang:
      return true;
    default:
      return false;
  }
}

struct Token {
  Tok kind = Tok::End;
  Loc loc;
  size_t begin = 0, end = 0;  // byte range in the source
  std::string text;           // spelling
  int64_t ival = 0;
  double fval = 0;
};

std::string describe(const Token& t) {
  switch (t.kind) {
    case Tok::Ident: return "'" + t.text + "'";
    case Tok::Int:
    case Tok::Float: return "'" + t.text + "'";
    default: return tok_spelling(t.kind);
  }
}

[[noreturn]] void fail_at(const std::string& file, Loc loc, const std::string& msg) {
  throw UserError(ktune::detail::concat(file, ":", loc.line, ":", loc.col, ": ", msg));
}

// A comment alone on its line (candidate doc comment).
struct LineComment {
  int line;
  std::string text;
};

class Lexer {
 public:
  Lexer(const std::string& src, const std::string& file) : src_(src), file_(file) {}

  std::vector<Token> run(std::vector<LineComment>* comments) {
    std::vector<Token> out;
    int depth = 0;  // open ( and [
    bool line_has_token = false;
    while (i_ < src_.size()) {
      char c = src_[i_];
      if (c == '\n') {
        if (depth == 0 && !out.empty() && out.back().kind != Tok::Newline &&
            !continues_line(out.back().kind)) {
          Token t;
          t.kind = Tok::Newline;
          t.loc = loc();
          t.begin = i_;
          t.end = i_ + 1;
          out.push_back(t);
        }
        ++i_;
        ++line_;
        line_start_ = i_;
        line_has_token = false;
        continue;
      }
      if (c == ' ' || c == '\t' || c == '\r') {
        ++i_;
        continue;
      }
      if (c == '#') {
        size_t e = src_.find('\n', i_);
        if (e == std::string::npos) e = src_.size();
        if (!line_has_token) {
          std::string text = src_.substr(i_ + 1, e - i_ - 1);
          if (!text.empty() && text[0] == ' ') text.erase(0, 1);
          while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.pop_back();
          comments->push_back({line_, text});
        }
        i_ = e;
        continue;
      }
      line_has_token = true;
      Token t = next_token();
      if (t.kind == Tok::LParen || t.kind == Tok::LBracket) ++depth;
      if ((t.kind == Tok::RParen || t.kind == Tok::RBracket) && depth > 0) --depth;
      out.push_back(std::move(t));
    }
    if (!out.empty() && out.back().kind != Tok::Newline) {
      Token t;
      t.kind = Tok::Newline;
      t.loc = loc();
      t.begin = t.end = src_.size();
      out.push_back(t);
    }
    Token end;
    end.kind = Tok::End;
    end.loc = loc();
    end.begin = end.end = src_.size();
    out.push_back(end);
    return out;
  }

 private:
  Loc loc() const { return {line_, int(i_ - line_start_) + 1}; }

  static bool ident_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  }
  static bool digit(char c) { return c >= '0' && c <= '9'; }
  char at(size_t k) const { return k < src_.size() ? src_[k] : '\0'; }

  Token next_token() {
    Token t;
    t.loc = loc();
    t.begin = i_;
    char c = src_[i_];
    if (ident_start(c)) {
      while (i_ < src_.size() && (ident_start(src_[i_]) || digit(src_[i_]))) ++i_;
      t.kind = Tok::Ident;
    } else if (digit(c) || (c == '.' && digit(at(i_ + 1)))) {
      lex_number(t);
    } else {
      auto two = [&](char second) { return at(i_ + 1) == second; };
      Tok k;
      int len = 1;
      switch (c) {
        case '(': k = Tok::LParen; break;
        case ')': k = Tok::RParen; break;
        case '[': k = Tok::LBracket; break;
        case ']': k = Tok::RBracket; break;
        case ',': k = Tok::Comma; break;
        case ':': k = Tok::Colon; break;
        case '+': k = Tok::Plus; break;
        case '-': k = Tok::Minus; break;
        case '*': k = Tok::Star; break;
        case '/': k = Tok::Slash; break;
        case '%': k = Tok::Percent; break;
        case '<': k = two('=') ? (len = 2, Tok::Le) : Tok::Lt; break;
        case '>': k = two('=') ? (len = 2, Tok::Ge) : Tok::Gt; break;
        case '=': k = two('=') ? (len = 2, Tok::EqEq) : Tok::Assign; break;
        case '!': k = two('=') ? (len = 2, Tok::Ne) : Tok::Bang; break;
        case '&':
          if (!two('&')) fail_at(file_, t.loc, "unexpected character '&'; did you mean '&&'?");
          k = Tok::AndAnd;
          len = 2;
          break;
        case '|':
          if (!two('|')) fail_at(file_, t.loc, "unexpected character '|'; did you mean '||'?");
          k = Tok::OrOr;
          len = 2;
          break;
        default: {
          unsigned char u = static_cast<unsigned char>(c);
          if (u < 0x20 || u >= 0x7f)
            fail_at(file_, t.loc, ktune::detail::concat("unexpected byte 0x", std::hex, int(u),
                                                        " (kernel files are ASCII)"));
          fail_at(file_, t.loc, std::string("unexpected character '") + c + "'");
        }
      }
      t.kind = k;
      i_ += len;
    }
    t.end = i_;
    t.text = src_.substr(t.begin, t.end - t.begin);
    return t;
  }

  void lex_number(Token& t) {
    bool is_float = false;
    while (digit(at(i_))) ++i_;
    if (at(i_) == '.' && digit(at(i_ + 1))) {
      is_float = true;
      ++i_;
      while (digit(at(i_))) ++i_;
    } else if (at(i_) == '.' && !ident_start(at(i_ + 1))) {
      is_float = true;  // "1."
      ++i_;
    }
    if ((at(i_) == 'e' || at(i_) == 'E') &&
        (digit(at(i_ + 1)) || ((at(i_ + 1) == '+' || at(i_ + 1) == '-') && digit(at(i_ + 2))))) {
      is_float = true;
      i_ += 2;
      while (digit(at(i_))) ++i_;
    }
    std::string text = src_.substr(t.begin, i_ - t.begin);
    if (ident_start(at(i_)) || at(i_) == '.') {
      size_t e = i_;
      while (ident_start(at(e)) || digit(at(e)) || at(e) == '.') ++e;
      fail_at(file_, t.loc, "malformed number '" + src_.substr(t.begin, e - t.begin) + "'");
    }
    if (is_float) {
      t.kind = Tok::Float;
      t.fval = std::strtod(text.c_str(), nullptr);
    } else {
      t.kind = Tok::Int;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), t.ival);
      if (ec != std::errc())
        fail_at(file_, t.loc, "integer '" + text + "' is too large (the limit is 2^63 - 1)");
    }
  }

  const std::string& src_;
  const std::string& file_;
  size_t i_ = 0;
  int line_ = 1;
  size_t line_start_ = 0;
};

// ---------------------------------------------------------------------------------------
// Values and symbols

// A value while parsing: a folded constant (Int / Float, no element type yet) or an Expr.
struct Val {
  enum class K : uint8_t { Expr, Int, Float };
  K k = K::Expr;
  ir::Expr e;  // when k == Expr
  int64_t i = 0;
  double f = 0;
  std::set<int> params;  // parameters (by index) a constant was computed from
  Loc loc;               // first token of the value
  bool is_const() const { return k != K::Expr; }
};

// One dimension of a tensor as the file wrote it.
struct Dim {
  int64_t value = 0;
  std::string text;      // source text of the extent ("H + 2*pad")
  std::set<int> params;  // parameters it depends on
  Loc loc;
};

enum class SymKind : uint8_t { IntParam, TypeParam, Value, Tensor, Axis };

const char* sym_kind_name(SymKind k) {
  switch (k) {
    case SymKind::IntParam:
    case SymKind::TypeParam: return "a parameter";
    case SymKind::Value: return "a value";
    case SymKind::Tensor: return "a tensor";
    case SymKind::Axis: return "an axis";
  }
  return "?";
}

struct Symbol {
  SymKind kind = SymKind::Value;
  Loc loc;        // where it is defined
  Val value;      // IntParam, Value
  ir::Type type;  // TypeParam
  ir::Expr var;   // Axis
};

enum class BinOp : uint8_t { Add, Sub, Mul, Div, Mod, Min, Max, Lt, Le, Gt, Ge, Eq, Ne, And, Or };

const char* binop_spelling(BinOp op) {
  switch (op) {
    case BinOp::Add: return "'+'";
    case BinOp::Sub: return "'-'";
    case BinOp::Mul: return "'*'";
    case BinOp::Div: return "'/'";
    case BinOp::Mod: return "'%'";
    case BinOp::Min: return "min";
    case BinOp::Max: return "max";
    case BinOp::Lt: return "'<'";
    case BinOp::Le: return "'<='";
    case BinOp::Gt: return "'>'";
    case BinOp::Ge: return "'>='";
    case BinOp::Eq: return "'=='";
    case BinOp::Ne: return "'!='";
    case BinOp::And: return "'&&'";
    case BinOp::Or: return "'||'";
  }
  return "?";
}

bool is_comparison(BinOp op) { return op >= BinOp::Lt && op <= BinOp::Ne; }

std::optional<ir::Intrinsic> intrinsic_named(std::string_view n) {
  if (n == "exp") return ir::Intrinsic::Exp;
  if (n == "sqrt") return ir::Intrinsic::Sqrt;
  if (n == "log") return ir::Intrinsic::Log;
  if (n == "tanh") return ir::Intrinsic::Tanh;
  if (n == "abs") return ir::Intrinsic::Abs;
  if (n == "sigmoid") return ir::Intrinsic::Sigmoid;
  return std::nullopt;
}

bool is_keyword(std::string_view n) {
  return n == "kernel" || n == "input" || n == "const" || n == "output" || n == "require";
}
bool is_function_name(std::string_view n) {
  return n == "sum" || n == "max" || n == "min" || n == "select" || intrinsic_named(n).has_value();
}
bool is_reserved(std::string_view n) {
  return is_keyword(n) || is_function_name(n) || element_type(n).has_value();
}

// A tensor read seen in the current definition, kept for extent inference and bounds checks.
struct ReadSite {
  std::string tensor;
  std::vector<ir::Expr> indices;
  std::vector<Loc> index_locs;
  std::vector<std::string> index_texts;
  std::vector<std::set<int>> index_params;
  std::vector<bool> plain;  // the index is written as a lone axis name
  bool guarded = false;  // inside a branch of select(): may be out of range when not taken
};

// An axis declared in the current definition.
struct AxisDecl {
  std::string name;
  Loc loc;
  ir::Expr var;
  std::optional<Dim> extent;
};

// Range of an integer index expression over the axes' extents. `exact` when both ends are
// attained by some axis values (so an out-of-range end is a real out-of-bounds access).
struct IndexRange {
  int64_t lo = 0, hi = 0;
  bool exact = true;
  std::set<const ir::ExprNode*> vars;
};

std::optional<IndexRange> index_range(const ir::Expr& e,
                                      const std::unordered_map<const ir::ExprNode*, int64_t>& ext) {
  using ir::ExprKind;
  auto disjoint = [](const IndexRange& a, const IndexRange& b) {
    for (auto* v : a.vars)
      if (b.vars.count(v)) return false;
    return true;
  };
  auto merge = [&](IndexRange r, const IndexRange& a, const IndexRange& b) {
    r.exact = a.exact && b.exact && disjoint(a, b);
    r.vars = a.vars;
    r.vars.insert(b.vars.begin(), b.vars.end());
    return r;
  };
  switch (e.kind()) {
    case ExprKind::IntImm: {
      int64_t v = e.as<ir::IntImm>()->value;
      return IndexRange{v, v, true, {}};
    }
    case ExprKind::Var: {
      auto it = ext.find(e.get());
      if (it == ext.end()) return std::nullopt;
      return IndexRange{0, it->second - 1, true, {e.get()}};
    }
    case ExprKind::Add:
    case ExprKind::Sub: {
      const ir::Expr *ea, *eb;
      binary_operands(e, &ea, &eb);
      auto a = index_range(*ea, ext), b = index_range(*eb, ext);
      if (!a || !b) return std::nullopt;
      IndexRange r;
      if (e.kind() == ExprKind::Add) {
        r.lo = a->lo + b->lo;
        r.hi = a->hi + b->hi;
      } else {
        r.lo = a->lo - b->hi;
        r.hi = a->hi - b->lo;
      }
      return merge(r, *a, *b);
    }
    case ExprKind::Mul: {
      const auto* n = e.as<ir::Mul>();
      int64_t c;
      const ir::Expr* other;
      if (ir::is_const_int(n->b, &c)) {
        other = &n->a;
      } else if (ir::is_const_int(n->a, &c)) {
        other = &n->b;
      } else {
        return std::nullopt;
      }
      auto a = index_range(*other, ext);
      if (!a) return std::nullopt;
      IndexRange r = *a;
      r.lo = std::min(a->lo * c, a->hi * c);
      r.hi = std::max(a->lo * c, a->hi * c);
      return r;
    }
    case ExprKind::Div: {
      const auto* n = e.as<ir::Div>();
      int64_t c;
      if (!ir::is_const_int(n->b, &c) || c == 0) return std::nullopt;
      auto a = index_range(n->a, ext);
      if (!a) return std::nullopt;
      IndexRange r = *a;
      int64_t x = floor_div(a->lo, c), y = floor_div(a->hi, c);
      r.lo = std::min(x, y);
      r.hi = std::max(x, y);
      return r;
    }
    case ExprKind::Mod: {
      const auto* n = e.as<ir::Mod>();
      int64_t c;
      if (!ir::is_const_int(n->b, &c) || c <= 0) return std::nullopt;
      auto a = index_range(n->a, ext);
      if (!a) return std::nullopt;
      IndexRange r = *a;
      if (floor_div(a->lo, c) == floor_div(a->hi, c)) {
        r.lo = floor_mod(a->lo, c);
        r.hi = floor_mod(a->hi, c);
      } else {
        r.lo = 0;
        r.hi = c - 1;
        r.exact = false;
      }
      return r;
    }
    case ExprKind::Min:
    case ExprKind::Max: {
      const ir::Expr *ea, *eb;
      binary_operands(e, &ea, &eb);
      auto a = index_range(*ea, ext), b = index_range(*eb, ext);
      if (!a || !b) return std::nullopt;
      IndexRange r;
      if (e.kind() == ExprKind::Min) {
        r.lo = std::min(a->lo, b->lo);
        r.hi = std::min(a->hi, b->hi);
      } else {
        r.lo = std::max(a->lo, b->lo);
        r.hi = std::max(a->hi, b->hi);
      }
      r = merge(r, *a, *b);
      r.exact = false;
      return r;
    }
    default:
      return std::nullopt;
  }
}

// Why an index expression is not an affine function of the axes, or "" when it is.
std::string non_affine_reason(const ir::Expr& e) {
  using ir::ExprKind;
  switch (e.kind()) {
    case ExprKind::IntImm:
    case ExprKind::Var: return "";
    case ExprKind::Add:
    case ExprKind::Sub:
    case ExprKind::Min:
    case ExprKind::Max: {
      const ir::Expr *a, *b;
      binary_operands(e, &a, &b);
      std::string r = non_affine_reason(*a);
      return r.empty() ? non_affine_reason(*b) : r;
    }
    case ExprKind::Mul: {
      const auto* n = e.as<ir::Mul>();
      if (!ir::is_const_int(n->a) && !ir::is_const_int(n->b))
        return "it multiplies two axis expressions";
      std::string r = non_affine_reason(n->a);
      return r.empty() ? non_affine_reason(n->b) : r;
    }
    case ExprKind::Div:
    case ExprKind::Mod: {
      const ir::Expr *a, *b;
      binary_operands(e, &a, &b);
      if (!ir::is_const_int(*b)) return "it divides by an axis expression";
      return non_affine_reason(*a);
    }
    default:
      return std::string("it uses ") + ir::kind_name(e.kind());
  }
}

// ---------------------------------------------------------------------------------------
// Parser

class Parser {
 public:
  Parser(const std::string& source, const std::string& file,
         const std::map<std::string, int64_t>& int_values,
         const std::map<std::string, ir::Type>& type_values)
      : src_(source), file_(file), int_values_(int_values), type_values_(type_values) {}

  ParsedKernel run() {
    std::vector<LineComment> comments;
    toks_ = Lexer(src_, file_).run(&comments);
    prescan_definitions();
    skip_newlines();
    header(comments);
    while (!at(Tok::End)) {
      if (accept(Tok::Newline)) continue;
      statement();
    }
    finish();
    ParsedKernel out;
    def_.file = file_;
    def_.source = src_;
    out.def = std::move(def_);
    out.dag = std::move(dag_);
    return out;
  }

 private:
  // ---- token helpers

  const Token& cur() const { return toks_[pos_]; }
  const Token& peek(size_t k) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  bool at(Tok k) const { return cur().kind == k; }
  const Token& advance() {
    const Token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  bool accept(Tok k) {
    if (!at(k)) return false;
    advance();
    return true;
  }
  const Token& expect(Tok k, const std::string& what) {
    if (!at(k)) fail(cur().loc, "expected " + what + ", found " + describe(cur()));
    return advance();
  }
  const Token& expect_ident(const std::string& what) { return expect(Tok::Ident, what); }
  void skip_newlines() {
    while (accept(Tok::Newline)) {
    }
  }
  size_t prev_end() const { return pos_ > 0 ? toks_[pos_ - 1].end : 0; }
  std::string text_since(size_t begin) const {
    size_t e = prev_end();
    return e > begin ? src_.substr(begin, e - begin) : std::string();
  }

  [[noreturn]] void fail(Loc loc, const std::string& msg) const { fail_at(file_, loc, msg); }

  // Lines where names are defined, to tell "used before its definition" from "unknown".
  void prescan_definitions() {
    bool start = true;
    for (size_t k = 0; k + 1 < toks_.size(); ++k) {
      const Token& t = toks_[k];
      if (t.kind == Tok::Newline) {
        start = true;
        continue;
      }
      if (!start) continue;
      start = false;
      size_t n = k;
      if (t.kind == Tok::Ident && is_keyword(t.text) && t.text != "kernel") ++n;
      if (n + 1 < toks_.size() && toks_[n].kind == Tok::Ident &&
          (toks_[n + 1].kind == Tok::LBracket || toks_[n + 1].kind == Tok::Assign))
        later_defs_.emplace(toks_[n].text, toks_[n].loc.line);
    }
  }

  // ---- declarations

  void header(const std::vector<LineComment>& comments) {
    const Token& kw = cur();
    if (!(kw.kind == Tok::Ident && kw.text == "kernel"))
      fail(kw.loc, "expected 'kernel NAME(PARAMETERS)' to begin the file, found " + describe(kw));
    kernel_loc_ = kw.loc;
    advance();
    // Doc: the comment lines right above `kernel`.
    std::vector<std::string> doc;
    int want = kw.loc.line - 1;
    for (auto it = comments.rbegin(); it != comments.rend(); ++it) {
      if (it->line > want) continue;
      if (it->line < want) break;
      doc.push_back(it->text);
      --want;
    }
    std::reverse(doc.begin(), doc.end());
    def_.doc = join(doc, "\n", [](const std::string& s) { return s; });

    const Token& name = expect_ident("the kernel's name after 'kernel'");
    check_fresh(name, "");
    def_.name = name.text;
    dag_.kernel = name.text;
    expect(Tok::LParen, "'(' and the kernel's parameters, e.g. kernel " + name.text + "(M=512, N=512)");
    if (!at(Tok::RParen)) {
      do {
        parameter();
      } while (accept(Tok::Comma));
    }
    expect(Tok::RParen, "',' or ')' in the parameter list");
    end_of_statement();
  }

  void parameter() {
    const Token& name = expect_ident("a parameter name");
    check_fresh(name, "");
    expect(Tok::Assign, "'=' and a default value for parameter '" + name.text + "'");
    KernelParam p;
    p.name = name.text;
    Symbol sym;
    sym.loc = name.loc;
    int index = int(def_.params.size());
    if (at(Tok::Ident)) {
      const Token& v = advance();
      auto t = element_type(v.text);
      if (!t)
        fail(v.loc, "the default of parameter '" + p.name +
                        "' must be an integer or an element type (" + kElementTypes + "), found '" +
                        v.text + "'");
      p.is_dtype = true;
      p.default_type = v.text;
      auto bound = type_values_.find(p.name);
      sym.kind = SymKind::TypeParam;
      sym.type = bound != type_values_.end() ? bound->second : *t;
      if (p.name == "dtype") {
        default_type_ = sym.type;
        dag_.dtype = element_type_name(sym.type);
      }
    } else {
      Loc vloc = cur().loc;
      bool neg = accept(Tok::Minus);
      if (!at(Tok::Int))
        fail(vloc, "the default of parameter '" + p.name +
                       "' must be an integer or an element type, found " + describe(cur()));
      p.default_int = neg ? -advance().ival : advance().ival;
      if (p.name == "dtype")
        fail(name.loc, "parameter 'dtype' names the element type; give it a type as default, e.g. dtype=f32");
      auto bound = int_values_.find(p.name);
      int64_t value = bound != int_values_.end() ? bound->second : p.default_int;
      sym.kind = SymKind::IntParam;
      sym.value.k = Val::K::Int;
      sym.value.i = value;
      sym.value.params = {index};
      dag_.params.emplace_back(p.name, value);
    }
    param_values_.push_back(sym.value.i);
    def_.params.push_back(p);
    syms_[p.name] = sym;
  }

  void statement() {
    const Token& t = cur();
    if (t.kind != Tok::Ident)
      fail(t.loc, "expected a statement (input, const, output, require, NAME[axes] = ... or NAME = ...), found " +
                      describe(t));
    if (t.text == "kernel")
      fail(t.loc, "a second 'kernel': a file holds one kernel; put each kernel in its own file");
    if (t.text == "input" || t.text == "const") {
      placeholder();
    } else if (t.text == "require") {
      requirement();
    } else if (t.text == "output") {
      advance();
      compute(true);
    } else if (peek(1).kind == Tok::LBracket) {
      compute(false);
    } else if (peek(1).kind == Tok::Assign) {
      value_definition();
    } else {
      fail(peek(1).loc, "expected '[' (a tensor definition NAME[axes] = ...) or '=' (a value NAME = ...) after '" +
                            t.text + "', found " + describe(peek(1)));
    }
    end_of_statement();
  }

  void end_of_statement() {
    if (at(Tok::End)) return;
    if (!at(Tok::Newline)) fail(cur().loc, "expected the end of the line, found " + describe(cur()));
    advance();
  }

  // Rejects reserved words and names already in use.
  void check_fresh(const Token& name, const std::string& what) {
    if (is_reserved(name.text))
      fail(name.loc, "'" + name.text + "' is a reserved word; choose another name");
    auto it = syms_.find(name.text);
    if (it != syms_.end())
      fail(name.loc, "'" + name.text + "' is already defined on line " +
                         std::to_string(it->second.loc.line) + " (" + sym_kind_name(it->second.kind) +
                         ")" + what);
  }

  void placeholder() {
    bool is_const = advance().text == "const";
    const Token& name = expect_ident("a tensor name after '" + std::string(is_const ? "const" : "input") + "'");
    check_fresh(name, "");
    expect(Tok::LBracket, "'[' and the shape of " + name.text + ", e.g. " + name.text + "[M, N]");
    if (at(Tok::RBracket)) fail(cur().loc, "a tensor needs at least one dimension");
    std::vector<Dim> dims;
    do {
      dims.push_back(constant_dim("a dimension"));
    } while (accept(Tok::Comma));
    expect(Tok::RBracket, "',' or ']' in the shape of " + name.text);
    ir::Type type = default_type_;
    if (accept(Tok::Colon)) type = type_name();

    ktune::te::Operation op;
    op.kind = Operation::Kind::Placeholder;
    op.name = name.text;
    op.dtype = type;
    op.is_const = is_const;
    for (const Dim& d : dims) op.shape.push_back(d.value);
    check_shape(op.name, dims);
    dag_.ops.insert(dag_.ops.begin() + num_placeholders_, std::move(op));
    ++num_placeholders_;
    define_tensor(name, std::move(dims));
  }

  void define_tensor(const Token& name, std::vector<Dim> dims) {
    Symbol s;
    s.kind = SymKind::Tensor;
    s.loc = name.loc;
    syms_[name.text] = s;
    dims_[name.text] = std::move(dims);
  }

  ir::Type type_name() {
    const Token& t = cur();
    if (t.kind == Tok::Ident) {
      if (auto ty = element_type(t.text)) {
        advance();
        return *ty;
      }
      auto it = syms_.find(t.text);
      if (it != syms_.end() && it->second.kind == SymKind::TypeParam) {
        advance();
        return it->second.type;
      }
    }
    fail(t.loc, std::string("expected an element type (") + kElementTypes +
                    " or a type parameter), found " + describe(t));
  }

  void value_definition() {
    const Token& name = advance();
    check_fresh(name, "");
    advance();  // '='
    Loc vloc = cur().loc;
    Val v = expr();
    if (!v.is_const())
      fail(vloc, "the value of '" + name.text +
                     "' must be a constant computed from parameters (+ - * / % min max)");
    Symbol s;
    s.kind = SymKind::Value;
    s.loc = name.loc;
    s.value = v;
    syms_[name.text] = s;
  }

  // `require COND`: a condition on the parameter values (comparisons of constants, && ||),
  // checked as the kernel is instantiated; false is a user error naming the parameters.
  void requirement() {
    advance();  // 'require'
    const Loc loc = cur().loc;
    const size_t begin = cur().begin;
    Val v = expr();
    const std::string text = text_since(begin);
    const ir::Expr folded = v.is_const() ? ir::Expr() : ir::simplify(v.e);
    const ir::IntImm* c = folded.defined() && folded.type().is_bool() ? folded.as<ir::IntImm>() : nullptr;
    if (!c)
      fail(loc, "'require' needs a condition on parameters and values (comparisons, && ||), found '" + text + "'");
    if (c->value) return;
    std::set<int> used;
    for (size_t p = 0; p < def_.params.size(); ++p) {
      const std::string& n = def_.params[p].name;
      for (size_t at = text.find(n); at != std::string::npos; at = text.find(n, at + 1)) {
        const auto word = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; };
        if ((at == 0 || !word(text[at - 1])) && (at + n.size() == text.size() || !word(text[at + n.size()]))) {
          used.insert(int(p));
          break;
        }
      }
    }
    fail(loc, def_.name + ": the requirement '" + text + "' does not hold" + with_params(used));
  }

  // An integer constant expression giving a dimension or an extent.
  Dim constant_dim(const std::string& what) {
    size_t begin = cur().begin;
    Loc loc = cur().loc;
    Val v = expr();
    std::string text = text_since(begin);
    if (v.k == Val::K::Float) fail(loc, what + " must be an integer, found '" + text + "'");
    if (v.k != Val::K::Int)
      fail(loc, what + " must be an integer computed from parameters (+ - * / % min max), found '" +
                    text + "'");
    return Dim{v.i, text, v.params, loc};
  }

  // " with H=1, R=3" for the parameters in `params`, in declaration order.
  std::string with_params(const std::set<int>& params) const {
    std::vector<std::string> parts;
    for (int p : params)
      parts.push_back(def_.params[p].name + "=" + std::to_string(param_values_[p]));
    return parts.empty() ? "" : " with " + join(parts, ", ", [](const std::string& s) { return s; });
  }

  // " (H + 2*pad)": how a dimension was written, unless it is just the number.
  static std::string spelled(const Dim& d) {
    return d.text == std::to_string(d.value) ? std::string() : " (" + d.text + ")";
  }

  void check_shape(const std::string& tensor, const std::vector<Dim>& dims) const {
    for (size_t d = 0; d < dims.size(); ++d) {
      if (dims[d].value > 0) continue;
      std::string shape = "[";
      shape += join(dims, ", ", [](const Dim& x) { return std::to_string(x.value); });
      shape += "]";
      fail(dims[d].loc, ktune::detail::concat(def_.name, ": shape of ", tensor, " is ", shape, ": dimension ", d,
                                              spelled(dims[d]), " is ", dims[d].value,
                                              with_params(dims[d].params),
                                              "; every dimension must be positive"));
    }
  }

  void compute(bool is_output) {
    const Token& name = expect_ident("a tensor name");
    check_fresh(name, "");
    defining_ = name.text;
    expect(Tok::LBracket, "'[' and the axes of " + name.text + ", e.g. " + name.text + "[i, j]");
    if (at(Tok::RBracket)) fail(cur().loc, "a tensor needs at least one dimension");
    std::vector<AxisDecl> axes;
    do {
      axes.push_back(axis_declaration(" and cannot name an axis of " + name.text, false));
    } while (accept(Tok::Comma));
    expect(Tok::RBracket, "',' or ']' after the axes of " + name.text);
    std::optional<ir::Type> declared;
    if (accept(Tok::Colon)) declared = type_name();
    expect(Tok::Assign, "'=' and the definition of " + name.text);

    // Right-hand side: an optional reduction header, then the body.
    ReduceKind reduce = ReduceKind::None;
    std::vector<AxisDecl> raxes;
    const Token& r = cur();
    if (r.kind == Tok::Ident && (r.text == "sum" || r.text == "max" || r.text == "min") &&
        peek(1).kind == Tok::LParen && peek(2).kind == Tok::Ident && peek(3).kind == Tok::Lt) {
      reduce = r.text == "sum" ? ReduceKind::Sum : r.text == "max" ? ReduceKind::Max : ReduceKind::Min;
      std::string rname = r.text;
      advance();
      advance();
      do {
        raxes.push_back(axis_declaration("; a reduction axis needs a fresh name", true));
      } while (accept(Tok::Comma));
      expect(Tok::RParen, "',' or ')' to close the " + rname + "(...) reduction header");
    }
    Loc body_loc = cur().loc;
    if (at(Tok::Newline) || at(Tok::End)) fail(body_loc, "expected the definition of " + name.text);
    in_body_ = true;
    reads_.clear();
    Val body = expr();
    in_body_ = false;

    infer_extents(axes);
    std::vector<Dim> dims;
    for (const AxisDecl& a : axes) dims.push_back(*a.extent);
    check_shape(name.text, dims);
    for (const AxisDecl& a : raxes) {
      const Dim& d = *a.extent;
      if (d.value <= 0)
        fail(d.loc, ktune::detail::concat(def_.name, ": reduction axis ", a.name, " of ", name.text,
                                          " has extent ", d.value, spelled(d), with_params(d.params),
                                          "; every extent must be positive"));
    }
    check_bounds(axes, raxes);

    // Element type: the declared one, else the body's (constants and index arithmetic
    // take the kernel's element type).
    ir::Type float_default = default_type_.is_float() ? default_type_ : ir::Type::f32();
    ir::Expr e;
    ir::Type type;
    if (body.is_const()) {
      type = declared ? *declared : body.k == Val::K::Int ? default_type_ : float_default;
      e = materialize(body, type);
    } else {
      ir::Type bt = body.e.type();
      if (bt.is_bool())
        fail(body_loc, "the value of " + name.text +
                           " is a condition (true/false); write select(CONDITION, 1, 0) for a number");
      type = declared ? *declared : bt == ir::Type::i64() ? default_type_ : bt;
      e = bt == type ? body.e : ir::Cast::make(type, body.e);
    }
    for (const AxisDecl& a : raxes) {
      if (!ir::uses_var(e, a.var))
        fail(a.loc, "reduction axis '" + a.name + "' is not used in the body of " + name.text);
    }

    ktune::te::Operation op;
    op.kind = Operation::Kind::Compute;
    op.name = name.text;
    op.dtype = type;
    op.is_output = is_output;
    for (const AxisDecl& a : axes) {
      op.axes.push_back({a.var, a.extent->value});
      op.shape.push_back(a.extent->value);
    }
    for (const AxisDecl& a : raxes) op.reduce_axes.push_back({a.var, a.extent->value});
    op.reduce = reduce;
    op.body = e;
    dag_.ops.push_back(std::move(op));

    for (const AxisDecl& a : axes) syms_.erase(a.name);
    for (const AxisDecl& a : raxes) syms_.erase(a.name);
    defining_.clear();
    define_tensor(name, std::move(dims));
  }

  // `name` or `name < EXTENT` (the extent is required for reduction axes).
  AxisDecl axis_declaration(const std::string& clash_note, bool reduction) {
    const Token& t = expect_ident(reduction ? "a reduction axis, e.g. sum(k < K)" : "an axis name");
    check_fresh(t, clash_note);
    if (t.text == defining_) fail(t.loc, "'" + t.text + "' names the tensor being defined; choose another axis name");
    AxisDecl a;
    a.name = t.text;
    a.loc = t.loc;
    a.var = ir::Var::make(t.text, ir::Type::i64());
    if (reduction) {
      expect(Tok::Lt, "'<' and the extent of reduction axis '" + t.text + "', e.g. " + t.text + " < N");
      a.extent = constant_dim("the extent of axis '" + t.text + "'");
    } else if (accept(Tok::Lt)) {
      a.extent = constant_dim("the extent of axis '" + t.text + "'");
    }
    Symbol s;
    s.kind = SymKind::Axis;
    s.loc = t.loc;
    s.var = a.var;
    syms_[a.name] = s;
    return a;
  }

  // An axis without `< EXTENT` takes the extent of the dimension it indexes alone.
  void infer_extents(std::vector<AxisDecl>& axes) const {
    for (AxisDecl& a : axes) {
      if (a.extent) continue;
      const ReadSite* from = nullptr;
      size_t from_dim = 0;
      for (const ReadSite& r : reads_) {
        for (size_t d = 0; d < r.indices.size(); ++d) {
          if (!r.plain[d] || !r.indices[d].same_as(a.var)) continue;
          const Dim& dim = dims_.at(r.tensor)[d];
          if (!from) {
            from = &r;
            from_dim = d;
            continue;
          }
          const Dim& first = dims_.at(from->tensor)[from_dim];
          if (dim.value != first.value)
            fail(r.index_locs[d],
                 ktune::detail::concat("conflicting extents for axis '", a.name, "': ", first.value, " (",
                                       first.text, ") from dimension ", from_dim, " of ", from->tensor,
                                       ", but ", dim.value, " (", dim.text, ") from dimension ", d, " of ",
                                       r.tensor, "; write '", a.name, " < EXTENT' to choose"));
        }
      }
      if (!from)
        fail(a.loc, "cannot infer the extent of axis '" + a.name + "'; write '" + a.name + " < EXTENT'");
      Dim d = dims_.at(from->tensor)[from_dim];
      d.loc = a.loc;
      a.extent = d;
    }
  }

  // Reads outside select() branches must stay inside the tensor for every axis value.
  void check_bounds(const std::vector<AxisDecl>& axes, const std::vector<AxisDecl>& raxes) const {
    std::unordered_map<const ir::ExprNode*, int64_t> ext;
    for (const auto* list : {&axes, &raxes})
      for (const AxisDecl& a : *list) ext[a.var.get()] = a.extent->value;
    for (const ReadSite& r : reads_) {
      if (r.guarded) continue;
      const std::vector<Dim>& dims = dims_.at(r.tensor);
      for (size_t d = 0; d < r.indices.size(); ++d) {
        auto range = index_range(r.indices[d], ext);
        if (!range || !range->exact) continue;
        if (range->lo >= 0 && range->hi < dims[d].value) continue;
        std::set<int> params = r.index_params[d];
        params.insert(dims[d].params.begin(), dims[d].params.end());
        fail(r.index_locs[d],
             ktune::detail::concat("out-of-bounds read: index ", d, " of ", r.tensor, " (", r.index_texts[d],
                                   ") takes values ", range->lo, "..", range->hi, ", but dimension ", d,
                                   " of ", r.tensor, " has extent ", dims[d].value, " (", dims[d].text, ")",
                                   with_params(params),
                                   "; guard the read with select(...) or pad the tensor"));
      }
    }
  }

  void finish() {
    bool any_output = false;
    for (const auto& op : dag_.ops) any_output |= op.is_output;
    if (!any_output)
      fail(kernel_loc_, "kernel '" + def_.name +
                            "' has no output; mark its result with 'output', e.g. output C[i, j] = ...");
    for (size_t i = 0; i < dag_.ops.size(); ++i) {
      const auto& op = dag_.ops[i];
      if (op.is_placeholder() || op.is_output) continue;
      if (dag_.consumers(int(i)).empty())
        fail(syms_.at(op.name).loc, "'" + op.name + "' is computed but never read; mark it 'output' or remove it");
    }
  }

  // ---- expressions

  Val expr() { return or_expr(); }

  Val or_expr() {
    Val l = and_expr();
    while (at(Tok::OrOr)) {
      Loc loc = advance().loc;
      l = binary(BinOp::Or, l, and_expr(), loc);
    }
    return l;
  }

  Val and_expr() {
    Val l = comparison();
    while (at(Tok::AndAnd)) {
      Loc loc = advance().loc;
      l = binary(BinOp::And, l, comparison(), loc);
    }
    return l;
  }

  static std::optional<BinOp> comparison_op(Tok t) {
    switch (t) {
      case Tok::Lt: return BinOp::Lt;
      case Tok::Le: return BinOp::Le;
      case Tok::Gt: return BinOp::Gt;
      case Tok::Ge: return BinOp::Ge;
      case Tok::EqEq: return BinOp::Eq;
      case Tok::Ne: return BinOp::Ne;
      default: return std::nullopt;
    }
  }

  Val comparison() {
    Val l = additive();
    if (auto op = comparison_op(cur().kind)) {
      Loc loc = advance().loc;
      l = binary(*op, l, additive(), loc);
      if (comparison_op(cur().kind))
        fail(cur().loc, "comparisons do not chain; write 'a < b && b < c'");
    }
    return l;
  }

  Val additive() {
    Val l = multiplicative();
    while (at(Tok::Plus) || at(Tok::Minus)) {
      BinOp op = at(Tok::Plus) ? BinOp::Add : BinOp::Sub;
      Loc loc = advance().loc;
      l = binary(op, l, multiplicative(), loc);
    }
    return l;
  }

  Val multiplicative() {
    Val l = unary();
    while (at(Tok::Star) || at(Tok::Slash) || at(Tok::Percent)) {
      BinOp op = at(Tok::Star) ? BinOp::Mul : at(Tok::Slash) ? BinOp::Div : BinOp::Mod;
      Loc loc = advance().loc;
      l = binary(op, l, unary(), loc);
    }
    return l;
  }

  Val unary() {
    if (at(Tok::Minus)) {
      Loc loc = advance().loc;
      Val v = unary();
      v.loc = loc;
      if (v.k == Val::K::Int) {
        if (v.i == INT64_MIN) fail(loc, "integer overflow");
        v.i = -v.i;
        return v;
      }
      if (v.k == Val::K::Float) {
        v.f = -v.f;
        return v;
      }
      if (v.e.type().is_bool()) fail(loc, "'-' needs a number, found a condition");
      v.e = ir::Sub::make(materialize_zero(v.e.type()), v.e);
      return v;
    }
    if (at(Tok::Bang)) {
      Loc loc = advance().loc;
      Val v = unary();
      if (v.is_const() || !v.e.type().is_bool()) fail(v.loc, "'!' needs a condition (a comparison)");
      v.e = ir::Not::make(v.e);
      v.loc = loc;
      return v;
    }
    return primary();
  }

  Val primary() {
    const Token& t = cur();
    Val v;
    v.loc = t.loc;
    switch (t.kind) {
      case Tok::Int:
        v.k = Val::K::Int;
        v.i = advance().ival;
        return v;
      case Tok::Float:
        v.k = Val::K::Float;
        v.f = advance().fval;
        return v;
      case Tok::LParen: {
        advance();
        Val inner = expr();
        expect(Tok::RParen, "')'");
        inner.loc = t.loc;
        return inner;
      }
      case Tok::Ident:
        if (peek(1).kind == Tok::LParen) return call();
        if (peek(1).kind == Tok::LBracket) return tensor_read();
        return name();
      default:
        fail(t.loc, "expected an expression, found " + describe(t));
    }
  }

  [[noreturn]] void unknown_name(const Token& t) const {
    if (t.text == defining_)
      fail(t.loc, "'" + t.text + "' cannot read itself; a definition reads only tensors defined above it");
    auto it = later_defs_.find(t.text);
    if (it != later_defs_.end() && it->second >= t.loc.line)
      fail(t.loc, "'" + t.text + "' is used before its definition on line " + std::to_string(it->second) +
                      "; define it above its first use");
    std::string hint;
    if (in_body_)
      hint = "; an axis must be named on the left-hand side (" + t.text +
             " or " + t.text + " < EXTENT) or in a reduction header (sum(" + t.text + " < EXTENT) ...)";
    fail(t.loc, "unknown name '" + t.text + "'" + hint);
  }

  Val name() {
    const Token& t = advance();
    Val v;
    v.loc = t.loc;
    if (element_type(t.text))
      fail(t.loc, "'" + t.text + "' is an element type; convert a value with " + t.text + "(x)");
    if (is_function_name(t.text))
      fail(t.loc, "'" + t.text + "' is a function; call it as " + t.text + "(...)");
    if (is_keyword(t.text)) fail(t.loc, "unexpected keyword '" + t.text + "' in an expression");
    auto it = syms_.find(t.text);
    if (it == syms_.end()) unknown_name(t);
    const Symbol& s = it->second;
    switch (s.kind) {
      case SymKind::Axis:
        if (!in_body_)
          fail(t.loc, "axis '" + t.text +
                          "' cannot be used here: shapes and extents are computed from parameters");
        v.e = s.var;
        return v;
      case SymKind::IntParam:
      case SymKind::Value:
        v = s.value;
        v.loc = t.loc;
        return v;
      case SymKind::TypeParam:
        fail(t.loc, "'" + t.text + "' is an element type parameter; convert a value with " + t.text +
                        "(x) or declare a type with ': " + t.text + "'");
      case SymKind::Tensor:
        fail(t.loc, "'" + t.text + "' is a tensor; read an element with " + t.text + "[...]");
    }
    fail(t.loc, "internal: unhandled symbol");
  }

  Val tensor_read() {
    const Token& t = advance();
    if (is_reserved(t.text)) fail(t.loc, "'" + t.text + "' is a reserved word, not a tensor");
    auto it = syms_.find(t.text);
    if (it == syms_.end()) unknown_name(t);
    if (it->second.kind != SymKind::Tensor)
      fail(t.loc, "'" + t.text + "' is " + sym_kind_name(it->second.kind) + ", not a tensor");
    if (!in_body_)
      fail(t.loc, "tensor '" + t.text + "' cannot be read here: shapes and values are computed from parameters");
    const std::vector<Dim>& dims = dims_.at(t.text);
    advance();  // '['
    ReadSite site;
    site.tensor = t.text;
    site.guarded = select_depth_ > 0;
    do {
      size_t begin = cur().begin, start = pos_;
      Loc loc = cur().loc;
      Val v = expr();
      std::string text = text_since(begin);
      size_t d = site.indices.size();
      site.indices.push_back(index_expr(v, t.text, d, loc, text));
      site.index_locs.push_back(loc);
      site.index_texts.push_back(text);
      site.index_params.push_back(v.params);
      site.plain.push_back(pos_ == start + 1 && toks_[start].kind == Tok::Ident);
    } while (accept(Tok::Comma));
    expect(Tok::RBracket, "',' or ']' after the indices of " + t.text);
    if (site.indices.size() != dims.size())
      fail(t.loc, ktune::detail::concat("'", t.text, "' has ", dims.size(), " dimension",
                                        dims.size() == 1 ? "" : "s", " but is read with ",
                                        site.indices.size(), " ind", site.indices.size() == 1 ? "ex" : "ices"));
    const Operation& op = dag_.op(t.text);
    Val out;
    out.loc = t.loc;
    out.e = ir::TensorRead::make(op.dtype, t.text, site.indices);
    reads_.push_back(std::move(site));
    return out;
  }

  // Checks one index of a read and returns it as an i64 expression.
  ir::Expr index_expr(const Val& v, const std::string& tensor, size_t d, Loc loc, const std::string& text) {
    std::string which = ktune::detail::concat("index ", d, " of ", tensor, " ('", text, "')");
    if (v.k == Val::K::Int) return ir::IntImm::make(ir::Type::i64(), v.i);
    if (v.k == Val::K::Float) fail(loc, which + " must be an integer, found a floating-point number");
    ir::Type t = v.e.type();
    if (t.is_bool()) fail(loc, which + " must be an integer, found a condition");
    if (t.is_float()) fail(loc, which + " must be an integer, found a value of type " + element_type_name(t));
    bool reads_tensor = false;
    ir::post_order_visit(v.e, [&](const ir::Expr& x) {
      reads_tensor |= x.kind() == ir::ExprKind::TensorRead;
    });
    if (reads_tensor)
      fail(loc, which + " reads a tensor element; indices are computed from axes and parameters only");
    if (t != ir::Type::i64())
      fail(loc, which + " has type " + element_type_name(t) +
                    "; indices are computed from axes and parameters only, without conversions");
    std::string why = non_affine_reason(v.e);
    if (!why.empty())
      fail(loc, which + " is not affine: " + why +
                    " (allowed: + and -, * by a constant, / and % by a constant, min, max)");
    return v.e;
  }

  Val call() {
    const Token& t = advance();
    const std::string fname = t.text;
    advance();  // '('
    bool reduction_form = fname == "sum" || ((fname == "max" || fname == "min") && at(Tok::Ident) &&
                                             peek(1).kind == Tok::Lt);
    if (reduction_form)
      fail(t.loc, "a reduction must be the whole right-hand side of a tensor definition, as in "
                  "T[i] = " + fname + "(k < K) EXPR; define it as its own tensor and read that here");
    bool is_select = fname == "select";
    std::vector<Val> args;
    if (!at(Tok::RParen)) {
      do {
        bool guard = is_select && !args.empty();
        if (guard) ++select_depth_;
        args.push_back(expr());
        if (guard) --select_depth_;
      } while (accept(Tok::Comma));
    }
    expect(Tok::RParen, "',' or ')' after the arguments of " + fname);
    auto arity = [&](size_t n, const char* shape) {
      if (args.size() != n)
        fail(t.loc, ktune::detail::concat(fname, " takes ", n, " argument", n == 1 ? "" : "s", " (", shape,
                                          "), found ", args.size()));
    };

    if (fname == "min" || fname == "max") {
      if (args.size() < 2)
        fail(t.loc, fname + " takes two or more values (" + fname + "(a, b)), or is a reduction (" + fname +
                        "(k < K) EXPR)");
      Val acc = args[0];
      for (size_t k = 1; k < args.size(); ++k)
        acc = binary(fname == "min" ? BinOp::Min : BinOp::Max, acc, args[k], t.loc);
      acc.loc = t.loc;
      return acc;
    }
    if (is_select) {
      arity(3, "condition, value if true, value if false");
      const Val& c = args[0];
      if (c.is_const() || !c.e.type().is_bool())
        fail(c.loc, "the first argument of select must be a condition (a comparison)");
      for (const Val* x : {&args[1], &args[2]})
        if (!x->is_const() && x->e.type().is_bool())
          fail(x->loc, "the values of select must be numbers, found a condition");
      ir::Expr a, b;
      unify(args[1], args[2], "select", t.loc, &a, &b);
      Val out;
      out.loc = t.loc;
      out.e = ir::Select::make(c.e, a, b);
      return out;
    }
    if (auto f = intrinsic_named(fname)) {
      arity(1, "one value");
      Val v = args[0];
      ir::Type float_default = default_type_.is_float() ? default_type_ : ir::Type::f32();
      ir::Expr e;
      if (v.is_const()) {
        e = materialize(v, *f == ir::Intrinsic::Abs && v.k == Val::K::Int ? ir::Type::i64() : float_default);
      } else {
        ir::Type ty = v.e.type();
        if (ty.is_bool()) fail(v.loc, fname + " needs a number, found a condition");
        if (ty.is_int() && *f != ir::Intrinsic::Abs)
          fail(v.loc, fname + " needs a floating-point value, found " + element_type_name(ty) +
                          "; convert it, e.g. " + fname + "(f32(x))");
        e = v.e;
      }
      Val out;
      out.loc = t.loc;
      out.e = ir::Call::make(*f, {e});
      return out;
    }
    std::optional<ir::Type> cast_to = element_type(fname);
    if (!cast_to) {
      auto it = syms_.find(fname);
      if (it != syms_.end() && it->second.kind == SymKind::TypeParam) cast_to = it->second.type;
    }
    if (cast_to) {
      arity(1, "one value");
      Val v = args[0];
      v.loc = t.loc;
      if (v.is_const()) {
        if (!in_body_) {  // shapes and values: stay a constant
          if (cast_to->is_int() && v.k == Val::K::Float) {
            v.k = Val::K::Int;
            v.i = int64_t(v.f);
          } else if (cast_to->is_float() && v.k == Val::K::Int) {
            v.k = Val::K::Float;
            v.f = double(v.i);
          }
          return v;
        }
        v.e = materialize(v, *cast_to);
        v.k = Val::K::Expr;
        return v;
      }
      if (v.e.type() != *cast_to) v.e = ir::Cast::make(*cast_to, v.e);
      return v;
    }
    if (syms_.count(fname))
      fail(t.loc, "'" + fname + "' is " + sym_kind_name(syms_.at(fname).kind) + ", not a function");
    fail(t.loc, "unknown function '" + fname +
                    "'; the functions are select, min, max, exp, sqrt, log, tanh, abs, sigmoid and the "
                    "conversions f32(x), f16(x), bf16(x), f64(x), i32(x), i8(x), i64(x)");
  }

  // ---- typing and folding

  ir::Expr materialize(const Val& c, ir::Type t) const {
    if (c.k == Val::K::Expr) return c.e;
    if (t.is_float()) return ir::FloatImm::make(t, c.k == Val::K::Int ? double(c.i) : c.f);
    return ir::IntImm::make(t, c.k == Val::K::Int ? c.i : int64_t(c.f));
  }
  ir::Expr materialize_zero(ir::Type t) const {
    Val z;
    z.k = Val::K::Int;
    return materialize(z, t);
  }

  // Brings two operands to one type. Constants take the other operand's type; an integer
  // operand next to a floating-point one is converted; other mixes are an error.
  void unify(const Val& a, const Val& b, const std::string& op, Loc at, ir::Expr* ea, ir::Expr* eb) const {
    if (a.is_const() && b.is_const()) {
      ir::Type t = (a.k == Val::K::Float || b.k == Val::K::Float) ? ir::Type::f32() : ir::Type::i64();
      *ea = materialize(a, t);
      *eb = materialize(b, t);
      return;
    }
    if (a.is_const() || b.is_const()) {
      const Val& c = a.is_const() ? a : b;
      const Val& s = a.is_const() ? b : a;
      ir::Type t = s.e.type();
      ir::Expr se = s.e;
      if (c.k == Val::K::Float && t.is_int()) {
        t = default_type_.is_float() ? default_type_ : ir::Type::f32();
        se = ir::Cast::make(t, se);
      }
      ir::Expr ce = materialize(c, t);
      *ea = a.is_const() ? ce : se;
      *eb = a.is_const() ? se : ce;
      return;
    }
    ir::Type ta = a.e.type(), tb = b.e.type();
    *ea = a.e;
    *eb = b.e;
    if (ta == tb) return;
    if (ta.is_float() && tb.is_int()) {
      *eb = ir::Cast::make(ta, b.e);
    } else if (tb.is_float() && ta.is_int()) {
      *ea = ir::Cast::make(tb, a.e);
    } else {
      std::string na = element_type_name(ta), nb = element_type_name(tb);
      fail(at, "the operands of " + op + " have different types, " + na + " and " + nb +
                   "; convert one of them, e.g. " + na + "(...)");
    }
  }

  Val fold(BinOp op, const Val& a, const Val& b, Loc at) const {
    Val r;
    r.loc = a.loc;
    r.params = a.params;
    r.params.insert(b.params.begin(), b.params.end());
    if (a.k == Val::K::Int && b.k == Val::K::Int) {
      r.k = Val::K::Int;
      bool overflow = false;
      switch (op) {
        case BinOp::Add: overflow = __builtin_add_overflow(a.i, b.i, &r.i); break;
        case BinOp::Sub: overflow = __builtin_sub_overflow(a.i, b.i, &r.i); break;
        case BinOp::Mul: overflow = __builtin_mul_overflow(a.i, b.i, &r.i); break;
        case BinOp::Div:
        case BinOp::Mod:
          if (b.i == 0)
            fail(at, "division by zero: the divisor is 0" + with_params(b.params));
          r.i = op == BinOp::Div ? floor_div(a.i, b.i) : floor_mod(a.i, b.i);
          break;
        case BinOp::Min: r.i = std::min(a.i, b.i); break;
        case BinOp::Max: r.i = std::max(a.i, b.i); break;
        default: KT_CHECK(false, "fold of a non-arithmetic operator");
      }
      if (overflow) fail(at, "integer overflow in a constant expression" + with_params(r.params));
      return r;
    }
    double x = a.k == Val::K::Int ? double(a.i) : a.f;
    double y = b.k == Val::K::Int ? double(b.i) : b.f;
    r.k = Val::K::Float;
    switch (op) {
      case BinOp::Add: r.f = x + y; break;
      case BinOp::Sub: r.f = x - y; break;
      case BinOp::Mul: r.f = x * y; break;
      case BinOp::Div:
        if (y == 0) fail(at, "division by zero");
        r.f = x / y;
        break;
      case BinOp::Min: r.f = std::min(x, y); break;
      case BinOp::Max: r.f = std::max(x, y); break;
      default: KT_CHECK(false, "fold of a non-arithmetic operator");
    }
    return r;
  }

  Val binary(BinOp op, const Val& a, const Val& b, Loc at) const {
    const char* sp = binop_spelling(op);
    Val r;
    r.loc = a.loc;
    if (op == BinOp::And || op == BinOp::Or) {
      for (const Val* v : {&a, &b})
        if (v->is_const() || !v->e.type().is_bool())
          fail(v->loc, std::string(sp) + " needs conditions (comparisons) on both sides");
      r.e = op == BinOp::And ? ir::And::make(a.e, b.e) : ir::Or::make(a.e, b.e);
      return r;
    }
    for (const Val* v : {&a, &b})
      if (!v->is_const() && v->e.type().is_bool())
        fail(v->loc, std::string(sp) + " needs numbers, found a condition; use select(COND, a, b) to choose a value");
    bool is_float = a.k == Val::K::Float || b.k == Val::K::Float ||
                    (!a.is_const() && a.e.type().is_float()) || (!b.is_const() && b.e.type().is_float());
    if (op == BinOp::Mod && is_float) fail(at, "'%' needs integer operands");
    if ((op == BinOp::Div || op == BinOp::Mod) &&
        ((b.k == Val::K::Int && b.i == 0) || (b.k == Val::K::Float && b.f == 0)))
      fail(at, "division by zero: the divisor is 0" + with_params(b.params));
    if (!is_comparison(op) && a.is_const() && b.is_const()) return fold(op, a, b, at);
    // Integer identities (index arithmetic with parameters like stride=1 or pad=0).
    auto is_int_const = [](const Val& v, int64_t c) { return v.k == Val::K::Int && v.i == c; };
    auto int_expr = [](const Val& v) { return !v.is_const() && v.e.type().is_int(); };
    if (int_expr(a) && ((op == BinOp::Add || op == BinOp::Sub) && is_int_const(b, 0))) return a;
    if (int_expr(a) && ((op == BinOp::Mul || op == BinOp::Div) && is_int_const(b, 1))) return a;
    if (int_expr(b) && ((op == BinOp::Add && is_int_const(a, 0)) || (op == BinOp::Mul && is_int_const(a, 1)))) {
      Val r2 = b;
      r2.loc = a.loc;
      return r2;
    }
    ir::Expr ea, eb;
    unify(a, b, sp, at, &ea, &eb);
    switch (op) {
      case BinOp::Add: r.e = ir::Add::make(ea, eb); break;
      case BinOp::Sub: r.e = ir::Sub::make(ea, eb); break;
      case BinOp::Mul: r.e = ir::Mul::make(ea, eb); break;
      case BinOp::Div: r.e = ir::Div::make(ea, eb); break;
      case BinOp::Mod: r.e = ir::Mod::make(ea, eb); break;
      case BinOp::Min: r.e = ir::Min::make(ea, eb); break;
      case BinOp::Max: r.e = ir::Max::make(ea, eb); break;
      case BinOp::Lt: r.e = ir::LT::make(ea, eb); break;
      case BinOp::Le: r.e = ir::LE::make(ea, eb); break;
      case BinOp::Gt: r.e = ir::GT::make(ea, eb); break;
      case BinOp::Ge: r.e = ir::GE::make(ea, eb); break;
      case BinOp::Eq: r.e = ir::EQ::make(ea, eb); break;
      case BinOp::Ne: r.e = ir::NE::make(ea, eb); break;
      default: KT_CHECK(false, "unhandled operator");
    }
    return r;
  }

  // ---- state

  const std::string& src_;
  const std::string& file_;
  const std::map<std::string, int64_t>& int_values_;
  const std::map<std::string, ir::Type>& type_values_;
  std::vector<Token> toks_;
  size_t pos_ = 0;

  KernelDef def_;
  ComputeDAG dag_;
  Loc kernel_loc_;
  std::vector<int64_t> param_values_;  // bound value of each parameter (0 for type parameters)
  ir::Type default_type_ = ir::Type::f32();
  std::unordered_map<std::string, Symbol> syms_;
  std::unordered_map<std::string, std::vector<Dim>> dims_;  // tensors' dimensions as written
  std::unordered_map<std::string, int> later_defs_;         // name -> line of its definition
  int num_placeholders_ = 0;

  // The definition being parsed.
  bool in_body_ = false;
  int select_depth_ = 0;
  std::string defining_;
  std::vector<ReadSite> reads_;
};

}  // namespace

ParsedKernel parse_kernel_source(const std::string& source, const std::string& file,
                                 const std::map<std::string, int64_t>& int_values,
                                 const std::map<std::string, ir::Type>& type_values) {
  return Parser(source, file, int_values, type_values).run();
}

}  // namespace ktune::te::detail
