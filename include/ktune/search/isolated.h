// Isolated measurement (DESIGN §8): candidates run in a worker process, so that a candidate
// that crashes, hangs or corrupts memory kills only the worker. The tuner (this process)
// sends the workload once and then each candidate's steps; the worker (`ktune-worker`, built
// next to `ktune`) replays, lowers, compiles, verifies and times the candidate with a
// Measurer and sends back the result, reporting each phase as it begins. The tuner enforces
// a compile timeout and a run timeout, kills the worker (SIGKILL) when one passes or records
// how it died when it dies, and starts a new worker for the next candidate. A batch goes to
// the worker in groups that it compiles in parallel and then runs one candidate at a time.
// The reference outputs are computed once, by the first worker, and kept in a memory file
// that every later worker reads instead of recomputing them. See docs/architecture.md, "Isolated
// measurement".
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ktune/search/measurer.h"

namespace ktune::search {

// Faults the worker can inject into a candidate (tests only, `--inject-faults`). Each one is
// a real misbehaviour of the worker process at the stated moment:
//   segv          the worker writes to an unmapped page just before the verification run
//   abort         it calls abort() there
//   sigill        it executes an illegal instruction there (ud2 / brk)
//   oob           the kernel itself runs with its last output pointing at an unmapped region,
//                 so the generated code's first store faults
//   hang          the worker spins forever just before the verification run
//   compile-hang  it spins forever at the start of compilation
//   compile-crash it writes to an unmapped page at the start of compilation (while the rest of
//                 the candidate's group may be compiling on other threads)
//   wrong         it corrupts every output after the verification run
enum class Fault : uint8_t { None, Segv, Abort, Illegal, OutOfBounds, Hang, CompileHang, CompileCrash, WrongAnswer };
const char* fault_name(Fault f);  // "segv", ...; "none"
Fault parse_fault(const std::string& name);  // UserError for an unknown name
// The error class the tuner must record for a candidate with this fault.
runtime::ErrorClass expected_error(Fault f);

// Which candidates get which fault. SPEC: KINDS[:every=K][:p=P][:seed=S], KINDS a list of
// fault names joined by '+' (or `all`). every=K: every K-th candidate, cycling through the
// kinds; p=P: each candidate with probability P, the kind drawn at random (seeded). Neither:
// every candidate. UserError for a malformed spec.
class FaultPlan {
 public:
  FaultPlan() = default;
  explicit FaultPlan(const std::string& spec);
  Fault next();  // the fault of the next candidate measured
  bool empty() const { return kinds_.empty(); }

 private:
  std::vector<Fault> kinds_;
  int every_ = 1;
  double p_ = -1;
  std::mt19937_64 rng_;
  int64_t count_ = 0, faults_ = 0;
};

// Where an isolated tune's time goes, in milliseconds (printed at --debug=1 at the end).
struct IsolationStats {
  int candidates = 0;
  double start_ms = 0;        // starting workers (the first one also computes the reference)
  double round_trip_ms = 0;   // waiting for the worker to compile groups and run candidates
  double worker_busy_ms = 0;  // the worker's own time on them (replay, compile, measure)
  double replay_ms = 0;       // of which rebuilding the schedules from their steps
};

class IsolatedMeasurer : public MeasureBackend {
 public:
  // Starts the first worker, which computes the reference (UserError when the worker
  // executable cannot be found).
  IsolatedMeasurer(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, int threads,
                   runtime::TimingOptions timing, IsolationOptions options);
  ~IsolatedMeasurer() override;  // kills the worker

  MeasureResult measure(const schedule::State& state) override;
  // Per group, the worker compiles the candidates in parallel, then runs them one at a time.
  std::vector<MeasureResult> measure_batch(const std::vector<schedule::State>& states,
                                           const BatchHooks& hooks = {}) override;
  // The worker compiles the candidates as a group and times them in rounds.
  std::vector<MeasureResult> rank(const std::vector<schedule::State>& states, const RankOptions& opt) override;
  const std::string& reference_kind() const override;
  double reference_ms() const override;
  // Workers started so far (1 + restarts), and the fault injected into the last candidate.
  int worker_starts() const;
  Fault last_fault() const;
  const IsolationStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The worker executable: `explicit_path` if given, else `ktune-worker` next to this
// executable, else the one in the build tree this binary was built from. UserError if none.
std::string find_worker_executable(const std::string& explicit_path = "");

// The worker's main(): serves one tuner over the socket at fd 3, with the reference memory
// file at fd 4 (`--fd=N`, `--reference-fd=N` override them).
int worker_main(int argc, char** argv);

}  // namespace ktune::search
