// Isolated measurement, the worker's side (`ktune-worker`): rebuilds the workload from the
// init message, gets the reference outputs (from the tuner's memory file, or computes them and
// stores them there), then measures groups of candidates: compiles a group on several threads,
// then runs its candidates one at a time as the tuner asks, reporting phases as they begin.
// Test-only faults (isolated.h) are carried out here, by the process itself.
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <optional>

#include "ktune/schedule/dag_json.h"
#include "ktune/schedule/steps.h"
#include "ktune/search/isolated.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"
#include "worker_protocol.h"

namespace ktune::search {

using nlohmann::json;
using runtime::ErrorClass;
using worker::Channel;

namespace {

// ---- the reference memory file: "KTREF001", a JSON header's length (8 bytes) and text, then
// each output's bytes.
constexpr char kMagic[8] = {'K', 'T', 'R', 'E', 'F', '0', '0', '1'};

void pwrite_all(int fd, const void* data, size_t n, off_t off) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, off);
    if (w < 0 && errno == EINTR) continue;
    KT_CHECK(w > 0, "writing the reference file: ", std::strerror(errno));
    p += w, n -= size_t(w), off += w;
  }
}

void pread_all(int fd, void* data, size_t n, off_t off) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, off);
    if (r < 0 && errno == EINTR) continue;
    KT_CHECK(r > 0, "reading the reference file: ", r < 0 ? std::strerror(errno) : "it is too short");
    p += r, n -= size_t(r), off += r;
  }
}

void store_reference(int fd, const Reference& ref, const std::string& dag_hash) {
  json header = {{"dag_hash", dag_hash}, {"kind", ref.kind}, {"bytes", json::array()}};
  for (const auto& b : ref.outputs) header["bytes"].push_back(b.bytes());
  const std::string text = header.dump();
  const uint64_t n = text.size();
  KT_CHECK(::ftruncate(fd, 0) == 0, "truncating the reference file: ", std::strerror(errno));
  off_t off = 0;
  pwrite_all(fd, kMagic, 8, off), off += 8;
  pwrite_all(fd, &n, 8, off), off += 8;
  pwrite_all(fd, text.data(), text.size(), off), off += off_t(text.size());
  for (const auto& b : ref.outputs) pwrite_all(fd, b.data(), size_t(b.bytes()), off), off += b.bytes();
}

Reference load_reference(int fd, const te::ComputeDAG& dag) {
  char magic[8];
  uint64_t n = 0;
  pread_all(fd, magic, 8, 0);
  KT_CHECK(std::memcmp(magic, kMagic, 8) == 0, "the reference file has a bad header");
  pread_all(fd, &n, 8, 8);
  KT_CHECK(n < (1u << 20), "the reference file has a bad header");
  std::string text(n, '\0');
  pread_all(fd, text.data(), n, 16);
  const json header = json::parse(text);
  KT_CHECK(header.at("dag_hash") == dag.hash(), "the reference file is of another workload");
  Reference ref;
  ref.kind = header.at("kind").get<std::string>();
  off_t off = off_t(16 + n);
  for (int i : dag.outputs()) {
    const auto& op = dag.ops[size_t(i)];
    ref.outputs.emplace_back(op.dtype, op.shape);
    auto& b = ref.outputs.back();
    KT_CHECK(header.at("bytes").at(ref.outputs.size() - 1).get<int64_t>() == b.bytes(),
             "the reference file's outputs do not match the workload");
    pread_all(fd, b.data(), size_t(b.bytes()), off);
    off += b.bytes();
  }
  return ref;
}

// ---- faults

[[noreturn]] void spin_forever() {
  std::atomic<uint64_t> n{0};
  for (;;) n.fetch_add(1, std::memory_order_relaxed);
}

// An unmapped (PROT_NONE) region of at least `bytes`: any access faults.
void* guard_region(size_t bytes) {
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  bytes = (bytes + page - 1) / page * page;
  void* p = ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  KT_CHECK(p != MAP_FAILED, "mmap: ", std::strerror(errno));
  return p;
}

// Sends messages to the tuner from several threads (the compiling ones and the main one). A
// lost tuner ends the worker.
class Sender {
 public:
  explicit Sender(Channel& ch) : ch_(ch) {}
  void send(const json& j) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ch_.send(j)) std::_Exit(0);
  }

 private:
  Channel& ch_;
  std::mutex mu_;
};

// Reports phases to the tuner and carries out the candidate's fault.
class WorkerObserver : public MeasureObserver {
 public:
  WorkerObserver(Sender& out, Fault fault, int64_t last_output_bytes)
      : out_(out), fault_(fault), last_output_bytes_(last_output_bytes) {}
  MeasurePhase phase = MeasurePhase::Compile;

  void on_phase(MeasurePhase p, double run_ms) override {
    phase = p;
    if (p == MeasurePhase::Compile && fault_ == Fault::CompileHang) spin_forever();
    if (p == MeasurePhase::Compile && fault_ == Fault::CompileCrash) *static_cast<volatile char*>(guard_region(1)) = 1;
    // The tuner counts a candidate as compiling from "compiling" and as running from "run".
    if (p == MeasurePhase::Time) out_.send({{"type", "phase"}, {"phase", phase_name(p)}, {"run_ms", run_ms}});
  }

  void before_run(std::vector<void*>& args) override {
    switch (fault_) {
      case Fault::Segv:
        *static_cast<volatile char*>(guard_region(1)) = 1;
        break;
      case Fault::Abort:
        std::abort();
      case Fault::Illegal:
        __builtin_trap();
      case Fault::OutOfBounds:
        args.back() = guard_region(size_t(last_output_bytes_));
        break;
      case Fault::Hang:
        spin_forever();
      default:
        break;
    }
  }

  void after_run(std::vector<runtime::HostBuffer>& outputs) override {
    if (fault_ != Fault::WrongAnswer) return;
    for (auto& b : outputs) {
      auto* p = static_cast<unsigned char*>(b.data());
      for (int64_t i = 0; i < b.bytes(); ++i) p[i] ^= 0x55;
    }
  }

 private:
  Sender& out_;
  Fault fault_;
  int64_t last_output_bytes_;
};

// A candidate of the group being measured.
struct GroupMember {
  std::unique_ptr<WorkerObserver> observer;
  CompiledCandidate compiled;
  double replay_ms = 0;
};

// The result for an exception that escaped a candidate's measurement: a ktune bug met by this
// candidate, recorded so that the tuner keeps going.
MeasureResult internal_error(MeasurePhase phase, const std::exception& e) {
  MeasureResult r;
  r.error = phase == MeasurePhase::Compile ? ErrorClass::CompileError : ErrorClass::RuntimeError;
  r.message = std::string("internal error (a ktune bug): ") + e.what();
  return r;
}

// Replays and compiles one candidate of a group (on a compiling thread), reporting its start
// and end to the tuner.
void compile_member(Measurer& measurer, const std::shared_ptr<const te::ComputeDAG>& dag, const json& candidate,
                    size_t index, GroupMember& m, Sender& out) {
  out.send({{"type", "compiling"}, {"index", index}, {"tid", int64_t(::gettid())}});
  const auto t0 = std::chrono::steady_clock::now();
  try {
    std::optional<schedule::State> st;
    try {
      st = schedule::replay(dag, schedule::steps_from_json(candidate.at("steps")));
      m.replay_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    } catch (const InvalidCandidate& e) {
      m.compiled.result.error = ErrorClass::InvalidSchedule;
      m.compiled.result.message = e.what();
    } catch (const UserError& e) {
      m.compiled.result.error = ErrorClass::InvalidSchedule;
      m.compiled.result.message = e.what();
    }
    if (st) m.compiled = measurer.compile(*st, m.observer.get());
  } catch (const std::exception& e) {
    m.compiled = CompiledCandidate{internal_error(MeasurePhase::Compile, e), nullptr};
  }
  out.send({{"type", "compiled"}, {"index", index}});
}

int arg_int(const std::string& a, const std::string& prefix, int dflt) {
  return a.rfind(prefix, 0) == 0 ? std::atoi(a.c_str() + prefix.size()) : dflt;
}

}  // namespace

int worker_main(int argc, char** argv) {
  int fd = 3, ref_fd = 4;
  for (int i = 1; i < argc; ++i) {
    fd = arg_int(argv[i], "--fd=", fd);
    ref_fd = arg_int(argv[i], "--reference-fd=", ref_fd);
  }
  // A crashing candidate must not leave a core file per crash; Ctrl-C is for the tuner.
  struct rlimit no_core {0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);
  ::signal(SIGINT, SIG_IGN);

  Channel ch(fd);
  json init;
  if (ch.receive(init) != Channel::Got::Message) return 0;
  std::shared_ptr<const te::ComputeDAG> dag;
  std::unique_ptr<Measurer> measurer;
  try {
    set_debug_level(init.value("debug", 0));
    dag = std::make_shared<const te::ComputeDAG>(schedule::dag_from_json(init.at("dag")));
    KT_CHECK(dag->hash() == init.at("dag_hash").get<std::string>(),
             "the workload rebuilt in the worker differs from the tuner's (hash ", dag->hash(), ")");
    const target::Target t = worker::target_from_json(init.at("target"));
    const int threads = init.at("threads").get<int>();
    const runtime::TimingOptions timing = worker::timing_from_json(init.at("timing"));
    if (init.at("reference_cached").get<bool>()) {
      measurer = std::make_unique<Measurer>(dag, t, threads, timing, load_reference(ref_fd, *dag));
    } else {
      measurer = std::make_unique<Measurer>(dag, t, threads, timing);
      store_reference(ref_fd, measurer->reference(), dag->hash());
    }
  } catch (const std::exception& e) {
    ch.send({{"type", "error"}, {"message", e.what()}});
    return 1;
  }
  if (!ch.send({{"type", "ready"}, {"reference", measurer->reference_kind()}, {"reference_ms", measurer->reference_ms()}})) return 0;
  const auto& last_output = dag->ops[size_t(dag->outputs().back())];
  const int64_t last_output_bytes = last_output.num_elements() * last_output.dtype.bytes();

  Sender out(ch);
  std::vector<GroupMember> group;
  for (;;) {
    json msg;
    const Channel::Got got = ch.receive(msg);
    if (got == Channel::Got::Closed) return 0;
    const std::string type = got == Channel::Got::Message ? msg.value("type", "") : "";
    if (type == "compile") {
      // A new group replaces the last one (whatever of it was not run is freed).
      const auto t0 = std::chrono::steady_clock::now();
      const json& candidates = msg.at("candidates");
      group.clear();
      // The group's anchor (measurer.h): kept when it is the current one, else compiled,
      // checked and (without a time from the tuner) timed against the current one.
      if (msg.contains("anchor")) {
        try {
          const json& a = msg.at("anchor");
          measurer->set_anchor(AnchorSpec{schedule::replay(dag, schedule::steps_from_json(a.at("steps"))),
                                          a.at("key").get<std::string>(), a.value("ms", 0.0),
                                          a.value("logged_ms", 0.0)});
        } catch (const std::exception& e) {
          debug(1) << "ktune-worker: no anchor: " << e.what() << "\n";
          measurer->clear_anchor();
        }
      } else {
        measurer->clear_anchor();
      }
      group.resize(candidates.size());
      for (size_t i = 0; i < group.size(); ++i) {
        Fault fault = Fault::None;
        try {
          fault = parse_fault(candidates[i].value("fault", "none"));
        } catch (const UserError&) {
        }
        group[i].observer = std::make_unique<WorkerObserver>(out, fault, last_output_bytes);
      }
      parallel_for_each(group.size(), measurer->runner().threads(), [&](size_t i) {
        compile_member(*measurer, dag, candidates[i], i, group[i], out);
      });
      double replay_ms = 0;
      for (const auto& m : group) replay_ms += m.replay_ms;
      const double busy_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      out.send({{"type", "group"}, {"busy_ms", busy_ms}, {"replay_ms", replay_ms}});
    } else if (type == "rank") {
      // The final ranking of the group compiled last (measurer.h, MeasureBackend::rank).
      const auto t0 = std::chrono::steady_clock::now();
      RankOptions ro;
      ro.rounds = msg.at("rounds").get<int>();
      ro.slice_ms = msg.at("slice_ms").get<double>();
      ro.max_ms = msg.at("max_ms").get<double>();
      std::vector<CompiledCandidate> cs;
      for (auto& m : group) cs.push_back(std::move(m.compiled));
      group.clear();
      json results = json::array();
      for (const MeasureResult& r : measurer->rank(cs, ro)) results.push_back(worker::result_to_json(r));
      const double busy_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      out.send({{"type", "ranked"}, {"results", std::move(results)}, {"busy_ms", busy_ms}});
    } else if (type == "run" && msg.value("index", group.size()) < group.size()) {
      const auto t0 = std::chrono::steady_clock::now();
      GroupMember& m = group[msg.at("index").get<size_t>()];
      MeasureOptions opt;
      opt.slow_cutoff_ms = msg.value("slow_cutoff_ms", 0.0);
      MeasureResult r;
      try {
        r = measurer->run(m.compiled, opt, m.observer.get());
      } catch (const std::exception& e) {
        r = internal_error(m.observer->phase, e);
      }
      const double busy_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      out.send({{"type", "result"}, {"result", worker::result_to_json(r)}, {"busy_ms", busy_ms}});
    } else {
      std::cerr << "ktune-worker: unexpected message from the tuner\n";
      return 1;
    }
  }
}

}  // namespace ktune::search
