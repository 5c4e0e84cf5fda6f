// Refinement by Droplet Search (DESIGN §7): coordinate descent from the best candidate.
//
// Coordinates are the tunable decisions of the centre: for each split, the length of each
// pair of its levels (the outer level included), whose legal values are the ordered divisors
// of their product, so a move transfers factors between the two levels and keeps the split
// perfect; the unroll pragma; the number of loops fused into a parallel loop. A neighbour at
// radius r is r values up or down one coordinate (or two coordinates at once); visited points
// are skipped. A neighbour is accepted when its mean time is lower and Welch's t-test on the
// timings gives p < alpha; the centre then moves and r resets to 1. When a neighbourhood
// improves nothing r grows; the search has converged when the largest useful radius improves
// nothing.
#pragma once

#include <memory>
#include <random>
#include <vector>

#include "ktune/search/tuner.h"

namespace ktune::search {

struct DropletOptions {
  double alpha = 0.05;
};

// One accepted move.
struct DropletStep {
  int trial = 0;             // the policy's measurement count when accepted
  double from_ms = 0, to_ms = 0;
  double p_value = 1;
  std::string move;          // readable: "split C.local i: [4, 8, 2] -> [8, 4, 2]"
};

class DropletPolicy : public SearchPolicy {
 public:
  // Starts from `start`, measured with the timings `start_times_ms` (group means).
  DropletPolicy(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, schedule::State start,
                std::vector<double> start_times_ms, uint64_t seed, DropletOptions opt = {});
  ~DropletPolicy() override;
  std::vector<schedule::State> propose(int n, const std::unordered_set<std::string>& measured) override;
  void observe(const std::vector<schedule::State>& states, const std::vector<MeasureResult>& results) override;
  std::string phase() const override { return "refine"; }

  bool converged() const;
  const schedule::State& centre() const;
  double centre_ms() const;
  const std::vector<DropletStep>& accepted() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One-sided Welch's t-test: the p-value of "mean(b) < mean(a)" (small when b is clearly
// faster). NaN when either sample has fewer than two values (DESIGN §7: the caller then
// decides on the means alone).
double welch_p_value(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace ktune::search
