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
//
// One neighbourhood at radius r is measured in two rounds: first every single move (each
// coordinate r values down and r values up, where that value exists; in an order shuffled by
// the seed, so that a short batch favours no coordinate), then, when none of them was
// accepted, the pairs of the `pair_moves` fastest single moves of that radius (on different
// coordinates), applied one after the other. Acceptance is decided after every observed batch.
// Points are identified by their canonical key with the unroll pragmas normalized (a pragma
// removed and added again at the end of the list is the same point), so no point is measured
// twice. The cap on measurements is the caller's (its budget).
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ktune/search/tuner.h"

namespace ktune::search {

struct DropletOptions {
  double alpha = 0.05;
  // The fastest single moves of a radius that are combined pairwise when none was accepted.
  int pair_moves = 5;
};

// One accepted move.
struct DropletStep {
  int trial = 0;  // the policy's measurement count when accepted
  double from_ms = 0, to_ms = 0;
  double p_value = 1;  // Welch's; NaN when decided on the means alone (< 2 timings)
  std::string move;    // readable: "split C.local i: [4, 8, 2] -> [8, 4, 2]"
};

class DropletPolicy : public SearchPolicy {
 public:
  // Starts from `start`, measured with the timings `start_times_ms` (group means). With no
  // timings the first proposal is `start` itself (its key must not be measured yet).
  DropletPolicy(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, schedule::State start,
                std::vector<double> start_times_ms, uint64_t seed, DropletOptions opt = {});
  ~DropletPolicy() override;
  std::vector<schedule::State> propose(int n, const std::unordered_set<std::string>& measured) override;
  void observe(const std::vector<schedule::State>& states, const std::vector<MeasureResult>& results) override;
  std::string phase() const override { return "refine"; }

  // True once no neighbour is left to measure at the largest useful radius (propose() then
  // returns nothing).
  bool converged() const;
  const schedule::State& centre() const;
  // The mean of the centre's timings (infinity while the centre has no valid timing).
  double centre_ms() const;
  const std::vector<DropletStep>& accepted() const;
  // The current radius, and how many neighbours were dropped because they did not replay or
  // lower (moves keep splits perfect, so these are rare).
  int radius() const;
  int rejected() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One coordinate of a schedule: its legal values in increasing order and the current one.
struct DropletCoordinate {
  std::string name;  // "split C i: levels 0-2", "unroll C", "parallel C" (unique in a state)
  std::vector<int64_t> values;
  int index = 0;  // of the state's value in `values`
};
// The coordinates of `state` (splits, unroll pragmas, parallel fusion), as Droplet Search
// moves them on target `t`. Coordinates with a single legal value are left out.
std::vector<DropletCoordinate> droplet_coordinates(const schedule::State& state, const target::Target& t);

// One-sided Welch's t-test: the p-value of "mean(b) < mean(a)" (small when b is clearly
// faster). NaN when either sample has fewer than two values (DESIGN §7: the caller then
// decides on the means alone).
// When both samples have no spread, the p-value is 0, 0.5 or 1 as mean(b) is below, equal
// to or above mean(a).
double welch_p_value(const std::vector<double>& a, const std::vector<double>& b);
// The CDF of Student's t distribution with `df` > 0 (real) degrees of freedom at t.
double student_t_cdf(double t, double df);

}  // namespace ktune::search
