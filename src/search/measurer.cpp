// Candidate measurement with verification against a reference; batches compiled in parallel
// groups and run one candidate at a time.
#include "ktune/search/measurer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>

#include "ktune/ir/interpreter.h"
#include "ktune/schedule/lower.h"
#include "ktune/search/isolated.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"

namespace ktune::search {

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
// How many runs of `k` last `target_ms`: doubled until a batch of runs lasts at least half
// of it, then scaled (one timed run is not enough: a run slowed by a preemption would leave
// a handful of runs per group, and groups of a few microseconds).
int calls_for(runtime::CompiledKernel& k, const std::vector<void*>& args, double target_ms) {
  for (int n = 1;; n *= 2) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) k.run(args);
    const double ms = ms_since(t0);
    if (ms >= 0.5 * target_ms || n >= (1 << 24))
      return int(std::clamp(std::ceil(n * target_ms / std::max(ms, 1e-6)), 1.0, 1e9));
  }
}
}  // namespace

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

MeasureResult Measurer::measure(const schedule::State& state) {
  clear_anchor();  // one candidate on its own, as MeasureBackend::measure promises
  return measure(state, MeasureOptions{});
}

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
  std::vector<void*> args = this->args(/*poison=*/true);
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
  const double run_ms = ms_since(t0);
  obs.after_run(outputs_);
  if (!verify(r)) return r;
  // A run that lasts a group has just warmed the caches up, and stands for its time well
  // enough (its timing would cost about 7 such runs); a shorter one is always timed (its
  // timing costs a few groups, and one short cold run is mostly noise).
  const bool long_run = run_ms >= timing_.min_repeat_ms;
  const auto anchored = [&] {
    r.timing = time_anchored(*k, args, timing_.repeat, &r.raw_median_ms);
    r.anchor_ms = anchor_ms_;
    r.anchor_key = anchor_key_;
  };
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
    if (r.timing.median_ms <= opt.slow_cutoff_ms && anchor_) {
      anchored();  // the first group only decided the cutoff: it is on another scale
    } else if (r.timing.median_ms <= opt.slow_cutoff_ms) {
      runtime::TimingOptions rest = timing_;
      rest.warmup = 0;
      rest.number = r.timing.number;
      rest.repeat = timing_.repeat - 1;
      rest.max_total_ms = std::max(0.0, timing_.max_total_ms - r.timing.median_ms * r.timing.number);
      const runtime::Timing more = k->time(args, rest);
      r.timing.group_means_ms.insert(r.timing.group_means_ms.end(), more.group_means_ms.begin(),
                                     more.group_means_ms.end());
      r.timing.median_ms = runtime::median_of(r.timing.group_means_ms);
    }
  } else {
    obs.on_phase(MeasurePhase::Time, run_ms);
    if (anchor_) {
      anchored();
    } else {
      runtime::TimingOptions timing = timing_;
      if (long_run) timing.warmup = 0;
      r.timing = k->time(args, timing);
    }
  }
  r.gflops = r.timing.median_ms > 0 ? dag_->flop_count() / (r.timing.median_ms * 1e6) : 0;
  return r;
}

bool Measurer::verify(MeasureResult& r) {
  for (size_t i = 0; i < outputs_.size(); ++i) {
    const double err = runtime::relative_l2_error(outputs_[i], reference_.outputs[i]);
    r.rel_error = std::max(r.rel_error, err);
    if (!(err <= runtime::tolerance_for(outputs_[i].dtype()))) {
      r.error = ErrorClass::WrongAnswer;
      r.message = detail::concat("output ", dag_->ops[dag_->outputs()[i]].name, " differs from the ",
                                 reference_.kind, ": relative L2 error ", err);
      return false;
    }
  }
  return true;
}

std::vector<MeasureResult> Measurer::rank(const std::vector<schedule::State>& states, const RankOptions& opt) {
  std::vector<CompiledCandidate> cs(states.size());
  parallel_for_each(cs.size(), runner_->threads(), [&](size_t i) { cs[i] = compile(states[i]); });
  return rank(cs, opt);
}

std::vector<MeasureResult> Measurer::rank(std::vector<CompiledCandidate>& cs, const RankOptions& opt) {
  clear_anchor();
  std::vector<MeasureResult> out(cs.size());
  std::vector<size_t> live;
  std::vector<int> calls(cs.size(), 1);
  for (size_t i = 0; i < cs.size(); ++i) {
    out[i] = cs[i].result;
    if (!cs[i].kernel) continue;
    const std::vector<void*> a = args(/*poison=*/true);
    try {
      cs[i].kernel->run(a);
    } catch (const std::exception& e) {
      out[i].error = ErrorClass::RuntimeError;
      out[i].message = e.what();
      continue;
    }
    if (!verify(out[i])) continue;
    calls[i] = calls_for(*cs[i].kernel, a, opt.slice_ms);
    live.push_back(i);
  }
  const std::vector<void*> a = args();
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < std::max(1, opt.rounds); ++r) {
    for (size_t j = 0; j < live.size(); ++j) {
      const size_t i = live[r % 2 ? live.size() - 1 - j : j];
      runtime::CompiledKernel& k = *cs[i].kernel;
      k.run(a);  // the caches the previous candidate emptied
      const auto t0 = std::chrono::steady_clock::now();
      for (int c = 0; c < calls[i]; ++c) k.run(a);
      out[i].timing.group_means_ms.push_back(ms_since(t0) / calls[i]);
    }
    if (r + 1 >= 3 && ms_since(start) > opt.max_ms) break;
  }
  std::vector<std::vector<double>> times;
  for (size_t i : live) times.push_back(out[i].timing.group_means_ms);
  const std::vector<double> ranked = ranked_times(times);
  for (size_t j = 0; j < live.size(); ++j) {
    const size_t i = live[j];
    out[i].timing.number = calls[i];
    out[i].timing.median_ms = ranked[j];
    out[i].gflops = dag_->flop_count() / (out[i].timing.median_ms * 1e6);
    cs[i].kernel.reset();
  }
  return out;
}

std::vector<double> ranked_times(const std::vector<std::vector<double>>& times) {
  if (times.empty()) return {};
  size_t rounds = times[0].size();
  for (const auto& t : times) rounds = std::min(rounds, t.size());
  std::vector<double> out(times.size(), 0);
  if (rounds == 0) return out;
  std::vector<double> geo(rounds, 0);  // each round's geometric mean
  for (size_t r = 0; r < rounds; ++r) {
    for (const auto& t : times) geo[r] += std::log(std::max(t[r], 1e-12));
    geo[r] = std::exp(geo[r] / double(times.size()));
  }
  // The faster half of the rounds (the odd one out included): the quiet machine's order.
  std::vector<size_t> quiet(rounds);
  std::iota(quiet.begin(), quiet.end(), size_t(0));
  std::stable_sort(quiet.begin(), quiet.end(), [&](size_t x, size_t y) { return geo[x] < geo[y]; });
  quiet.resize((rounds + 1) / 2);
  std::vector<double> typical;
  for (size_t r : quiet) typical.push_back(geo[r]);
  const double typical_ms = runtime::median_of(typical);
  for (size_t c = 0; c < times.size(); ++c) {
    std::vector<double> rel;
    for (size_t r : quiet) rel.push_back(times[c][r] / geo[r]);
    out[c] = runtime::median_of(rel) * typical_ms;
  }
  return out;
}

std::vector<void*> Measurer::args(bool poison) {
  std::vector<void*> a;
  for (auto& b : inputs_) a.push_back(b.data());
  for (auto& b : outputs_) {
    if (poison) b.poison();
    a.push_back(b.data());
  }
  return a;
}

runtime::Timing Measurer::time_anchored(runtime::CompiledKernel& k, const std::vector<void*>& args, int pairs,
                                        double* raw_median_ms) {
  KT_CHECK(anchor_, "anchored timing without an anchor");
  runtime::CompiledKernel& a = *anchor_;
  for (int i = 0; i < timing_.warmup; ++i) a.run(args), k.run(args);
  // Calibration: how many runs make half a timing group, so that a pair lasts about as long as
  // one group of unanchored timing.
  const int nk = calls_for(k, args, 0.5 * timing_.min_repeat_ms), na = calls_for(a, args, 0.5 * timing_.min_repeat_ms);
  const auto group = [&](runtime::CompiledKernel& x, int n) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) x.run(args);
    return ms_since(t0) / n;
  };
  runtime::Timing out;
  out.number = nk;
  std::vector<double> raw;
  const auto start = std::chrono::steady_clock::now();
  for (int p = 0; p < std::max(1, pairs); ++p) {
    double tk, ta;
    if (p % 2 == 0) {
      ta = group(a, na);
      tk = group(k, nk);
    } else {
      tk = group(k, nk);
      ta = group(a, na);
    }
    raw.push_back(tk);
    out.group_means_ms.push_back(tk / ta * anchor_ms_);
    if (ms_since(start) > timing_.max_total_ms) break;
  }
  out.median_ms = runtime::median_of(out.group_means_ms);
  if (raw_median_ms) *raw_median_ms = runtime::median_of(raw);
  return out;
}

double Measurer::set_anchor(const AnchorSpec& spec) {
  if (anchor_ && spec.key == anchor_key_) {
    if (spec.ms > 0) anchor_ms_ = spec.ms;
    return anchor_ms_;
  }
  CompiledCandidate c = compile(spec.state);
  double ms = spec.ms;
  try {
    KT_CHECK(c.kernel, "the anchor does not compile: ", c.result.message);
    std::vector<void*> a = args(/*poison=*/true);
    c.kernel->run(a);
    for (size_t i = 0; i < outputs_.size(); ++i)
      KT_CHECK(runtime::relative_l2_error(outputs_[i], reference_.outputs[i]) <=
                   runtime::tolerance_for(outputs_[i].dtype()),
               "the anchor computes wrong values");
    if (ms <= 0 && anchor_) ms = time_anchored(*c.kernel, a, 2 * timing_.repeat, nullptr).median_ms;
    if (ms <= 0) ms = spec.logged_ms;
    if (ms <= 0) ms = c.kernel->time(a, timing_).median_ms;
  } catch (const std::exception& e) {
    debug(1) << "no anchor: " << e.what() << "\n";
    clear_anchor();
    return 0;
  }
  anchor_ = std::move(c.kernel);
  anchor_key_ = spec.key;
  anchor_ms_ = ms;
  debug(1) << "anchor " << spec.key.substr(0, 16) << "...: " << ms << " ms\n";
  return ms;
}

void Measurer::clear_anchor() {
  anchor_.reset();
  anchor_key_.clear();
  anchor_ms_ = 0;
}

std::vector<MeasureResult> Measurer::measure_batch(const std::vector<schedule::State>& states,
                                                   const BatchHooks& hooks) {
  const auto keep_going = [&] { return !hooks.keep_going || hooks.keep_going(); };
  const size_t group = size_t(kGroupPerThread) * size_t(runner_->threads());
  std::vector<MeasureResult> out;
  for (size_t first = 0; first < states.size(); first += group) {
    if (!keep_going()) break;
    std::optional<AnchorSpec> a = hooks.anchor ? hooks.anchor() : std::nullopt;
    if (a) set_anchor(*a);
    else clear_anchor();
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

std::vector<MeasureResult> MeasureBackend::rank(const std::vector<schedule::State>& states, const RankOptions& opt) {
  std::vector<MeasureResult> out(states.size());
  std::vector<bool> failed(states.size(), false);
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < std::max(1, opt.rounds); ++r) {
    for (size_t i = 0; i < states.size(); ++i) {
      if (failed[i]) continue;
      const MeasureResult m = measure(states[i]);
      if (!m.valid()) {
        out[i] = m;
        failed[i] = true;
        continue;
      }
      out[i].compile_ms = m.compile_ms;
      out[i].timing.group_means_ms.push_back(m.timing.median_ms);
    }
    if (r + 1 >= 3 && ms_since(start) > opt.max_ms) break;
  }
  std::vector<size_t> live;
  std::vector<std::vector<double>> times;
  for (size_t i = 0; i < states.size(); ++i)
    if (!failed[i]) live.push_back(i), times.push_back(out[i].timing.group_means_ms);
  const std::vector<double> ranked = ranked_times(times);
  for (size_t j = 0; j < live.size(); ++j) out[live[j]].timing.median_ms = ranked[j];  // no flops here
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
