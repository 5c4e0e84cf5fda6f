// Random schedules from the sketch space (see sampler.h).
#include "ktune/search/sampler.h"

#include "ktune/schedule/lower.h"
#include "ktune/support/error.h"

namespace ktune::search {

RandomSampler::RandomSampler(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, uint64_t seed)
    : dag_(dag), sketches_(generate_sketches(dag, t)), annotator_(dag, t, seed) {
  KT_CHECK(!sketches_.empty(), "no sketch for ", dag_->kernel);
}

schedule::State RandomSampler::sample() {
  for (int attempt = 0;; ++attempt) {
    const Sketch& sk =
        sketches_[std::uniform_int_distribution<size_t>(0, sketches_.size() - 1)(annotator_.rng())];
    try {
      schedule::State st = annotator_.annotate(sk);
      schedule::lower(st, "check");  // reject invalid states before they reach the compiler
      return st;
    } catch (const InvalidCandidate& e) {
      std::string reason = e.what();
      ++rejected_[reason.substr(0, reason.find(':'))];
      KT_CHECK(attempt < 1000, "annotation keeps producing invalid states: ", e.what());
    }
  }
}

}  // namespace ktune::search
