// The tuning driver: policies propose, the backend measures, the log records.
#include "ktune/search/tuner.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "ktune/schedule/steps.h"
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

}  // namespace

std::vector<std::string> strategy_names() { return {"random"}; }

std::unique_ptr<SearchPolicy> make_policy(const std::string& strategy, std::shared_ptr<const te::ComputeDAG> dag,
                                          const target::Target& t, uint64_t seed) {
  if (strategy == "random") return std::make_unique<RandomPolicy>(std::move(dag), t, seed);
  std::string known;
  for (const auto& s : strategy_names()) known += (known.empty() ? "" : ", ") + s;
  throw UserError("unknown strategy '" + strategy + "' (available: " + known + ")");
}

TuningTask::TuningTask(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, const TuneOptions& opt,
                       log::LogWriter* log, std::unique_ptr<MeasureBackend> backend)
    : dag_(std::move(dag)), target_(std::move(t)), opt_(opt), log_(log), backend_(std::move(backend)) {
  policy_ = make_policy(opt_.strategy, dag_, target_, opt_.seed);
  if (!backend_) backend_ = make_measure_backend(dag_, target_, opt_.threads, opt_.timing, opt_.isolation);
  result_.reference = backend_->reference_kind();
}

TuningTask::~TuningTask() = default;

void TuningTask::add_history(const std::vector<log::Record>& records) {
  for (const log::Record& r : records) {
    measured_.insert(schedule::canonical_key(schedule::steps_from_json(r.steps)));
    ++result_.trials;
    if (r.valid()) {
      ++result_.valid;
      if (!result_.best || r.median_ms < result_.best->median_ms) {
        result_.best = r;
        try {
          result_.best_steps_text = schedule::replay(dag_, schedule::steps_from_json(r.steps)).steps_text();
        } catch (const std::exception&) {
          result_.best_steps_text.clear();
        }
      }
    } else {
      ++result_.errors;
      ++result_.error_counts[r.error];
    }
  }
}

void TuningTask::record(const schedule::State& st, const MeasureResult& m) {
  ++result_.trials;
  log::Record rec = log::make_record(*dag_, target_, opt_.threads);
  rec.steps = schedule::steps_to_json(st.steps());
  rec.phase = policy_->phase();
  rec.trial = result_.trials;
  rec.timestamp = log::now_iso8601();
  rec.compile_ms = m.compile_ms;
  if (m.valid()) {
    ++result_.valid;
    rec.times_ms = m.timing.group_means_ms;
    rec.median_ms = m.timing.median_ms;
    rec.gflops = m.gflops;
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
  int done = 0;
  while (done < n && !stop_requested()) {
    std::vector<schedule::State> batch = policy_->propose(std::min(n - done, 64), measured_);
    if (batch.empty()) break;
    std::vector<MeasureResult> results;
    for (const schedule::State& st : batch) {
      if (stop_requested()) break;
      measured_.insert(schedule::canonical_key(st.steps()));
      results.push_back(backend_->measure(st));
      record(st, results.back());
      ++done;
      if (on_progress) {
        TuneProgress p;
        p.trial = result_.trials;
        p.budget = opt_.budget;
        p.valid = result_.valid;
        p.errors = result_.errors;
        if (result_.best) {
          p.best_ms = result_.best->median_ms;
          p.best_gflops = result_.best->gflops;
        }
        p.elapsed_s = seconds_ + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        on_progress(p);
      }
    }
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
  task.add_history(history);
  const int left = opt.budget - task.result().trials;
  if (left > 0) task.step(left, on_progress);
  TuneResult r = task.result();
  r.resumed = int(history.size());
  r.log_warnings = std::move(warnings);
  r.interrupted = stop_requested() && r.trials < opt.budget;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace ktune::search
