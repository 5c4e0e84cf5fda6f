// Unit tests of the loop-nest IR: builders and type matching, the printer, the mutator and
// helpers, the simplifier (including a randomized check against direct evaluation) and the
// interpreter.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <random>
#include <unordered_map>

#include "ktune/ir/interpreter.h"
#include "ktune/ir/ir.h"
#include "ktune/ir/ir_ops.h"
#include "ktune/ir/printer.h"
#include "ktune/ir/simplify.h"
#include "ktune/ir/visitor.h"
#include "ktune/support/error.h"
#include "ktune/support/util.h"

using namespace ktune::ir;

namespace {

// Direct evaluator of scalar integer/bool expressions over variable values.
using Env = std::unordered_map<const ExprNode*, int64_t>;
int64_t eval_int(const Expr& e, const Env& env) {
  auto bin = [&](auto f) {
    Expr a, b;
    switch (e.kind()) {
#define KT_CASE(n)     \
  case ExprKind::n:    \
    a = e.as<n>()->a;  \
    b = e.as<n>()->b;  \
    break;
      KT_CASE(Add) KT_CASE(Sub) KT_CASE(Mul) KT_CASE(Div) KT_CASE(Mod) KT_CASE(Min)
      KT_CASE(Max) KT_CASE(EQ) KT_CASE(NE) KT_CASE(LT) KT_CASE(LE) KT_CASE(GT) KT_CASE(GE)
      KT_CASE(And) KT_CASE(Or)
#undef KT_CASE
      default: break;
    }
    return f(eval_int(a, env), eval_int(b, env));
  };
  switch (e.kind()) {
    case ExprKind::IntImm: return e.as<IntImm>()->value;
    case ExprKind::Var: return env.at(e.get());
    case ExprKind::Add: return bin([](int64_t a, int64_t b) { return a + b; });
    case ExprKind::Sub: return bin([](int64_t a, int64_t b) { return a - b; });
    case ExprKind::Mul: return bin([](int64_t a, int64_t b) { return a * b; });
    case ExprKind::Div: return bin([](int64_t a, int64_t b) { return ktune::floor_div(a, b); });
    case ExprKind::Mod: return bin([](int64_t a, int64_t b) { return ktune::floor_mod(a, b); });
    case ExprKind::Min: return bin([](int64_t a, int64_t b) { return std::min(a, b); });
    case ExprKind::Max: return bin([](int64_t a, int64_t b) { return std::max(a, b); });
    case ExprKind::EQ: return bin([](int64_t a, int64_t b) -> int64_t { return a == b; });
    case ExprKind::NE: return bin([](int64_t a, int64_t b) -> int64_t { return a != b; });
    case ExprKind::LT: return bin([](int64_t a, int64_t b) -> int64_t { return a < b; });
    case ExprKind::LE: return bin([](int64_t a, int64_t b) -> int64_t { return a <= b; });
    case ExprKind::GT: return bin([](int64_t a, int64_t b) -> int64_t { return a > b; });
    case ExprKind::GE: return bin([](int64_t a, int64_t b) -> int64_t { return a >= b; });
    case ExprKind::And: return bin([](int64_t a, int64_t b) -> int64_t { return a && b; });
    case ExprKind::Or: return bin([](int64_t a, int64_t b) -> int64_t { return a || b; });
    case ExprKind::Not: return !eval_int(e.as<Not>()->a, env);
    case ExprKind::Select: {
      const Select* s = e.as<Select>();
      return eval_int(s->cond, env) ? eval_int(s->true_value, env)
                                    : eval_int(s->false_value, env);
    }
    default: FAIL("eval_int: unexpected node " << kind_name(e.kind())); return 0;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Types and builders

TEST_CASE("ir: type names", "[ir]") {
  CHECK(Type::f32().to_string() == "f32");
  CHECK(Type::f32(8).to_string() == "f32x8");
  CHECK(Type::bf16().to_string() == "bf16");
  CHECK(Type::boolean().to_string() == "bool");
  CHECK(Type::i64().to_string() == "i64");
  for (const char* s : {"f32", "f64", "f16", "bf16", "i8", "i32", "i64", "bool"})
    CHECK(Type::parse(s)->to_string() == s);
  CHECK_FALSE(Type::parse("f17").has_value());
  CHECK(Type::bf16().is_float());
  CHECK(Type::boolean().bytes() == 1);
}

TEST_CASE("ir: builders match types", "[ir]") {
  Expr x = Var::make("x");
  Expr f = Var::make("f", Type::f32());
  Expr h = Var::make("h", Type::f16());
  Expr n = Var::make("n", Type::i32());

  Expr one = 1;
  REQUIRE(one.as<IntImm>());
  CHECK(one.type() == Type::i64());
  CHECK(Expr(int64_t(1) << 40).as<IntImm>()->value == int64_t(1) << 40);
  CHECK(Expr(0.5).type() == Type::f32());

  // Int constant next to a float becomes a float constant of that type.
  Expr e = f * 2;
  CHECK(e.type() == Type::f32());
  REQUIRE(e.as<Mul>()->b.as<FloatImm>());
  CHECK(e.as<Mul>()->b.as<FloatImm>()->value == 2.0);
  CHECK((h + 1).type() == Type::f16());
  // Int constant takes the other integer type.
  CHECK((n + 1).type() == Type::i32());
  CHECK((n + 1).as<Add>()->b.type() == Type::i32());
  // Index expressions stay i64.
  CHECK((x * 8 + 7).type() == Type::i64());
  // Non-constant mixes widen.
  CHECK((n + x).type() == Type::i64());
  CHECK((h + f).type() == Type::f32());
  CHECK((f + x).type() == Type::f32());
  // Comparisons are bool with the operands' lanes.
  CHECK((x < 3).type() == Type::boolean());
  Expr r = Ramp::make(x, 1, 8);
  CHECK(r.type() == Type::i64(8));
  CHECK((r < 3).type() == Type::boolean(8));
  CHECK((r + 1).as<Add>()->b.as<Broadcast>() != nullptr);
  CHECK((r + 1).type() == Type::i64(8));
  // Logic.
  CHECK(((x < 3) && (x > 1)).type() == Type::boolean());
  CHECK_THROWS_AS(x && x, ktune::InternalError);
  // Select.
  CHECK(select(x < 3, f, 0).type() == Type::f32());
  // Negation of constants stays a constant.
  CHECK(is_const_int(-Expr(3), -3));
  CHECK((-x).type() == Type::i64());
  // Loads have the buffer's type with the index's lanes.
  Buffer A = make_buffer("A", Type::f16(), {4, 16});
  CHECK(A->num_elements() == 64);
  CHECK(Load::make(A, x).type() == Type::f16());
  CHECK(Load::make(A, r).type() == Type::f16(8));
  CHECK(cast(Type::f32(), Load::make(A, r)).type() == Type::f32(8));
}

TEST_CASE("ir: constants", "[ir]") {
  CHECK(is_const_int(make_zero(Type::i64()), 0));
  CHECK(is_const_int(make_const(Type::i32(4), 3), 3));
  CHECK(make_const(Type::i32(4), 3).type() == Type::i32(4));
  CHECK(make_const(Type::f32(), 0.1).as<FloatImm>()->value == double(0.1f));
  CHECK(std::isinf(type_min(Type::f32()).as<FloatImm>()->value));
  CHECK(type_min(Type::f32()).as<FloatImm>()->value < 0);
  CHECK(type_max(Type::f16()).as<FloatImm>()->value > 0);
  CHECK(is_const_int(type_min(Type::i32()), int64_t(-2147483648LL)));
  CHECK(is_const_int(type_max(Type::i8()), 127));
  CHECK(is_const_int(type_max(Type::i64()), INT64_MAX));
  int64_t v = 0;
  CHECK(is_const_int(Broadcast::make(Expr(5), 4), &v));
  CHECK(v == 5);
  CHECK_FALSE(is_const_int(Var::make("x")));
  CHECK(IntImm::make(Type::i8(), 300).as<IntImm>()->value == 44);  // wraps
}

TEST_CASE("ir: Block::make flattens", "[ir]") {
  Buffer A = make_buffer("A", Type::f32(), {4});
  Stmt s0 = Store::make(A, 1.0, 0), s1 = Store::make(A, 2.0, 1), s2 = Store::make(A, 3.0, 2);
  Stmt inner = Block::make({s0, s1});
  Stmt outer = Block::make({inner, Stmt(), s2});
  REQUIRE(outer.as<Block>());
  CHECK(outer.as<Block>()->stmts.size() == 3);
  CHECK(Block::make({s0}).same_as(s0));
  CHECK(Block::make({}).as<Block>()->stmts.empty());
}

TEST_CASE("ir: names", "[ir]") {
  CHECK(std::string(kind_name(ExprKind::Ramp)) == "Ramp");
  CHECK(std::string(kind_name(StmtKind::LetStmt)) == "LetStmt");
  CHECK(std::string(scope_name(MemoryScope::Shared)) == "shared");
  CHECK(std::string(for_kind_name(ForKind::ThreadIdxY)) == "threadIdx.y");
  CHECK(std::string(intrinsic_name(Intrinsic::Sigmoid)) == "sigmoid");
  CHECK(is_gpu_binding(ForKind::VThread));
  CHECK_FALSE(is_gpu_binding(ForKind::Parallel));
}

// ---------------------------------------------------------------------------------------
// Printer

TEST_CASE("ir: printer", "[ir]") {
  Expr i = Var::make("i"), j = Var::make("j");
  Buffer A = make_buffer("A", Type::f32(), {64, 8});
  Buffer B = make_buffer("B", Type::f32(), {64, 8});
  Buffer T = make_buffer("T", Type::f32(), {64}, MemoryScope::Local);
  Stmt body = Store::make(B, Load::make(A, i * 8 + j) * 2, i * 8 + j);
  Stmt inner = For::make(j, 0, 8, ForKind::Vectorized, body);
  Stmt alloc = Allocate::make(T, Block::make({Store::make(T, 0, i), inner}));
  Stmt outer = For::make(i, 0, 64, ForKind::Parallel, alloc);
  CHECK(to_string(outer) ==
        "parallel for (i, 0, 64) {\n"
        "  allocate T[f32 * 64] local {\n"
        "    T[i] = 0.0f\n"
        "    vectorized for (j, 0, 8) {\n"
        "      B[((i*8) + j)] = (A[((i*8) + j)]*2.0f)\n"
        "    }\n"
        "  }\n"
        "}\n");
  CHECK(to_string(Ramp::make(i * 8, 1, 8)) == "ramp((i*8), 1, 8)");
  CHECK(to_string(min(i, 3) + select(i < j, i, j)) == "(min(i, 3) + select((i < j), i, j))");
  CHECK(to_string(cast(Type::f32(), i)) == "f32(i)");
  Stmt ite = IfThenElse::make(i < 4, Store::make(T, 1, i), Store::make(T, 2, i));
  CHECK(to_string(ite) == "if ((i < 4)) {\n  T[i] = 1.0f\n} else {\n  T[i] = 2.0f\n}\n");
  LoweredFunc f{"copy", {A, B}, For::make(i, 0, 512, ForKind::Serial, Store::make(B, Load::make(A, i), i))};
  CHECK(to_string(f) ==
        "func copy(A: f32[64, 8], B: f32[64, 8]) {\n"
        "  for (i, 0, 512) {\n"
        "    B[i] = A[i]\n"
        "  }\n"
        "}\n");
}

// ---------------------------------------------------------------------------------------
// Visitor and mutator

TEST_CASE("ir: mutator keeps unchanged nodes", "[ir]") {
  Expr i = Var::make("i"), j = Var::make("j");
  Buffer A = make_buffer("A", Type::f32(), {64});
  Stmt s = For::make(i, 0, 8, ForKind::Serial,
                     Block::make({Store::make(A, Load::make(A, i * 8 + j) + 1, i * 8 + j),
                                  IfThenElse::make(i < 3, Evaluate::make(i))}));
  IRMutator m;
  CHECK(m.mutate(s).same_as(s));
  Expr e = select(i < j, min(i, j), max(i, j) % 4);
  CHECK(m.mutate(e).same_as(e));

  // Substitution rebuilds only the changed path.
  Stmt t = substitute(s, {{j.get(), Expr(5)}});
  CHECK_FALSE(t.same_as(s));
  CHECK(to_string(t).find("((i*8) + 5)") != std::string::npos);
  const For* f = t.as<For>();
  REQUIRE(f);
  const Block* b = f->body.as<Block>();
  // The IfThenElse does not mention j: it is shared, not copied.
  CHECK(b->stmts[1].same_as(s.as<For>()->body.as<Block>()->stmts[1]));
  CHECK(substitute(s, {{Var::make("k").get(), Expr(1)}}).same_as(s));
}

TEST_CASE("ir: uses_var and post_order_visit", "[ir]") {
  Expr i = Var::make("i"), j = Var::make("j"), k = Var::make("k");
  Expr e = (i + j) * 3;
  CHECK(uses_var(e, i));
  CHECK_FALSE(uses_var(e, k));
  Buffer A = make_buffer("A", Type::f32(), {64});
  Stmt s = Store::make(A, 1.0, k);
  CHECK(uses_var(s, k));
  CHECK_FALSE(uses_var(s, i));
  std::vector<std::string> order;
  post_order_visit(e, [&](const Expr& x) { order.push_back(kind_name(x.kind())); });
  CHECK(order == std::vector<std::string>{"Var", "Var", "Add", "IntImm", "Mul"});
}

// ---------------------------------------------------------------------------------------
// Simplifier

TEST_CASE("ir: simplify constant folding", "[ir][simplify]") {
  Expr x = Var::make("x");
  CHECK(is_const_int(simplify(Expr(3) + 4 * 5), 23));
  CHECK(is_const_int(simplify(Expr(-7) / 2), -4));
  CHECK(is_const_int(simplify(Expr(-7) % 2), 1));
  CHECK(is_const_int(simplify(Expr(7) % -2), -1));
  CHECK(is_const_int(simplify(min(Expr(3), 9) + max(Expr(2), -1)), 5));
  CHECK(is_const_int(simplify(Expr(3) < 4), 1));
  CHECK(is_const_int(simplify((Expr(3) < 4) && (Expr(5) == 6)), 0));
  CHECK(is_const_int(simplify(!(Expr(3) < 4) || (x < x + 1)), 1));
  Expr n = Var::make("n", Type::i32());
  CHECK(is_const_int(simplify(IntImm::make(Type::i32(), 2147483647) + IntImm::make(Type::i32(), 1)),
                     int64_t(-2147483648LL)));
  Expr f = simplify(make_const(Type::f32(), 1.5) * 2 + 0.25);
  REQUIRE(f.as<FloatImm>());
  CHECK(f.as<FloatImm>()->value == 3.25);
  Expr fv = Var::make("f", Type::f32());
  CHECK(simplify(fv * 1 + 0).same_as(fv));
  CHECK(to_string(simplify(fv * 0)) == "(f*0.0f)");  // not 0: f may be NaN or inf
  CHECK(is_const_int(simplify(cast(Type::i32(), make_const(Type::f32(), -2.7))), -2));
  CHECK(is_const_int(simplify(select(Expr(1) < 2, x, x + 1) - x), 0));
  (void)n;
}

TEST_CASE("ir: simplify linear forms", "[ir][simplify]") {
  Expr x = Var::make("x"), y = Var::make("y"), z = Var::make("z");
  CHECK(is_const_int(simplify((x * 8 + 7) - x * 8), 7));
  CHECK(to_string(simplify((x + 1) * 4 - 4)) == "(x*4)");
  CHECK(to_string(simplify(x * 1 + 0)) == "x");
  CHECK(to_string(simplify(x + y - x)) == "y");
  CHECK(to_string(simplify((x + 2) * 3 + (y - x) * 3)) == "((y*3) + 6)");
  CHECK(to_string(simplify(x - y * 2 + 5)) == "((x - (y*2)) + 5)");
  CHECK(to_string(simplify(5 - x)) == "(5 - x)");
  CHECK(to_string(simplify(0 - x * 3 - y)) == "((x*-3) - y)");
  // Split/fuse recombination: (x/8)*8 + x%8 == x.
  CHECK(to_string(simplify((x / 8) * 8 + x % 8)) == "x");
  CHECK(to_string(simplify(((x * 4 + z) / 16) * 16 + (x * 4 + z) % 16 + 1)) == "(((x*4) + z) + 1)");
  // Idempotent: a second pass changes nothing.
  Expr e = simplify((x * 3 + y) * 2 - z + 5 - x);
  CHECK(simplify(e).same_as(e));
}

TEST_CASE("ir: simplify div and mod with bounds", "[ir][simplify]") {
  Expr x = Var::make("x"), y = Var::make("y");
  BoundsMap b{{y.get(), {0, 7}}, {x.get(), {0, 100}}};
  CHECK(to_string(simplify((x * 8 + y) / 8, b)) == "x");
  CHECK(to_string(simplify((x * 8 + y) % 8, b)) == "y");
  CHECK(to_string(simplify((x * 8 + y + 8) / 8, b)) == "(x + 1)");
  CHECK(to_string(simplify((x * 16 + y * 2 + 1) % 16, b)) == "((y*2) + 1)");
  CHECK(is_const_int(simplify(y / 8, b), 0));
  CHECK(to_string(simplify(y % 8, b)) == "y");
  // Without bounds the divisible part is still pulled out exactly.
  CHECK(to_string(simplify((x * 8 + y) / 8)) == "(x + (y/8))");
  CHECK(to_string(simplify((x * 8 + y) % 8)) == "(y % 8)");
  CHECK(to_string(simplify((x / 4) / 8)) == "(x/32)");
  CHECK(to_string(simplify((x % 32) % 8)) == "(x % 8)");
  // Negative offsets use floor semantics.
  CHECK(to_string(simplify((x * 8 - 1) / 8, b)) == "(x - 1)");
  CHECK(to_string(simplify((x * 8 - 1) % 8, b)) == "7");
  // Vector: ramp(x*8, 1, 8) / 8 -> broadcast, % 8 -> ramp(0, 1, 8).
  Expr r = Ramp::make(x * 8, 1, 8);
  CHECK(to_string(simplify(r / 8)) == "x8(x)");
  CHECK(to_string(simplify(r % 8)) == "ramp(0, 1, 8)");
  CHECK(to_string(simplify(Ramp::make(x * 8, 8, 4) / 8)) == "ramp(x, 1, 4)");
  CHECK(to_string(simplify(Ramp::make(x, 1, 4) + 2)) == "ramp((x + 2), 1, 4)");
}

TEST_CASE("ir: simplify comparisons, min, max, bounds", "[ir][simplify]") {
  Expr x = Var::make("x"), y = Var::make("y");
  BoundsMap b{{x.get(), {0, 15}}, {y.get(), {0, 3}}};
  CHECK(can_prove(x < 16, b));
  CHECK(can_prove(x * 4 + y < 64, b));
  CHECK_FALSE(can_prove(x * 4 + y < 63, b));
  CHECK(can_prove(x + 1 > x));
  CHECK(can_prove((x * 8 + 7) - x * 8 == 7));
  CHECK_FALSE(can_prove(x < 16));
  CHECK(is_const_int(simplify(x >= 16, b), 0));
  CHECK(to_string(simplify(min(x, 20), b)) == "x");
  CHECK(to_string(simplify(max(x, 20), b)) == "20");
  CHECK(to_string(simplify(min(x + 1, x + 3))) == "(x + 1)");
  CHECK(to_string(simplify(max(x, y), b)) == "max(x, y)");
  auto cb = const_bounds(x * 4 + y, b);
  REQUIRE(cb);
  CHECK(cb->min == 0);
  CHECK(cb->max == 63);
  cb = const_bounds((x * 4 + y) / 4, b);
  REQUIRE(cb);
  CHECK(cb->max == 15);
  cb = const_bounds(x % 8);
  REQUIRE(cb);
  CHECK(cb->min == 0);
  CHECK(cb->max == 7);
  CHECK_FALSE(const_bounds(x + 1).has_value());
  CHECK(can_prove(x % 8 < 8));
  CHECK(is_const_int(simplify(select(x < 16, x, y) - x, b), 0));
}

TEST_CASE("ir: simplify statements", "[ir][simplify]") {
  Expr i = Var::make("i"), j = Var::make("j"), k = Var::make("k");
  Buffer A = make_buffer("A", Type::f32(), {64});
  // Extent-1 loop disappears; the guard is provably true inside the loop.
  Stmt s = For::make(i, 0, 8, ForKind::Serial,
                     For::make(j, 0, 1, ForKind::Serial,
                               IfThenElse::make(i * 8 + j < 64,
                                                Store::make(A, 1.0, (i * 8 + j * 4) / 8 * 8))));
  CHECK(to_string(simplify(s)) == "for (i, 0, 8) {\n  A[(i*8)] = 1.0f\n}\n");
  // A false guard removes its body, then the loop.
  Stmt dead = For::make(i, 0, 8, ForKind::Serial, IfThenElse::make(i >= 8, Store::make(A, 1.0, i)));
  Stmt sd = simplify(dead);
  REQUIRE(sd.as<Block>());
  CHECK(sd.as<Block>()->stmts.empty());
  // Blocks drop empty pieces.
  Stmt blk = Block::make({dead, Store::make(A, 2.0, 0)});
  CHECK(to_string(simplify(blk)) == "A[0] = 2.0f\n");
  // Bounds learned from an enclosing condition.
  Stmt g = For::make(k, 0, 100, ForKind::Serial,
                     IfThenElse::make(k < 64, IfThenElse::make(k < 70, Store::make(A, 1.0, k))));
  CHECK(to_string(simplify(g)) == "for (k, 0, 100) {\n  if ((k < 64)) {\n    A[k] = 1.0f\n  }\n}\n");
  // Unchanged statements come back as is.
  Stmt u = For::make(i, 0, 8, ForKind::Serial, Store::make(A, 1.0, i));
  CHECK(simplify(u).same_as(u));
  // A constant let is substituted.
  Stmt l = LetStmt::make(k, 4, Store::make(A, 1.0, k + 1));
  CHECK(to_string(simplify(l)) == "A[5] = 1.0f\n");
}

TEST_CASE("ir: simplify randomized integer expressions agree with evaluation", "[ir][simplify]") {
  std::mt19937_64 rng(12345);
  auto rnd = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  std::vector<Expr> vars = {Var::make("a"), Var::make("b"), Var::make("c")};
  std::function<Expr(int)> gen_int;
  std::function<Expr(int)> gen_bool = [&](int depth) -> Expr {
    Expr a = gen_int(depth - 1), b = gen_int(depth - 1);
    switch (rnd(0, 7)) {
      case 0: return a < b;
      case 1: return a <= b;
      case 2: return a == b;
      case 3: return a != b;
      case 4: return a > b;
      case 5: return a >= b;
      case 6: return (a < b) && (b < gen_int(depth - 1));
      default: return !(a < b) || (a == b);
    }
  };
  gen_int = [&](int depth) -> Expr {
    if (depth <= 0 || rnd(0, 5) == 0) {
      if (rnd(0, 2) == 0) return Expr(rnd(-10, 10));
      return vars[rnd(0, 2)];
    }
    Expr a = gen_int(depth - 1);
    switch (rnd(0, 10)) {
      case 0:
      case 1: return a + gen_int(depth - 1);
      case 2:
      case 3: return a - gen_int(depth - 1);
      case 4: return a * Expr(rnd(-4, 8));
      case 5: return a * gen_int(depth - 2);
      case 6: return a / Expr(rnd(1, 9));
      case 7: return a % Expr(rnd(1, 9));
      case 8: return min(a, gen_int(depth - 1));
      case 9: return max(a, gen_int(depth - 1));
      default: return select(gen_bool(depth - 1), a, gen_int(depth - 1));
    }
  };
  int simplified_smaller = 0;
  const int iters = 3000;
  for (int iter = 0; iter < iters; ++iter) {
    BoundsMap bounds;
    std::vector<std::pair<int64_t, int64_t>> ranges;
    for (const Expr& v : vars) {
      int64_t lo = rnd(-20, 20), hi = lo + rnd(0, 20);
      ranges.push_back({lo, hi});
      if (rnd(0, 3) != 0) bounds[v.get()] = {lo, hi};
    }
    Expr e = iter % 4 == 0 ? gen_bool(4) : gen_int(5);
    Expr s = simplify(e, bounds);
    REQUIRE(s.type() == e.type());
    auto cb = const_bounds(e, bounds);
    if (to_string(s).size() < to_string(e).size()) ++simplified_smaller;
    for (int t = 0; t < 12; ++t) {
      Env env;
      for (size_t v = 0; v < vars.size(); ++v)
        env[vars[v].get()] = rnd(ranges[v].first, ranges[v].second);
      int64_t want = eval_int(e, env), got = eval_int(s, env);
      INFO("expr: " << to_string(e) << "\nsimplified: " << to_string(s) << "\nvalues a="
                    << env[vars[0].get()] << " b=" << env[vars[1].get()]
                    << " c=" << env[vars[2].get()]);
      REQUIRE(want == got);
      if (cb && !e.type().is_bool()) {
        REQUIRE(want >= cb->min);
        REQUIRE(want <= cb->max);
      }
    }
    // Idempotence (structural).
    REQUIRE(to_string(simplify(s, bounds)) == to_string(s));
  }
  CHECK(simplified_smaller > 1000);
}

TEST_CASE("ir: simplify randomized index patterns agree with evaluation", "[ir][simplify]") {
  // Shapes that lowering produces: split (x*c + y with y < c), fuse ((f/c)*c + f%c), nested
  // div/mod, offsets and clamps.
  std::mt19937_64 rng(777);
  auto rnd = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  std::vector<Expr> vars = {Var::make("i"), Var::make("j"), Var::make("k")};
  std::function<Expr(int)> gen = [&](int depth) -> Expr {
    if (depth <= 0 || rnd(0, 6) == 0) return rnd(0, 4) == 0 ? Expr(rnd(-5, 20)) : vars[rnd(0, 2)];
    int64_t c = std::vector<int64_t>{2, 3, 4, 8, 16}[rnd(0, 4)];
    switch (rnd(0, 8)) {
      case 0: return vars[rnd(0, 2)] * c + gen(depth - 1);
      case 1: return gen(depth - 1) / c;
      case 2: return gen(depth - 1) % c;
      case 3: {
        Expr f = gen(depth - 1);
        return (f / c) * c + f % c;
      }
      case 4: return gen(depth - 1) + rnd(-9, 9);
      case 5: return min(gen(depth - 1), rnd(0, 40));
      case 6: return (gen(depth - 1) * c + rnd(0, c - 1)) / c;
      case 7: return (gen(depth - 1) * c + gen(depth - 2) % c) % c;
      default: return gen(depth - 1) - gen(depth - 1);
    }
  };
  for (int iter = 0; iter < 3000; ++iter) {
    BoundsMap bounds;
    std::vector<std::pair<int64_t, int64_t>> ranges;
    for (const Expr& v : vars) {
      int64_t lo = rnd(0, 3) == 0 ? rnd(-20, 0) : 0, hi = lo + rnd(0, 17);
      ranges.push_back({lo, hi});
      bounds[v.get()] = {lo, hi};
    }
    Expr e = gen(5);
    Expr s = simplify(e, bounds);
    auto cb = const_bounds(e, bounds);
    for (int t = 0; t < 10; ++t) {
      Env env;
      for (size_t v = 0; v < vars.size(); ++v)
        env[vars[v].get()] = rnd(ranges[v].first, ranges[v].second);
      int64_t want = eval_int(e, env), got = eval_int(s, env);
      INFO("expr: " << to_string(e) << "\nsimplified: " << to_string(s));
      REQUIRE(want == got);
      if (cb) REQUIRE((want >= cb->min && want <= cb->max));
    }
    REQUIRE(to_string(simplify(s, bounds)) == to_string(s));
  }
}

TEST_CASE("ir: simplify randomized loop nests keep their results", "[ir][simplify]") {
  std::mt19937_64 rng(4242);
  auto rnd = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  const int64_t kSize = 97;
  Buffer out = make_buffer("out", Type::f32(), {kSize});
  for (int iter = 0; iter < 300; ++iter) {
    std::vector<Expr> live;
    std::function<Expr(int)> idx = [&](int depth) -> Expr {
      if (live.empty()) return Expr(rnd(0, 9));
      if (depth <= 0 || rnd(0, 3) == 0) return rnd(0, 4) == 0 ? Expr(rnd(-3, 9)) : live[rnd(0, live.size() - 1)];
      int64_t c = rnd(1, 8);
      switch (rnd(0, 5)) {
        case 0: return idx(depth - 1) * c + idx(depth - 1);
        case 1: return idx(depth - 1) / c;
        case 2: return idx(depth - 1) % c;
        case 3: return idx(depth - 1) - idx(depth - 1);
        case 4: return min(idx(depth - 1), idx(depth - 1));
        default: return idx(depth - 1) + rnd(-4, 4);
      }
    };
    int counter = 0;
    std::function<Stmt(int)> gen = [&](int depth) -> Stmt {
      int choice = depth <= 0 ? 0 : int(rnd(0, 5));
      switch (choice) {
        case 1:
        case 2: {
          Expr v = Var::make("v" + std::to_string(counter++));
          Expr mn = live.empty() || rnd(0, 1) ? Expr(rnd(-2, 3)) : idx(1);
          Expr ext = rnd(0, 4) == 0 ? Expr(1) : Expr(rnd(0, 5));
          live.push_back(v);
          Stmt body = gen(depth - 1);
          live.pop_back();
          return For::make(v, mn, ext, ForKind::Serial, body);
        }
        case 3: {
          Expr a = idx(2), b = idx(2);
          Expr c = rnd(0, 1) ? (a < b) : (a >= b && a < b + rnd(0, 6));
          return IfThenElse::make(c, gen(depth - 1), rnd(0, 1) ? gen(depth - 1) : Stmt());
        }
        case 4: {
          Expr v = Var::make("l" + std::to_string(counter++));
          Expr val = idx(2);
          live.push_back(v);
          Stmt body = gen(depth - 1);
          live.pop_back();
          return LetStmt::make(v, val, body);
        }
        case 5: return Block::make({gen(depth - 1), gen(depth - 1)});
        default: {
          Expr i = idx(3);
          Expr value = cast(Type::f32(), idx(3)) + make_const(Type::f32(), double(counter++));
          return Store::make(out, value, Expr(i % kSize + kSize) % kSize);
        }
      }
    };
    Stmt s = gen(5);
    Stmt t = simplify(s);
    std::vector<float> a(kSize, 0), b(kSize, 0);
    interpret(s, {{out.get(), a.data()}});
    interpret(t, {{out.get(), b.data()}});
    INFO("original:\n" << to_string(s) << "simplified:\n" << to_string(t));
    REQUIRE(a == b);
  }
}

// ---------------------------------------------------------------------------------------
// Interpreter

TEST_CASE("ir: interpreter matmul loop nest", "[ir][interpreter]") {
  const int M = 13, N = 17, K = 9;
  Buffer A = make_buffer("A", Type::f32(), {M, K});
  Buffer B = make_buffer("B", Type::f32(), {K, N});
  Buffer C = make_buffer("C", Type::f32(), {M, N});
  Buffer acc = make_buffer("acc", Type::f32(), {1}, MemoryScope::Local);
  Expr i = Var::make("i"), j = Var::make("j"), k = Var::make("k");
  Stmt body = Allocate::make(
      acc, Block::make({Store::make(acc, 0, 0),
                        For::make(k, 0, K, ForKind::Unrolled,
                                  Store::make(acc, Load::make(acc, 0) + Load::make(A, i * K + k) *
                                                                         Load::make(B, k * N + j),
                                              0)),
                        Store::make(C, Load::make(acc, 0), i * N + j)}));
  Stmt nest = For::make(i, 0, M, ForKind::Parallel, For::make(j, 0, N, ForKind::Serial, body));
  std::vector<float> a(M * K), b(K * N), c(M * N, -1.0f);
  for (size_t x = 0; x < a.size(); ++x) a[x] = float(std::sin(double(x)));
  for (size_t x = 0; x < b.size(); ++x) b[x] = float(std::cos(double(x) * 0.7));
  LoweredFunc f{"matmul", {A, B, C}, nest};
  interpret(f, {a.data(), b.data(), c.data()});
  for (int ii = 0; ii < M; ++ii) {
    for (int jj = 0; jj < N; ++jj) {
      float want = 0;
      for (int kk = 0; kk < K; ++kk) want += a[ii * K + kk] * b[kk * N + jj];
      REQUIRE(c[ii * N + jj] == Approx(want).margin(1e-5));
    }
  }
}

TEST_CASE("ir: interpreter vectorized matmul with ramps", "[ir][interpreter]") {
  const int M = 8, N = 16, K = 5;
  Buffer A = make_buffer("A", Type::f32(), {M, K});
  Buffer B = make_buffer("B", Type::f32(), {K, N});
  Buffer C = make_buffer("C", Type::f32(), {M, N});
  Expr i = Var::make("i"), jo = Var::make("jo"), k = Var::make("k");
  Expr cidx = Ramp::make(i * N + jo * 8, 1, 8);
  Stmt init = Store::make(C, make_zero(Type::f32(8)), cidx);
  Stmt upd = Store::make(C,
                         Load::make(C, cidx) + Broadcast::make(Load::make(A, i * K + k), 8) *
                                                   Load::make(B, Ramp::make(k * N + jo * 8, 1, 8)),
                         cidx);
  Stmt nest = For::make(
      i, 0, M, ForKind::Serial,
      For::make(jo, 0, N / 8, ForKind::Serial,
                Block::make({init, For::make(k, 0, K, ForKind::Serial, upd)})));
  std::vector<float> a(M * K), b(K * N), c(M * N, 0);
  for (size_t x = 0; x < a.size(); ++x) a[x] = float(x % 7) - 3;
  for (size_t x = 0; x < b.size(); ++x) b[x] = float(x % 5) * 0.5f;
  interpret(nest, {{A.get(), a.data()}, {B.get(), b.data()}, {C.get(), c.data()}});
  for (int ii = 0; ii < M; ++ii)
    for (int jj = 0; jj < N; ++jj) {
      float want = 0;
      for (int kk = 0; kk < K; ++kk) want += a[ii * K + kk] * b[kk * N + jj];
      REQUIRE(c[ii * N + jj] == Approx(want));
    }
}

TEST_CASE("ir: interpreter out-of-bounds access throws", "[ir][interpreter]") {
  Buffer A = make_buffer("A", Type::f32(), {8});
  Expr i = Var::make("i");
  std::vector<float> a(8, 0);
  Stmt bad_store = For::make(i, 0, 9, ForKind::Serial, Store::make(A, 1.0, i));
  try {
    interpret(bad_store, {{A.get(), a.data()}});
    FAIL("no exception");
  } catch (const ktune::InternalError& e) {
    std::string msg = e.what();
    CHECK(msg.find("A[8]") != std::string::npos);
    CHECK(msg.find("store") != std::string::npos);
  }
  Buffer B = make_buffer("B", Type::f32(), {8});
  std::vector<float> b(8, 0);
  Stmt bad_load = For::make(i, 0, 8, ForKind::Serial, Store::make(B, Load::make(A, i - 1), i));
  CHECK_THROWS_AS(interpret(bad_load, {{A.get(), a.data()}, {B.get(), b.data()}}),
                  ktune::InternalError);
  Stmt bad_vec = Store::make(B, Load::make(A, Ramp::make(Expr(4), 1, 8)), Ramp::make(Expr(0), 1, 8));
  CHECK_THROWS_WITH(interpret(bad_vec, {{A.get(), a.data()}, {B.get(), b.data()}}),
                    Catch::Contains("A[8]"));
  // A guarded load is not evaluated on the untaken side.
  Stmt guarded = For::make(i, 0, 8, ForKind::Serial,
                           Store::make(B, select(i >= 1, Load::make(A, i - 1), 0), i));
  CHECK_NOTHROW(interpret(guarded, {{A.get(), a.data()}, {B.get(), b.data()}}));
  // An unbound buffer is reported.
  CHECK_THROWS_AS(interpret(guarded, {{B.get(), b.data()}}), ktune::InternalError);
}

TEST_CASE("ir: interpreter types, locals, lets", "[ir][interpreter]") {
  Buffer H = make_buffer("H", Type::f16(), {4});
  Buffer BF = make_buffer("BF", Type::bf16(), {4});
  Buffer O = make_buffer("O", Type::f32(), {8});
  Buffer I = make_buffer("I", Type::i32(), {4});
  Buffer T = make_buffer("T", Type::f32(), {2}, MemoryScope::Local);
  Expr i = Var::make("i"), v = Var::make("v", Type::f32());
  std::vector<uint16_t> h(4, 0), bf(4, 0);
  std::vector<float> o(8, 0);
  std::vector<int32_t> iv(4, 0);
  Stmt s = Block::make({
      For::make(i, 0, 4, ForKind::Serial,
                Block::make({Store::make(H, cast(Type::f16(), cast(Type::f32(), i) * 0.1), i),
                             Store::make(BF, cast(Type::bf16(), cast(Type::f32(), i) + 0.5), i),
                             Store::make(I, cast(Type::i32(), i * 7 - 10) / 3, i)})),
      For::make(i, 0, 4, ForKind::Serial,
                Store::make(O, cast(Type::f32(), Load::make(H, i)) + cast(Type::f32(), Load::make(BF, i)), i)),
      LetStmt::make(v, make_const(Type::f32(), 2.5),
                    Store::make(O, v * 2 + Call::make(Intrinsic::Sqrt, {make_const(Type::f32(), 16.0)}), 4)),
      Allocate::make(T, Store::make(O, Load::make(T, 1), 5)),  // reads uninitialized memory
  });
  interpret(s, {{H.get(), h.data()}, {BF.get(), bf.data()}, {O.get(), o.data()}, {I.get(), iv.data()}});
  CHECK(h[1] == 0x2e66);  // f16(0.1)
  CHECK(o[1] == Approx(0.1 + 1.5).epsilon(1e-3));
  CHECK(o[3] == Approx(0.3 + 3.5).epsilon(1e-3));
  CHECK(o[4] == 9.0f);
  CHECK(std::isnan(o[5]));
  CHECK(iv[0] == -4);  // floor(-10 / 3)
  CHECK(iv[1] == -1);
  CHECK(iv[3] == 3);
}
