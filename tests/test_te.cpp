// Unit tests of the te module: the kernel language parser, the shipped kernels, the
// ComputeDAG queries, instantiation with parameter values, errors and the registry.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "ktune/ir/ir.h"
#include "ktune/ir/printer.h"
#include "ktune/support/error.h"
#include "ktune/te/compute_dag.h"
#include "ktune/te/kernel.h"

using namespace ktune;
using namespace ktune::te;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

std::string source_kernels() { return std::string(KTUNE_SOURCE_DIR) + "/kernels"; }

KernelDef shipped(const std::string& name) {
  return parse_kernel_file(source_kernels() + "/" + name + ".kt");
}

using Shape = std::vector<int64_t>;

// The UserError message of parsing `src` as "t.kt", or "(no error)".
std::string parse_error(const std::string& src) {
  try {
    parse_kernel(src, "t.kt");
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string instantiate_error(const KernelDef& def, const std::map<std::string, int64_t>& values,
                              const std::map<std::string, std::string>& types = {}) {
  try {
    def.instantiate(values, types);
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

// A small kernel header and inputs shared by the error tests (lines 1-3).
const std::string kHead =
    "kernel k(N=4, M=8)\n"
    "  input A[N]\n"
    "  input X[N, M] : f16\n";

}  // namespace

// ---------------------------------------------------------------------------------------
// Shipped kernels

TEST_CASE("shipped kernels parse with their defaults and carry a doc comment", "[te][kernels]") {
  KernelRegistry reg;
  reg.add_directory(source_kernels());
  std::vector<std::string> names;
  for (const auto& k : reg.kernels()) names.push_back(k.name);
  for (const char* want : {"matmul", "matmul_packed", "batch_matmul", "dense_bias_relu", "conv2d", "conv2d_nhwc", "conv2d_nchwc",
                           "conv2d_bias_relu", "depthwise_conv2d", "depthwise_conv2d_nchwc",
                           "transpose2d", "nchw_to_nhwc", "softmax"}) {
    INFO(want);
    const KernelDef* k = reg.find(want);
    REQUIRE(k != nullptr);
    CHECK_FALSE(k->doc.empty());
    CHECK(k->doc.find('#') == std::string::npos);
    ComputeDAG dag = k->instantiate();
    CHECK(dag.kernel == want);
    CHECK_FALSE(dag.outputs().empty());
    CHECK(dag.dtype == "f32");
  }
}

TEST_CASE("matmul: shapes, flops, reads", "[te][kernels]") {
  KernelDef def = shipped("matmul");
  REQUIRE(def.params.size() == 4);
  CHECK(def.find_param("M")->default_int == 512);
  CHECK(def.find_param("dtype")->is_dtype);
  CHECK(def.find_param("dtype")->default_type == "f32");
  ComputeDAG dag = def.instantiate();
  REQUIRE(dag.ops.size() == 3);
  CHECK(dag.inputs() == std::vector<int>{0, 1});
  CHECK(dag.outputs() == std::vector<int>{2});
  const Operation& c = dag.op("C");
  CHECK(c.shape == Shape{512, 512});
  CHECK(c.is_output);
  CHECK(c.reduce == ReduceKind::Sum);
  REQUIRE(c.reduce_axes.size() == 1);
  CHECK(c.reduce_axes[0].extent == 512);
  CHECK(c.axes[0].var.type() == ir::Type::i64());
  CHECK(dag.reads(2) == std::vector<std::string>{"A", "B"});
  CHECK(dag.consumers(0) == std::vector<int>{2});
  CHECK(dag.consumers(2).empty());
  CHECK(dag.flop_count() == 2.0 * 512 * 512 * 512);
  CHECK(dag.params == std::vector<std::pair<std::string, int64_t>>{{"M", 512}, {"N", 512}, {"K", 512}});
  CHECK(dag.find("nope") == -1);
  CHECK(dag.ops[0].num_elements() == 512 * 512);
}

TEST_CASE("other shipped kernels: shapes and flop counts", "[te][kernels]") {
  SECTION("batch_matmul") {
    ComputeDAG d = shipped("batch_matmul").instantiate();
    CHECK(d.op("Z").shape == Shape{12, 128, 128});
    CHECK(d.flop_count() == 2.0 * 12 * 128 * 128 * 64);
  }
  SECTION("dense_bias_relu") {
    ComputeDAG d = shipped("dense_bias_relu").instantiate();
    CHECK(d.op("D").shape == Shape{16, 1000});
    CHECK_FALSE(d.op("D").is_output);
    CHECK(d.op("Y").shape == Shape{16, 1000});
    CHECK(d.op("W").is_const);
    CHECK(d.op("bias").is_const);
    CHECK_FALSE(d.op("X").is_const);
    CHECK(d.inputs().size() == 3);
    CHECK(d.consumers(d.find("D")) == std::vector<int>{d.find("Y")});
    // matmul (2 per term) + bias add and relu max (2 per element).
    CHECK(d.flop_count() == 2.0 * 16 * 1000 * 512 + 2.0 * 16 * 1000);
  }
  SECTION("conv2d") {
    ComputeDAG d = shipped("conv2d").instantiate();
    CHECK(d.op("I").shape == Shape{1, 64, 56, 56});
    CHECK(d.op("Wt").shape == Shape{64, 64, 3, 3});
    CHECK(d.op("Wt").is_const);
    CHECK(d.op("Ipad").shape == Shape{1, 64, 58, 58});
    CHECK(d.op("O").shape == Shape{1, 64, 56, 56});
    CHECK(d.op("O").reduce_axes.size() == 3);
    CHECK(d.reads(d.find("O")) == std::vector<std::string>{"Ipad", "Wt"});
    // Ipad: one select per element; O: multiply-add per term.
    CHECK(d.flop_count() == 64.0 * 58 * 58 + 2.0 * 64 * 56 * 56 * 64 * 9);
  }
  SECTION("conv2d_nhwc") {
    ComputeDAG d = shipped("conv2d_nhwc").instantiate();
    CHECK(d.op("I").shape == Shape{1, 56, 56, 64});
    CHECK(d.op("Wt").shape == Shape{3, 3, 64, 64});
    CHECK(d.op("O").shape == Shape{1, 56, 56, 64});
  }
  SECTION("conv2d_nchwc") {
    ComputeDAG d = shipped("conv2d_nchwc").instantiate();
    CHECK(d.op("I").shape == Shape{1, 8, 28, 28, 16});
    CHECK(d.op("Wt").shape == Shape{8, 8, 3, 3, 16, 16});
    CHECK(d.op("Ipad").shape == Shape{1, 8, 30, 30, 16});
    CHECK(d.op("O").shape == Shape{1, 8, 28, 28, 16});
    CHECK(d.op("O").reduce_axes.size() == 4);
    CHECK(d.flop_count() == 128.0 * 30 * 30 + 2.0 * 128 * 28 * 28 * 128 * 9);
    ComputeDAG stem = shipped("conv2d_nchwc").instantiate({{"C", 3}, {"cb", 3}, {"H", 224}, {"W", 224}, {"K", 64},
                                                           {"R", 7}, {"S", 7}, {"stride", 2}, {"pad", 3}});
    CHECK(stem.op("I").shape == Shape{1, 1, 224, 224, 3});
    CHECK(stem.op("O").shape == Shape{1, 4, 112, 112, 16});
  }
  SECTION("matmul_packed") {
    ComputeDAG d = shipped("matmul_packed").instantiate();
    CHECK(d.op("Bp").shape == Shape{8, 512, 64});
    CHECK(d.op("Bp").is_const);
    CHECK(d.op("C").shape == Shape{512, 8, 64});
    CHECK(d.flop_count() == 2.0 * 512 * 512 * 512);
    CHECK_THROWS_WITH(shipped("matmul_packed").instantiate({{"N", 100}}), Contains("N % nb == 0"));
  }
  SECTION("conv2d_bias_relu") {
    ComputeDAG d = shipped("conv2d_bias_relu").instantiate();
    CHECK(d.op("Conv").shape == Shape{1, 128, 28, 28});
    CHECK(d.op("Y").shape == Shape{1, 128, 28, 28});
    CHECK(d.outputs() == std::vector<int>{d.find("Y")});
    CHECK(d.op("bias").is_const);
  }
  SECTION("depthwise_conv2d") {
    ComputeDAG d = shipped("depthwise_conv2d").instantiate();
    CHECK(d.op("O").shape == Shape{1, 96, 56, 56});
    CHECK(d.op("Ipad").shape == Shape{1, 96, 114, 114});
    CHECK(d.flop_count() == 96.0 * 114 * 114 + 2.0 * 96 * 56 * 56 * 9);
  }
  SECTION("depthwise_conv2d_nchwc") {
    ComputeDAG d = shipped("depthwise_conv2d_nchwc").instantiate();
    CHECK(d.op("I").shape == Shape{1, 9, 56, 56, 16});
    CHECK(d.op("Wt").shape == Shape{9, 3, 3, 16});
    CHECK(d.op("Wt").is_const);
    CHECK(d.op("Ipad").shape == Shape{1, 9, 58, 58, 16});
    CHECK(d.op("O").shape == Shape{1, 9, 56, 56, 16});
    CHECK(d.op("O").reduce_axes.size() == 2);
    CHECK(d.flop_count() == 144.0 * 58 * 58 + 2.0 * 144 * 56 * 56 * 9);
    ComputeDAG s2 = shipped("depthwise_conv2d_nchwc")
                        .instantiate({{"C", 96}, {"H", 112}, {"W", 112}, {"stride", 2}});
    CHECK(s2.op("I").shape == Shape{1, 6, 112, 112, 16});
    CHECK(s2.op("O").shape == Shape{1, 6, 56, 56, 16});
  }
  SECTION("transpose2d") {
    ComputeDAG d = shipped("transpose2d").instantiate();
    CHECK(d.op("A").shape == Shape{1024, 768});
    CHECK(d.op("B").shape == Shape{768, 1024});
    CHECK(d.flop_count() == 0);
  }
  SECTION("nchw_to_nhwc") {
    ComputeDAG d = shipped("nchw_to_nhwc").instantiate();
    CHECK(d.op("Y").shape == Shape{1, 56, 56, 64});
  }
  SECTION("softmax") {
    ComputeDAG d = shipped("softmax").instantiate();
    CHECK(d.op("Mx").shape == Shape{128});
    CHECK(d.op("Mx").reduce == ReduceKind::Max);
    CHECK(d.op("S").reduce == ReduceKind::Sum);
    CHECK(d.op("E").reduce == ReduceKind::None);
    CHECK(d.op("Y").shape == Shape{128, 1000});
    // max: 1, exp(x - m): 2, sum: 1, divide: 1 per element of the 128 x 1000 matrix.
    CHECK(d.flop_count() == 5.0 * 128 * 1000);
    CHECK(d.consumers(d.find("E")) == std::vector<int>{d.find("S"), d.find("Y")});
  }
}

// ---------------------------------------------------------------------------------------
// Instantiation

TEST_CASE("instantiate with parameter values", "[te][instantiate]") {
  KernelDef def = shipped("conv2d");
  ComputeDAG d = def.instantiate({{"H", 28}, {"W", 30}, {"stride", 2}, {"K", 32}}, {{"dtype", "f16"}});
  CHECK(d.op("I").shape == Shape{1, 64, 28, 30});
  CHECK(d.op("O").shape == Shape{1, 32, 14, 15});
  CHECK(d.op("O").dtype == ir::Type::f16());
  CHECK(d.op("Ipad").dtype == ir::Type::f16());
  CHECK(d.dtype == "f16");
  auto find_param = [&](const std::string& n) {
    for (auto& [k, v] : d.params)
      if (k == n) return v;
    return int64_t(-1);
  };
  CHECK(find_param("H") == 28);
  CHECK(find_param("stride") == 2);
  CHECK(find_param("C") == 64);
  // The definition itself keeps the file's defaults.
  CHECK(def.find_param("H")->default_int == 56);

  ComputeDAG m = shipped("matmul").instantiate({{"M", 64}, {"N", 32}, {"K", 16}});
  CHECK(m.op("C").shape == Shape{64, 32});
  CHECK(m.flop_count() == 2.0 * 64 * 32 * 16);
}

TEST_CASE("instantiate: shapes that are zero or negative name tensor, dimension and parameters",
          "[te][instantiate][errors]") {
  KernelDef def = shipped("conv2d");
  std::string msg = instantiate_error(def, {{"H", 1}, {"pad", 0}});
  CHECK_THAT(msg, Contains("conv2d: shape of O is [1, 64, -1, 54]: dimension 2 (P) is -1 with "
                           "H=1, R=3, stride=1, pad=0, dilation=1; every dimension must be positive"));
  CHECK_THAT(msg, StartsWith(source_kernels() + "/conv2d.kt:"));

  msg = instantiate_error(def, {{"N", 0}});
  CHECK_THAT(msg, Contains("conv2d: shape of I is [0, 64, 56, 56]: dimension 0 (N) is 0 with N=0"));

  msg = instantiate_error(def, {{"R", 0}});
  CHECK_THAT(msg, Contains("shape of Wt is [64, 64, 0, 3]: dimension 2 (R) is 0 with R=0"));

  msg = instantiate_error(def, {{"stride", 0}});
  CHECK_THAT(msg, Contains("division by zero: the divisor is 0 with stride=0"));
}

TEST_CASE("instantiate: a requirement on the parameters that fails names them", "[te][instantiate][errors]") {
  KernelDef def = shipped("conv2d_nchwc");
  std::string msg = instantiate_error(def, {{"C", 20}});
  CHECK_THAT(msg, Contains("conv2d_nchwc: the requirement 'C % cb == 0 && K % kb == 0' does not hold with "
                           "C=20, K=128, cb=16, kb=16"));
  CHECK_THAT(msg, StartsWith(source_kernels() + "/conv2d_nchwc.kt:"));
  CHECK_NOTHROW(def.instantiate({{"C", 32}, {"cb", 8}, {"K", 48}}));
  CHECK_THAT(instantiate_error(shipped("depthwise_conv2d_nchwc"), {{"C", 24}}),
             Contains("the requirement 'C % cb == 0' does not hold with C=24, cb=16"));
  // Anything but a condition is an error of the file (reading a tensor is refused earlier).
  const std::string src = "kernel k(N=4)\n  input A[N]\n  require N + 1\n  output B[i < N] = A[i]\n";
  CHECK_THROWS_WITH(parse_kernel(src, "k.kt"),
                    Contains("k.kt:3:11: 'require' needs a condition on parameters and values") &&
                        Contains("found 'N + 1'"));
}

TEST_CASE("instantiate: bad parameter names and kinds", "[te][instantiate][errors]") {
  KernelDef def = shipped("matmul");
  CHECK_THAT(instantiate_error(def, {{"X", 3}}),
             Contains("kernel matmul has no parameter 'X'; its parameters are M, N, K, dtype"));
  CHECK_THAT(instantiate_error(def, {{"dtype", 3}}), Contains("is an element type"));
  CHECK_THAT(instantiate_error(def, {}, {{"M", "f16"}}), Contains("is an integer, not an element type"));
  CHECK_THAT(instantiate_error(def, {}, {{"dtype", "f33"}}), Contains("'f33' given for parameter 'dtype'"));
  CHECK_THAT(instantiate_error(def, {}, {{"typo", "f16"}}), Contains("has no parameter 'typo'"));
}

// ---------------------------------------------------------------------------------------
// Canonical text and hash

TEST_CASE("canonical text is stable and tells workloads apart", "[te][dag]") {
  KernelDef conv = shipped("conv2d");
  ComputeDAG a = conv.instantiate(), b = conv.instantiate();
  CHECK(a.canonical_text() == b.canonical_text());
  CHECK(a.hash() == b.hash());
  CHECK(a.hash().size() == 16);
  std::string text = a.canonical_text();
  CHECK_THAT(text, StartsWith("kernel conv2d\n"));
  CHECK_THAT(text, Contains("placeholder Wt f32 [64, 64, 3, 3] const"));
  CHECK_THAT(text, Contains("compute O f32 [1, 64, 56, 56] output sum[64, 3, 3] = "));
  CHECK_THAT(text, Contains("ax0"));
  CHECK_THAT(text, Contains("r2"));
  CHECK(text.find(" p ") == std::string::npos);

  // Another parse of the same text (fresh variables) gives the same text.
  KernelDef again = parse_kernel(conv.source, "elsewhere.kt");
  CHECK(again.instantiate().canonical_text() == text);

  CHECK(conv.instantiate({{"H", 28}}).hash() != a.hash());
  CHECK(conv.instantiate({}, {{"dtype", "f16"}}).hash() != a.hash());
  CHECK(shipped("matmul").instantiate().hash() != shipped("matmul").instantiate({{"K", 256}}).hash());

  // Axis names do not matter, only the computation.
  std::string s1 = "kernel mm(M=4)\n  input A[M, M]\n  output C[i, j] = sum(k < M) A[i, k] * A[k, j]\n";
  std::string s2 = "kernel mm(M=4)\n  input A[M, M]\n  output C[x, y] = sum(z < M) A[x, z] * A[z, y]\n";
  std::string s3 = "kernel mm(M=4)\n  input A[M, M]\n  output C[x, y] = sum(z < M) A[z, x] * A[z, y]\n";
  CHECK(parse_kernel(s1, "a").instantiate().hash() == parse_kernel(s2, "b").instantiate().hash());
  CHECK(parse_kernel(s1, "a").instantiate().hash() != parse_kernel(s3, "c").instantiate().hash());
}

// ---------------------------------------------------------------------------------------
// Language features

TEST_CASE("language: docs, values, inference, types, functions", "[te][language]") {
  std::string src =
      "# First line of the doc.\n"
      "\n"
      "# The doc proper,\n"
      "# on two lines.\n"
      "kernel demo(N=8, M=4, shift=-1, acc=f32, dtype=f16)   # trailing comment\n"
      "  HALF = N / 2          # a derived value\n"
      "  input  A[N, M]\n"
      "  const  B[M] : f32\n"
      "  input  Idx[N] : i32\n"
      "  T[i, j] = f32(A[i, j]) * B[j] + 1.5e-1\n"
      "  U[i < HALF, j] = max(T[2*i, j], T[2*i + 1, j],\n"
      "                       0)\n"
      "  V[i, j] : acc = select(i > 0 && !(j == 0), sqrt(abs(U[i, j])), exp(-U[i, j]))\n"
      "  W[i] = sum(j < M) V[i, j] * V[i, j]\n"
      "  Z[i] = min(k < M) acc(V[i, k])\n"
      "  output Y[i] = dtype(tanh(W[i]) + sigmoid(Z[i])) + f16(i - shift)\n"
      "  output J[n] = Idx[n] * 2 + i32(n % 3)\n";
  KernelDef def = parse_kernel(src, "demo.kt");
  CHECK(def.doc == "The doc proper,\non two lines.");
  CHECK(def.find_param("shift")->default_int == -1);
  CHECK(def.find_param("acc")->is_dtype);
  ComputeDAG d = def.instantiate();
  CHECK(d.dtype == "f16");
  CHECK(d.op("A").dtype == ir::Type::f16());  // the dtype parameter is the default element type
  CHECK(d.op("B").dtype == ir::Type::f32());
  CHECK(d.op("T").dtype == ir::Type::f32());  // f32(f16) * f32 + constant
  CHECK(d.op("T").shape == Shape{8, 4});      // both axes inferred
  CHECK(d.op("U").shape == Shape{4, 4});      // explicit extent from a derived value
  CHECK(d.op("V").dtype == ir::Type::f32());
  CHECK(d.op("W").reduce == ReduceKind::Sum);
  CHECK(d.op("Z").reduce == ReduceKind::Min);
  CHECK(d.op("Y").dtype == ir::Type::f16());
  CHECK(d.op("J").dtype == ir::Type::i32());
  CHECK(d.outputs().size() == 2);
  CHECK(d.op("Idx").dtype == ir::Type::i32());
  CHECK(ir::Type::bf16() == parse_kernel("kernel k(N=2)\n  input A[N] : bf16\n  output B[i] = A[i]\n", "t.kt")
                                .instantiate()
                                .op("B")
                                .dtype);

  // acc=f64 changes V, W and Z.
  ComputeDAG d64 = def.instantiate({}, {{"acc", "f64"}});
  CHECK(d64.op("V").dtype == ir::Type::f64());
  CHECK(d64.op("W").dtype == ir::Type::f64());
  CHECK(d64.op("Z").dtype == ir::Type::f64());
}

TEST_CASE("language: all element types parse", "[te][language]") {
  for (const char* t : {"f32", "f64", "f16", "bf16", "i32", "i8"}) {
    INFO(t);
    std::string src = std::string("kernel k(N=4, dtype=") + t +
                      ")\n  input A[N]\n  input B[N] : " + t + "\n  output C[i] = A[i] + B[i] * 2\n";
    ComputeDAG d = parse_kernel(src, "t.kt").instantiate();
    CHECK(d.dtype == t);
    CHECK(d.op("A").dtype == d.op("C").dtype);
    CHECK(d.op("B").dtype == d.op("C").dtype);
  }
}

TEST_CASE("language: constants fold and indices are i64", "[te][language]") {
  std::string src =
      "kernel k(N=6, pad=1)\n"
      "  P = max(N - 2*pad, 1) % 5\n"
      "  input A[N]\n"
      "  output B[i < P] = A[i + pad] * (3 / 2)\n";
  ComputeDAG d = parse_kernel(src, "t.kt").instantiate();
  CHECK(d.op("B").shape == Shape{4});
  const auto* mul = d.op("B").body.as<ir::Mul>();
  REQUIRE(mul != nullptr);
  const auto* read = mul->a.as<ir::TensorRead>();
  REQUIRE(read != nullptr);
  CHECK(read->indices[0].type() == ir::Type::i64());
  const auto* c = mul->b.as<ir::FloatImm>();  // 3/2 folds to the integer 1, then meets an f32
  REQUIRE(c != nullptr);
  CHECK(c->value == 1.0);
  // Floor division and modulo on negative constants.
  ComputeDAG n = parse_kernel("kernel k(N=-7)\n  Q = N / 2 + 5\n  R = N % 3\n  input A[Q + R]\n"
                              "  output B[i] = A[i]\n", "t.kt").instantiate();
  CHECK(n.op("A").shape == Shape{1 + 2});  // -7/2 = -4 -> 1; -7 % 3 = 2
}

TEST_CASE("language: continuation lines, literals, syntactic extent inference", "[te][language]") {
  std::string src =
      "kernel k(N=4, dtype=f16)\n"
      "  input A[N]\n"
      "  output B[i] =\n"
      "      sum(j < N) A[i] *\n"
      "                 A[j] + .5 + 1e-3 + 2.\n";
  ComputeDAG d = parse_kernel(src, "t.kt").instantiate();
  CHECK(d.op("B").shape == Shape{4});
  CHECK(d.op("B").dtype == ir::Type::f16());
  CHECK(d.op("B").reduce_axes.size() == 1);

  // Only a lone axis name gives an extent: `i + 0` does not, whatever the constant.
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i + 0]\n"),
             StartsWith("t.kt:4:12: cannot infer the extent of axis 'i'"));
  // The same definition with the extent written is fine.
  CHECK_NOTHROW(parse_kernel(kHead + "  output B[i < N] = A[i + 0]\n", "t.kt"));
  // Reads in select branches are not bounds-checked; the condition guards them.
  CHECK_NOTHROW(parse_kernel(kHead + "  output B[i < N + 1] = select(i > 0, A[i - 1], 0)\n", "t.kt"));
  // Clamped indices (min/max) are accepted.
  CHECK_NOTHROW(parse_kernel(kHead + "  output B[i < N + 2] = A[max(min(i - 1, N - 1), 0)]\n", "t.kt"));
}

TEST_CASE("conv2d with pad=0 and with stride 2 and dilation 2", "[te][instantiate]") {
  KernelDef def = shipped("conv2d");
  ComputeDAG d = def.instantiate({{"pad", 0}});
  CHECK(d.op("Ipad").shape == Shape{1, 64, 56, 56});
  CHECK(d.op("O").shape == Shape{1, 64, 54, 54});
  ComputeDAG e = def.instantiate({{"stride", 2}, {"dilation", 2}, {"pad", 2}});
  CHECK(e.op("O").shape == Shape{1, 64, 28, 28});  // (56 + 4 - 4 - 1) / 2 + 1
}

// ---------------------------------------------------------------------------------------
// Errors: message and position

TEST_CASE("errors: lexing and syntax", "[te][errors]") {
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i] @ 2\n"),
             StartsWith("t.kt:4:22: unexpected character '@'"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i] * 2x\n"),
             StartsWith("t.kt:4:24: malformed number '2x'"));
  CHECK_THAT(parse_error(kHead + "  output B[i] A[i]\n"),
             StartsWith("t.kt:4:15: expected '=' and the definition of B, found 'A'"));
  CHECK_THAT(parse_error("  input A[4]\n"),
             StartsWith("t.kt:1:3: expected 'kernel NAME(PARAMETERS)' to begin the file, found 'input'"));
  CHECK_THAT(parse_error("kernel k(N=4, M=x)\n"),
             StartsWith("t.kt:1:17: the default of parameter 'M' must be an integer or an element type"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i] < 1 < 2\n"),
             StartsWith("t.kt:4:26: comparisons do not chain"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i]\nkernel k2()\n"),
             StartsWith("t.kt:5:1: a second 'kernel'"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i] & A[i]\n"),
             StartsWith("t.kt:4:22: unexpected character '&'; did you mean '&&'?"));
}

TEST_CASE("errors: names", "[te][errors]") {
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i] + Z\n"),
             StartsWith("t.kt:4:24: unknown name 'Z'"));
  CHECK_THAT(parse_error(kHead + "  input A[M]\n  output B[i] = A[i]\n"),
             StartsWith("t.kt:4:9: 'A' is already defined on line 2 (a tensor)"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = T[i]\n  T[i] = A[i]\n"),
             StartsWith("t.kt:4:17: 'T' is used before its definition on line 5"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = B[i] + A[i]\n"),
             StartsWith("t.kt:4:17: 'B' cannot read itself"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = N[i]\n"),
             StartsWith("t.kt:4:17: 'N' is a parameter, not a tensor"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A\n"),
             StartsWith("t.kt:4:17: 'A' is a tensor; read an element with A[...]"));
  CHECK_THAT(parse_error(kHead + "  output exp[i] = A[i]\n"),
             StartsWith("t.kt:4:10: 'exp' is a reserved word"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = foo(A[i])\n"),
             StartsWith("t.kt:4:17: unknown function 'foo'"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = sum(i < N) A[i]\n"),
             StartsWith("t.kt:4:21: 'i' is already defined on line 4 (an axis); a reduction axis needs a fresh name"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[k]\n"),
             StartsWith("t.kt:4:19: unknown name 'k'; an axis must be named"));
}

TEST_CASE("errors: indices and shapes", "[te][errors]") {
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i, 0]\n"),
             StartsWith("t.kt:4:17: 'A' has 1 dimension but is read with 2 indices"));
  CHECK_THAT(parse_error(kHead + "  output B[i, j] = X[i]\n"),
             StartsWith("t.kt:4:20: 'X' has 2 dimensions but is read with 1 index"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i * 1.5]\n"),
             StartsWith("t.kt:4:19: index 0 of A ('i * 1.5') must be an integer, found a value of type f32"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i * i]\n"),
             StartsWith("t.kt:4:19: index 0 of A ('i * i') is not affine"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = X[i, i32(A[i])]\n"),
             StartsWith("t.kt:4:22: index 1 of X ('i32(A[i])') reads a tensor element"));
  CHECK_THAT(parse_error(kHead + "  output B[i, h] = A[i]\n"),
             StartsWith("t.kt:4:15: cannot infer the extent of axis 'h'; write 'h < EXTENT'"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i] + f32(X[0, i])\n"),
             StartsWith("t.kt:4:33: conflicting extents for axis 'i': 4 (N) from dimension 0 of A, "
                        "but 8 (M) from dimension 1 of X"));
  CHECK_THAT(parse_error(kHead + "  output B[i < N] = A[i + 1]\n"),
             StartsWith("t.kt:4:23: out-of-bounds read: index 0 of A (i + 1) takes values 1..4, but "
                        "dimension 0 of A has extent 4 (N) with N=4"));
  CHECK_THAT(parse_error(kHead + "  input Z[N - 4]\n  output B[i] = A[i]\n"),
             StartsWith("t.kt:4:11: k: shape of Z is [0]: dimension 0 (N - 4) is 0 with N=4; "
                        "every dimension must be positive"));
  CHECK_THAT(parse_error(kHead + "  output B[i < N - 5] = A[i]\n"),
             StartsWith("t.kt:4:16: k: shape of B is [-1]: dimension 0 (N - 5) is -1 with N=4"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = sum(r < 0) A[i]\n"),
             StartsWith("t.kt:4:25: k: reduction axis r of B has extent 0; every extent must be positive"));
  CHECK_THAT(parse_error(kHead + "  P = N / (M - 8)\n  output B[i] = A[i]\n"),
             StartsWith("t.kt:4:9: division by zero: the divisor is 0 with M=8"));
  CHECK_THAT(parse_error(kHead + "  output B[i < N] = A[i / (N - 4)]\n"),
             StartsWith("t.kt:4:25: division by zero: the divisor is 0 with N=4"));
  CHECK_THAT(parse_error(kHead + "  input Z[2.5]\n  output B[i] = A[i]\n"),
             StartsWith("t.kt:4:11: a dimension must be an integer, found '2.5'"));
  CHECK_THAT(parse_error(kHead + "  output B[i < A[0]] = A[i]\n"),
             StartsWith("t.kt:4:16: tensor 'A' cannot be read here"));
}

TEST_CASE("errors: types and reductions", "[te][errors]") {
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i] + X[i, 0]\n"),
             StartsWith("t.kt:4:22: the operands of '+' have different types, f32 and f16"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = 1 + sum(k < N) A[k]\n"),
             StartsWith("t.kt:4:21: a reduction must be the whole right-hand side"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = max(k < N) A[k] * max(j < N) A[j]\n"),
             StartsWith("t.kt:4:35: a reduction must be the whole right-hand side"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i] > 0\n"),
             StartsWith("t.kt:4:17: the value of B is a condition"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i] + (A[i] > 0)\n"),
             StartsWith("t.kt:4:24: '+' needs numbers, found a condition"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = select(A[i], 1, 0)\n"),
             StartsWith("t.kt:4:24: the first argument of select must be a condition"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = select(A[i] > 0, 1)\n"),
             StartsWith("t.kt:4:17: select takes 3 arguments"));
  CHECK_THAT(parse_error(kHead + "  input I[N] : i32\n  output B[i] = exp(I[i])\n"),
             StartsWith("t.kt:5:21: exp needs a floating-point value, found i32"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i] % 2\n"),
             StartsWith("t.kt:4:22: '%' needs integer operands"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = sum(k < N) A[i]\n"),
             StartsWith("t.kt:4:21: reduction axis 'k' is not used in the body of B"));
  CHECK_THAT(parse_error(kHead + "  B[i] = A[i]\n"),
             StartsWith("t.kt:1:1: kernel 'k' has no output"));
  CHECK_THAT(parse_error(kHead + "  T[i] = A[i]\n  output B[i] = A[i]\n"),
             StartsWith("t.kt:4:3: 'T' is computed but never read"));
  CHECK_THAT(parse_error(kHead + "  P = N + A\n  output B[i] = A[i]\n"),
             StartsWith("t.kt:4:11: 'A' is a tensor"));
  CHECK_THAT(parse_error(kHead + "  output B[i] = A[i] : f16\n"),
             StartsWith("t.kt:4:22: expected the end of the line, found ':'"));
}

// ---------------------------------------------------------------------------------------
// Registry

TEST_CASE("registry: a later directory overrides a shipped kernel", "[te][registry]") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("ktune_test_te_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream(dir / "mine.kt") << "# My matmul.\nkernel matmul(M=64, N=64, K=64)\n"
                                      "  input A[M, K]\n  input B[K, N]\n"
                                      "  output C[i, j] = sum(k < K) A[i, k] * B[k, j]\n";
    std::ofstream(dir / "extra.kt") << "kernel scale(N=16)\n  input A[N]\n  output B[i] = A[i] * 2\n";
    std::ofstream(dir / "notes.txt") << "not a kernel";
  }
  KernelRegistry reg;
  reg.add_directory(source_kernels());
  size_t shipped_count = reg.kernels().size();
  reg.add_directory(dir.string());
  CHECK(reg.kernels().size() == shipped_count + 1);
  REQUIRE(reg.find("matmul") != nullptr);
  CHECK(reg.find("matmul")->find_param("M")->default_int == 64);
  CHECK(reg.find("matmul")->doc == "My matmul.");
  CHECK(reg.find("matmul")->instantiate().op("C").shape == Shape{64, 64});
  CHECK(reg.find("scale") != nullptr);
  CHECK(reg.find("nothing") == nullptr);

  // A broken file is a user error that names the file and position.
  { std::ofstream(dir / "broken.kt") << "kernel broken(N=4)\n  input A[N]\n  output B[i] = A[j]\n"; }
  KernelRegistry reg2;
  try {
    reg2.add_directory(dir.string());
    FAIL("expected a UserError");
  } catch (const UserError& e) {
    CHECK_THAT(e.what(), StartsWith((dir / "broken.kt").string() + ":3:19: unknown name 'j'"));
  }
  CHECK_THROWS_AS(reg2.add_directory((dir / "missing").string()), UserError);
  CHECK_THROWS_AS(parse_kernel_file((dir / "missing.kt").string()), UserError);
  fs::remove_all(dir);
}

TEST_CASE("shipped_kernel_dir finds the kernels", "[te][registry]") {
  std::filesystem::path dir = shipped_kernel_dir();
  CHECK(std::filesystem::exists(dir / "matmul.kt"));
}
