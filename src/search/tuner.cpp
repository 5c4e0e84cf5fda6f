// The first tuner: random sampling with deduplication, verified measurement, logging.
#include "ktune/search/tuner.h"

#include <chrono>
#include <unordered_set>

#include "ktune/schedule/steps.h"
#include "ktune/search/measurer.h"
#include "ktune/search/sampler.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"

namespace ktune::search {

TuneResult tune(std::shared_ptr<const te::ComputeDAG> dag, const target::Target& target, const TuneOptions& opt,
                const std::function<void(const TuneProgress&)>& on_progress) {
  KT_USER_CHECK(opt.strategy == "random", "unknown strategy '", opt.strategy, "' (available: random)");
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };

  std::unique_ptr<log::LogWriter> writer;
  if (!opt.log_path.empty()) writer = std::make_unique<log::LogWriter>(opt.log_path);

  Measurer measurer(dag, target, opt.threads, opt.timing);
  RandomSampler sampler(dag, target, opt.seed);
  TuneResult result;
  result.reference = measurer.reference_kind();
  std::unordered_set<std::string> seen;
  TuneProgress progress;
  progress.budget = opt.budget;

  int misses = 0;
  while (result.trials < opt.budget) {
    schedule::State st = sampler.sample();
    const std::string key = schedule::canonical_key(st.steps());
    if (!seen.insert(key).second) {
      if (++misses > 1000) break;  // the space is exhausted
      continue;
    }
    misses = 0;
    MeasureResult m = measurer.measure(st);
    ++result.trials;
    log::Record rec = log::make_record(*dag, target, opt.threads);
    rec.steps = schedule::steps_to_json(st.steps());
    rec.phase = "sample";
    rec.trial = result.trials;
    rec.timestamp = log::now_iso8601();
    rec.compile_ms = m.compile_ms;
    if (m.valid()) {
      ++result.valid;
      rec.times_ms = m.timing.group_means_ms;
      rec.median_ms = m.timing.median_ms;
      rec.gflops = m.gflops;
      if (!result.best || rec.median_ms < result.best->median_ms) {
        result.best = rec;
        result.best_steps_text = st.steps_text();
      }
    } else {
      ++result.errors;
      rec.error = runtime::error_class_name(m.error);
      rec.error_message = m.message;
      ++result.error_counts[rec.error];
      debug(1) << "trial " << result.trials << ": " << rec.error << ": " << m.message << "\n";
    }
    if (writer) writer->write(rec);
    progress.trial = result.trials;
    progress.valid = result.valid;
    progress.errors = result.errors;
    if (result.best) {
      progress.best_ms = result.best->median_ms;
      progress.best_gflops = result.best->gflops;
    }
    progress.elapsed_s = elapsed();
    if (on_progress) on_progress(progress);
  }
  result.seconds = elapsed();
  return result;
}

}  // namespace ktune::search
