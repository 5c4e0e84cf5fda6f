// Candidate measurement with verification against a reference; batches compiled in parallel
// groups and run one candidate at a time.
#include "ktune/search/measurer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>

#include "ktune/ir/interpreter.h"
#include "ktune/schedule/lower.h"
#include "ktune/search/isolated.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"

namespace ktune::search {

using runtime::ErrorClass;
using runtime::HostBuffer;

const char* phase_name(MeasurePhase p) {
  switch (p) {
    case MeasurePhase::Compile: return "compile";
    case MeasurePhase::Run: return "run";
    case MeasurePhase::Time: return "time";
  }
  return "?";
}

Measurer::Measurer(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, int threads,
                   runtime::TimingOptions timing, std::optional<Reference> reference)
    : dag_(std::move(dag)), runner_(std::make_unique<runtime::CpuRunner>(std::move(t), threads)), timing_(timing) {
  uint64_t seed = 1;
  for (int i : dag_->inputs()) {
    const auto& op = dag_->ops[i];
    inputs_.emplace_back(op.dtype, op.shape);
    inputs_.back().fill_random(seed++);
  }
  for (int i : dag_->outputs()) {
    const auto& op = dag_->ops[i];
    outputs_.emplace_back(op.dtype, op.shape);
  }
  if (reference) {
    KT_CHECK(reference->outputs.size() == outputs_.size(), "reference has ", reference->outputs.size(),
             " outputs, the workload ", outputs_.size());
    for (size_t i = 0; i < outputs_.size(); ++i)
      KT_CHECK(reference->outputs[i].dtype() == outputs_[i].dtype() &&
                   reference->outputs[i].shape() == outputs_[i].shape(),
               "reference output ", i, " has another type or shape than the workload's");
    reference_ = std::move(*reference);
  } else {
    for (const auto& b : outputs_) reference_.outputs.emplace_back(b.dtype(), b.shape());
    compute_reference();
  }
}

Measurer::~Measurer() = default;

void Measurer::compute_reference() {
  schedule::State naive(dag_);
  ir::LoweredFunc f = schedule::lower(naive, dag_->kernel + "_reference");
  std::vector<void*> args;
  for (auto& b : inputs_) args.push_back(b.data());
  for (auto& b : reference_.outputs) {
    b.poison();
    args.push_back(b.data());
  }
  if (dag_->flop_count() <= kInterpreterFlopLimit) {
    reference_.kind = "interpreter";
    ir::interpret(f, args);
  } else {
    reference_.kind = "naive schedule";
    auto k = runner_->compile(f);
    const auto t0 = std::chrono::steady_clock::now();
    k->run(args);
    reference_.naive_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  debug(1) << "reference for " << dag_->kernel << " computed by the " << reference_.kind << "\n";
}

MeasureResult Measurer::measure(const schedule::State& state) { return measure(state, MeasureOptions{}); }

MeasureResult Measurer::measure(const schedule::State& state, const MeasureOptions& opt, MeasureObserver* observer) {
  CompiledCandidate c = compile(state, observer);
  return run(c, opt, observer);
}

CompiledCandidate Measurer::compile(const schedule::State& state, MeasureObserver* observer) {
  MeasureObserver none;
  MeasureObserver& obs = observer ? *observer : none;
  obs.on_phase(MeasurePhase::Compile, 0);
  CompiledCandidate c;
  MeasureResult& r = c.result;
  ir::LoweredFunc f;
  try {
    f = schedule::lower(state, dag_->kernel);
  } catch (const InvalidCandidate& e) {
    r.error = ErrorClass::InvalidSchedule;
    r.message = e.what();
    return c;
  }
  try {
    c.kernel = runner_->compile(f);
    r.compile_ms = c.kernel->compile_ms();
  } catch (const InvalidCandidate& e) {
    r.error = ErrorClass::CompileError;
    r.message = e.what();
  } catch (const InternalError& e) {
    r.error = ErrorClass::CompileError;
    r.message = e.what();
  }
  return c;
}

MeasureResult Measurer::run(CompiledCandidate& c, const MeasureOptions& opt, MeasureObserver* observer) {
  const std::unique_ptr<runtime::CompiledKernel> k = std::move(c.kernel);  // freed on return
  MeasureResult r = c.result;
  if (!k) return r;
  MeasureObserver none;
  MeasureObserver& obs = observer ? *observer : none;
  std::vector<void*> args;
  for (auto& b : inputs_) args.push_back(b.data());
  for (auto& b : outputs_) {
    b.poison();
    args.push_back(b.data());
  }
  obs.on_phase(MeasurePhase::Run, 0);
  obs.before_run(args);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    k->run(args);
  } catch (const std::exception& e) {
    r.error = ErrorClass::RuntimeError;
    r.message = e.what();
    return r;
  }
  const double run_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  obs.after_run(outputs_);
  for (size_t i = 0; i < outputs_.size(); ++i) {
    const double err = runtime::relative_l2_error(outputs_[i], reference_.outputs[i]);
    r.rel_error = std::max(r.rel_error, err);
    if (!(err <= runtime::tolerance_for(outputs_[i].dtype()))) {
      r.error = ErrorClass::WrongAnswer;
      r.message = detail::concat("output ", dag_->ops[dag_->outputs()[i]].name, " differs from the ",
                                 reference_.kind, ": relative L2 error ", err);
      return r;
    }
  }
  // A run that lasts a group has just warmed the caches up, and stands for its time well
  // enough (its timing would cost about 7 such runs); a shorter one is always timed (its
  // timing costs a few groups, and one short cold run is mostly noise).
  const bool long_run = run_ms >= timing_.min_repeat_ms;
  if (long_run && opt.slow_cutoff_ms > 0 && run_ms > opt.slow_cutoff_ms) {
    r.timing.group_means_ms = {run_ms};
    r.timing.median_ms = run_ms;
    r.timing.number = 1;
  } else if (!long_run && opt.slow_cutoff_ms > 0 && timing_.repeat > 1) {
    // A short run is timed in two stages: one group first (warmed up and calibrated as
    // always); a candidate whose group is slower than the cutoff is not timed further (one
    // group mean, as a long slow run has one run), the others get the remaining groups.
    obs.on_phase(MeasurePhase::Time, run_ms);
    runtime::TimingOptions first = timing_;
    first.repeat = 1;
    r.timing = k->time(args, first);
    if (r.timing.median_ms <= opt.slow_cutoff_ms) {
      runtime::TimingOptions rest = timing_;
      rest.warmup = 0;
      rest.number = r.timing.number;
      rest.repeat = timing_.repeat - 1;
      rest.max_total_ms = std::max(0.0, timing_.max_total_ms - r.timing.median_ms * r.timing.number);
      const runtime::Timing more = k->time(args, rest);
      r.timing.group_means_ms.insert(r.timing.group_means_ms.end(), more.group_means_ms.begin(),
                                     more.group_means_ms.end());
      std::vector<double> sorted = r.timing.group_means_ms;
      std::sort(sorted.begin(), sorted.end());
      const size_t n = sorted.size();
      r.timing.median_ms = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    }
  } else {
    obs.on_phase(MeasurePhase::Time, run_ms);
    runtime::TimingOptions timing = timing_;
    if (long_run) timing.warmup = 0;
    r.timing = k->time(args, timing);
  }
  r.gflops = r.timing.median_ms > 0 ? dag_->flop_count() / (r.timing.median_ms * 1e6) : 0;
  return r;
}

std::vector<MeasureResult> Measurer::measure_batch(const std::vector<schedule::State>& states,
                                                   const BatchHooks& hooks) {
  const auto keep_going = [&] { return !hooks.keep_going || hooks.keep_going(); };
  const size_t group = size_t(kGroupPerThread) * size_t(runner_->threads());
  std::vector<MeasureResult> out;
  for (size_t first = 0; first < states.size(); first += group) {
    if (!keep_going()) break;
    std::vector<CompiledCandidate> compiled(std::min(group, states.size() - first));
    parallel_for_each(compiled.size(), runner_->threads(),
                      [&](size_t i) { compiled[i] = compile(states[first + i]); });
    for (size_t i = 0; i < compiled.size(); ++i) {
      if (!keep_going()) return out;
      out.push_back(run(compiled[i], hooks.options ? hooks.options(first + i) : MeasureOptions{}));
      if (hooks.done) hooks.done(first + i, out.back());
    }
  }
  return out;
}

std::vector<MeasureResult> MeasureBackend::measure_batch(const std::vector<schedule::State>& states,
                                                         const BatchHooks& hooks) {
  std::vector<MeasureResult> out;
  for (size_t i = 0; i < states.size(); ++i) {
    if (hooks.keep_going && !hooks.keep_going()) break;
    out.push_back(measure(states[i]));
    if (hooks.done) hooks.done(i, out.back());
  }
  return out;
}

void parallel_for_each(size_t n, int threads, const std::function<void(size_t)>& f) {
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::exception_ptr error;
  auto work = [&] {
    for (size_t i; (i = next++) < n;) {
      try {
        f(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> helpers;
  for (size_t t = 1; t < std::min(n, size_t(std::max(threads, 1))); ++t) helpers.emplace_back(work);
  work();
  for (auto& h : helpers) h.join();
  if (error) std::rethrow_exception(error);
}

std::unique_ptr<MeasureBackend> make_measure_backend(std::shared_ptr<const te::ComputeDAG> dag,
                                                     const target::Target& t, int threads,
                                                     const runtime::TimingOptions& timing,
                                                     const IsolationOptions& isolation) {
  if (isolation.enabled) return std::make_unique<IsolatedMeasurer>(std::move(dag), t, threads, timing, isolation);
  KT_USER_CHECK(isolation.inject_faults.empty(), "fault injection needs isolated measurement (drop --no-isolate)");
  return std::make_unique<Measurer>(std::move(dag), t, threads, timing);
}

std::unique_ptr<MeasureBackend> make_measure_backend(std::shared_ptr<const te::ComputeDAG> dag,
                                                     const target::Target& t, int threads,
                                                     const runtime::TimingOptions& timing, bool isolated) {
  IsolationOptions iso;
  iso.enabled = isolated;
  return make_measure_backend(std::move(dag), t, threads, timing, iso);
}

}  // namespace ktune::search
