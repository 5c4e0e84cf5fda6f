// Export of tuned kernels: code, header and README for use outside ktune.
#include "ktune/codegen/export.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ktune/codegen/c_codegen.h"
#include "ktune/codegen/codegen.h"
#include "ktune/ir/visitor.h"
#include "ktune/support/error.h"

#ifndef KTUNE_VERSION
#define KTUNE_VERSION "0.0.0"
#endif

namespace ktune::codegen {

namespace {

void write_file(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::path(dir) / name).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  KT_USER_CHECK(out.good(), "cannot write '", path, "': ", std::strerror(errno));
  out.write(text.data(), std::streamsize(text.size()));
  out.close();
  KT_USER_CHECK(out.good(), "cannot write '", path, "': ", std::strerror(errno));
}

// Outermost Parallel loops (the ones that reach the thread pool).
int count_parallel_loops(const ir::Stmt& s) {
  struct Counter : ir::IRVisitor {
    int count = 0, depth = 0;
    void visit_For(const ir::For* op) override {
      const bool par = op->for_kind == ir::ForKind::Parallel;
      if (par && depth == 0) ++count;
      depth += par;
      ir::IRVisitor::visit_For(op);
      depth -= par;
    }
  } c;
  c.visit(s);
  return c.count;
}

std::string upper(const std::string& s) {
  std::string u;
  for (char c : s) u += char(std::toupper(static_cast<unsigned char>(c)));
  return u;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s;
  for (int64_t d : shape) {
    s += '[';
    s += std::to_string(d);
    s += ']';
  }
  return s.empty() ? "[1]" : s;
}

// Comment lines, each prefixed with " * ".
std::string comment_lines(const std::string& text, const std::string& indent = "") {
  std::string out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out += " * " + indent + line + "\n";
  return out;
}

std::string header_text(const ir::LoweredFunc& f, const target::Target& t, ExportFormat fmt, const ExportInfo& info,
                        const ExportedKernel& k, const std::string& code_file) {
  std::ostringstream h;
  const std::string guard = "KTUNE_" + upper(info.symbol) + "_H";
  h << "/* " << info.symbol << ".h: " << info.workload << ", exported by ktune " << KTUNE_VERSION << " ("
    << export_format_name(fmt) << ": " << code_file << ").\n *\n";
  if (!info.provenance.empty()) h << " * Measured: " << info.provenance << "\n";
  if (info.flops > 0) h << " * Work: " << info.flops << " floating-point operations per call.\n";
  if (fmt == ExportFormat::C) {
    h << " * Generated as portable C99; built for " << t.name << " (" << t.triple << ") when tuned.\n";
  } else {
    h << " * Target: " << t.name << " (" << t.triple << "); the code uses these CPU features and runs only\n"
      << " * on CPUs that have them: " << t.feature_string() << "\n";
  }
  h << " *\n * Arguments, in order. Every array is dense and row-major (the last index varies fastest),\n"
    << " * with no padding; arrays must not overlap. The kernel reads its inputs and writes every\n"
    << " * element of its outputs.\n";
  const std::vector<std::string> names = c_param_names(f);
  size_t width = 4;
  for (const auto& n : names) width = std::max(width, n.size());
  for (size_t i = 0; i < f.args.size(); ++i) {
    const auto& b = f.args[i];
    const bool in = int(i) < info.num_inputs;
    std::string role = in ? (i < info.weights.size() && info.weights[i] ? "input (weights)" : "input") : "output";
    h << " *   " << names[i] << std::string(width - names[i].size() + 2, ' ') << role
      << std::string(17 - std::min<size_t>(16, role.size()), ' ') << c_type_name(b->dtype.element_of())
      << shape_text(b->shape) << "  (" << b->num_elements() << " elements)\n";
  }
  h << " *\n * Launch configuration (CPU): ";
  if (k.parallel_loops == 0) {
    h << "single-threaded; no parallel loops.\n";
  } else if (fmt == ExportFormat::C) {
    h << k.parallel_loops << " parallel loop(s). Compiled with -fopenmp they run on OpenMP's\n"
      << " * threads (OMP_NUM_THREADS; tuned with " << info.threads << "); without it, serially with the same results.\n";
  } else {
    h << k.parallel_loops << " parallel loop(s), run through ktune_parallel_for()\n"
      << " * (ktune_parallel_for.c: OpenMP with -fopenmp, else POSIX threads; ktune_set_num_threads(n)\n"
      << " * sets the thread count, default all online processors; tuned with " << info.threads << ").\n";
  }
  if (!info.schedule.empty()) h << " *\n * Schedule (ktune steps):\n" << comment_lines(info.schedule, "  ");
  h << " */\n#ifndef " << guard << "\n#define " << guard << "\n\n#include <stdint.h>\n\n"
    << "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n";
  for (size_t i = 0; i < f.args.size(); ++i)
    h << "#define " << upper(info.symbol) << "_" << upper(names[i]) << "_ELEMENTS " << f.args[i]->num_elements()
      << "\n";
  h << "\n";
  const std::string proto = c_prototype([&] {
    ir::LoweredFunc g = f;
    g.name = info.symbol;
    return g;
  }(), info.num_inputs);
  if (fmt == ExportFormat::C) {
    h << proto << ";\n";
  } else {
    h << "/* The compiled symbol: args[i] points to argument i. */\nvoid " << info.symbol << "_args(void** args);\n\n"
      << "static inline " << proto << " {\n  void* args[" << f.args.size() << "] = {";
    for (size_t i = 0; i < f.args.size(); ++i) h << (i ? ", " : "") << "(void*)" << names[i];
    h << "};\n  " << info.symbol << "_args(args);\n}\n";
    if (k.parallel_loops > 0)
      h << "\n/* From ktune_parallel_for.c: threads for parallel loops (0 = all online processors). */\n"
        << "void ktune_set_num_threads(int n);\n";
  }
  h << "\n#ifdef __cplusplus\n}\n#endif\n\n#endif /* " << guard << " */\n";
  return h.str();
}

}  // namespace

const char* export_format_name(ExportFormat f) {
  switch (f) {
    case ExportFormat::C:
      return "c";
    case ExportFormat::LLVM:
      return "llvm";
    case ExportFormat::Asm:
      return "asm";
    case ExportFormat::Obj:
      return "obj";
  }
  return "?";
}

bool parse_export_format(const std::string& s, ExportFormat* out) {
  for (ExportFormat f : {ExportFormat::C, ExportFormat::LLVM, ExportFormat::Asm, ExportFormat::Obj}) {
    if (s == export_format_name(f)) {
      *out = f;
      return true;
    }
  }
  return false;
}

ExportedKernel export_kernel(const ir::LoweredFunc& f, const target::Target& t, ExportFormat fmt,
                             const ExportInfo& info, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  KT_USER_CHECK(!ec && std::filesystem::is_directory(dir), "cannot create the output directory '", dir,
                "': ", ec ? ec.message() : "not a directory");
  // Argument names become C parameter names in the header: they must be identifiers.
  ir::LoweredFunc g = f;
  ExportedKernel k;
  std::string code, code_file;
  if (fmt == ExportFormat::C) {
    g.name = info.symbol;
    CSource src = emit_c(g, t, info.num_inputs);
    k.parallel_loops = src.parallel_loops;
    k.simd_loops = src.simd_loops;
    code_file = info.symbol + ".c";
    code = "/* " + info.workload + ", exported by ktune " + KTUNE_VERSION + "; see " + info.symbol +
           ".h for the arguments. */\n#include \"" + info.symbol + ".h\"\n" + src.code;
  } else {
    g.name = info.symbol + "_args";
    k.parallel_loops = count_parallel_loops(g.body);
    switch (fmt) {
      case ExportFormat::LLVM:
        code_file = info.symbol + ".ll";
        code = emit_llvm_ir(g, t);
        break;
      case ExportFormat::Asm:
        code_file = info.symbol + ".s";
        code = emit_assembly(g, t);
        break;
      default:
        code_file = info.symbol + ".o";
        code = emit_object(g, t);
        break;
    }
  }
  g.name = info.symbol;
  k.prototype = c_prototype(g, info.num_inputs);
  k.arg_names = c_param_names(g);
  for (const auto& b : g.args) k.arg_types.push_back(c_type_name(b->dtype.element_of()));
  write_file(dir, code_file, code);
  write_file(dir, info.symbol + ".h", header_text(f, t, fmt, info, k, code_file));
  k.files = {code_file, info.symbol + ".h"};
  return k;
}

std::string parallel_for_c_source() {
  return R"(/* ktune_parallel_for.c: the entry point through which kernels exported by ktune as LLVM IR,
 * assembly or object files run their parallel loops. Link it with the kernels:
 *     cc -O2 -c ktune_parallel_for.c            (POSIX threads; link with -pthread)
 *     cc -O2 -fopenmp -c ktune_parallel_for.c   (OpenMP threads)
 *     cc -O2 -DKTUNE_SERIAL -c ktune_parallel_for.c   (no threads)
 * A parallel loop of n iterations calls ktune_parallel_for(fn, closure, n); fn(closure, b, e)
 * runs iterations [b, e). The iterations are split into k contiguous chunks, chunk c being
 * [c*n/k, (c+1)*n/k), with k = min(threads, n). Replace this file to use your own thread pool.
 * Kernels with temporary buffers too large for the stack also call ktune_workspace_alloc and
 * ktune_workspace_free, defined at the end.
 * Generated by ktune; no ktune headers or libraries are needed.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#elif !defined(KTUNE_SERIAL)
#include <pthread.h>
#include <unistd.h>
#endif

typedef void (*ktune_task_fn)(void* closure, int64_t begin, int64_t end);

static int ktune_threads = 0; /* 0: all online processors */

void ktune_set_num_threads(int n) { ktune_threads = n > 0 ? n : 0; }

static int64_t ktune_thread_count(void) {
#if defined(_OPENMP)
  return ktune_threads > 0 ? ktune_threads : omp_get_max_threads();
#elif defined(KTUNE_SERIAL)
  return 1;
#else
  long n = ktune_threads > 0 ? ktune_threads : sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? n : 1;
#endif
}

#if !defined(_OPENMP) && !defined(KTUNE_SERIAL)
#define KTUNE_MAX_THREADS 256
struct ktune_chunk {
  ktune_task_fn fn;
  void* closure;
  int64_t begin, end;
};
static void* ktune_run_chunk(void* p) {
  struct ktune_chunk* c = (struct ktune_chunk*)p;
  c->fn(c->closure, c->begin, c->end);
  return 0;
}
#endif

void ktune_parallel_for(ktune_task_fn fn, void* closure, int64_t n) {
  int64_t k = ktune_thread_count();
  if (n <= 0) return;
  if (k > n) k = n;
  if (k <= 1) {
    fn(closure, 0, n);
    return;
  }
#if defined(_OPENMP)
  {
    int64_t c;
#pragma omp parallel for num_threads((int)k) schedule(static, 1)
    for (c = 0; c < k; ++c) fn(closure, c * n / k, (c + 1) * n / k);
  }
#elif defined(KTUNE_SERIAL)
  fn(closure, 0, n);
#else
  {
    struct ktune_chunk chunks[KTUNE_MAX_THREADS];
    pthread_t threads[KTUNE_MAX_THREADS];
    int started[KTUNE_MAX_THREADS];
    int64_t c;
    if (k > KTUNE_MAX_THREADS) k = KTUNE_MAX_THREADS;
    for (c = 1; c < k; ++c) {
      chunks[c].fn = fn;
      chunks[c].closure = closure;
      chunks[c].begin = c * n / k;
      chunks[c].end = (c + 1) * n / k;
      started[c] = pthread_create(&threads[c], 0, ktune_run_chunk, &chunks[c]) == 0;
      if (!started[c]) fn(closure, chunks[c].begin, chunks[c].end);
    }
    fn(closure, 0, n / k);
    for (c = 1; c < k; ++c)
      if (started[c]) pthread_join(threads[c], 0);
  }
#endif
}

/* Workspace for the temporary buffers of kernels (bytes: a multiple of 64; 64-byte aligned).
   The last few blocks each thread released are kept and handed to the next request of the
   same size, so a kernel called in a loop reuses warm memory instead of faulting in a fresh
   mapping on every call. */
#define KTUNE_WS_KEPT 4
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define KTUNE_THREAD_LOCAL _Thread_local
#else
#define KTUNE_THREAD_LOCAL __thread
#endif
static KTUNE_THREAD_LOCAL void* ktune_ws_block[KTUNE_WS_KEPT];
static KTUNE_THREAD_LOCAL int64_t ktune_ws_bytes[KTUNE_WS_KEPT];
static KTUNE_THREAD_LOCAL int ktune_ws_next;

void* ktune_workspace_alloc(int64_t bytes) {
  int i;
  for (i = 0; i < KTUNE_WS_KEPT; ++i)
    if (ktune_ws_block[i] && ktune_ws_bytes[i] == bytes) {
      void* p = ktune_ws_block[i];
      ktune_ws_block[i] = 0;
      return p;
    }
  {
    void* p = 0;
    if (posix_memalign(&p, 64, (size_t)(bytes > 0 ? (bytes + 63) / 64 * 64 : 64)) != 0) return 0;
    return p;
  }
}

void ktune_workspace_free(void* p, int64_t bytes) {
  int i;
  if (!p) return;
  for (i = 0; i < KTUNE_WS_KEPT; ++i)
    if (!ktune_ws_block[i]) break;
  if (i == KTUNE_WS_KEPT) {
    i = ktune_ws_next;
    ktune_ws_next = (ktune_ws_next + 1) % KTUNE_WS_KEPT;
    free(ktune_ws_block[i]);
  }
  ktune_ws_block[i] = p;
  ktune_ws_bytes[i] = bytes;
}
)";
}

std::vector<std::string> write_export_support(const std::string& dir, ExportFormat fmt, const target::Target& t,
                                              const std::vector<ExportInfo>& kernels,
                                              const std::vector<ExportedKernel>& exported) {
  std::vector<std::string> files;
  const bool llvm_format = fmt != ExportFormat::C;
  bool any_parallel = false;
  for (const auto& k : exported) any_parallel = any_parallel || k.parallel_loops > 0;
  if (llvm_format) {
    write_file(dir, "ktune_parallel_for.c", parallel_for_c_source());
    files.push_back("ktune_parallel_for.c");
  }
  std::ostringstream r;
  r << "# Kernels exported by ktune\n\n"
    << "Exported by ktune " << KTUNE_VERSION << " with `--emit=" << export_format_name(fmt) << "`"
    << (llvm_format ? " for target " + t.name + " (`" + t.triple + "`)" : std::string()) << ". "
    << "Each kernel has a header that states its function signature, the shape and layout of every "
       "argument, and its launch configuration. All arrays are dense and row-major (the last index "
       "varies fastest); inputs come first, then outputs; arrays must not overlap.\n\n"
    << "| kernel | workload | files | parallel loops |\n| --- | --- | --- | --- |\n";
  for (size_t i = 0; i < kernels.size(); ++i) {
    r << "| `" << kernels[i].symbol << "` | " << kernels[i].workload << " | ";
    for (size_t j = 0; j < exported[i].files.size(); ++j) r << (j ? ", " : "") << "`" << exported[i].files[j] << "`";
    r << " | " << exported[i].parallel_loops << " |\n";
  }
  const ExportInfo* first = kernels.empty() ? nullptr : &kernels.front();
  const std::string sym = first ? first->symbol : "KERNEL";
  r << "\n## Building\n\n";
  switch (fmt) {
    case ExportFormat::C:
      r << "Each `.c` file is standalone C99 (it includes only its header and the C library):\n\n"
        << "    cc -std=c99 -O3 -march=native -fopenmp -c " << sym << ".c\n\n"
        << "`-fopenmp` runs the parallel loops on OpenMP threads (`OMP_NUM_THREADS`) and enables the "
           "`omp simd` hints; without it the kernels run on one thread with the same results. "
           "Link with `-lm`.\n";
      break;
    case ExportFormat::LLVM:
      r << "Each `.ll` file is optimized LLVM IR for the target; compile it with clang or llc:\n\n"
        << "    clang -O3 -c " << sym << ".ll -o " << sym << ".o\n\n";
      break;
    case ExportFormat::Asm:
      r << "Each `.s` file is assembly (GNU syntax) for the target:\n\n"
        << "    cc -c " << sym << ".s -o " << sym << ".o\n\n";
      break;
    case ExportFormat::Obj:
      r << "Each `.o` file is a position-independent relocatable object for the target, ready to link.\n\n";
      break;
  }
  if (llvm_format) {
    r << "The compiled code uses the CPU features it was generated for (`" << t.feature_string()
      << "`) and runs only on CPUs that have them. It calls `ktune_parallel_for` for its parallel loops"
      << (any_parallel ? "" : " (none of these kernels has one)")
      << "; `ktune_parallel_for.c` implements it (OpenMP with `-fopenmp`, else POSIX threads, or serially "
         "with `-DKTUNE_SERIAL`), so the kernels link standalone:\n\n"
      << "    cc -O2 main.c " << sym << ".o ktune_parallel_for.c -pthread -lm\n\n"
      << "`ktune_set_num_threads(n)` sets the number of threads (default: all online processors). "
         "Temporary buffers too large for the stack come from `ktune_workspace_alloc` and go back "
         "through `ktune_workspace_free`, also in `ktune_parallel_for.c`: it keeps each thread's last "
         "few released blocks for the next call of the same kernel (replace it to use your own "
         "allocator).\n";
  }
  r << "\n## Calling a kernel\n\n";
  if (first) {
    const ExportedKernel& k = exported.front();
    const std::string up = [&] {
      std::string u;
      for (char c : sym) u += char(std::toupper(static_cast<unsigned char>(c)));
      return u;
    }();
    r << "The header declares\n\n    " << k.prototype << ";\n\n"
      << "and `" << up << "_NAME_ELEMENTS`, the number of elements of each argument. For example:\n\n"
      << "```c\n#include <stdlib.h>\n#include \"" << sym << ".h\"\n\nint main(void) {\n";
    for (size_t i = 0; i < k.arg_names.size(); ++i) {
      std::string n = k.arg_names[i], un;
      for (char c : n) un += char(std::toupper(static_cast<unsigned char>(c)));
      r << "  " << k.arg_types[i] << "* " << n << " = malloc(sizeof(" << k.arg_types[i] << ") * " << up << "_" << un
        << "_ELEMENTS);\n";
    }
    r << "  /* ... fill the inputs ... */\n  " << sym << "(";
    for (size_t i = 0; i < k.arg_names.size(); ++i) r << (i ? ", " : "") << k.arg_names[i];
    r << ");\n  /* ... use the outputs ... */\n";
    for (const auto& n : k.arg_names) r << "  free(" << n << ");\n";
    r << "  return 0;\n}\n```\n\n";
  }
  if (llvm_format)
    r << "For the LLVM formats the header's `static inline` function packs the pointers into the array that "
         "the compiled symbol `SYMBOL_args(void** args)` takes.\n";
  r << "\nSee ktune's docs/export.md for the format of these files.\n";
  write_file(dir, "README.md", r.str());
  files.push_back("README.md");
  return files;
}

}  // namespace ktune::codegen
