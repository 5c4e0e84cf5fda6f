// The tuning driver: policies propose, the backend measures, the log records.
#include "ktune/search/tuner.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>

#include "ktune/schedule/steps.h"
#include "ktune/search/droplet.h"
#include "ktune/search/evolution.h"
#include "ktune/search/sampler.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"
#include "ktune/support/interrupt.h"

namespace ktune::search {

namespace {

class RandomPolicy : public SearchPolicy {
 public:
  RandomPolicy(std::shared_ptr<const te::ComputeDAG> dag, const target::Target& t, uint64_t seed)
      : sampler_(std::move(dag), t, seed) {}
  std::vector<schedule::State> propose(int n, const std::unordered_set<std::string>& measured) override {
    std::vector<schedule::State> out;
    std::unordered_set<std::string> batch;
    // Give up after many draws in a row that were all measured before; a resumed run skips
    // its whole history first, so that counts towards the allowance.
    const size_t max_misses = 1000 + measured.size();
    size_t misses = 0;
    while (int(out.size()) < n && misses < max_misses) {
      schedule::State st = sampler_.sample();
      const std::string key = schedule::canonical_key(st.steps());
      if (measured.count(key) || !batch.insert(key).second) {
        ++misses;
        continue;
      }
      misses = 0;
      out.push_back(std::move(st));
    }
    return out;
  }
  std::string phase() const override { return "sample"; }

 private:
  RandomSampler sampler_;
};

// Exploration for `explore_budget` candidates, then Droplet Search from the best valid one
// for at most `refine_budget` candidates (two-phase). With explore_until_valid, the
// exploration stops at its first valid candidate instead (the droplet strategy: refine a
// default schedule).
class TwoPhasePolicy : public SearchPolicy {
 public:
  TwoPhasePolicy(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, std::unique_ptr<SearchPolicy> explore,
                 int explore_budget, int refine_budget, bool explore_until_valid, uint64_t seed)
      : dag_(std::move(dag)),
        target_(std::move(t)),
        explore_(std::move(explore)),
        explore_budget_(explore_budget),
        refine_budget_(refine_budget),
        explore_until_valid_(explore_until_valid),
        seed_(seed) {}

  std::vector<schedule::State> propose(int n, const std::unordered_set<std::string>& measured) override {
    if (explore_until_valid_ && best_) explore_budget_ = std::min(explore_budget_, explored_);
    if (explored_ < explore_budget_) {
      const int k = explore_until_valid_ ? 1 : std::min(n, explore_budget_ - explored_);
      auto batch = explore_->propose(k, measured);
      if (!batch.empty()) {
        refining_ = false;
        return batch;
      }
      explore_budget_ = explored_;  // the space is exhausted
    }
    if (!refine_) {
      if (!best_) return {};
      explore_best_ms_ = best_ms_;
      refine_ = std::make_unique<DropletPolicy>(dag_, target_, *best_, best_times_, seed_ + 1);
      refine_first_trial_ = explored_ + refined_;  // a resumed run's earlier refine trials come first
      if (remeasure_) refine_->set_remeasure(remeasure_);
    }
    if (refined_ >= refine_budget_) return {};
    refining_ = true;
    return refine_->propose(std::min(n, refine_budget_ - refined_), measured);
  }

  void observe(const std::vector<schedule::State>& states, const std::vector<MeasureResult>& results) override {
    if (refining_) {
      refine_->observe(states, results);
      refined_ += int(states.size());
    } else {
      explore_->observe(states, results);
      explored_ += int(states.size());
    }
    for (size_t i = 0; i < states.size(); ++i) track(states[i], results[i]);
  }

  void restore(const std::vector<schedule::State>& states, const std::vector<MeasureResult>& results,
               const std::vector<std::string>& phases) override {
    std::vector<schedule::State> es;
    std::vector<MeasureResult> er;
    for (size_t i = 0; i < states.size(); ++i) {
      if (phases[i] == "refine") {
        ++refined_;
      } else {
        ++explored_;
        es.push_back(states[i]);
        er.push_back(results[i]);
      }
      track(states[i], results[i]);
    }
    if (!es.empty()) explore_->observe(es, er);  // trains the model on the earlier run
  }

  std::string phase() const override { return refining_ ? "refine" : explore_->phase(); }

  void set_remeasure(RemeasureFn f) override {
    remeasure_ = std::move(f);
    if (refine_) refine_->set_remeasure(remeasure_);
  }

  void report(TuneResult& r) const override {
    r.explore_best_ms = refine_ ? explore_best_ms_ : best_ms_;
    if (!refine_) return;
    r.refine_converged = refine_->converged();
    for (const DropletStep& d : refine_->accepted())
      r.refinement.push_back({refine_first_trial_ + d.trial, d.from_ms, d.to_ms, d.p_value, d.move, d.confirmed});
    r.refine_confirmations = int(refine_->tests().size());
    for (const DropletTest& t : refine_->tests()) r.refine_remeasured += 2 * t.rounds;
  }

 private:
  void track(const schedule::State& st, const MeasureResult& m) {
    if (!m.valid() || (best_ && m.timing.median_ms >= best_ms_)) return;
    best_ = st;
    best_ms_ = m.timing.median_ms;
    best_times_ = m.timing.group_means_ms;
  }

  std::shared_ptr<const te::ComputeDAG> dag_;
  target::Target target_;
  std::unique_ptr<SearchPolicy> explore_;
  std::unique_ptr<DropletPolicy> refine_;
  RemeasureFn remeasure_;
  int explore_budget_, refine_budget_;
  bool explore_until_valid_;
  uint64_t seed_;
  int explored_ = 0, refined_ = 0;
  int refine_first_trial_ = 0;  // trials before the refinement's first candidate
  bool refining_ = false;
  std::optional<schedule::State> best_;
  double best_ms_ = 0, explore_best_ms_ = 0;
  std::vector<double> best_times_;
};

}  // namespace

int TuneOptions::total_budget() const { return strategy == "two-phase" ? budget + refine_budget : budget; }

std::vector<std::string> strategy_names() { return {"two-phase", "evolutionary", "droplet", "random"}; }

void check_strategy(const std::string& strategy) {
  const auto names = strategy_names();
  if (std::find(names.begin(), names.end(), strategy) != names.end()) return;
  std::string known;
  for (const auto& s : names) known += (known.empty() ? "" : ", ") + s;
  throw UserError("unknown strategy '" + strategy + "' (available: " + known + ")");
}

std::unique_ptr<SearchPolicy> make_policy(const TuneOptions& opt, std::shared_ptr<const te::ComputeDAG> dag,
                                          const target::Target& t, std::shared_ptr<CostModel> model) {
  check_strategy(opt.strategy);
  if (opt.strategy == "random") return std::make_unique<RandomPolicy>(std::move(dag), t, opt.seed);
  if (opt.strategy == "droplet")
    return std::make_unique<TwoPhasePolicy>(dag, t, std::make_unique<RandomPolicy>(dag, t, opt.seed), opt.budget,
                                            opt.budget, true, opt.seed);
  if (!model) model = make_cost_model(opt.cost_model, opt.seed);
  auto evo = std::make_unique<EvolutionaryPolicy>(dag, t, std::move(model), opt.seed);
  if (opt.strategy == "evolutionary") return evo;
  return std::make_unique<TwoPhasePolicy>(dag, t, std::move(evo), opt.budget, opt.refine_budget, false, opt.seed);
}

WarmStart warm_start_model(CostModel& model, const std::vector<std::string>& logs, const te::KernelDef& def,
                           const target::Target& t) {
  WarmStart ws;
  const log::TargetInfo ti = log::TargetInfo::of(t);
  std::map<std::string, std::shared_ptr<const te::ComputeDAG>> dags;  // by workload key
  std::map<std::string, std::pair<std::vector<ProgramFeatures>, std::vector<double>>> data;
  for (const std::string& path : logs) {
    KT_USER_CHECK(std::filesystem::exists(path), "--warm-start: there is no tuning log '", path, "'");
    log::LogContents contents = log::read_log(path, /*skip_bad_lines=*/true);
    ws.skipped += int(contents.warnings.size());
    for (const auto& w : contents.warnings) ws.warnings.push_back(w);
    std::set<std::string> others;
    int mine = 0;
    for (const log::Record& r : contents.records) {
      if (r.workload.kernel != def.name) {
        others.insert(r.workload.kernel);
        continue;
      }
      ++mine;
      if (r.phase == "final") continue;  // a re-measurement of a candidate the log holds already
      if (r.target.triple != ti.triple || r.target.features != ti.features) {
        ++ws.skipped;
        continue;
      }
      const std::string key = r.workload.key() + "@" + std::to_string(r.threads);
      try {
        auto& dag = dags[r.workload.key()];
        if (!dag) {
          std::map<std::string, int64_t> ints(r.workload.params.begin(), r.workload.params.end());
          std::map<std::string, std::string> types;
          if (!r.workload.dtype.empty())
            for (const auto& p : def.params)
              if (p.is_dtype) types[p.name] = r.workload.dtype;
          dag = std::make_shared<const te::ComputeDAG>(def.instantiate(ints, types));
        }
        if (dag->hash() != r.workload.dag_hash) {  // another definition of the kernel
          ++ws.skipped;
          continue;
        }
        schedule::State st = schedule::replay(dag, schedule::steps_from_json(r.steps));
        data[key].first.push_back(extract_features(st, t));
        data[key].second.push_back(r.valid() ? r.gflops : 0.0);
        ++ws.used;
      } catch (const std::exception&) {  // parameters or steps that no longer apply
        ++ws.skipped;
      }
    }
    if (mine == 0) {
      std::string names;
      for (const auto& o : others) names += (names.empty() ? "" : ", ") + o;
      const size_t bad = contents.warnings.size();
      throw UserError("--warm-start: '" + path + "' holds no record of kernel " + def.name +
                      (!names.empty() ? " (only of " + names + ")"
                       : bad         ? " (not a tuning log: " + std::to_string(bad) + " unreadable line" +
                                   (bad == 1 ? "" : "s") + ")"
                                     : std::string(" (it is empty)")));
    }
  }
  for (auto& [key, d] : data) model.update(d.first, d.second, key);
  return ws;
}

TuningTask::TuningTask(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, const TuneOptions& opt,
                       log::LogWriter* log, std::unique_ptr<MeasureBackend> backend)
    : dag_(std::move(dag)), target_(std::move(t)), opt_(opt), log_(log), backend_(std::move(backend)) {
  policy_ = make_policy(opt_, dag_, target_, opt_.model);
  if (!backend_) backend_ = make_measure_backend(dag_, target_, opt_.threads, opt_.timing, opt_.isolation);
  result_.reference = backend_->reference_kind();
  // Confirmations of the refinement: fully timed (no slow cutoff), under the run limit, and
  // stopped like the search (a shorter result then).
  policy_->set_remeasure([this](const std::vector<schedule::State>& states) {
    BatchHooks hooks;
    hooks.keep_going = [&] {
      const bool past = deadline_ && std::chrono::steady_clock::now() >= *deadline_;
      return !stop_requested() && !past;
    };
    hooks.anchor = [this] { return anchor(); };
    hooks.options = [&](size_t) {
      MeasureOptions o;
      const double scale_ms = result_.best ? result_.best->median_ms : backend_->reference_ms();
      if (scale_ms > 0) o.run_limit_s = std::max(kMinRunLimitS, kRunLimitFactor * scale_ms / 1000);
      return o;
    };
    return backend_->measure_batch(states, hooks);
  });
}

TuningTask::~TuningTask() = default;

void TuningTask::add_history(const std::vector<log::Record>& records) {
  std::vector<schedule::State> states;
  std::vector<MeasureResult> results;
  std::vector<std::string> phases;
  for (const log::Record& r : records) {
    if (r.phase == "final") continue;  // (resumable_history leaves them out already)
    measured_.insert(schedule::canonical_key(schedule::steps_from_json(r.steps)));
    ++result_.trials;
    ++result_.phase_trials[r.phase];
    std::optional<schedule::State> st;
    try {
      st = schedule::replay(dag_, schedule::steps_from_json(r.steps));
    } catch (const std::exception&) {  // an invalid candidate: counted, not learnt from
    }
    if (r.valid()) {
      ++result_.valid;
      if (!result_.best || r.median_ms < result_.best->median_ms) {
        result_.best = r;
        result_.best_steps_text = st ? st->steps_text() : std::string();
      }
    } else {
      ++result_.errors;
      ++result_.error_counts[r.error];
    }
    if (!st) continue;
    MeasureResult m;
    if (r.valid()) {
      add_top(*st, r.median_ms, r.trial);
      m.timing.group_means_ms = r.times_ms;
      m.timing.median_ms = r.median_ms;
      m.gflops = r.gflops;
    } else {
      m.error = runtime::parse_error_class(r.error);
      m.message = r.error_message;
    }
    states.push_back(std::move(*st));
    results.push_back(std::move(m));
    phases.push_back(r.phase);
  }
  if (!states.empty()) policy_->restore(states, results, phases);
}

namespace {
constexpr size_t kTopKept = 8;
}

void TuningTask::add_top(const schedule::State& st, double median_ms, int trial) {
  if (top_.size() >= kTopKept && median_ms >= top_.back().median_ms) return;
  const std::string key = schedule::canonical_key(st.steps());
  for (const Top& t : top_)
    if (t.key == key) return;
  auto at = std::find_if(top_.begin(), top_.end(), [&](const Top& t) { return median_ms < t.median_ms; });
  top_.insert(at, Top{median_ms, trial, key, st});
  if (top_.size() > kTopKept) top_.pop_back();
}

void TuningTask::remeasure(int top, int rounds) {
  const int k = std::min<int>(top, int(top_.size()));
  if (k <= 0 || rounds <= 0) return;
  std::vector<schedule::State> states;
  for (int i = 0; i < k; ++i) states.push_back(top_[i].state);
  RankOptions ro;
  ro.rounds = rounds;
  const std::vector<MeasureResult> res = backend_->rank(states, ro);
  // Each ranked candidate gets a record of phase "final" (its trial number, not a new trial):
  // the log keeps the search's measurement and this one, and its best view takes the final
  // ranking's pick (log::better_pick).
  std::optional<TuneResult::Sustained> best;
  for (int i = 0; i < k && i < int(res.size()); ++i) {
    const MeasureResult& m = res[i];
    log::Record rec = log::make_record(*dag_, target_, opt_.threads);
    rec.steps = schedule::steps_to_json(top_[i].state.steps());
    rec.phase = "final";
    rec.trial = top_[i].trial;
    rec.timestamp = log::now_iso8601();
    rec.compile_ms = m.compile_ms;
    if (m.valid() && m.timing.median_ms > 0) {
      rec.times_ms = m.timing.group_means_ms;
      rec.median_ms = m.timing.median_ms;
      rec.gflops = dag_->flop_count() / (m.timing.median_ms * 1e6);
      if (!best || rec.median_ms < best->median_ms)
        best = TuneResult::Sustained{rec.trial, top_[i].median_ms, rec.median_ms, rec.gflops, k,
                                     int(m.timing.group_means_ms.size())};
    } else {
      rec.error = runtime::error_class_name(m.valid() ? runtime::ErrorClass::RuntimeError : m.error);
      rec.error_message = m.valid() ? "no timing in the final ranking" : m.message;
    }
    if (log_) log_->write(rec);
  }
  result_.sustained = best;
}

TuneResult TuningTask::result() const {
  TuneResult r = result_;
  policy_->report(r);
  return r;
}

std::optional<AnchorSpec> TuningTask::anchor() {
  if (!opt_.anchored || top_.empty()) return std::nullopt;
  const Top& best = top_.front();
  anchor_trial_[best.key] = best.trial;
  const auto known = anchor_ms_.find(best.key);
  return AnchorSpec{best.state, best.key, known == anchor_ms_.end() ? 0.0 : known->second, best.median_ms};
}

void TuningTask::record(const schedule::State& st, const MeasureResult& m) {
  ++result_.trials;
  log::Record rec = log::make_record(*dag_, target_, opt_.threads);
  rec.steps = schedule::steps_to_json(st.steps());
  rec.phase = policy_->phase();
  ++result_.phase_trials[rec.phase];
  rec.trial = result_.trials;
  rec.timestamp = log::now_iso8601();
  rec.compile_ms = m.compile_ms;
  if (m.valid()) {
    ++result_.valid;
    add_top(st, m.timing.median_ms, rec.trial);
    rec.times_ms = m.timing.group_means_ms;
    rec.median_ms = m.timing.median_ms;
    rec.gflops = m.gflops;
    if (m.anchor_ms > 0) {
      anchor_ms_[m.anchor_key] = m.anchor_ms;
      const auto t = anchor_trial_.find(m.anchor_key);
      rec.anchor_trial = t == anchor_trial_.end() ? 0 : t->second;
      rec.anchor_ms = m.anchor_ms;
      rec.raw_ms = m.raw_median_ms;
    }
    if (!result_.best || rec.median_ms < result_.best->median_ms) {
      result_.best = rec;
      result_.best_steps_text = st.steps_text();
    }
  } else {
    ++result_.errors;
    rec.error = runtime::error_class_name(m.error);
    rec.error_message = m.message;
    ++result_.error_counts[rec.error];
    debug(1) << "trial " << result_.trials << ": " << rec.error << ": " << m.message << "\n";
  }
  if (log_) log_->write(rec);
}

int TuningTask::step(int n, const std::function<void(const TuneProgress&)>& on_progress) {
  const auto start = std::chrono::steady_clock::now();
  auto past_deadline = [&] {
    const bool past = deadline_ && std::chrono::steady_clock::now() >= *deadline_;
    if (past) result_.timed_out = true;
    return past;
  };
  int done = 0;
  while (done < n && !stop_requested() && !past_deadline()) {
    std::vector<schedule::State> batch = policy_->propose(std::min(n - done, 64), measured_);
    if (batch.empty()) break;
    // The backend compiles the batch in groups in parallel and runs one candidate at a time;
    // a candidate slower than kSlowCutoffFactor x the best so far is timed by one run.
    BatchHooks hooks;
    hooks.keep_going = [&] { return !stop_requested() && !past_deadline(); };
    hooks.anchor = [this] { return anchor(); };
    hooks.options = [&](size_t) {
      MeasureOptions o;
      if (result_.best) o.slow_cutoff_ms = kSlowCutoffFactor * result_.best->median_ms;
      const double scale_ms = result_.best ? result_.best->median_ms : backend_->reference_ms();
      if (scale_ms > 0) o.run_limit_s = std::max(kMinRunLimitS, kRunLimitFactor * scale_ms / 1000);
      return o;
    };
    hooks.done = [&](size_t i, const MeasureResult& r) {
      measured_.insert(schedule::canonical_key(batch[i].steps()));
      record(batch[i], r);
      ++done;
      if (on_progress) {
        TuneProgress p;
        p.trial = result_.trials;
        p.budget = opt_.total_budget();
        p.valid = result_.valid;
        p.errors = result_.errors;
        p.phase = policy_->phase();
        if (result_.best) {
          p.best_ms = result_.best->median_ms;
          p.best_gflops = result_.best->gflops;
        }
        p.elapsed_s = seconds_ + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        on_progress(p);
      }
    };
    const std::vector<MeasureResult> results = backend_->measure_batch(batch, hooks);
    batch.resize(results.size());
    policy_->observe(batch, results);
  }
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result_.seconds = seconds_;
  return done;
}

std::vector<log::Record> resumable_history(const std::vector<log::Record>& records, const te::ComputeDAG& dag,
                                           const target::Target& t, int threads, const std::string& log_path) {
  const log::Workload w = log::Workload::of(dag);
  const log::TargetInfo ti = log::TargetInfo::of(t);
  const std::string hash = dag.hash();
  std::vector<log::Record> out;
  for (const log::Record& r : records) {
    if (r.workload.kernel != w.kernel || r.workload.params != w.params || r.workload.dtype != w.dtype) continue;
    if (r.phase == "final") continue;  // the final ranking of an earlier run: not a search trial
    const std::string prefix = "cannot resume from '" + log_path + "' (trial " + std::to_string(r.trial) + "): ";
    KT_USER_CHECK(r.workload.dag_hash == hash, prefix, "its records of ", w.key(),
                  " were measured for another definition of the kernel (DAG hash ", r.workload.dag_hash, ", now ",
                  hash, "); tune into a new log");
    KT_USER_CHECK(r.target.triple == ti.triple, prefix, "it was measured on ", r.target.triple, ", this target is ",
                  ti.triple);
    if (r.target.features != ti.features) {
      std::string missing, extra;
      for (const auto& f : r.target.features)
        if (std::find(ti.features.begin(), ti.features.end(), f) == ti.features.end()) missing += " +" + f;
      for (const auto& f : ti.features)
        if (std::find(r.target.features.begin(), r.target.features.end(), f) == r.target.features.end())
          extra += " +" + f;
      throw UserError(prefix + "it was measured on a target with other CPU features (" +
                      (missing.empty() ? "" : "only the log's:" + missing) +
                      (missing.empty() || extra.empty() ? "" : "; ") + (extra.empty() ? "" : "only this one's:" + extra) +
                      "); tune into a new log");
    }
    KT_USER_CHECK(r.threads == threads, prefix, "it was measured with ", r.threads, " threads, this run uses ", threads,
                  " (pass --threads=", r.threads, ")");
    out.push_back(r);
  }
  return out;
}

TuneResult tune(std::shared_ptr<const te::ComputeDAG> dag, const target::Target& target, const TuneOptions& opt,
                const std::function<void(const TuneProgress&)>& on_progress) {
  // Read and check the log to resume before anything is written to it, and open it before
  // any work: a bad or unwritable log fails at once and stays as it was.
  std::vector<log::Record> history;
  std::vector<std::string> warnings;
  if (opt.resume) {
    KT_USER_CHECK(!opt.log_path.empty(), "--resume needs a tuning log");
    KT_USER_CHECK(std::filesystem::exists(opt.log_path), "--resume: there is no tuning log '", opt.log_path,
                  "' to resume");
    log::LogContents contents = log::read_log(opt.log_path);
    history = resumable_history(contents.records, *dag, target, opt.threads, opt.log_path);
    warnings = std::move(contents.warnings);
  }
  std::unique_ptr<log::LogWriter> writer;
  if (!opt.log_path.empty()) writer = std::make_unique<log::LogWriter>(opt.log_path);
  const auto start = std::chrono::steady_clock::now();
  TuningTask task(dag, target, opt, writer.get());
  if (opt.time_budget_s > 0)
    task.set_deadline(start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                  std::chrono::duration<double>(opt.time_budget_s)));
  task.add_history(history);
  const int left = opt.total_budget() - task.result().trials;
  if (left > 0) task.step(left, on_progress);
  if (opt.remeasure_top > 0 && !stop_requested() && !task.result().timed_out)
    task.remeasure(opt.remeasure_top, opt.remeasure_rounds);
  TuneResult r = task.result();
  r.resumed = int(history.size());
  r.log_warnings = std::move(warnings);
  r.interrupted = stop_requested() && r.trials < opt.total_budget();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace ktune::search
