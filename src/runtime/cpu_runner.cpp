// The CPU runner: LLVM ORC LLJIT at -O3, the thread pool, and timing (DESIGN §8).
//
// One LLJIT per CpuRunner, built for the runner's target (triple + feature list, generic CPU
// name). Each compile() lowers the kernel (prepare_for_codegen), emits and optimizes an LLVM
// module in a fresh LLVMContext, adds it to the JIT under its own ResourceTracker and looks up
// the entry point, which materializes (compiles and links) it. The kernel's symbols are given
// a name unique within the runner, so the same LoweredFunc can be compiled more than once.
// Destroying the CompiledKernel removes its tracker, which frees its code and data; the JIT
// itself is shared by the runner and its kernels and goes when the last of them does.
//
// Compiled code resolves ktune_parallel_for and the workspace (ktune_workspace_alloc/free)
// through absolute symbols defined in the JIT (the test binaries do not export their symbols
// dynamically) and everything else (libm, memset) through the process's symbol table.
#include "ktune/runtime/cpu_runner.h"

#include <llvm/ExecutionEngine/Orc/Core.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/Error.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/TargetParser/Host.h>
#include <llvm/TargetParser/Triple.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>

#include "ktune/codegen/codegen.h"
#include "ktune/codegen/llvm_codegen.h"
#include "ktune/runtime/thread_pool.h"
#include "ktune/runtime/workspace.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"

namespace ktune::runtime {

namespace orc = llvm::orc;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Symbol names: letters, digits and '_' only.
std::string symbol_base(const std::string& name) {
  std::string s;
  for (char c : name) s += (std::isalnum(static_cast<unsigned char>(c)) || c == '_') ? c : '_';
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) s = "k_" + s;
  return s;
}

// The runner can only run code for this machine: same architecture, and no feature the CPU
// lacks (which would be an illegal instruction).
void check_runnable(const target::Target& t) {
  KT_USER_CHECK(t.kind == target::TargetKind::CPU, "target ", t.name, " is a ",
                target::kind_name(t.kind), " target; the CPU runner needs a CPU target");
  llvm::Triple want(t.triple), host(llvm::sys::getProcessTriple());
  KT_USER_CHECK(want.getArch() == host.getArch(), "target ", t.name, " (", t.triple,
                ") cannot run on this machine (", host.str(), ")");
  if (t.name == "host") return;
  target::Target h = target::host_target();
  for (const auto& f : t.features) {
    KT_USER_CHECK(h.has_feature(f), "target ", t.name, " needs CPU feature '", f,
                  "', which this machine lacks");
  }
}

}  // namespace

const char* error_class_name(ErrorClass e) {
  switch (e) {
    case ErrorClass::None:
      return "none";
    case ErrorClass::InvalidSchedule:
      return "invalid-schedule";
    case ErrorClass::CompileError:
      return "compile-error";
    case ErrorClass::CompileTimeout:
      return "compile-timeout";
    case ErrorClass::RuntimeError:
      return "runtime-error";
    case ErrorClass::RunTimeout:
      return "run-timeout";
    case ErrorClass::WrongAnswer:
      return "wrong-answer";
  }
  return "?";
}

ErrorClass parse_error_class(const std::string& s) {
  for (auto e : {ErrorClass::None, ErrorClass::InvalidSchedule, ErrorClass::CompileError,
                 ErrorClass::CompileTimeout, ErrorClass::RuntimeError, ErrorClass::RunTimeout,
                 ErrorClass::WrongAnswer}) {
    if (s == error_class_name(e)) return e;
  }
  throw UserError("unknown error class '" + s +
                  "' (expected none, invalid-schedule, compile-error, compile-timeout, "
                  "runtime-error, run-timeout or wrong-answer)");
}

struct CpuRunner::Impl {
  target::Target target;
  int threads = 1;
  std::shared_ptr<orc::LLJIT> jit;
  std::atomic<uint64_t> next_id{0};
};

struct CompiledKernel::Impl {
  std::shared_ptr<orc::LLJIT> jit;  // keeps the JIT alive while the code is
  orc::ResourceTrackerSP tracker;
  void (*entry)(void**) = nullptr;
  size_t num_args = 0;
  int threads = 1;
};

CpuRunner::CpuRunner(target::Target t, int threads) : impl_(std::make_unique<Impl>()) {
  check_runnable(t);
  impl_->target = std::move(t);
  impl_->threads = std::max(1, threads);
  codegen::initialize_llvm();

  const target::Target& tg = impl_->target;
  orc::JITTargetMachineBuilder jtmb{llvm::Triple(tg.triple)};
  jtmb.setCPU(codegen::cpu_name_for_codegen(tg));
  for (const auto& f : tg.features) jtmb.getFeatures().AddFeature(f, true);
  jtmb.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  // Concurrent compilation: compile() may be called from several threads at once (each
  // materialization gets its own TargetMachine).
  auto jit = orc::LLJITBuilder()
                 .setJITTargetMachineBuilder(std::move(jtmb))
                 .setSupportConcurrentCompilation(true)
                 .create();
  if (!jit) {
    throw UserError("cannot create the JIT for target " + tg.name + ": " +
                    llvm::toString(jit.takeError()));
  }
  impl_->jit = std::shared_ptr<orc::LLJIT>(std::move(*jit));
  orc::LLJIT& j = *impl_->jit;
  j.getExecutionSession().setErrorReporter(
      [](llvm::Error err) { debug(1) << "JIT error: " << llvm::toString(std::move(err)) << "\n"; });

  orc::JITDylib& jd = j.getMainJITDylib();
  auto gen =
      orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(j.getDataLayout().getGlobalPrefix());
  if (!gen) throw InternalError("JIT process symbols: " + llvm::toString(gen.takeError()));
  jd.addGenerator(std::move(*gen));
  orc::SymbolMap runtime_symbols;
  const std::pair<const char*, void*> runtime_functions[] = {
      {"ktune_parallel_for", reinterpret_cast<void*>(&ktune_parallel_for)},
      {"ktune_workspace_alloc", reinterpret_cast<void*>(&ktune_workspace_alloc)},
      {"ktune_workspace_free", reinterpret_cast<void*>(&ktune_workspace_free)},
  };
  for (const auto& [name, address] : runtime_functions)
    runtime_symbols[j.mangleAndIntern(name)] = {orc::ExecutorAddr::fromPtr(address),
                                                llvm::JITSymbolFlags::Exported | llvm::JITSymbolFlags::Callable};
  if (auto err = jd.define(orc::absoluteSymbols(std::move(runtime_symbols)))) {
    throw InternalError("JIT runtime symbols: " + llvm::toString(std::move(err)));
  }
}

CpuRunner::~CpuRunner() = default;

const target::Target& CpuRunner::target() const { return impl_->target; }
int CpuRunner::threads() const { return impl_->threads; }

std::unique_ptr<CompiledKernel> CpuRunner::compile(const ir::LoweredFunc& f) {
  auto t0 = Clock::now();
  ir::LoweredFunc g = codegen::prepare_for_codegen(f, impl_->target);
  g.name = symbol_base(f.name) + "_k" + std::to_string(impl_->next_id++);

  auto ctx = std::make_unique<llvm::LLVMContext>();
  auto tm = codegen::make_target_machine(impl_->target);
  std::unique_ptr<llvm::Module> m = codegen::emit_llvm(g, *ctx, *tm, impl_->target);

  orc::LLJIT& j = *impl_->jit;
  orc::ResourceTrackerSP rt = j.getMainJITDylib().createResourceTracker();
  if (auto err = j.addIRModule(rt, orc::ThreadSafeModule(std::move(m), std::move(ctx)))) {
    llvm::consumeError(rt->remove());
    throw InvalidCandidate("JIT compile error: " + llvm::toString(std::move(err)));
  }
  auto sym = j.lookup(g.name);
  if (!sym) {
    std::string msg = llvm::toString(sym.takeError());
    llvm::consumeError(rt->remove());
    throw InvalidCandidate("JIT compile error: " + msg);
  }

  std::unique_ptr<CompiledKernel> k(new CompiledKernel());
  k->impl_ = std::make_unique<CompiledKernel::Impl>();
  k->impl_->jit = impl_->jit;
  k->impl_->tracker = std::move(rt);
  k->impl_->entry = sym->toPtr<void (*)(void**)>();
  k->impl_->num_args = f.args.size();
  k->impl_->threads = impl_->threads;
  k->compile_ms_ = ms_since(t0);
  return k;
}

CompiledKernel::~CompiledKernel() {
  if (impl_ && impl_->tracker) {
    if (auto err = impl_->tracker->remove()) {
      debug(1) << "JIT: freeing a kernel failed: " << llvm::toString(std::move(err)) << "\n";
    }
  }
}

void CompiledKernel::run(const std::vector<void*>& args) {
  KT_CHECK(args.size() == impl_->num_args, "kernel takes ", impl_->num_args, " buffers, got ",
           args.size());
  if (num_threads() != impl_->threads) set_num_threads(impl_->threads);
  impl_->entry(const_cast<void**>(args.data()));
}

Timing CompiledKernel::time(const std::vector<void*>& args, const TimingOptions& opt) {
  for (int i = 0; i < opt.warmup; ++i) run(args);
  Timing out;
  auto start = Clock::now();
  int number = opt.number;
  if (number <= 0) {
    // Calibrate from one timed run: enough runs that a group lasts min_repeat_ms.
    auto t0 = Clock::now();
    run(args);
    double once = std::max(ms_since(t0), 1e-6);
    number = int(std::clamp(std::ceil(opt.min_repeat_ms / once), 1.0, 1e9));
  }
  out.number = number;
  int repeat = std::max(1, opt.repeat);
  for (int g = 0; g < repeat; ++g) {
    auto t0 = Clock::now();
    for (int i = 0; i < number; ++i) run(args);
    out.group_means_ms.push_back(ms_since(t0) / number);
    if (ms_since(start) > opt.max_total_ms) break;
  }
  out.median_ms = median_of(out.group_means_ms);
  return out;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace ktune::runtime
