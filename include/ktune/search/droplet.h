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
// Which timings are compared (the experiment design): the centre's timings were taken
// earlier, and on a shared machine the speed drifts by 10-20% within a minute, more than
// most moves gain; a test against them measures the drift. So, when the policy has a way to
// re-measure (set_remeasure; the tuner gives one), neighbours are *confirmed*: the centre and
// the neighbour are measured again, interleaved over `confirm_rounds` rounds in the order
// C X, X C, X C, C X (both see the same machine state; a linear or quadratic drift cancels,
// and each of the two takes one end of the re-measured batch, whose first and last places can
// run slower), and the t-test compares those fresh samples, each round's scaled by the
// geometric mean of its two kernels' means (the machine's speed changes in steps that last
// seconds; a round in a slow stretch would otherwise widen both samples); in addition the
// neighbour's median must be below the centre's in a majority of the rounds, and the centre
// must not run in a slow stretch (`slow_stretch`); and a neighbour that passes is confirmed
// again, from scratch, `confirm_tests` times in all, each of which it must pass (a tune makes
// 8-15 confirmations, and at alpha = 0.05 one passes by chance in most tunes: measured here,
// one schedule confirmed against itself passed 8 of 110 confirmations; the accepted moves of
// 10 of 11 tunes then were no faster side by side). The fastest neighbour of each observed
// batch is always confirmed, then (up to `confirm_candidates` in all) the next
// fastest while they are faster than the centre's fresh timings. An accepted neighbour
// becomes the centre with its fresh timings; a rejected one leaves the centre with its fresh
// timings (the latest reference). Without re-measurement, the test compares with the
// centre's stored timings.
//
// One neighbourhood at radius r is measured in two rounds: first every single move (each
// coordinate r values down and r values up, where that value exists; in an order shuffled by
// the seed, so that a short batch favours no coordinate), then, when none of them was
// accepted, the pairs of the `pair_moves` fastest single moves of that radius (on different
// coordinates), applied one after the other; at radius 1 preceded by the reshape moves of the
// innermost tile (`reshape_moves`): for two spatial loops of one stage, the first one's
// innermost level (not a vectorized one) gives the next smaller value to its next outer
// level while the second's takes the next larger one from its nearest outer level with a
// factor to give. Acceptance is decided after every observed batch.
// Points are identified by their canonical key with the unroll pragmas normalized (a pragma
// removed and added again at the end of the list is the same point), so no point is measured
// twice. The cap on measurements is the caller's (its budget).
#pragma once

#include <functional>
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
  // The pair round of radius 1 also tries reshaping the innermost tile of two spatial loops
  // (one loop's innermost level halves, say, while the other's doubles).
  bool reshape_moves = true;
  // Confirmation by interleaved re-measurement (see above; used when set_remeasure was
  // called): rounds of (centre, neighbour) pairs, and neighbours confirmed per batch at most.
  int confirm_rounds = 4;
  int confirm_candidates = 2;
  // A confirmation whose centre runs slower than this times the fastest group time known of
  // it (its own, or the previous centre's times the confirmed gain) ran in a slow stretch of
  // the machine, in which kernels do not keep their order (matmul 512^3: a 19% gain in the
  // quiet rounds was a 7% loss in the slow ones): no move is accepted on it. The quiet
  // machine's group times spread by about 10%, its slow stretches run 1.6-2x slower.
  double slow_stretch = 1.5;
  // A move is taken only when this many confirmations in a row accept it (the p-value it is
  // reported with is their Fisher combination).
  int confirm_tests = 2;
};

// One confirmation of a neighbour against the centre (interleaved re-measurement).
struct DropletTest {
  std::string move;
  double centre_ms = 0, candidate_ms = 0;  // means of the fresh group means
  double p_value = 1;                      // Welch's on the fresh samples
  int rounds_won = 0, rounds = 0;          // rounds where the neighbour's median was lower
  bool slow = false;                       // run in a slow stretch (DropletOptions::slow_stretch)
  bool accepted = false;                   // this confirmation passed
  int repeat = 0;                          // 0: the first confirmation of this neighbour, k: its k-th repeat
};

// One accepted move.
struct DropletStep {
  int trial = 0;  // the policy's measurement count with the accepted candidate (its ordinal)
  double from_ms = 0, to_ms = 0;
  double p_value = 1;  // Welch's (confirmed: the Fisher combination of its confirmations'); NaN
                       // when decided on the means alone (< 2 timings)
  std::string move;    // readable: "split C.local i: [4, 8, 2] -> [8, 4, 2]"
  bool confirmed = false;  // decided on interleaved fresh timings (from_ms, to_ms are theirs)
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
  // Confirm faster neighbours by interleaved re-measurement through `f` (see above).
  void set_remeasure(RemeasureFn f) override;

  // True once no neighbour is left to measure at the largest useful radius (propose() then
  // returns nothing).
  bool converged() const;
  const schedule::State& centre() const;
  // The mean of the centre's timings (infinity while the centre has no valid timing).
  double centre_ms() const;
  const std::vector<DropletStep>& accepted() const;
  // Every confirmation made, accepted or not, in order.
  const std::vector<DropletTest>& tests() const;
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

// One confirmation's measurements: `rounds` rounds of (centre, neighbour) in the Thue-Morse
// order C X, X C, X C, C X, ... (see above).
std::vector<schedule::State> confirmation_batch(const schedule::State& centre, const schedule::State& neighbour,
                                                int rounds);

// The test of a confirmation from the results of its confirmation_batch (in that order):
// `test` without its move and repeat; `centre_quiet_ms` is the fastest group time known of the
// centre (DropletOptions::slow_stretch; infinity: no slow-stretch check). A failed
// measurement leaves test.rounds < rounds, p NaN and nothing accepted.
struct Confirmation {
  DropletTest test;
  std::vector<double> centre_times, neighbour_times;  // all fresh group means
  std::vector<double> round_ratios;                   // per round: centre mean / neighbour mean
};
Confirmation evaluate_confirmation(const std::vector<MeasureResult>& results, int rounds, const DropletOptions& opt,
                                   double centre_quiet_ms);

// Fisher's combination of independent p-values: P(chi^2 with 2k degrees of freedom > -2 sum
// ln p_i). One value gives itself back; NaN if any is NaN or the list is empty.
double fisher_combined_p(const std::vector<double>& p);
// The CDF of Student's t distribution with `df` > 0 (real) degrees of freedom at t.
double student_t_cdf(double t, double df);

}  // namespace ktune::search
