// Random schedules from the sketch space: a random sketch (sketch.h), randomly annotated.
// Annotations that give an invalid state are rejected before compilation (the state is
// lowered to check) and counted by reason.
#pragma once

#include <memory>

#include "ktune/search/sketch.h"

namespace ktune::search {

class RandomSampler {
 public:
  RandomSampler(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, uint64_t seed);
  // A random complete, valid schedule.
  schedule::State sample();
  const std::vector<Sketch>& sketches() const { return sketches_; }
  const RejectCounts& rejected() const { return rejected_; }

 private:
  std::shared_ptr<const te::ComputeDAG> dag_;
  std::vector<Sketch> sketches_;
  Annotator annotator_;
  RejectCounts rejected_;
};

}  // namespace ktune::search
