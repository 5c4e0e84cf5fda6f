// Exported kernels compile outside ktune and compute what ktune computes.
//
// For a few kernels with hand-written tuned-looking schedules (tiling, a fused parallel loop,
// a vectorized inner loop, unrolling, an inlined padding select) and a few random schedules
// from the sampler, the kernels are exported (C source; object file), compiled and linked
// with a small C harness by the system's C compilers, run on random inputs, and their
// outputs compared with the IR interpreter's. C: gcc -std=c99 -O2 (also with -fopenmp) and
// clang (clang-19, else clang) when installed; object: gcc with ktune_parallel_for.c.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include <unistd.h>

#include "ktune/codegen/c_codegen.h"
#include "ktune/codegen/export.h"
#include "ktune/ir/interpreter.h"
#include "ktune/runtime/buffer.h"
#include "ktune/schedule/lower.h"
#include "ktune/schedule/steps.h"
#include "ktune/search/sampler.h"
#include "ktune/support/error.h"
#include "ktune/te/kernel.h"
#include "support/random_kernels.h"

using namespace ktune;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Case {
  std::string symbol;
  std::shared_ptr<const te::ComputeDAG> dag;
  schedule::State state;
  ir::LoweredFunc f;
  std::vector<runtime::HostBuffer> inputs, expected;
};

std::shared_ptr<const te::ComputeDAG> instantiate(const std::string& kernel, const std::map<std::string, int64_t>& p,
                                                  const std::string& dtype = "f32") {
  te::KernelDef def = te::parse_kernel_file(std::string(KTUNE_SOURCE_DIR) + "/kernels/" + kernel + ".kt");
  return std::make_shared<const te::ComputeDAG>(def.instantiate(p, {{"dtype", dtype}}));
}

Case make_case(const std::string& symbol, std::shared_ptr<const te::ComputeDAG> dag, schedule::State st) {
  Case c;
  c.symbol = symbol;
  c.dag = dag;
  c.state = std::move(st);
  c.f = schedule::lower(c.state, symbol);
  uint64_t seed = 7;
  std::vector<void*> args;
  for (int i : dag->inputs()) {
    c.inputs.emplace_back(dag->ops[i].dtype, dag->ops[i].shape);
    c.inputs.back().fill_random(seed++);
  }
  for (int i : dag->outputs()) {
    c.expected.emplace_back(dag->ops[i].dtype, dag->ops[i].shape);
    c.expected.back().poison();
  }
  for (auto& b : c.inputs) args.push_back(b.data());
  for (auto& b : c.expected) args.push_back(b.data());
  ir::interpret(c.f, args);
  return c;
}

Case from_steps(const std::string& symbol, std::shared_ptr<const te::ComputeDAG> dag, const json& steps) {
  return make_case(symbol, dag, schedule::replay(dag, schedule::steps_from_json(steps)));
}

void write_bytes(const fs::path& p, const void* data, size_t n) {
  std::ofstream out(p, std::ios::binary);
  out.write(static_cast<const char*>(data), std::streamsize(n));
  REQUIRE(out.good());
}

// A C program that reads every case's inputs from SYMBOL_in<i>.bin, calls the kernel and
// writes SYMBOL_out<i>.bin.
std::string harness(const std::vector<Case>& cases) {
  std::ostringstream h;
  h << "#include <stdio.h>\n#include <stdlib.h>\n";
  for (const auto& c : cases) h << "#include \"" << c.symbol << ".h\"\n";
  h << "static void* load(const char* path, size_t bytes) {\n"
       "  void* p = malloc(bytes ? bytes : 1); FILE* f = fopen(path, \"rb\");\n"
       "  if (!f || fread(p, 1, bytes, f) != bytes) { fprintf(stderr, \"cannot read %s\\n\", path); exit(2); }\n"
       "  fclose(f); return p;\n}\n"
       "static void save(const char* path, const void* p, size_t bytes) {\n"
       "  FILE* f = fopen(path, \"wb\");\n"
       "  if (!f || fwrite(p, 1, bytes, f) != bytes) { fprintf(stderr, \"cannot write %s\\n\", path); exit(2); }\n"
       "  fclose(f);\n}\n"
       "int main(void) {\n";
  for (const auto& c : cases) {
    h << "  {\n";
    std::vector<std::string> names = codegen::c_param_names(c.f);
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      const std::string t = codegen::c_type_name(c.inputs[i].dtype());
      h << "    " << t << "* a" << i << " = (" << t << "*)load(\"" << c.symbol << "_in" << i << ".bin\", "
        << c.inputs[i].bytes() << ");\n";
    }
    for (size_t i = 0; i < c.expected.size(); ++i) {
      const std::string t = codegen::c_type_name(c.expected[i].dtype());
      h << "    " << t << "* o" << i << " = (" << t << "*)malloc(" << c.expected[i].bytes() << ");\n";
    }
    h << "    " << c.symbol << "(";
    for (size_t i = 0; i < c.inputs.size(); ++i) h << (i ? ", " : "") << "a" << i;
    for (size_t i = 0; i < c.expected.size(); ++i) h << ", o" << i;
    h << ");\n";
    for (size_t i = 0; i < c.expected.size(); ++i)
      h << "    save(\"" << c.symbol << "_out" << i << ".bin\", o" << i << ", " << c.expected[i].bytes() << ");\n";
    h << "  }\n";
  }
  h << "  return 0;\n}\n";
  return h.str();
}

// Removes a test directory when the test case ends, passed or failed.
struct DirGuard {
  fs::path dir;
  ~DirGuard() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("ktune_test_export_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Exports every case in `fmt` into a directory and writes their inputs and the harness.
fs::path prepare(const std::string& name, const std::vector<Case>& cases, codegen::ExportFormat fmt) {
  fs::path dir = fresh_dir(name);
  const target::Target t = target::host_target();
  for (const auto& c : cases) {
    codegen::ExportInfo info;
    info.symbol = c.symbol;
    info.workload = c.dag->kernel;
    info.num_inputs = int(c.inputs.size());
    info.schedule = c.state.steps_text();
    info.threads = 2;
    codegen::ExportedKernel k = codegen::export_kernel(c.f, t, fmt, info, dir.string());
    CHECK(k.files.size() == 2);
    for (size_t i = 0; i < c.inputs.size(); ++i)
      write_bytes(dir / (c.symbol + "_in" + std::to_string(i) + ".bin"), c.inputs[i].data(), size_t(c.inputs[i].bytes()));
  }
  std::ofstream(dir / "harness.c") << harness(cases);
  return dir;
}

int sh(const std::string& cmd) {
  INFO(cmd);
  return std::system(cmd.c_str());
}

bool have(const std::string& compiler) {
  return std::system(("command -v '" + compiler + "' >/dev/null 2>&1").c_str()) == 0;
}

// Runs the built program in `dir` and compares every output with the interpreter's.
void run_and_compare(const fs::path& dir, const std::string& exe, const std::vector<Case>& cases, const std::string& what) {
  for (const auto& c : cases)
    for (size_t i = 0; i < c.expected.size(); ++i) fs::remove(dir / (c.symbol + "_out" + std::to_string(i) + ".bin"));
  REQUIRE(sh("cd '" + dir.string() + "' && ./" + exe) == 0);
  for (const auto& c : cases) {
    for (size_t i = 0; i < c.expected.size(); ++i) {
      INFO(what << ": " << c.symbol << " output " << i << "\n" << c.state.steps_text());
      runtime::HostBuffer got(c.expected[i].dtype(), c.expected[i].shape());
      std::ifstream in(dir / (c.symbol + "_out" + std::to_string(i) + ".bin"), std::ios::binary);
      in.read(static_cast<char*>(got.data()), std::streamsize(got.bytes()));
      REQUIRE(in.gcount() == got.bytes());
      CHECK(runtime::relative_l2_error(got, c.expected[i]) <= std::max(1e-5, runtime::tolerance_for(got.dtype())));
    }
  }
}

std::string c_files(const std::vector<Case>& cases, const std::string& ext) {
  std::string s;
  for (const auto& c : cases) s += " " + c.symbol + ext;
  return s;
}

const std::vector<Case>& cases() {
  static std::vector<Case> out;
  if (!out.empty()) return out;
  // matmul with sizes that the tiles do not divide: i split by 8, j by 4 (vectorized), the
  // outer tiles fused and parallel, k inside, i.1 unrolled by the pragma.
  out.push_back(from_steps("mm_tiled", instantiate("matmul", {{"M", 37}, {"N", 20}, {"K", 19}}), json::parse(R"([
      {"kind": "split", "stage": 0, "iter": 0, "lengths": [8]},
      {"kind": "split", "stage": 0, "iter": 2, "lengths": [4]},
      {"kind": "reorder", "stage": 0, "order": [0, 2, 4, 1, 3]},
      {"kind": "fuse", "stage": 0, "iters": [0, 1]},
      {"kind": "annotate", "stage": 0, "iter": 0, "annotation": "parallel"},
      {"kind": "annotate", "stage": 0, "iter": 3, "annotation": "vectorize"},
      {"kind": "pragma", "stage": 0, "iter": 0, "name": "auto_unroll_max_step", "value": 64}])")));
  // conv2d with stride 2 and padding: the padding select is inlined into the convolution,
  // whose output channels are split and parallel and whose q loop is vectorized.
  out.push_back(from_steps("conv_pad", instantiate("conv2d", {{"N", 1}, {"C", 3}, {"H", 9}, {"W", 10}, {"K", 8},
                                                             {"R", 3}, {"S", 3}, {"stride", 2}, {"pad", 1}, {"dilation", 1}}),
                           json::parse(R"([
      {"kind": "compute_inline", "stage": 0},
      {"kind": "split", "stage": 1, "iter": 1, "lengths": [4]},
      {"kind": "reorder", "stage": 1, "order": [0, 1, 5, 6, 7, 2, 3, 4]},
      {"kind": "annotate", "stage": 1, "iter": 1, "annotation": "parallel"},
      {"kind": "annotate", "stage": 1, "iter": 7, "annotation": "vectorize"},
      {"kind": "annotate", "stage": 1, "iter": 6, "annotation": "unroll"}])")));
  // Integer matmul: floor division, i32 arithmetic.
  out.push_back(from_steps("mm_i32", instantiate("matmul", {{"M", 9}, {"N", 7}, {"K", 5}}, "i32"), json::parse(R"([
      {"kind": "split", "stage": 0, "iter": 1, "lengths": [3]}])")));
  // Random schedules of the sampler: compute_at, cache stages, inlining, annotations.
  const target::Target t = target::host_target();
  struct R {
    const char* kernel;
    std::map<std::string, int64_t> params;
  };
  const std::vector<R> random = {
      {"conv2d", {{"N", 1}, {"C", 4}, {"H", 7}, {"W", 6}, {"K", 6}, {"R", 3}, {"S", 3}, {"stride", 1}, {"pad", 1}, {"dilation", 1}}},
      {"dense_bias_relu", {{"M", 5}, {"N", 12}, {"K", 9}}},
      {"depthwise_conv2d", {{"N", 1}, {"C", 5}, {"H", 11}, {"W", 9}, {"R", 3}, {"S", 3}, {"stride", 2}, {"pad", 1}}},
      {"softmax", {{"M", 6}, {"N", 13}}},
      {"batch_matmul", {{"B", 2}, {"M", 6}, {"N", 5}, {"K", 7}}},
  };
  for (const auto& r : random) {
    auto dag = instantiate(r.kernel, r.params);
    search::RandomSampler sampler(dag, t, 11);
    for (int i = 0; i < 2; ++i)
      out.push_back(make_case(std::string("rnd_") + r.kernel + "_" + std::to_string(i), dag, sampler.sample()));
  }
  return out;
}

}  // namespace

TEST_CASE("exported C compiles with gcc and clang as C99 and matches the interpreter", "[export][c]") {
  const std::vector<Case>& cs = cases();
  fs::path dir = prepare("c", cs, codegen::ExportFormat::C);
  DirGuard guard{dir};
  for (const auto& c : cs) {
    std::ifstream in(dir / (c.symbol + ".c"));
    std::stringstream ss;
    ss << in.rdbuf();
    CHECK(ss.str().find("ktune/") == std::string::npos);  // needs no ktune header
  }
  const std::string srcs = c_files(cs, ".c");
  std::vector<std::pair<std::string, std::string>> builds = {{"gcc", "gcc -std=c99 -O2"},
                                                             {"gcc-openmp", "gcc -std=c99 -O2 -fopenmp"}};
  // Clang: LLVM 19's if installed (on PATH or in Debian's /usr/lib/llvm-19), else any clang.
  std::string clang;
  for (const char* c : {"clang-19", "/usr/lib/llvm-19/bin/clang", "clang"})
    if (clang.empty() && have(c)) clang = c;
  if (!clang.empty())
    builds.push_back({"clang", clang + " -std=c99 -O2"});
  else
    WARN("clang is not installed: the exported C is compiled with gcc only");
  for (const auto& [name, cc] : builds) {
    // The kernels compile without a warning; the harness is linked against them.
    REQUIRE(sh("cd '" + dir.string() + "' && " + cc + " -Wall -Wextra -Werror -c" + srcs) == 0);
    std::string objs;
    for (const auto& c : cs) objs += " " + c.symbol + ".o";
    REQUIRE(sh("cd '" + dir.string() + "' && " + cc + " harness.c" + objs + " -o " + name + " -lm") == 0);
    run_and_compare(dir, name, cs, name);
  }
}

TEST_CASE("exported object files link with a C harness and ktune_parallel_for.c", "[export][obj]") {
  const std::vector<Case>& cs = cases();
  fs::path dir = prepare("obj", cs, codegen::ExportFormat::Obj);
  DirGuard guard{dir};
  std::vector<codegen::ExportInfo> infos;
  std::vector<codegen::ExportedKernel> exported;
  for (const auto& c : cs) {
    codegen::ExportInfo info;
    info.symbol = c.symbol;
    infos.push_back(info);
    codegen::ExportedKernel k;
    k.files = {c.symbol + ".o", c.symbol + ".h"};
    exported.push_back(k);
  }
  auto files = codegen::write_export_support(dir.string(), codegen::ExportFormat::Obj, target::host_target(), infos, exported);
  CHECK(files == std::vector<std::string>{"ktune_parallel_for.c", "README.md"});
  REQUIRE(sh("cd '" + dir.string() + "' && gcc -std=c99 -O2 -Wall -Werror -c ktune_parallel_for.c") == 0);
  REQUIRE(sh("cd '" + dir.string() + "' && gcc -std=c99 -O2 -Wall harness.c" + c_files(cs, ".o") +
             " ktune_parallel_for.o -o obj -pthread -lm") == 0);
  run_and_compare(dir, "obj", cs, "object");
  // The same objects with OpenMP's threads, and serially.
  REQUIRE(sh("cd '" + dir.string() + "' && gcc -std=c99 -O2 -fopenmp harness.c" + c_files(cs, ".o") +
             " ktune_parallel_for.c -o obj_omp -lm") == 0);
  run_and_compare(dir, "obj_omp", cs, "object, OpenMP");
  REQUIRE(sh("cd '" + dir.string() + "' && gcc -std=c99 -O2 -DKTUNE_SERIAL harness.c" + c_files(cs, ".o") +
             " ktune_parallel_for.c -o obj_serial -lm") == 0);
  run_and_compare(dir, "obj_serial", cs, "object, serial");
}

TEST_CASE("the C emitter keeps the schedule's loop structure and guards padding reads", "[export][c]") {
  const Case& mm = cases().front();
  codegen::CSource src = codegen::emit_c(mm.f, target::host_target(), 2);
  CHECK(src.parallel_loops == 1);
  CHECK(src.simd_loops >= 1);
  CHECK(src.code.find("KTUNE_PARALLEL_FOR\n") != std::string::npos);
  CHECK(src.code.find("#pragma GCC unroll") != std::string::npos);
  CHECK(codegen::c_prototype(mm.f, 2) == "void mm_tiled(const float* A, const float* B, float* C)");
  if (std::getenv("KTUNE_TEST_DUMP")) {
    for (const auto& c : cases()) std::cout << codegen::emit_c(c.f, target::host_target(), int(c.inputs.size())).code;
  }
}

TEST_CASE("exported C of random kernels x random schedules matches the interpreter", "[export][c][differential]") {
  // Random kernels (casts, integer division and modulo of negative values, select, exp, tanh,
  // sigmoid, reductions, windows) with random step schedules: all emitted into one program,
  // compiled once with gcc -std=c99 -Werror, and compared with the interpreter running the
  // same lowered loop nest.
  std::vector<Case> cs;
  const target::Target t = target::host_target();
  for (uint64_t seed = 500; seed < 525; ++seed) {
    auto dag = ktune::testing::random_kernel(seed);
    for (uint64_t j = 0; j < 2; ++j) {
      schedule::State st = ktune::testing::random_step_schedule(dag, seed * 8 + j);
      try {
        cs.push_back(make_case("rnd_c_" + std::to_string(seed) + "_" + std::to_string(j), dag, st));
      } catch (const InvalidCandidate&) {
        // does not lower: nothing to emit
      }
    }
  }
  REQUIRE(cs.size() >= 35);
  fs::path dir = prepare("diff", cs, codegen::ExportFormat::C);
  DirGuard guard{dir};
  REQUIRE(sh("cd '" + dir.string() + "' && gcc -std=c99 -O1 -Wall -Wextra -Werror -fopenmp harness.c" + c_files(cs, ".c") +
             " -o diff -lm") == 0);
  run_and_compare(dir, "diff", cs, "random kernel");
}
