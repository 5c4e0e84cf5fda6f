// Isolated measurement, the tuner's side: the worker's lifecycle, the per-phase timeouts, the
// classification of a worker's death, and the test-only fault plan. The protocol is in
// worker_protocol.h; the worker's side in worker.cpp.
#include "ktune/search/isolated.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "ktune/schedule/dag_json.h"
#include "ktune/schedule/steps.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"
#include "worker_protocol.h"

#ifndef KTUNE_WORKER_BUILD_PATH
#define KTUNE_WORKER_BUILD_PATH ""
#endif

namespace ktune::search {

using nlohmann::json;
using runtime::ErrorClass;
using worker::Channel;
using worker::Clock;

// ---- protocol ------------------------------------------------------------------------------

namespace worker {

bool Channel::send(const json& j) {
  const std::string body = j.dump();
  const uint32_t n = uint32_t(body.size());
  std::string frame(reinterpret_cast<const char*>(&n), 4);
  frame += body;
  size_t off = 0;
  while (off < frame.size()) {
    ssize_t w = ::send(fd_, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    off += size_t(w);
  }
  return true;
}

Channel::Got Channel::receive(json& out, std::optional<Clock::time_point> deadline) {
  constexpr uint32_t kMaxFrame = 256u << 20;
  for (;;) {
    if (buf_.size() >= 4) {
      uint32_t n;
      std::memcpy(&n, buf_.data(), 4);
      if (n > kMaxFrame) return Got::Garbled;
      if (buf_.size() >= 4 + size_t(n)) {
        out = json::parse(buf_.begin() + 4, buf_.begin() + 4 + n, nullptr, /*allow_exceptions=*/false);
        buf_.erase(0, 4 + size_t(n));
        return out.is_discarded() ? Got::Garbled : Got::Message;
      }
    }
    int timeout_ms = -1;
    if (deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now()).count();
      if (left <= 0) return Got::Timeout;
      timeout_ms = int(std::min<int64_t>(left + 1, 1 << 30));
    }
    pollfd p{fd_, POLLIN, 0};
    const int k = ::poll(&p, 1, timeout_ms);
    if (k < 0 && errno == EINTR) continue;  // e.g. Ctrl-C: the candidate in flight finishes
    if (k < 0) return Got::Closed;
    if (k == 0) continue;  // the deadline check above decides
    char tmp[65536];
    const ssize_t r = ::read(fd_, tmp, sizeof tmp);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) return Got::Closed;
    buf_.append(tmp, size_t(r));
  }
}

json target_to_json(const target::Target& t) {
  return {{"name", t.name},
          {"kind", int(t.kind)},
          {"triple", t.triple},
          {"cpu", t.cpu},
          {"features", t.features},
          {"vector_bits", t.vector_bits},
          {"cores", t.cores},
          {"l1_bytes", t.l1_bytes},
          {"l2_bytes", t.l2_bytes},
          {"l3_bytes", t.l3_bytes},
          {"max_threads_per_block", t.max_threads_per_block},
          {"max_shared_memory_per_block", t.max_shared_memory_per_block},
          {"warp_size", t.warp_size}};
}

target::Target target_from_json(const json& j) {
  target::Target t;
  t.name = j.at("name").get<std::string>();
  t.kind = target::TargetKind(j.at("kind").get<int>());
  t.triple = j.at("triple").get<std::string>();
  t.cpu = j.at("cpu").get<std::string>();
  t.features = j.at("features").get<std::vector<std::string>>();
  t.vector_bits = j.at("vector_bits").get<int>();
  t.cores = j.at("cores").get<int>();
  t.l1_bytes = j.at("l1_bytes").get<int64_t>();
  t.l2_bytes = j.at("l2_bytes").get<int64_t>();
  t.l3_bytes = j.at("l3_bytes").get<int64_t>();
  t.max_threads_per_block = j.at("max_threads_per_block").get<int>();
  t.max_shared_memory_per_block = j.at("max_shared_memory_per_block").get<int64_t>();
  t.warp_size = j.at("warp_size").get<int>();
  return t;
}

json timing_to_json(const runtime::TimingOptions& t) {
  return {{"warmup", t.warmup},
          {"repeat", t.repeat},
          {"number", t.number},
          {"min_repeat_ms", t.min_repeat_ms},
          {"max_total_ms", t.max_total_ms}};
}

runtime::TimingOptions timing_from_json(const json& j) {
  runtime::TimingOptions t;
  t.warmup = j.at("warmup").get<int>();
  t.repeat = j.at("repeat").get<int>();
  t.number = j.at("number").get<int>();
  t.min_repeat_ms = j.at("min_repeat_ms").get<double>();
  t.max_total_ms = j.at("max_total_ms").get<double>();
  return t;
}

json result_to_json(const MeasureResult& r) {
  return {{"error", runtime::error_class_name(r.error)},
          {"message", r.message},
          {"group_means_ms", r.timing.group_means_ms},
          {"median_ms", r.timing.median_ms},
          {"number", r.timing.number},
          {"gflops", r.gflops},
          {"compile_ms", r.compile_ms},
          {"rel_error", std::isfinite(r.rel_error) ? json(r.rel_error) : json(nullptr)},
          {"anchor_ms", r.anchor_ms},
          {"anchor_key", r.anchor_key},
          {"raw_median_ms", r.raw_median_ms}};
}

MeasureResult result_from_json(const json& j) {
  MeasureResult r;
  r.error = runtime::parse_error_class(j.at("error").get<std::string>());
  r.message = j.at("message").get<std::string>();
  r.timing.group_means_ms = j.at("group_means_ms").get<std::vector<double>>();
  r.timing.median_ms = j.at("median_ms").get<double>();
  r.timing.number = j.at("number").get<int>();
  r.gflops = j.at("gflops").get<double>();
  r.compile_ms = j.at("compile_ms").get<double>();
  r.rel_error = j.at("rel_error").is_null() ? INFINITY : j.at("rel_error").get<double>();
  r.anchor_ms = j.at("anchor_ms").get<double>();
  r.anchor_key = j.at("anchor_key").get<std::string>();
  r.raw_median_ms = j.at("raw_median_ms").get<double>();
  return r;
}

}  // namespace worker

// ---- faults --------------------------------------------------------------------------------

namespace {
constexpr Fault kAllFaults[] = {Fault::Segv,        Fault::Abort,        Fault::Illegal,
                                Fault::OutOfBounds, Fault::Hang,         Fault::CompileHang,
                                Fault::CompileCrash, Fault::WrongAnswer};
}  // namespace

const char* fault_name(Fault f) {
  switch (f) {
    case Fault::None: return "none";
    case Fault::Segv: return "segv";
    case Fault::Abort: return "abort";
    case Fault::Illegal: return "sigill";
    case Fault::OutOfBounds: return "oob";
    case Fault::Hang: return "hang";
    case Fault::CompileHang: return "compile-hang";
    case Fault::CompileCrash: return "compile-crash";
    case Fault::WrongAnswer: return "wrong";
  }
  return "?";
}

Fault parse_fault(const std::string& name) {
  if (name == "none") return Fault::None;
  for (Fault f : kAllFaults)
    if (name == fault_name(f)) return f;
  throw UserError("unknown fault '" + name + "' (segv, abort, sigill, oob, hang, compile-hang, compile-crash, wrong, all)");
}

ErrorClass expected_error(Fault f) {
  switch (f) {
    case Fault::None: return ErrorClass::None;
    case Fault::Segv:
    case Fault::Abort:
    case Fault::Illegal:
    case Fault::OutOfBounds: return ErrorClass::RuntimeError;
    case Fault::Hang: return ErrorClass::RunTimeout;
    case Fault::CompileHang: return ErrorClass::CompileTimeout;
    case Fault::CompileCrash: return ErrorClass::CompileError;
    case Fault::WrongAnswer: return ErrorClass::WrongAnswer;
  }
  return ErrorClass::None;
}

FaultPlan::FaultPlan(const std::string& spec) {
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t colon = spec.find(':', start);
    parts.push_back(spec.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  const std::string where = "--inject-faults=" + spec + ": ";
  for (size_t start = 0;;) {
    const size_t plus = parts[0].find('+', start);
    const std::string k = parts[0].substr(start, plus - start);
    if (k == "all") {
      kinds_.insert(kinds_.end(), std::begin(kAllFaults), std::end(kAllFaults));
    } else {
      try {
        const Fault f = parse_fault(k);
        KT_USER_CHECK(f != Fault::None, where, "'none' is not a fault");
        kinds_.push_back(f);
      } catch (const UserError& e) {
        throw UserError(where + e.what());
      }
    }
    if (plus == std::string::npos) break;
    start = plus + 1;
  }
  uint64_t seed = 0;
  for (size_t i = 1; i < parts.size(); ++i) {
    const size_t eq = parts[i].find('=');
    const std::string key = parts[i].substr(0, eq), val = eq == std::string::npos ? "" : parts[i].substr(eq + 1);
    try {
      size_t used = 0;
      if (key == "every") {
        every_ = std::stoi(val, &used);
        KT_USER_CHECK(every_ >= 1, where, "every must be at least 1");
      } else if (key == "p") {
        p_ = std::stod(val, &used);
        KT_USER_CHECK(p_ >= 0 && p_ <= 1, where, "p must be in [0, 1]");
      } else if (key == "seed") {
        seed = std::stoull(val, &used);
      } else {
        throw UserError(where + "unknown option '" + key + "' (every=K, p=P, seed=S)");
      }
      KT_USER_CHECK(used == val.size(), where, "bad value '", val, "' for ", key);
    } catch (const std::logic_error&) {
      throw UserError(where + "bad value '" + val + "' for " + key);
    }
  }
  rng_.seed(seed);
}

Fault FaultPlan::next() {
  if (kinds_.empty()) return Fault::None;
  ++count_;
  if (p_ >= 0) {
    if (std::uniform_real_distribution<double>(0, 1)(rng_) >= p_) return Fault::None;
    return kinds_[std::uniform_int_distribution<size_t>(0, kinds_.size() - 1)(rng_)];
  }
  if (count_ % every_ != 0) return Fault::None;
  return kinds_[size_t(faults_++ % int64_t(kinds_.size()))];
}

// ---- the worker executable -------------------------------------------------------------------

std::string find_worker_executable(const std::string& explicit_path) {
  auto runnable = [](const std::string& p) { return !p.empty() && ::access(p.c_str(), X_OK) == 0; };
  if (!explicit_path.empty()) {
    KT_USER_CHECK(runnable(explicit_path), "the measurement worker '", explicit_path, "' is not an executable file");
    return explicit_path;
  }
  std::vector<std::string> tried;
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) tried.push_back((self.parent_path() / "ktune-worker").string());
  tried.push_back(KTUNE_WORKER_BUILD_PATH);
  for (const auto& p : tried)
    if (runnable(p)) return p;
  std::string list;
  for (const auto& p : tried) list += (list.empty() ? "" : ", ") + p;
  throw UserError("cannot find the measurement worker 'ktune-worker' (looked for " + list +
                  "); reinstall ktune, or measure in-process with --no-isolate");
}

// ---- the tuner's side ----------------------------------------------------------------------

namespace {
MeasureResult failure(ErrorClass error, std::string message) {
  MeasureResult r;
  r.error = error;
  r.message = std::move(message);
  return r;
}
}  // namespace

struct IsolatedMeasurer::Impl {
  std::shared_ptr<const te::ComputeDAG> dag;
  target::Target target;
  int threads = 1;
  runtime::TimingOptions timing;
  IsolationOptions opt;
  std::string worker_path;
  json init;  // the init message, without reference_cached
  FaultPlan faults;
  Fault last_fault = Fault::None;

  int ref_fd = -1;  // memory file with the reference outputs, filled by the first worker
  bool ref_cached = false;
  std::string reference_kind;
  double reference_ms = 0;

  pid_t pid = -1;
  std::unique_ptr<Channel> ch;
  int starts = 0;
  int worker_runs = 0;  // candidates run by the current worker
  IsolationStats stats;

  ~Impl() {
    debug(1) << "isolated measurement: " << stats.candidates << " candidates, " << starts << " worker starts ("
             << stats.start_ms << " ms), round trips " << stats.round_trip_ms << " ms, worker busy "
             << stats.worker_busy_ms << " ms (replay " << stats.replay_ms << " ms)\n";
    kill_worker();
    if (ref_fd >= 0) ::close(ref_fd);
  }

  bool alive() const { return pid > 0; }

  void start() {
    int sv[2];
    KT_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: ", std::strerror(errno));
    const std::string fd_arg = "--fd=3", ref_arg = "--reference-fd=4";
    std::vector<char*> argv = {const_cast<char*>("ktune-worker"), const_cast<char*>(fd_arg.c_str()),
                               const_cast<char*>(ref_arg.c_str()), nullptr};
    const pid_t parent = ::getpid();
    const pid_t child = ::fork();
    KT_CHECK(child >= 0, "fork: ", std::strerror(errno));
    if (child == 0) {
      // Only async-signal-safe calls until exec. Its own process group keeps the terminal's
      // Ctrl-C away from the worker (the tuner decides when to stop); it ignores SIGINT too,
      // and dies with the tuner.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      struct sigaction ign {};
      ign.sa_handler = SIG_IGN;
      ::sigaction(SIGINT, &ign, nullptr);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      const int sock = ::fcntl(sv[1], F_DUPFD, 10), ref = ::fcntl(ref_fd, F_DUPFD, 10);
      if (sock < 0 || ref < 0 || ::dup2(sock, 3) < 0 || ::dup2(ref, 4) < 0) ::_exit(127);
      ::close_range(5, ~0u, 0);
      ::execv(worker_path.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(sv[1]);
    pid = child;
    ++starts;
    worker_runs = 0;
    ch = std::make_unique<Channel>(sv[0]);
    json msg = init;
    msg["reference_cached"] = ref_cached;
    msg["debug"] = debug_level();
    json reply;
    Channel::Got got = ch->send(msg) ? ch->receive(reply, Clock::now() + std::chrono::minutes(30)) : Channel::Got::Closed;
    if (got == Channel::Got::Message && reply.value("type", "") == "ready") {
      reference_kind = reply.value("reference", "");
      reference_ms = reply.value("reference_ms", 0.0);
      ref_cached = true;
      debug(2) << "isolated measurement: worker " << pid << " ready\n";
      return;
    }
    std::string why = got == Channel::Got::Message ? reply.value("message", reply.dump()) : "";
    const std::string death = kill_worker(/*dying=*/true);
    if (why.empty()) why = "the worker " + death;
    throw InternalError("the measurement worker '" + worker_path + "' failed to start: " + why);
  }

  // Starts a worker; a failed start (say, the executable being replaced by a rebuild) is
  // retried a few times before the tune gives up.
  void start_timed() {
    const auto t0 = Clock::now();
    for (int attempt = 1;; ++attempt) {
      try {
        start();
        break;
      } catch (const InternalError& e) {
        if (attempt == 4 || starts == 1) throw;  // the first start reports at once
        debug(1) << e.what() << "; trying again\n";
        std::this_thread::sleep_for(std::chrono::milliseconds(100 << (2 * attempt)));
      }
    }
    stats.start_ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  }

  // Ends the worker (if any) and says how it ended: "was killed by SIGSEGV (...)". A worker
  // whose socket closed is dying on its own and is given a moment to finish (so that its own
  // signal is reported); otherwise, or after that moment, it gets SIGKILL.
  std::string kill_worker(bool dying = false) {
    if (pid <= 0) return "";
    ch.reset();  // closes the socket
    int status = 0;
    pid_t r = 0;
    for (int i = 0; dying && i < 20 && (r = ::waitpid(pid, &status, WNOHANG)) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(i < 10 ? 1 : 10));
    if (r == 0) {
      ::kill(pid, SIGKILL);
      while ((r = ::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
      }
    }
    pid = -1;
    if (r < 0) return "disappeared";
    if (WIFSIGNALED(status)) {
      const int sig = WTERMSIG(status);
      const char* abbrev = ::sigabbrev_np(sig);
      return detail::concat("was killed by ", abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig),
                            " (", ::strsignal(sig), ")");
    }
    return detail::concat("exited with status ", WEXITSTATUS(status));
  }

  // The timing phase's limit: its expected length (from the verification run's duration and
  // the timing options) twice over, plus the run timeout.
  double time_limit_s(double run_ms) const {
    const double expected_ms = timing.max_total_ms + timing.min_repeat_ms +
                               (timing.warmup + 2 + std::max(timing.number, 1)) * std::max(run_ms, 0.0);
    return opt.run_timeout_s + 2 * expected_ms / 1000;
  }

  // Sends a message, starting a worker first if there is none, or another one if the worker
  // died after its last answer.
  void send(const json& msg) {
    if (!alive()) start_timed();
    if (!ch->send(msg)) {
      kill_worker();
      start_timed();
      KT_CHECK(ch->send(msg), "cannot reach the measurement worker");
    }
  }

  // Measures a batch in groups (measurer.h). Per group the worker compiles the candidates in
  // parallel, reporting when each one starts and ends, then runs them one at a time when
  // asked. When a worker dies or is stopped before the group is compiled, a candidate whose
  // compiling thread used up the compile limit is recorded as a compile timeout; a death (or a
  // limit reached on the wall clock) cannot be pinned on one candidate, so the candidates that
  // were compiling then are compiled again, each on its own, where it is. Whatever else of the
  // group was not run is compiled again, in a group, by the next worker, as after any
  // candidate that kills or retires its worker.
  std::vector<MeasureResult> measure_batch(const std::vector<schedule::State>& states, const BatchHooks& hooks) {
    const size_t n = states.size();
    const size_t group_max = size_t(kGroupPerThread) * size_t(std::max(threads, 1));
    std::vector<std::optional<Fault>> fault(n);          // drawn when first sent; kept for retries
    std::vector<std::optional<MeasureResult>> known(n);  // found before its turn (a compile timeout)
    std::vector<bool> alone(n, false);                   // to be compiled on its own
    std::map<size_t, size_t> slot;                       // candidate -> its place in the worker's group
    int group_worker = 0;                                // the worker (by start count) that compiled it
    std::vector<MeasureResult> out;
    while (out.size() < n) {
      const size_t i = out.size();
      if (known[i]) {
        deliver(i, *known[i], fault[i].value_or(Fault::None), out, hooks);
        continue;
      }
      if (hooks.keep_going && !hooks.keep_going()) break;
      if (!slot.count(i) || !alive() || starts != group_worker) {
        // A long-lived worker's memory creeps up: between groups, one that has run
        // opt.recycle_after candidates is replaced by a fresh one.
        if (alive() && worker_runs >= opt.recycle_after) kill_worker();
        std::vector<size_t> members;
        for (size_t j = i; j < n && members.size() < group_max; ++j) {
          if (known[j]) continue;
          if (alone[j] && !members.empty()) break;
          members.push_back(j);
          if (alone[j]) break;
        }
        slot.clear();
        json candidates = json::array();
        for (size_t k = 0; k < members.size(); ++k) {
          const size_t j = members[k];
          if (!fault[j]) fault[j] = faults.next();
          candidates.push_back({{"steps", schedule::steps_to_json(states[j].steps())}, {"fault", fault_name(*fault[j])}});
          slot[j] = k;
        }
        json msg = {{"type", "compile"}, {"candidates", std::move(candidates)}};
        if (const std::optional<AnchorSpec> a = hooks.anchor ? hooks.anchor() : std::nullopt)
          msg["anchor"] = {{"steps", schedule::steps_to_json(a->state.steps())}, {"key", a->key}, {"ms", a->ms}, {"logged_ms", a->logged_ms}};
        const auto t0 = Clock::now();
        send(msg);
        wait_compiled(members, known, alone);
        group_worker = starts;
        stats.round_trip_ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        continue;
      }
      const MeasureOptions opt = hooks.options ? hooks.options(i) : MeasureOptions{};
      const auto t0 = Clock::now();
      if (!ch->send({{"type", "run"}, {"index", slot.at(i)}, {"slow_cutoff_ms", opt.slow_cutoff_ms}})) {
        kill_worker();  // it died after its last answer, taking the group with it
        continue;
      }
      MeasureResult r = wait_result(opt.run_limit_s);
      ++worker_runs;
      stats.round_trip_ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      // A candidate that computed wrong values or failed while running may have written where
      // it should not (the worker's heap, its copy of the reference, the group's other code):
      // the rest of the group goes to a fresh worker.
      if (alive() && (r.error == ErrorClass::WrongAnswer || r.error == ErrorClass::RuntimeError)) kill_worker();
      deliver(i, std::move(r), *fault[i], out, hooks);
    }
    return out;
  }

  // The final ranking (MeasureBackend::rank): the worker compiles the candidates as a group,
  // then times them in rounds. Should that fail (a candidate that does not compile there, a
  // worker that dies or overruns), each candidate is measured on its own in turns instead
  // (the default rank), so that a failure is pinned on the candidate that causes it.
  std::vector<MeasureResult> rank(const std::vector<schedule::State>& states, const RankOptions& ro,
                                  MeasureBackend& self) {
    const size_t n = states.size();
    std::vector<size_t> members(n);
    std::vector<std::optional<MeasureResult>> known(n);
    std::vector<bool> alone(n, false);
    json candidates = json::array();
    for (size_t i = 0; i < n; ++i) {
      members[i] = i;
      candidates.push_back({{"steps", schedule::steps_to_json(states[i].steps())}, {"fault", "none"}});
    }
    if (alive() && worker_runs >= opt.recycle_after) kill_worker();
    send({{"type", "compile"}, {"candidates", std::move(candidates)}});
    wait_compiled(members, known, alone);
    const bool compiled = alive() && std::none_of(known.begin(), known.end(), [](const auto& k) { return bool(k); }) &&
                          std::none_of(alone.begin(), alone.end(), [](bool b) { return b; });
    if (compiled && ch->send({{"type", "rank"}, {"rounds", ro.rounds}, {"slice_ms", ro.slice_ms}, {"max_ms", ro.max_ms}})) {
      // Its rounds last about max_ms; each candidate's verification run and calibration get the
      // run timeout on top.
      const auto deadline = Clock::now() + seconds(4 * ro.max_ms / 1000 + 2 * opt.run_timeout_s * double(n));
      json m;
      if (ch->receive(m, deadline) == Channel::Got::Message && m.value("type", "") == "ranked") {
        try {
          std::vector<MeasureResult> out;
          for (const json& r : m.at("results")) out.push_back(worker::result_from_json(r));
          stats.worker_busy_ms += m.value("busy_ms", 0.0);
          worker_runs += int(n);
          if (out.size() == n) return out;
        } catch (const std::exception&) {
        }
      }
    }
    debug(1) << "isolated measurement: the final ranking in one worker failed; measuring each candidate on its own\n";
    kill_worker();
    return self.MeasureBackend::rank(states, ro);
  }

  void deliver(size_t i, MeasureResult r, Fault f, std::vector<MeasureResult>& out, const BatchHooks& hooks) {
    last_fault = f;
    ++stats.candidates;
    if (f != Fault::None) r.message += detail::concat(" [injected fault: ", fault_name(f), "]");
    out.push_back(std::move(r));
    if (hooks.done) hooks.done(i, out.back());
  }

  // CPU seconds used so far by the worker (task < 0: all its threads) or by one of its threads,
  // from /proc; -1 if unknown.
  double worker_cpu_s(int64_t task = -1) const {
    std::ifstream f("/proc/" + std::to_string(pid) + (task < 0 ? "" : "/task/" + std::to_string(task)) + "/stat");
    std::string text;
    if (!std::getline(f, text)) return -1;
    const size_t paren = text.rfind(')');
    if (paren == std::string::npos) return -1;
    std::istringstream rest(text.substr(paren + 1));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {  // fields 14 and 15: utime, stime
      if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
      if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
    }
    return double(utime + stime) / double(::sysconf(_SC_CLK_TCK));
  }

  static Clock::duration seconds(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  // Waits until the worker has compiled the group `members`. Otherwise the worker is gone, and
  // what becomes of the members is in `known` (their results) and `alone` (see measure_batch).
  // Each candidate has the compile limit, counted in CPU time of the thread compiling it, with
  // the wall-clock backstop of wait_result.
  void wait_compiled(const std::vector<size_t>& members, std::vector<std::optional<MeasureResult>>& known,
                     std::vector<bool>& alone) {
    constexpr double kWallFactor = 4;
    const double limit_s = opt.compile_timeout_s;
    struct Compiling {
      Clock::time_point start, check;
      int64_t tid = -1;
      double cpu0 = -1;
    };
    std::map<size_t, Compiling> compiling;  // by place in the group
    Clock::time_point last_event = Clock::now();
    // The worker ended without pinning the failure on a candidate: the one of a group of one
    // gets it; otherwise those that were compiling (if none, all) are compiled on their own.
    auto failed = [&](ErrorClass error, const std::string& message) {
      if (members.size() == 1) {
        known[members[0]] = failure(error, message);
        return;
      }
      debug(1) << "isolated measurement: " << message << " (in a group of " << members.size()
               << "); compiling its suspects again, each on its own\n";
      for (size_t k = 0; k < members.size(); ++k)
        if (compiling.empty() || compiling.count(k)) alone[members[k]] = true;
    };
    for (;;) {
      Clock::time_point deadline = last_event + seconds(kWallFactor * limit_s);
      for (const auto& [k, c] : compiling) deadline = std::min(deadline, c.check);
      json m;
      const Channel::Got got = ch->receive(m, deadline);
      if (got == Channel::Got::Message) {
        last_event = Clock::now();
        const std::string type = m.value("type", "");
        try {
          if (type == "group") {
            stats.worker_busy_ms += m.at("busy_ms").get<double>();
            stats.replay_ms += m.at("replay_ms").get<double>();
            return;
          }
          const size_t k = m.at("index").get<size_t>();
          if (k < members.size() && type == "compiling") {
            Compiling& c = compiling[k];
            c.start = last_event;
            c.check = c.start + seconds(limit_s);
            c.tid = m.at("tid").get<int64_t>();
            c.cpu0 = worker_cpu_s(c.tid);
            continue;
          }
          if (k < members.size() && type == "compiled") {
            compiling.erase(k);
            continue;
          }
        } catch (const std::exception&) {
        }
        failed(ErrorClass::CompileError, "the measurement worker sent a malformed message while compiling the "
                                         "candidate; it was killed (" + kill_worker() + ")");
        return;
      }
      if (got == Channel::Got::Timeout) {
        // The candidates whose threads used up the limit; the others are checked again when
        // they could have.
        const auto now = Clock::now();
        std::vector<std::pair<size_t, std::string>> over;
        bool stuck = compiling.empty();  // nothing compiling, nothing said: the worker is stuck
        for (auto& [k, c] : compiling) {
          const double wall = std::chrono::duration<double>(now - c.start).count();
          const double cpu0 = c.cpu0, cpu1 = cpu0 >= 0 ? worker_cpu_s(c.tid) : -1;
          const double cpu = cpu1 >= 0 ? cpu1 - cpu0 : -1;
          if (cpu >= limit_s || (cpu < 0 && wall >= limit_s)) {
            over.emplace_back(k, detail::concat("compiling the candidate exceeded --compile-timeout=", limit_s,
                                                " s (it used ", cpu, " s of CPU time in ", wall,
                                                " s); the worker was killed"));
          } else if (wall >= kWallFactor * limit_s) {
            stuck = true;
          } else {
            c.check = now + seconds(std::max(std::min(limit_s - cpu, kWallFactor * limit_s - wall), 0.02));
          }
        }
        if (over.empty() && !stuck) continue;
        kill_worker();
        for (const auto& [k, why] : over) {
          known[members[k]] = failure(ErrorClass::CompileTimeout, why);
          compiling.erase(k);
        }
        if (stuck)
          failed(ErrorClass::CompileTimeout, detail::concat("compiling the candidate exceeded --compile-timeout=", limit_s,
                                                            " s (", kWallFactor,
                                                            " times over on the wall clock); the worker was killed"));
        return;
      }
      const std::string death = kill_worker(/*dying=*/got == Channel::Got::Closed);
      failed(ErrorClass::CompileError,
             detail::concat("the measurement worker ", got == Channel::Got::Garbled ? "sent a malformed message and " : "",
                            death, " while compiling the candidate"));
      return;
    }
  }

  // Waits for the result of the candidate the worker was asked to run, enforcing the phase's
  // limit (running, then timing). A limit counts the worker's work, not the machine's load: it
  // is reached when the worker has used `limit` seconds of CPU time per thread it may use, so
  // that a run merely slowed down by other processes is not killed; a worker that blocks
  // without using the CPU is stopped once `kWallFactor` times the limit has passed.
  MeasureResult wait_result(double run_limit_s) {
    constexpr double kWallFactor = 4;
    MeasurePhase phase = MeasurePhase::Run;
    const bool limited = run_limit_s > 0 && run_limit_s < opt.run_timeout_s;
    double limit_s = limited ? run_limit_s : opt.run_timeout_s;
    Clock::time_point phase_start = Clock::now();
    double phase_cpu = worker_cpu_s();
    Clock::time_point deadline = phase_start + seconds(limit_s);
    const int cpus = std::max(1, threads);
    MeasureResult r;
    for (;;) {
      json m;
      const Channel::Got got = ch->receive(m, deadline);
      if (got == Channel::Got::Message) {
        const std::string type = m.value("type", "");
        try {
          if (type == "result") {
            MeasureResult res = worker::result_from_json(m.at("result"));
            stats.worker_busy_ms += m.value("busy_ms", 0.0);
            return res;
          }
          if (type == "phase" && m.at("phase").get<std::string>() == "time") {
            phase = MeasurePhase::Time;
            limit_s = time_limit_s(m.at("run_ms").get<double>());
            phase_start = Clock::now();
            phase_cpu = worker_cpu_s();
            deadline = phase_start + seconds(limit_s);
            continue;
          }
        } catch (const std::exception&) {
        }
        r.error = ErrorClass::RuntimeError;
        r.message = "the measurement worker sent a malformed message; it was killed (" + kill_worker() + ")";
        return r;
      }
      const char* doing = phase == MeasurePhase::Run ? "running" : "timing";
      if (got == Channel::Got::Timeout) {
        const double wall = std::chrono::duration<double>(Clock::now() - phase_start).count();
        const double cpu = phase_cpu >= 0 ? worker_cpu_s() - phase_cpu : -1;
        if (cpu >= 0 && cpu < limit_s * cpus && wall < kWallFactor * limit_s) {
          // Slowed down, not stuck: wait until it could have used up its CPU time.
          const double more = std::min((limit_s * cpus - cpu) / cpus, kWallFactor * limit_s - wall);
          deadline = Clock::now() + seconds(std::max(more, 0.02));
          continue;
        }
        kill_worker();
        r.error = ErrorClass::RunTimeout;
        r.message = detail::concat(doing, " the candidate exceeded ",
                                   phase == MeasurePhase::Run
                                       ? (limited ? "the limit for hopeless candidates (50x the best so far or the "
                                                    "naive schedule's time) of "
                                                  : "--run-timeout=")
                                       : "the timing limit (expected time + --run-timeout) of ",
                                   limit_s, " s (it used ", cpu, " s of CPU time in ", wall,
                                   " s); the worker was killed");
        return r;
      }
      const std::string death = kill_worker(/*dying=*/got == Channel::Got::Closed);
      r.error = ErrorClass::RuntimeError;
      r.message = detail::concat("the measurement worker ",
                                 got == Channel::Got::Garbled ? "sent a malformed message and " : "", death, " while ",
                                 doing, " the candidate");
      return r;
    }
  }
};

IsolatedMeasurer::IsolatedMeasurer(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, int threads,
                                   runtime::TimingOptions timing, IsolationOptions options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.dag = std::move(dag);
  m.target = std::move(t);
  m.threads = threads;
  m.timing = timing;
  m.opt = std::move(options);
  KT_USER_CHECK(m.opt.compile_timeout_s > 0, "--compile-timeout must be positive (got ", m.opt.compile_timeout_s, ")");
  KT_USER_CHECK(m.opt.run_timeout_s > 0, "--run-timeout must be positive (got ", m.opt.run_timeout_s, ")");
  if (!m.opt.inject_faults.empty()) m.faults = FaultPlan(m.opt.inject_faults);
  m.worker_path = find_worker_executable(m.opt.worker_path);
  m.init = {{"type", "init"},
            {"dag", schedule::dag_to_json(*m.dag)},
            {"dag_hash", m.dag->hash()},
            {"target", worker::target_to_json(m.target)},
            {"threads", threads},
            {"timing", worker::timing_to_json(timing)}};
  m.ref_fd = ::memfd_create("ktune-reference", MFD_CLOEXEC);
  KT_CHECK(m.ref_fd >= 0, "memfd_create: ", std::strerror(errno));
  m.start_timed();
}

IsolatedMeasurer::~IsolatedMeasurer() = default;

MeasureResult IsolatedMeasurer::measure(const schedule::State& state) { return impl_->measure_batch({state}, {}).at(0); }
std::vector<MeasureResult> IsolatedMeasurer::measure_batch(const std::vector<schedule::State>& states,
                                                           const BatchHooks& hooks) {
  return impl_->measure_batch(states, hooks);
}
std::vector<MeasureResult> IsolatedMeasurer::rank(const std::vector<schedule::State>& states, const RankOptions& opt) {
  return impl_->rank(states, opt, *this);
}
const std::string& IsolatedMeasurer::reference_kind() const { return impl_->reference_kind; }
double IsolatedMeasurer::reference_ms() const { return impl_->reference_ms; }
int IsolatedMeasurer::worker_starts() const { return impl_->starts; }
const IsolationStats& IsolatedMeasurer::stats() const { return impl_->stats; }
Fault IsolatedMeasurer::last_fault() const { return impl_->last_fault; }

}  // namespace ktune::search
