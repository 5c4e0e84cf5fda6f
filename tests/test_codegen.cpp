// Tests of targets, the unroll/vectorize passes, LLVM code generation and the CPU runtime.
//
// Kernels are built by hand with the IR builders, compiled with CpuRunner (1 and 2 threads)
// and compared with the IR interpreter on the same random inputs.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <thread>

#include "ktune/codegen/codegen.h"
#include "ktune/codegen/llvm_codegen.h"
#include "ktune/ir/interpreter.h"
#include "ktune/ir/ir.h"
#include "ktune/ir/ir_ops.h"
#include "ktune/ir/printer.h"
#include "ktune/ir/visitor.h"
#include "ktune/passes/unroll.h"
#include "ktune/passes/vectorize.h"
#include "ktune/runtime/buffer.h"
#include "ktune/runtime/cpu_runner.h"
#include "ktune/runtime/workspace.h"
#include "ktune/runtime/thread_pool.h"
#include "ktune/support/error.h"
#include "ktune/target/target.h"

using namespace ktune;
using namespace ktune::ir;

namespace {

Expr i64v(const char* name) { return Var::make(name, Type::i64()); }

// Runs `f` compiled (with `threads` threads) and interpreted on the same inputs; the last
// `num_outputs` args are outputs. Returns the largest relative error over the outputs
// divided by the dtype's tolerance (<= 1 passes; ints must match exactly).
void check_against_interpreter(const LoweredFunc& f, int num_outputs, int threads,
                               uint64_t seed = 1) {
  std::vector<runtime::HostBuffer> want, got;
  std::vector<void*> want_ptrs, got_ptrs;
  int num_inputs = int(f.args.size()) - num_outputs;
  for (size_t i = 0; i < f.args.size(); ++i) {
    const auto& b = f.args[i];
    want.emplace_back(b->dtype, b->shape);
    got.emplace_back(b->dtype, b->shape);
    if (int(i) < num_inputs) {
      want.back().fill_random(seed + i);
    } else {
      want.back().poison();
    }
    got.back().copy_from(want.back());
  }
  for (auto& b : want) want_ptrs.push_back(b.data());
  for (auto& b : got) got_ptrs.push_back(b.data());
  interpret(f, want_ptrs);

  runtime::CpuRunner runner(target::host_target(), threads);
  auto k = runner.compile(f);
  k->run(got_ptrs);
  for (size_t i = size_t(num_inputs); i < f.args.size(); ++i) {
    double err = runtime::relative_l2_error(got[i], want[i]);
    INFO(f.name << " output " << f.args[i]->name << " threads=" << threads);
    CHECK(err <= runtime::tolerance_for(f.args[i]->dtype));
  }
}

void check_both_thread_counts(const LoweredFunc& f, int num_outputs) {
  check_against_interpreter(f, num_outputs, 1);
  check_against_interpreter(f, num_outputs, 2);
}

// C[i] = A[i] + B[i] for i < n: an outer serial loop over 8-lane vectorized chunks, and a
// serial tail for the remainder.
LoweredFunc vector_add(int64_t n, int lanes = 8) {
  Buffer a = make_buffer("A", Type::f32(), {n});
  Buffer b = make_buffer("B", Type::f32(), {n});
  Buffer c = make_buffer("C", Type::f32(), {n});
  Expr io = i64v("io"), ii = i64v("ii"), t = i64v("t");
  Expr idx = io * lanes + ii;
  Stmt main = For::make(io, 0, n / lanes, ForKind::Serial,
                        For::make(ii, 0, lanes, ForKind::Vectorized,
                                  Store::make(c, Load::make(a, idx) + Load::make(b, idx), idx)));
  std::vector<Stmt> body{main};
  if (n % lanes) {
    body.push_back(For::make(t, n / lanes * lanes, n % lanes, ForKind::Serial,
                             Store::make(c, Load::make(a, t) + Load::make(b, t), t)));
  }
  return {"vadd", {a, b, c}, Block::make(body)};
}

// C[M,N] = A[M,K] * B[K,N]: parallel rows, unrolled k, vectorized columns.
LoweredFunc matmul(int64_t M, int64_t N, int64_t K, int vec = 16, int unroll = 4) {
  Buffer a = make_buffer("A", Type::f32(), {M, K});
  Buffer b = make_buffer("B", Type::f32(), {K, N});
  Buffer c = make_buffer("C", Type::f32(), {M, N});
  Expr i = i64v("i"), jo = i64v("jo"), ji = i64v("ji"), ko = i64v("ko"), ku = i64v("ku"),
       ji2 = i64v("ji2");
  Expr j = jo * vec + ji, j2 = jo * vec + ji2, k = ko * unroll + ku;
  Stmt init = For::make(ji2, 0, vec, ForKind::Vectorized, Store::make(c, Expr(0.0), i * N + j2));
  Stmt update = For::make(
      ji, 0, vec, ForKind::Vectorized,
      Store::make(c, Load::make(c, i * N + j) + Load::make(a, i * K + k) * Load::make(b, k * N + j),
                  i * N + j));
  Stmt kloop = For::make(ko, 0, K / unroll, ForKind::Serial,
                         For::make(ku, 0, unroll, ForKind::Unrolled, update));
  Stmt body = For::make(i, 0, M, ForKind::Parallel,
                        For::make(jo, 0, N / vec, ForKind::Serial, Block::make({init, kloop})));
  return {"matmul", {a, b, c}, body};
}

// out[i] = max_j A[i, j], through a one-element local accumulator. With `vectorize_j` the
// j loop is marked Vectorized, which reduces over the vectorized variable: the pass must
// keep it serial.
LoweredFunc row_max(int64_t M, int64_t J, bool vectorize_j) {
  Buffer a = make_buffer("A", Type::f32(), {M, J});
  Buffer out = make_buffer("out", Type::f32(), {M});
  Buffer acc = make_buffer("acc", Type::f32(), {1}, MemoryScope::Local);
  Expr i = i64v("i"), j = i64v("j");
  Stmt body = For::make(
      i, 0, M, ForKind::Parallel,
      Allocate::make(
          acc,
          Block::make({
              Store::make(acc, type_min(Type::f32()), Expr(0)),
              For::make(j, 0, J, vectorize_j ? ForKind::Vectorized : ForKind::Serial,
                        Store::make(acc, max(Load::make(acc, Expr(0)), Load::make(a, i * J + j)),
                                    Expr(0))),
              Store::make(out, Load::make(acc, Expr(0)), i),
          })));
  return {"row_max", {a, out}, body};
}

bool contains_for_kind(const Stmt& s, ForKind k) {
  struct V : IRVisitor {
    ForKind kind;
    bool found = false;
    void visit_For(const For* op) override {
      if (op->for_kind == kind) found = true;
      IRVisitor::visit_For(op);
    }
  } v;
  v.kind = k;
  v.visit(s);
  return v.found;
}

long rss_kib() {
  std::ifstream in("/proc/self/statm");
  long pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Targets

TEST_CASE("codegen: the machine scheduler's region limit is set once LLVM is initialized", "[codegen]") {
  // Guards against the option being renamed in another LLVM: the limit would silently be lost
  // and large candidates would compile several times slower (llvm_codegen.cpp).
  codegen::initialize_llvm();
  CHECK(codegen::machine_scheduler_region_limit() == 100u);
}

TEST_CASE("target: host detection", "[target]") {
  target::Target t = target::host_target();
  CHECK(t.name == "host");
  CHECK(t.kind == target::TargetKind::CPU);
  CHECK(!t.triple.empty());
  CHECK(!t.features.empty());
  CHECK(t.cores >= 1);
  CHECK(t.vector_bits >= 128);
  if (t.has_feature("avx512f")) CHECK(t.vector_bits == 512);
  CHECK(t.feature_string().rfind("+", 0) == 0);
}

TEST_CASE("target: named targets", "[target]") {
  auto names = target::known_targets();
  CHECK(names.front() == "host");
  for (const char* n : {"x86-avx2", "x86-avx512", "a64fx", "a100", "rtx3080", "h100", "mi250"}) {
    CHECK(std::find(names.begin(), names.end(), n) != names.end());
  }
  auto a100 = target::resolve_target("a100");
  CHECK(a100.kind == target::TargetKind::CUDA);
  CHECK(a100.cpu == "sm_80");
  CHECK(a100.warp_size == 32);
  CHECK(a100.max_threads_per_block == 1024);
  CHECK(target::resolve_target("mi250").warp_size == 64);
  CHECK(target::resolve_target("h100").cpu == "sm_90");
  auto a64 = target::resolve_target("a64fx");
  CHECK(a64.has_feature("sve"));
  CHECK(a64.vector_bits == 512);
  auto avx2 = target::resolve_target(target::targets_config_dir() + "/x86-avx2.json");
  CHECK(avx2.vector_bits == 256);
  CHECK(avx2.has_feature("fma"));
}

TEST_CASE("target: unknown and malformed targets are user errors", "[target]") {
  try {
    target::resolve_target("no-such-target");
    FAIL("expected a UserError");
  } catch (const UserError& e) {
    std::string msg = e.what();
    CHECK(msg.find("no-such-target") != std::string::npos);
    CHECK(msg.find("x86-avx2") != std::string::npos);
  }
  auto path = std::filesystem::temp_directory_path() / "ktune_bad_target.json";
  {
    std::ofstream out(path);
    out << "{ \"name\": \"bad\", \"triple\": ";
  }
  try {
    target::resolve_target(path.string());
    FAIL("expected a UserError");
  } catch (const UserError& e) {
    std::string msg = e.what();
    CHECK(msg.find(path.string()) != std::string::npos);
    CHECK(msg.find("malformed") != std::string::npos);
  }
  std::filesystem::remove(path);
}

// ---------------------------------------------------------------------------------------
// Passes

TEST_CASE("passes: unroll_loops", "[passes]") {
  Buffer c = make_buffer("C", Type::f32(), {8});
  Expr i = i64v("i");
  Stmt s = For::make(i, 0, 4, ForKind::Unrolled, Store::make(c, Expr(1.0), i + 2));
  Stmt u = passes::unroll_loops(s);
  CHECK(!contains_for_kind(u, ForKind::Unrolled));
  CHECK(!contains_for_kind(u, ForKind::Serial));
  const Block* b = u.as<Block>();
  REQUIRE(b);
  CHECK(b->stmts.size() == 4);

  Expr n = i64v("n");
  Stmt dyn = For::make(i, 0, n, ForKind::Unrolled, Store::make(c, Expr(1.0), i));
  CHECK(contains_for_kind(passes::unroll_loops(dyn), ForKind::Serial));
  Stmt big = For::make(i, 0, 1000, ForKind::Unrolled, Store::make(c, Expr(1.0), i % 8));
  CHECK(contains_for_kind(passes::unroll_loops(big), ForKind::Serial));
  Stmt serial = For::make(i, 0, 4, ForKind::Serial, Store::make(c, Expr(1.0), i));
  CHECK(passes::unroll_loops(serial).same_as(serial));

  // Found by the differential fuzzer: unrolled loops around large bodies gave code LLVM took
  // many minutes to compile. Copies beyond kMaxUnrolledStatements stay a serial loop.
  Expr j = i64v("j"), k = i64v("k");
  Stmt inner = For::make(j, 0, 16, ForKind::Unrolled, Store::make(c, Expr(1.0), (i + j) % 8));
  Stmt nested = For::make(i, 0, 16, ForKind::Unrolled, inner);
  Stmt nu = passes::unroll_loops(nested);
  CHECK(!contains_for_kind(nu, ForKind::Unrolled));
  CHECK(!contains_for_kind(nu, ForKind::Serial));  // 256 stores: fully unrolled
  Stmt deep = For::make(k, 0, 64, ForKind::Unrolled, nested);
  Stmt du = passes::unroll_loops(deep);
  CHECK(du.as<For>() != nullptr);  // 64 x 256 stores: the outer loop stays a loop
  CHECK(du.as<For>()->for_kind == ForKind::Serial);
}

TEST_CASE("passes: vectorize_loops", "[passes]") {
  LoweredFunc f = vector_add(64);
  Stmt v = passes::vectorize_loops(f.body, 8);
  CHECK(!contains_for_kind(v, ForKind::Vectorized));
  std::string text = to_string(v);
  CHECK(text.find("ramp") != std::string::npos);

  // Reduction over the vectorized variable: demoted to serial.
  Stmt r = passes::vectorize_loops(row_max(4, 16, true).body, 8);
  CHECK(!contains_for_kind(r, ForKind::Vectorized));
  CHECK(to_string(r).find("ramp") == std::string::npos);

  // Too long: demoted.
  Stmt l = passes::vectorize_loops(vector_add(256, 128).body, 8);
  CHECK(!contains_for_kind(l, ForKind::Vectorized));
  CHECK(to_string(l).find("ramp") == std::string::npos);

  // A loop-carried dependence (A[i+1] = A[i] + 1) is not widened: a short innermost loop
  // becomes its copies in order, a longer one stays a serial loop.
  Buffer a = make_buffer("A", Type::f32(), {64});
  Expr i = i64v("i");
  Stmt carried =
      For::make(i, 0, 8, ForKind::Vectorized, Store::make(a, Load::make(a, i) + Expr(1.0), i + 1));
  Stmt c = passes::vectorize_loops(carried, 8);
  CHECK(!contains_for_kind(c, ForKind::Vectorized));
  CHECK(!contains_for_kind(c, ForKind::Serial));
  CHECK(to_string(c).find("ramp") == std::string::npos);
  Stmt carried_long =
      For::make(i, 0, 32, ForKind::Vectorized, Store::make(a, Load::make(a, i) + Expr(1.0), i + 1));
  CHECK(contains_for_kind(passes::vectorize_loops(carried_long, 8), ForKind::Serial));
}

TEST_CASE("codegen: a loop-carried dependence under a refused vectorization keeps its order", "[codegen]") {
  // A prefix sum, A[i+1] = A[i] + X[i+1], marked vectorized: refused and unrolled in order;
  // the JIT's result must match the interpreter's (a reordered or widened loop would not).
  Buffer x = make_buffer("X", Type::f32(), {9});
  Buffer a = make_buffer("A", Type::f32(), {9});
  Expr i = i64v("i");
  Stmt body = Block::make(
      {Store::make(a, Load::make(x, Expr(0)), Expr(0)),
       For::make(i, 0, 8, ForKind::Vectorized,
                 Store::make(a, Load::make(a, i) + Load::make(x, i + 1), i + 1))});
  check_both_thread_counts({"carried", {x, a}, body}, 1);
}

// ---------------------------------------------------------------------------------------
// Code generation and runtime, against the interpreter

TEST_CASE("codegen: vector add", "[codegen]") {
  check_both_thread_counts(vector_add(64), 1);
  check_both_thread_counts(vector_add(67), 1);  // vectorized main part + serial tail
}

TEST_CASE("codegen: matmul with parallel, unrolled and vectorized loops", "[codegen]") {
  check_both_thread_counts(matmul(24, 32, 20), 1);
  check_both_thread_counts(matmul(7, 16, 8, 8, 8), 1);
}

TEST_CASE("codegen: max reduction with a local accumulator", "[codegen]") {
  check_both_thread_counts(row_max(9, 33, false), 1);
}

TEST_CASE("codegen: vectorized loop that reduces over its own variable", "[codegen]") {
  check_both_thread_counts(row_max(5, 16, true), 1);
}

TEST_CASE("codegen: select, intrinsics, min/max, casts", "[codegen]") {
  const int64_t n = 64;
  Buffer a = make_buffer("A", Type::f32(), {n});
  Buffer b = make_buffer("B", Type::f32(), {n});
  Buffer d = make_buffer("D", Type::f64(), {n});
  Buffer out = make_buffer("out", Type::f32(), {n});
  Buffer out64 = make_buffer("out64", Type::f64(), {n});
  Buffer flags = make_buffer("flags", Type::boolean(), {n});
  for (ForKind kind : {ForKind::Serial, ForKind::Vectorized}) {
    Expr io = i64v("io"), ii = i64v("ii");
    Expr i = io * 16 + ii;
    Expr x = Load::make(a, i), y = Load::make(b, i);
    Expr v = select(x > y, Call::make(Intrinsic::Exp, {x}),
                    Call::make(Intrinsic::Sqrt, {Call::make(Intrinsic::Abs, {y})})) +
             min(x, y) * max(x, Expr(0.25)) + cast(Type::f32(), cast(Type::i32(), x * 10)) +
             Call::make(Intrinsic::Tanh, {y}) + Call::make(Intrinsic::Sigmoid, {x}) +
             Call::make(Intrinsic::Log, {Call::make(Intrinsic::Abs, {x}) + Expr(1.0)});
    Expr z = Load::make(d, i);
    Expr v64 =
        Call::make(Intrinsic::Exp, {z}) * cast(Type::f64(), x) + max(z, cast(Type::f64(), y));
    Stmt body = Block::make({Store::make(out, v, i), Store::make(out64, v64, i),
                             Store::make(flags, x < y && !(z > 0.5), i)});
    Stmt s = For::make(io, 0, n / 16, ForKind::Serial, For::make(ii, 0, 16, kind, body));
    LoweredFunc f{"mathops", {a, b, d, out, out64, flags}, s};
    check_both_thread_counts(f, 3);
  }
}

TEST_CASE("codegen: f32 exp, tanh and sigmoid are accurate", "[codegen]") {
  const int64_t n = 4096;
  Buffer x = make_buffer("x", Type::f32(), {n});
  Buffer e = make_buffer("e", Type::f32(), {n});
  Buffer t = make_buffer("t", Type::f32(), {n});
  Buffer s = make_buffer("s", Type::f32(), {n});
  runtime::HostBuffer hx(Type::f32(), {n}), he(Type::f32(), {n}), ht(Type::f32(), {n}),
      hs(Type::f32(), {n});
  auto* xs = static_cast<float*>(hx.data());
  for (int64_t i = 0; i < n; ++i) xs[i] = -110.0f + 220.0f * float(i) / float(n);
  for (int64_t i = 0; i < 64; ++i) xs[i * 64 + 1] = float(i - 32) * 1e-5f;  // tiny values
  xs[3] = INFINITY;
  xs[5] = -INFINITY;
  xs[7] = NAN;
  xs[9] = 88.7f;
  xs[11] = -87.5f;
  xs[13] = -0.0f;
  for (ForKind kind : {ForKind::Serial, ForKind::Vectorized}) {
    Expr io = i64v("io"), ii = i64v("ii");
    Expr i = io * 16 + ii;
    Expr v = Load::make(x, i);
    Stmt body = Block::make({Store::make(e, Call::make(Intrinsic::Exp, {v}), i),
                             Store::make(t, Call::make(Intrinsic::Tanh, {v}), i),
                             Store::make(s, Call::make(Intrinsic::Sigmoid, {v}), i)});
    LoweredFunc f{"transcendental",
                  {x, e, t, s},
                  For::make(io, 0, n / 16, ForKind::Serial, For::make(ii, 0, 16, kind, body))};
    runtime::CpuRunner runner(target::host_target(), 1);
    auto k = runner.compile(f);
    k->run({hx.data(), he.data(), ht.data(), hs.data()});
    double max_exp = 0, max_tanh = 0, max_sig = 0;
    for (int64_t i = 0; i < n; ++i) {
      double xv = xs[i];
      double want_e = std::exp(double(xv)), want_t = std::tanh(xv),
             want_s = 1.0 / (1.0 + std::exp(-xv));
      if (std::isnan(xv)) {
        CHECK(std::isnan(he.get(i)));
        CHECK(std::isnan(ht.get(i)));
        continue;
      }
      INFO("x = " << xv);
      if (want_e > 3.4028234e38) {
        CHECK(std::isinf(he.get(i)));
      } else if (want_e > 1.2e-38) {  // normal range: relative error
        max_exp = std::max(max_exp, std::abs(he.get(i) - want_e) / want_e);
      } else {
        CHECK(std::abs(he.get(i) - want_e) < 1.5e-45);
      }
      max_tanh =
          std::max(max_tanh, std::abs(ht.get(i) - want_t) / std::max(std::abs(want_t), 1e-30));
      max_sig = std::max(max_sig, std::abs(hs.get(i) - want_s) / std::max(want_s, 1e-30));
    }
    INFO("max relative errors: exp " << max_exp << ", tanh " << max_tanh << ", sigmoid "
                                     << max_sig);
    CHECK(max_exp < 2.5e-7);  // measured 7.4e-8 (under 1 ulp)
    CHECK(max_tanh < 1e-6);   // measured 2.4e-7
    CHECK(max_sig < 1e-6);    // measured 1.1e-7
  }
}

TEST_CASE("codegen: integer floor division and modulo", "[codegen]") {
  const int64_t n = 32;
  Buffer a = make_buffer("A", Type::i32(), {n});
  Buffer b = make_buffer("B", Type::i32(), {n});
  std::vector<Buffer> outs;
  for (int k = 0; k < 6; ++k)
    outs.push_back(make_buffer("out" + std::to_string(k), Type::i32(), {n}));
  Buffer q = make_buffer("q", Type::i64(), {n});
  Buffer r = make_buffer("r", Type::i64(), {n});
  for (ForKind kind : {ForKind::Serial, ForKind::Vectorized}) {
    Expr i = i64v("i");
    Expr x = Load::make(a, i), y = Load::make(b, i);
    Expr nz = select(y == 0, Expr(3), y);  // a divisor that is never zero
    Stmt body = Block::make({
        Store::make(outs[0], x / 3, i),
        Store::make(outs[1], x % 3, i),
        Store::make(outs[2], x / -4, i),
        Store::make(outs[3], x % -4, i),
        Store::make(outs[4], x / nz, i),
        Store::make(outs[5], x % nz, i),
        Store::make(q, (i - 13) / 4, i),
        Store::make(r, (i - 13) % 4, i),
    });
    std::vector<Buffer> args{a, b};
    args.insert(args.end(), outs.begin(), outs.end());
    args.push_back(q);
    args.push_back(r);
    LoweredFunc f{"divmod", args, For::make(i, 0, n, kind, body)};
    if (kind == ForKind::Vectorized) {
      CHECK(!contains_for_kind(codegen::prepare_for_codegen(f, target::host_target()).body,
                               ForKind::Serial));
    }
    check_both_thread_counts(f, 8);
  }
}

TEST_CASE("codegen: strided, reversed and computed vector indices", "[codegen]") {
  Buffer a = make_buffer("A", Type::f32(), {64});
  Buffer b = make_buffer("B", Type::f32(), {16});
  Buffer m = make_buffer("M", Type::boolean(), {16});
  Buffer c = make_buffer("C", Type::f32(), {40});
  Buffer d = make_buffer("D", Type::i64(), {16});
  Expr i = i64v("i");
  Stmt body = For::make(
      i, 0, 16, ForKind::Vectorized,
      Block::make(
          {Store::make(c,
                       select(Load::make(m, i), Load::make(a, i * 3), Load::make(a, i / 2)) -
                           Load::make(b, 15 - i),
                       i * 2 + 1),
           Store::make(d, (i * 7) % 5 + cast(Type::i64(), Load::make(m, 15 - i)), i)}));
  LoweredFunc f{"strided", {a, b, m, c, d}, body};
  Stmt prepared = codegen::prepare_for_codegen(f, target::host_target()).body;
  CHECK(!contains_for_kind(prepared, ForKind::Serial));
  // C is only partly written: start both runs from the same poisoned contents, which the
  // comparison tolerates only where both sides agree (NaN in both).
  check_both_thread_counts(f, 2);
}

// Found by the differential fuzzer (fuzz_codegen, kernel rand_10090): a vectorized loop of
// extent 34 whose gathers LLVM 19 widened with an undefined index vector that got the
// destination's register, "vgatherqps (%rax,%zmm0,4), %ymm0 {%k2}", which raises SIGILL.
// Gathers and scatters are now emitted in power-of-two pieces.
TEST_CASE("codegen: gathers and scatters of odd lane counts", "[codegen][regression]") {
  // An AVX-512 gather whose index register is also its destination (or mask) is #UD.
  const std::regex same_reg(R"(vp?gather\w+\s+-?\w*\(%?\w*,%[xyz]mm(\d+),\d+\),\s*%[xyz]mm(\d+))");
  {
    // The fuzzer's kernel as lowered.
    Buffer in = make_buffer("in1", Type::f32(), {128});
    Buffer out = make_buffer("t1", Type::f32(), {136});
    Expr o = i64v("o"), i = i64v("i");
    Expr padded = max(select(i >= 1 && i < 33, Load::make(in, o * 32 + i - 1), Expr(0.0f)), Expr(3.0f));
    Expr other = Load::make(in, (i / 17) * 64 + (o / 2) * 32 + o % 2 + 6);
    Stmt body = For::make(o, 0, 4, ForKind::Parallel,
                          For::make(i, 0, 34, ForKind::Vectorized,
                                    Store::make(out, Call::make(Intrinsic::Tanh, {select(o % 2 == 0, padded, other)}),
                                                o * 34 + i)));
    LoweredFunc f{"rand_10090", {in, out}, body};
    const std::string text = codegen::emit_assembly(f, target::resolve_target("x86-avx512"));
    for (std::sregex_iterator m(text.begin(), text.end(), same_reg), end; m != end; ++m)
      CHECK((*m)[1].str() != (*m)[2].str());
    check_both_thread_counts(f, 1);
  }
  for (int64_t lanes : {3, 5, 17, 34, 63}) {
    Buffer a = make_buffer("A", Type::f32(), {256});
    Buffer c = make_buffer("C", Type::f32(), {4 * lanes});
    Buffer d = make_buffer("D", Type::f32(), {4 * 2 * lanes});
    Expr o = i64v("o"), i = i64v("i");
    Expr guarded = max(select(i >= 1 && i < lanes - 1, Load::make(a, o * 32 + i - 1), Expr(0.0f)), Expr(3.0f));
    Expr gathered = Load::make(a, (i / 17) * 64 + (o / 2) * 32 + o % 2 + 6);
    Stmt body = For::make(
        o, 0, 4, ForKind::Parallel,
        For::make(i, 0, lanes, ForKind::Vectorized,
                  Block::make({Store::make(c, select(o % 2 == 0, guarded, gathered), o * lanes + i),
                               Store::make(d, gathered * Expr(2.0f), o * 2 * lanes + (lanes - 1 - i) * 2)})));
    LoweredFunc f{"odd_gather", {a, c, d}, body};
    INFO("lanes " << lanes);
    for (const char* t : {"x86-avx512", "x86-avx2"}) {
      const std::string text = codegen::emit_assembly(f, target::resolve_target(t));
      for (std::sregex_iterator m(text.begin(), text.end(), same_reg), end; m != end; ++m)
        CHECK((*m)[1].str() != (*m)[2].str());
    }
    // D is only half written: both runs start from the same poisoned contents.
    check_both_thread_counts(f, 2);
  }
}

TEST_CASE("codegen: selects whose arms read out of bounds where they are not chosen", "[codegen]") {
  // Rows 0 and 5 of `out` are padding: their reads of A would be rows -1 and 4, outside A.
  // The condition is scalar (it depends on the row only) under a vectorized or serial column
  // loop: a load and a constant (read from the constant's storage where the condition fails),
  // an arm with arithmetic (speculated, its loads redirected), and an arm that is never chosen
  // reading 8 contiguous lanes of a 4-element buffer (masked).
  Buffer a = make_buffer("A", Type::f32(), {4 * 8});
  Buffer b = make_buffer("B", Type::f32(), {6 * 8});
  Buffer tiny = make_buffer("T", Type::f32(), {4});
  Buffer out = make_buffer("out", Type::f32(), {6 * 8});
  Buffer out2 = make_buffer("out2", Type::f32(), {6 * 8});
  for (ForKind kind : {ForKind::Serial, ForKind::Vectorized, ForKind::Unrolled}) {
    Expr o = i64v("o"), i = i64v("i");
    Expr inside = o >= 1 && o < 5;
    Expr read = Load::make(a, (o - 1) * 8 + i);
    Expr pad = select(inside, read, Expr(2.5f));
    Expr arith = select(inside, read * Expr(2.0f) + Load::make(b, o * 8 + i), Load::make(b, o * 8 + i));
    Expr never = select(o > 100, Load::make(tiny, i) * Expr(3.0f), Expr(-1.0f));
    Stmt body = Block::make({Store::make(out, pad + select(!inside, Expr(0.5f), read), o * 8 + i),
                             Store::make(out2, arith + never, o * 8 + i)});
    LoweredFunc f{"padding", {a, b, tiny, out, out2}, For::make(o, 0, 6, ForKind::Serial, For::make(i, 0, 8, kind, body))};
    INFO(for_kind_name(kind));
    check_both_thread_counts(f, 2);
  }
}

TEST_CASE("codegen: vectorized loop under a loop-invariant guard", "[codegen]") {
  Buffer a = make_buffer("A", Type::f32(), {40});
  Buffer c = make_buffer("C", Type::f32(), {40});
  Expr io = i64v("io"), ii = i64v("ii");
  Expr idx = io * 8 + ii;
  Stmt body = For::make(
      io, 0, 5, ForKind::Serial,
      For::make(ii, 0, 8, ForKind::Vectorized,
                IfThenElse::make(io < 3, Store::make(c, Load::make(a, idx) * Expr(3.0), idx),
                                 Store::make(c, Expr(0.5), idx))));
  LoweredFunc f{"guarded", {a, c}, body};
  Stmt prepared = codegen::prepare_for_codegen(f, target::host_target()).body;
  CHECK(to_string(prepared).find("ramp") != std::string::npos);
  check_both_thread_counts(f, 1);
}

TEST_CASE("codegen: nested parallel loops and captured variables", "[codegen]") {
  Buffer a = make_buffer("A", Type::f32(), {3 * 8 * 16});
  Buffer c = make_buffer("C", Type::f32(), {3 * 8 * 16});
  Expr t = i64v("t"), off = i64v("off"), i = i64v("i"), j = i64v("j");
  Expr idx = off + i * 16 + j;
  Stmt inner = For::make(
      i, 0, 8, ForKind::Parallel,
      For::make(j, 0, 16, ForKind::Parallel,
                Store::make(c, Load::make(a, idx) * Expr(2.0) + cast(Type::f32(), t), idx)));
  Stmt body = For::make(t, 0, 3, ForKind::Serial, LetStmt::make(off, t * 128, inner));
  check_both_thread_counts({"nested_par", {a, c}, body}, 1);
}

TEST_CASE("codegen: large global intermediate buffer", "[codegen]") {
  const int64_t n = 20000;  // 80 KB: heap-allocated
  Buffer a = make_buffer("A", Type::f32(), {n});
  Buffer c = make_buffer("C", Type::f32(), {n});
  Buffer tmp = make_buffer("T", Type::f32(), {n}, MemoryScope::Global);
  Expr i = i64v("i"), j = i64v("j");
  Stmt body = Allocate::make(
      tmp, Block::make({For::make(i, 0, n, ForKind::Parallel,
                                  Store::make(tmp, Load::make(a, i) * Expr(2.0), i)),
                        For::make(j, 0, n, ForKind::Parallel,
                                  Store::make(c, Load::make(tmp, n - 1 - j) + Expr(1.0), j))}));
  check_both_thread_counts({"global_tmp", {a, c}, body}, 1);

  // The buffer comes from the runtime's workspace: the second call gets back the block the
  // first released (no fresh allocation), and still computes the right values.
  runtime::CpuRunner runner(target::host_target(), 1);
  auto k = runner.compile({"global_tmp", {a, c}, body});
  runtime::HostBuffer ha(Type::f32(), {n}), hc(Type::f32(), {n});
  ha.fill_random(3);
  k->run({ha.data(), hc.data()});
  const runtime::WorkspaceStats first = runtime::workspace_stats();
  hc.fill_random(4);
  k->run({ha.data(), hc.data()});
  const runtime::WorkspaceStats second = runtime::workspace_stats();
  CHECK(second.reused == first.reused + 1);
  CHECK(second.allocated == first.allocated);
  for (int64_t i : {int64_t(0), n / 2, n - 1})
    CHECK(hc.get(i) == Approx(ha.get(n - 1 - i) * 2.0 + 1.0));
}

TEST_CASE("runtime: the workspace reuses released blocks of the same size only", "[runtime]") {
  const runtime::WorkspaceStats s0 = runtime::workspace_stats();
  void* p = ktune_workspace_alloc(1 << 20);
  REQUIRE(p != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
  ktune_workspace_free(p, 1 << 20);
  void* q = ktune_workspace_alloc(1 << 19);  // another size: a fresh block
  CHECK(q != p);
  void* r = ktune_workspace_alloc(1 << 20);  // the released one
  CHECK(r == p);
  const runtime::WorkspaceStats s1 = runtime::workspace_stats();
  CHECK(s1.reused - s0.reused == 1);
  CHECK(s1.allocated - s0.allocated == 2);
  ktune_workspace_free(q, 1 << 19);
  ktune_workspace_free(r, 1 << 20);
  // At most kWorkspaceBlocksKept blocks stay cached: releasing more frees the oldest.
  std::vector<void*> blocks;
  for (int i = 0; i < runtime::kWorkspaceBlocksKept + 2; ++i) blocks.push_back(ktune_workspace_alloc(64 * (i + 1)));
  for (int i = 0; i < int(blocks.size()); ++i) ktune_workspace_free(blocks[i], 64 * (i + 1));
  const runtime::WorkspaceStats s2 = runtime::workspace_stats();
  void* newest = ktune_workspace_alloc(64 * int64_t(blocks.size()));
  CHECK(newest == blocks.back());
  void* oldest = ktune_workspace_alloc(64);  // released first, freed to make room
  const runtime::WorkspaceStats s3 = runtime::workspace_stats();
  CHECK(s3.reused - s2.reused == 1);
  CHECK(s3.allocated - s2.allocated == 1);
  ktune_workspace_free(newest, 64 * int64_t(blocks.size()));
  ktune_workspace_free(oldest, 64);
}

TEST_CASE("codegen: emitted LLVM IR and assembly", "[codegen]") {
  auto avx2 = target::resolve_target("x86-avx2");
  auto avx512 = target::resolve_target("x86-avx512");
  std::string ir8 = codegen::emit_llvm_ir(vector_add(64, 8), avx2);
  CHECK(ir8.find("<8 x float>") != std::string::npos);
  CHECK(ir8.find("noalias") != std::string::npos);
  std::string ir16 = codegen::emit_llvm_ir(matmul(16, 32, 8), avx512);
  CHECK(ir16.find("<16 x float>") != std::string::npos);
  CHECK(std::regex_search(ir16, std::regex("fmul [a-z ]*contract")));
  CHECK(ir16.find("ktune_parallel_for") != std::string::npos);
  CHECK(ir16.find("matmul_par_0") != std::string::npos);
  std::string asm16 = codegen::emit_assembly(matmul(16, 32, 8), avx512);
  CHECK(asm16.find("vfmadd") != std::string::npos);
  CHECK(asm16.find("zmm") != std::string::npos);
  // SVE with a fixed 512-bit length (needs the AArch64 backend: absent from static builds).
  try {
    std::string sve = codegen::emit_llvm_ir(vector_add(64, 16), target::resolve_target("a64fx"));
    CHECK(sve.find("vscale_range(4,4)") != std::string::npos);
    CHECK(sve.find("<16 x float>") != std::string::npos);
  } catch (const UserError& e) {
    WARN("AArch64 code generation skipped: " << e.what());
  }
}

TEST_CASE("codegen: invalid candidates", "[codegen]") {
  auto host = target::host_target();
  Buffer h = make_buffer("H", Type::f16(), {16});
  Expr i = i64v("i");
  LoweredFunc f16{
      "half", {h}, For::make(i, 0, 16, ForKind::Serial, Store::make(h, Load::make(h, i), i))};
  try {
    codegen::emit_llvm_ir(f16, host);
    FAIL("expected InvalidCandidate");
  } catch (const InvalidCandidate& e) {
    CHECK(std::string(e.what()).find("dtype f16 is not supported by the CPU code generator yet") !=
          std::string::npos);
  }
  Buffer c = make_buffer("C", Type::f32(), {16});
  LoweredFunc gpu{
      "gpu", {c}, For::make(i, 0, 16, ForKind::ThreadIdxX, Store::make(c, Expr(1.0), i))};
  runtime::CpuRunner runner(host, 1);
  try {
    runner.compile(gpu);
    FAIL("expected InvalidCandidate");
  } catch (const InvalidCandidate& e) {
    CHECK(std::string(e.what()).find("GPU loop kind on a CPU target") != std::string::npos);
  }
  // Code too large to compile in reasonable time: 12,000 stores of A[k] * k + B[k] (a few
  // LLVM instructions each) are refused before LLVM optimizes them; 1,000 compile.
  auto straight_line = [](int64_t n) {
    Buffer a = make_buffer("A", Type::f32(), {n}), b = make_buffer("B", Type::f32(), {n});
    std::vector<Stmt> stores;
    for (int64_t k = 0; k < n; ++k)
      stores.push_back(Store::make(b, Load::make(a, Expr(k)) * Expr(double(k)) + Load::make(b, Expr(k)), Expr(k)));
    return LoweredFunc{"straight", {a, b}, Block::make(std::move(stores))};
  };
  CHECK_NOTHROW(runner.compile(straight_line(1000)));
  try {
    runner.compile(straight_line(12000));
    FAIL("expected InvalidCandidate");
  } catch (const InvalidCandidate& e) {
    CHECK(std::string(e.what()).find("the kernel's code is too large to compile") != std::string::npos);
    CHECK(std::string(e.what()).find("(limit 50000)") != std::string::npos);
  }
}

TEST_CASE("runtime: the JIT frees the code of destroyed kernels", "[runtime]") {
  runtime::CpuRunner runner(target::host_target(), 1);
  runtime::HostBuffer a(Type::f32(), {64}), b(Type::f32(), {64}), c(Type::f32(), {64});
  a.fill_random(1);
  b.fill_random(2);
  LoweredFunc f = vector_add(64);
  auto compile_some = [&](int n) {
    for (int i = 0; i < n; ++i) {
      auto k = runner.compile(f);
      k->run({a.data(), b.data(), c.data()});
    }
  };
  compile_some(20);
  long before = rss_kib();
  compile_some(200);
  long after = rss_kib();
  INFO("RSS before " << before << " KiB, after " << after << " KiB");
  CHECK(after - before < 16 * 1024);
  CHECK(c.get(5) == Approx(a.get(5) + b.get(5)));
}

TEST_CASE("runtime: named CPU targets", "[runtime]") {
  auto avx2 = target::resolve_target("x86-avx2");
  auto host = target::host_target();
  bool runnable = host.triple.rfind("x86_64", 0) == 0 &&
                  std::all_of(avx2.features.begin(), avx2.features.end(),
                              [&](const std::string& f) { return host.has_feature(f); });
  if (!runnable) {
    CHECK_THROWS_AS(runtime::CpuRunner(avx2, 1), UserError);
    return;
  }
  runtime::CpuRunner runner(avx2, 2);
  runtime::HostBuffer a(Type::f32(), {67}), b(Type::f32(), {67}), c(Type::f32(), {67});
  a.fill_random(1);
  b.fill_random(2);
  runner.compile(vector_add(67))->run({a.data(), b.data(), c.data()});
  for (int64_t i = 0; i < 67; ++i) CHECK(c.get(i) == float(a.get(i) + b.get(i)));
  CHECK_THROWS_AS(runtime::CpuRunner(target::resolve_target("a64fx"), 1), UserError);
  CHECK_THROWS_AS(runtime::CpuRunner(target::resolve_target("a100"), 1), UserError);
}

TEST_CASE("runtime: concurrent compiles", "[runtime]") {
  runtime::CpuRunner runner(target::host_target(), 1);
  std::atomic<int> ok{0};
  auto work = [&] {
    for (int i = 0; i < 8; ++i) {
      runtime::HostBuffer a(Type::f32(), {64}), b(Type::f32(), {64}), c(Type::f32(), {64});
      a.fill_random(uint64_t(i));
      b.fill_random(uint64_t(i) + 100);
      auto k = runner.compile(vector_add(64));
      k->run({a.data(), b.data(), c.data()});
      if (c.get(63) == float(a.get(63) + b.get(63))) ok++;
    }
  };
  std::thread t1(work), t2(work);
  t1.join();
  t2.join();
  CHECK(ok == 16);
}

TEST_CASE("runtime: timing", "[runtime]") {
  runtime::CpuRunner runner(target::host_target(), 2);
  LoweredFunc f = matmul(32, 32, 32);
  std::vector<runtime::HostBuffer> bufs;
  std::vector<void*> ptrs;
  for (const auto& b : f.args) {
    bufs.emplace_back(b->dtype, b->shape);
    bufs.back().fill_random(7);
    ptrs.push_back(bufs.back().data());
  }
  auto k = runner.compile(f);
  CHECK(k->compile_ms() > 0);
  runtime::TimingOptions opt;
  opt.repeat = 3;
  opt.min_repeat_ms = 2;
  auto t = k->time(ptrs, opt);
  CHECK(t.group_means_ms.size() == 3);
  CHECK(t.number >= 1);
  CHECK(t.median_ms > 0);
  opt.number = 5;
  opt.max_total_ms = 0;  // one group only
  t = k->time(ptrs, opt);
  CHECK(t.group_means_ms.size() == 1);
  CHECK(t.number == 5);
}

TEST_CASE("runtime: thread pool", "[runtime]") {
  struct Acc {
    std::atomic<int64_t> sum{0};
    std::atomic<int> calls{0};
  };
  for (int threads : {1, 2, 3}) {
    runtime::set_num_threads(threads);
    CHECK(runtime::num_threads() == threads);
    for (int64_t n : {0, 1, 2, 5, 1000}) {
      Acc acc;
      runtime::parallel_for(
          [](void* p, int64_t b, int64_t e) {
            auto* a = static_cast<Acc*>(p);
            for (int64_t i = b; i < e; ++i) a->sum += i;
            a->calls++;
          },
          &acc, n);
      CHECK(acc.sum == n * (n - 1) / 2);
      CHECK(acc.calls <= threads);
    }
    // Nested: the inner loop runs serially inside each chunk.
    Acc acc;
    runtime::parallel_for(
        [](void* p, int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) {
            ktune_parallel_for(
                [](void* q, int64_t b2, int64_t e2) { static_cast<Acc*>(q)->sum += e2 - b2; }, p,
                10);
          }
        },
        &acc, 8);
    CHECK(acc.sum == 80);
  }
}

TEST_CASE("runtime: buffers", "[runtime]") {
  runtime::HostBuffer a(Type::f32(), {4, 8}), b(Type::f32(), {4, 8});
  CHECK(reinterpret_cast<uintptr_t>(a.data()) % 64 == 0);
  CHECK(a.num_elements() == 32);
  CHECK(a.bytes() == 128);
  a.fill_random(3);
  b.fill_random(3);
  CHECK(runtime::relative_l2_error(a, b) == 0);
  bool any_nonzero = false;
  for (int64_t i = 0; i < a.num_elements(); ++i) {
    CHECK(a.get(i) >= -1.0);
    CHECK(a.get(i) < 1.0);
    any_nonzero = any_nonzero || a.get(i) != 0;
  }
  CHECK(any_nonzero);
  b.fill_random(4);
  CHECK(runtime::relative_l2_error(a, b) > 0.1);
  b.poison();
  CHECK(std::isinf(runtime::relative_l2_error(b, a)));
  runtime::HostBuffer n(Type::i32(), {100});
  n.fill_random(5);
  for (int64_t i = 0; i < 100; ++i) {
    CHECK(n.get(i) >= -8);
    CHECK(n.get(i) < 8);
  }
  CHECK(runtime::tolerance_for(Type::f32()) == 1e-4);
  CHECK(runtime::tolerance_for(Type::f64()) == 1e-9);
  CHECK(runtime::tolerance_for(Type::bf16()) == 1e-2);
  CHECK(runtime::tolerance_for(Type::i32()) == 0);
  runtime::HostBuffer h(Type::f16(), {16});
  h.fill_random(9);
  for (int64_t i = 0; i < 16; ++i) CHECK(std::abs(h.get(i)) <= 1.0);
  CHECK(std::string(runtime::error_class_name(runtime::ErrorClass::WrongAnswer)) == "wrong-answer");
  CHECK(runtime::parse_error_class("compile-timeout") == runtime::ErrorClass::CompileTimeout);
  CHECK_THROWS_AS(runtime::parse_error_class("bogus"), UserError);
}

// ---------------------------------------------------------------------------------------
// Differential test: random expressions under random loop kinds, against the interpreter.

namespace {

struct XorShift {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  int pick(int n) { return int(next() % uint64_t(n)); }
};

// A random f32 expression of loop variables i, j (both in [0, 16)) reading 256-element inputs
// through contiguous, strided, divided, reversed and modular indices.
Expr random_expr(XorShift& r, const std::vector<Buffer>& ins, const Expr& i, const Expr& j,
                 int depth) {
  auto sub = [&] { return random_expr(r, ins, i, j, depth - 1); };
  auto index = [&]() -> Expr {
    switch (r.pick(5)) {
      case 0:
        return i * 16 + j;
      case 1:
        return j * 4 + i % 4;
      case 2:
        return (i * 16 + j) / 3;
      case 3:
        return 255 - (i * 16 + j);
      default:
        return (j * 7 + i) % 256;
    }
  };
  switch (depth <= 0 ? r.pick(3) : r.pick(14)) {
    case 0:
      return Load::make(ins[size_t(r.pick(int(ins.size())))], index());
    case 1:
      return cast(Type::f32(), j) * Expr(0.25);
    case 2:
      return Expr(0.5);
    case 3:
      return sub() + sub();
    case 4:
      return sub() * sub();
    case 5:
      return sub() - sub();
    case 6:
      return min(sub(), sub());
    case 7:
      return max(sub(), sub());
    case 8:
      return select(sub() < sub(), sub(), sub());
    case 9:
      return Call::make(Intrinsic::Exp, {min(sub(), Expr(3.0))});
    case 10:
      return Call::make(Intrinsic::Tanh, {sub()});
    case 11:
      return cast(Type::f32(), cast(Type::i32(), sub() * Expr(4.0)) / 3);
    case 12:
      return cast(Type::f32(), (i * 16 + j - 100) % 7) * sub();
    default:
      return Call::make(Intrinsic::Sqrt, {Call::make(Intrinsic::Abs, {sub()})});
  }
}

}  // namespace

TEST_CASE("codegen: random kernels under random loop kinds", "[codegen]") {
  XorShift r{12345};
  Buffer a = make_buffer("A", Type::f32(), {256});
  Buffer b = make_buffer("B", Type::f32(), {256});
  Buffer c = make_buffer("C", Type::f32(), {256});
  Buffer acc = make_buffer("acc", Type::f32(), {16}, MemoryScope::Local);
  const ForKind kinds[] = {ForKind::Serial, ForKind::Parallel, ForKind::Vectorized,
                           ForKind::Unrolled};
  const ForKind inner_kinds[] = {ForKind::Serial, ForKind::Vectorized, ForKind::Unrolled};
  for (int trial = 0; trial < 40; ++trial) {
    Expr i = i64v("i"), j = i64v("j"), k = i64v("k");
    ForKind ko = kinds[r.pick(4)], ki = inner_kinds[r.pick(3)];
    Stmt body;
    switch (r.pick(3)) {
      case 0:  // elementwise
        body = For::make(
            i, 0, 16, ko,
            For::make(j, 0, 16, ki, Store::make(c, random_expr(r, {a, b}, i, j, 3), i * 16 + j)));
        break;
      case 1: {  // accumulate over k into a local array, then copy out
        Expr v = random_expr(r, {a, b}, k, j, 2);
        body = For::make(
            i, 0, 16, ko,
            Allocate::make(
                acc,
                Block::make(
                    {For::make(j, 0, 16, ki, Store::make(acc, Expr(0.0), j)),
                     For::make(
                         k, 0, 4, inner_kinds[r.pick(3)],
                         For::make(
                             j, 0, 16, ki,
                             Store::make(acc, Load::make(acc, j) + v * Load::make(a, i * 16 + k),
                                         j))),
                     For::make(j, 0, 16, ki, Store::make(c, Load::make(acc, j), i * 16 + j))})));
        break;
      }
      default:  // reduce over the inner variable into one element
        body = Block::make(
            {For::make(k, 16, 240, ForKind::Serial, Store::make(c, Expr(1.0), k)),
             For::make(
                 i, 0, 16, ko,
                 Block::make(
                     {Store::make(c, Expr(0.0), i),
                      For::make(j, 0, 16, ki,
                                Store::make(c, Load::make(c, i) + random_expr(r, {a, b}, i, j, 3),
                                            i))}))});
        break;
    }
    LoweredFunc f{"random" + std::to_string(trial), {a, b, c}, body};
    INFO(to_string(f));
    check_against_interpreter(f, 1, 1 + trial % 2, uint64_t(trial));
  }
}
