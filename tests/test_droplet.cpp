// Droplet Search (droplet.h): Welch's test against reference values, the coordinates and
// neighbours of sampled schedules, descent on a synthetic objective with a known optimum, and
// a short real refinement measured by the JIT.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <set>

#include "ktune/schedule/lower.h"
#include "ktune/schedule/steps.h"
#include "ktune/search/droplet.h"
#include "ktune/search/measurer.h"
#include "ktune/search/sampler.h"
#include "ktune/search/sketch.h"
#include "ktune/te/kernel.h"
#include "support/dags.h"

using namespace ktune;
using namespace ktune::testing;
using search::DropletPolicy;

namespace {

int64_t product(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t x : v) p *= x;
  return p;
}

// The loop extent each split step of `st` splits, in step order.
std::vector<int64_t> split_extents(const schedule::State& st) {
  std::vector<int64_t> out;
  schedule::State s(st.dag_ptr());
  for (const schedule::Step& step : st.steps()) {
    if (const auto* sp = std::get_if<schedule::SplitStep>(&step.v))
      out.push_back(s.stage(sp->stage).leaf_iter(sp->iter).extent);
    s.apply(step);
  }
  return out;
}

std::vector<schedule::SplitStep> splits(const schedule::State& st) {
  std::vector<schedule::SplitStep> out;
  for (const schedule::Step& step : st.steps())
    if (const auto* sp = std::get_if<schedule::SplitStep>(&step.v)) out.push_back(*sp);
  return out;
}

// (stage, loop) names annotated `a`.
std::set<std::string> annotated(const schedule::State& st, schedule::Annotation a) {
  std::set<std::string> out;
  for (const schedule::Stage& s : st.stages())
    for (int id : s.leaf)
      if (s.iters[id].annotation == a) out.insert(s.op.name + "." + s.iters[id].name);
  return out;
}

int moves_at_radius_1(const std::vector<search::DropletCoordinate>& cs) {
  int n = 0;
  for (const auto& c : cs) n += (c.index > 0) + (c.index + 1 < int(c.values.size()));
  return n;
}

search::MeasureResult fake_result(std::vector<double> times) {
  search::MeasureResult r;
  r.timing.group_means_ms = std::move(times);
  r.timing.median_ms = r.timing.group_means_ms.front();
  return r;
}

}  // namespace

TEST_CASE("welch_p_value and the t distribution match reference values", "[droplet]") {
  // Reference CDF values by numerical integration of the t density (Simpson, 2e5 intervals);
  // df = 1 and 2 have closed forms (0.75, 1/3), 2.228 and 1.812 are the textbook 97.5% and
  // 95% points of t(10).
  struct Ref {
    double t, df, cdf;
  };
  const Ref refs[] = {{2.228, 10, 0.9749941140914502},
                      {-1.812, 10, 0.050037631032923136},
                      {1.0, 1, 0.75},
                      {-0.5, 2, 1.0 / 3},
                      {-3.0, 4.7, 0.01626963698851619},
                      {0.3, 30, 0.6168769473578243},
                      {-2.5, 7.25, 0.019932760379467396},
                      {0, 3.5, 0.5}};
  for (const Ref& r : refs) {
    INFO("t = " << r.t << ", df = " << r.df);
    CHECK(search::student_t_cdf(r.t, r.df) == Approx(r.cdf).epsilon(1e-9));
  }
  // The far tail keeps its relative precision (closed form for df = 3, cancellation removed).
  CHECK(search::student_t_cdf(-40, 3) == Approx(1.7190340394578525e-05).epsilon(1e-9));
  CHECK(search::student_t_cdf(-3, 3) == Approx(0.028834442811218552).epsilon(1e-9));

  // Welch's test: the statistic, Welch–Satterthwaite's df and the CDF, computed independently.
  // The third pair is Wikipedia's first Welch example (t = 2.46, df = 24.99, two-sided 0.021).
  struct Case {
    std::vector<double> a, b;
    double p;
  };
  const Case cases[] = {
      {{1.0, 1.1, 0.9, 1.05, 0.95}, {0.8, 0.85, 0.9, 0.82, 0.88}, 0.004652002975331027},
      {{0.104, 0.136, 0.104, 0.130, 0.070}, {0.141, 0.144, 0.160, 0.095, 0.105}, 0.8651060373630908},
      {{27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4},
       {27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4},
       0.9893109992685689},
      {{3.0, 3.1, 2.9}, {3.05, 2.5, 3.6, 2.2, 2.8, 3.3}, 0.3450828527354307},
  };
  for (const Case& c : cases) {
    CHECK(search::welch_p_value(c.a, c.b) == Approx(c.p).epsilon(1e-8));
    CHECK(search::welch_p_value(c.b, c.a) == Approx(1 - c.p).epsilon(1e-8));  // the other side
  }
  CHECK(std::isnan(search::welch_p_value({1.0}, {0.5, 0.6})));
  CHECK(std::isnan(search::welch_p_value({1.0, 1.1}, {0.5})));
  CHECK(std::isnan(search::welch_p_value({}, {})));
  CHECK(search::welch_p_value({1.0, 1.0}, {0.5, 0.5}) == 0.0);
  CHECK(search::welch_p_value({1.0, 1.0}, {2.0, 2.0}) == 1.0);
}

TEST_CASE("droplet neighbours of sampled matmul schedules are valid, perfect, unique moves", "[droplet]") {
  const target::Target t = target::host_target();
  auto dag = matmul_dag(128, 96, 64);
  search::RandomSampler sampler(dag, t, 11);
  bool saw_parallel_move = false, saw_unroll_move = false;
  for (int sample = 0; sample < 8; ++sample) {
    const schedule::State centre = sampler.sample();
    INFO("centre:\n" << centre.steps_text());
    const auto coords = search::droplet_coordinates(centre, t);
    // Every split contributes its level pairs; values are ordered and the current one is in.
    std::set<std::string> names;
    int split_coords = 0;
    for (const auto& c : coords) {
      INFO(c.name);
      CHECK(names.insert(c.name).second);
      CHECK(c.values.size() >= 2);
      CHECK(std::is_sorted(c.values.begin(), c.values.end()));
      CHECK(std::adjacent_find(c.values.begin(), c.values.end()) == c.values.end());
      CHECK((c.index >= 0 && c.index < int(c.values.size())));
      split_coords += c.name.rfind("split ", 0) == 0;
    }
    const auto centre_splits = splits(centre);
    const auto centre_extents = split_extents(centre);
    int expected_split_coords = 0;  // level pairs of each split whose product has several divisors
    for (size_t i = 0; i < centre_splits.size(); ++i) {
      std::vector<int64_t> f = {centre_extents[i] / product(centre_splits[i].lengths)};
      f.insert(f.end(), centre_splits[i].lengths.begin(), centre_splits[i].lengths.end());
      for (size_t a = 0; a < f.size(); ++a)
        for (size_t b = a + 1; b < f.size(); ++b) expected_split_coords += f[a] * f[b] > 1;
    }
    CHECK(split_coords == expected_split_coords);

    DropletPolicy policy(dag, t, centre, {1.0, 1.0, 1.0}, 3);
    const std::vector<schedule::State> ns = policy.propose(10000, {});
    // Radius 1: one neighbour per coordinate and direction, none invalid.
    CHECK(int(ns.size()) + policy.rejected() == moves_at_radius_1(coords));
    CHECK(policy.rejected() == 0);
    std::set<std::string> keys = {schedule::canonical_key(centre.steps())};
    for (const schedule::State& n : ns) {
      INFO("neighbour:\n" << n.steps_text());
      CHECK(keys.insert(schedule::canonical_key(n.steps())).second);  // unique, not the centre
      CHECK_NOTHROW(schedule::lower(schedule::replay(dag, n.steps()), "check"));
      const auto ext = split_extents(n);
      const auto sps = splits(n);
      REQUIRE(sps.size() == centre_splits.size());
      for (size_t i = 0; i < sps.size(); ++i) {
        CHECK(ext[i] == centre_extents[i]);
        CHECK(ext[i] % product(sps[i].lengths) == 0);  // still perfect
      }
      // The same loops stay vectorized; a parallel root stage keeps its parallel loop first.
      CHECK(annotated(n, schedule::Annotation::Vectorize) == annotated(centre, schedule::Annotation::Vectorize));
      for (int s = 0; s < centre.num_stages(); ++s) {
        const schedule::Stage& cs = centre.stage(s);
        if (cs.leaf.empty() || cs.leaf_iter(0).annotation != schedule::Annotation::Parallel) continue;
        CHECK(n.stage(s).leaf_iter(0).annotation == schedule::Annotation::Parallel);
        saw_parallel_move = saw_parallel_move || n.stage(s).leaf_iter(0).name != cs.leaf_iter(0).name;
      }
      for (int s = 0; s < centre.num_stages(); ++s)
        saw_unroll_move = saw_unroll_move || n.stage(s).auto_unroll_max_step != centre.stage(s).auto_unroll_max_step;
    }
  }
  CHECK(saw_parallel_move);
  CHECK(saw_unroll_move);
}

namespace {

// A synthetic objective over plain-tiled matmul 128^3 schedules (sketch 0): per split, the
// squared distance of log2 of each level from a target, plus the unroll pragma's distance
// from 64 and the parallel loop's from two fused loops. Separable and convex in each split's
// levels, so a point that no exchange between two levels improves is the optimum, 1.0.
double objective(const schedule::State& st) {
  static const std::vector<std::vector<int>> targets = {{3, 4}, {1, 2, 2, 2}, {2, 1, 2, 2}};  // k, j, i
  const auto sps = splits(st);
  const auto ext = split_extents(st);
  REQUIRE(sps.size() == targets.size());
  double f = 1;
  for (size_t i = 0; i < sps.size(); ++i) {
    std::vector<int64_t> levels = {ext[i] / product(sps[i].lengths)};
    levels.insert(levels.end(), sps[i].lengths.begin(), sps[i].lengths.end());
    REQUIRE(levels.size() == targets[i].size());
    for (size_t l = 0; l < levels.size(); ++l) f += 0.1 * std::pow(std::log2(double(levels[l])) - targets[i][l], 2);
  }
  const schedule::Stage& c = st.stage(0);
  const int64_t unroll = c.auto_unroll_max_step;
  const int unroll_index = unroll == 0 ? 0 : unroll == 16 ? 1 : unroll == 64 ? 2 : 3;
  f += 0.05 * std::pow(unroll_index - 2, 2);
  const std::string outer = c.leaf_iter(0).name;
  const int fused = c.leaf_iter(0).annotation == schedule::Annotation::Parallel
                        ? 1 + int(std::count(outer.begin(), outer.end(), '@'))
                        : 0;
  f += 0.05 * std::pow(fused - 2, 2);
  return f;
}

// A schedule's point: every split's lengths, and the loops (extents, annotations), pragmas
// and compute locations of its stages, whatever the order of the steps that made them.
std::string point(const schedule::State& st) {
  std::string p;
  for (const auto& sp : splits(st))
    for (int64_t l : sp.lengths) p += std::to_string(l) + ",";
  return p + "\n" + st.to_string();
}

bool fails(const schedule::State& st) { return splits(st)[2].lengths.back() == 8; }

struct DescentRun {
  schedule::State final_centre;
  int measured = 0;
  bool converged = false;
  std::vector<search::DropletStep> accepted;
};

// Drives a DropletPolicy as the tuner does, timing each candidate by the objective with
// `groups` noisy group means; candidates whose innermost i loop has 8 iterations fail (with a
// fast, bogus timing that must never win). With `tell_measured` false the policy is never told what
// was measured, so only its own memory keeps it from proposing a point again. A point is
// identified by its split lengths and loop structure (point()), so two step lists of one
// point count as one.
DescentRun descend(const schedule::State& start, int groups, double noise, uint64_t seed, bool tell_measured) {
  const target::Target t = target::host_target();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n01(0, 1);
  auto timings = [&](const schedule::State& st) {
    std::vector<double> v;
    for (int g = 0; g < groups; ++g) v.push_back(objective(st) * (1 + noise * n01(rng)));
    return v;
  };
  DropletPolicy policy(start.dag_ptr(), t, start, timings(start), seed);
  std::unordered_set<std::string> measured = {schedule::canonical_key(start.steps())};
  const std::unordered_set<std::string> nothing;
  std::set<std::string> points = {point(start)};
  DescentRun run;
  std::vector<std::string> order;  // canonical keys of the measured candidates, in order
  for (int round = 0; round < 1000; ++round) {
    const std::vector<schedule::State> batch = policy.propose(16, tell_measured ? measured : nothing);
    if (batch.empty()) break;
    std::vector<search::MeasureResult> results;
    for (const schedule::State& st : batch) {
      INFO(st.steps_text());
      measured.insert(schedule::canonical_key(st.steps()));
      REQUIRE(points.insert(point(st)).second);  // never a point proposed before, or a centre
      if (fails(st)) {
        results.push_back(fake_result(std::vector<double>(groups, 1e-3)));
        results.back().error = runtime::ErrorClass::RuntimeError;
      } else {
        results.push_back(fake_result(timings(st)));
      }
    }
    run.measured += int(batch.size());
    for (const schedule::State& st : batch) order.push_back(schedule::canonical_key(st.steps()));
    const double before = policy.centre_ms();
    const size_t accepted = policy.accepted().size();
    policy.observe(batch, results);
    REQUIRE(policy.centre_ms() <= before);
    if (policy.accepted().size() > accepted) {
      // A move's trial is the ordinal of the candidate moved to among the policy's measurements
      // (what a log's trial numbers are, after the exploration's).
      const int trial = policy.accepted().back().trial;
      REQUIRE(trial >= 1);
      REQUIRE(trial <= int(order.size()));
      CHECK(order[trial - 1] == schedule::canonical_key(policy.centre().steps()));
    }
  }
  run.final_centre = policy.centre();
  run.converged = policy.converged();
  run.accepted = policy.accepted();
  CHECK(policy.propose(16, nothing).empty());
  return run;
}

schedule::State synthetic_start(uint64_t seed) {
  const target::Target t = target::host_target();
  auto dag = matmul_dag(128, 128, 128);
  const auto sketches = search::generate_sketches(dag, t);
  search::Annotator annotator(dag, t, seed);
  for (;;) {
    schedule::State st = annotator.annotate(sketches[0]);
    std::set<std::string> names;
    for (const auto& c : search::droplet_coordinates(st, t)) names.insert(c.name);
    // A start that has all three kinds of coordinates, away from the optimum.
    const int64_t unroll = st.stage(0).auto_unroll_max_step;
    if (names.count("parallel C") && names.count("unroll C") && unroll != 0 && unroll != 64 && !fails(st)) return st;
  }
}

// The same point with its pragma step first instead of last.
schedule::State pragma_first(const schedule::State& st) {
  std::vector<schedule::Step> steps = st.steps();
  const auto it = std::find_if(steps.begin(), steps.end(), [](const schedule::Step& s) {
    return std::holds_alternative<schedule::PragmaStep>(s.v);
  });
  REQUIRE(it != steps.end());
  schedule::PragmaStep pragma = std::get<schedule::PragmaStep>(it->v);
  pragma.iter = 0;
  steps.erase(it);
  steps.insert(steps.begin(), pragma);
  return schedule::replay(st.dag_ptr(), steps);
}

}  // namespace

TEST_CASE("droplet descends to the optimum of a synthetic objective and stops", "[droplet]") {
  for (uint64_t seed : {1, 2, 3}) {
    const schedule::State start = synthetic_start(seed);
    INFO("seed " << seed << ", start:\n" << start.steps_text());
    REQUIRE(objective(start) > 1.2);
    // Five noisy group means (Welch's test decides; the policy is told what was measured); one
    // exact timing (the means decide; the policy is told nothing); the same with the start's
    // pragma first, where an unroll move that puts it back (last) returns to a visited point.
    for (int variant : {0, 1, 2}) {
      const int groups = variant == 0 ? 5 : 1;
      INFO("variant " << variant);
      const DescentRun run =
          descend(variant == 2 ? pragma_first(start) : start, groups, variant == 0 ? 0.002 : 0.0, seed, variant == 0);
      INFO(run.final_centre.steps_text());
      CHECK(run.converged);
      CHECK(objective(run.final_centre) == Approx(1.0));
      CHECK(!run.accepted.empty());
      for (const search::DropletStep& s : run.accepted) {
        CHECK(s.to_ms < s.from_ms);
        CHECK(s.to_ms > 0.9);  // no failed candidate's bogus timing won
        CHECK(!s.move.empty());
        if (groups > 1) CHECK(s.p_value < 0.05);
        if (groups == 1) CHECK(std::isnan(s.p_value));
      }
      CHECK(run.measured < 1500);
    }
  }
}

TEST_CASE("droplet refines a sampled matmul measured by the JIT without getting slower", "[droplet][jit]") {
  const target::Target t = target::host_target();
  auto dag = matmul_dag(64, 64, 64);
  runtime::TimingOptions quick;
  quick.repeat = 5;
  quick.min_repeat_ms = 1;
  search::Measurer measurer(dag, t, 1, quick);
  search::RandomSampler sampler(dag, t, 5);
  const schedule::State start = sampler.sample();
  const search::MeasureResult r0 = measurer.measure(start);
  REQUIRE(r0.valid());
  DropletPolicy policy(dag, t, start, r0.timing.group_means_ms, 5);
  std::unordered_set<std::string> measured = {schedule::canonical_key(start.steps())};
  int n = 0, valid = 0;
  double centre = policy.centre_ms();
  while (n < 40) {
    const auto batch = policy.propose(std::min(8, 40 - n), measured);
    if (batch.empty()) break;
    std::vector<search::MeasureResult> results;
    for (const schedule::State& st : batch) {
      REQUIRE(measured.insert(schedule::canonical_key(st.steps())).second);
      results.push_back(measurer.measure(st));
      INFO(st.steps_text() << results.back().message);
      CHECK(results.back().valid());
      valid += results.back().valid();
    }
    n += int(batch.size());
    policy.observe(batch, results);
    CHECK(policy.centre_ms() <= centre);
    centre = policy.centre_ms();
  }
  CHECK(n >= 20);
  CHECK(valid == n);
  for (const search::DropletStep& s : policy.accepted()) {
    CHECK(s.to_ms < s.from_ms);
    CHECK(s.p_value < 0.05);
  }
  WARN("droplet on matmul 64^3: " << n << " measured, " << policy.accepted().size() << " accepted, "
                                  << r0.timing.median_ms << " ms -> centre mean " << policy.centre_ms() << " ms");
}

TEST_CASE("droplet moves an untiled stage's compute location along its consumer's loops", "[droplet][jit]") {
  // The sketches compute a cache-read copy (B.local: a packed panel of B) at a loop of the
  // tile that reads it; which loop decides the panel's size and how often it is packed. The
  // coordinate's values are the consumer's loop positions; a tiled stage keeps its level.
  const target::Target t = target::host_target();
  auto dag = matmul_dag(64, 64, 64);
  search::RandomSampler sampler(dag, t, 7);
  runtime::TimingOptions quick;
  quick.repeat = 2;
  quick.min_repeat_ms = 0.2;
  search::Measurer measurer(dag, t, 1, quick);
  int found = 0;
  for (int sample = 0; sample < 400 && found < 3; ++sample) {
    const schedule::State centre = sampler.sample();
    const auto coords = search::droplet_coordinates(centre, t);
    const auto c = std::find_if(coords.begin(), coords.end(),
                                [](const search::DropletCoordinate& x) { return x.name.rfind("compute_at ", 0) == 0; });
    for (const auto& x : coords) CHECK(x.name.find("compute_at C") != 0);  // C.local is tiled
    if (c == coords.end()) continue;
    ++found;
    INFO("centre:\n" << centre.steps_text() << c->name);
    // The last compute_at step of that stage, and its consumer's loop count there.
    const std::string stage = c->name.substr(std::string("compute_at ").size());
    int at = -1;
    schedule::State st(dag);
    int target_loops = 0;
    for (int i = 0; i < int(centre.steps().size()); ++i) {
      if (const auto* ca = std::get_if<schedule::ComputeAtStep>(&centre.steps()[i].v))
        if (st.stage(ca->stage).op.name == stage) at = i, target_loops = int(st.stage(ca->target_stage).leaf.size());
      st.apply(centre.steps()[i]);
    }
    REQUIRE(at >= 0);
    const int now = std::get<schedule::ComputeAtStep>(centre.steps()[at].v).target_iter;
    CHECK(c->index == now);
    REQUIRE(int(c->values.size()) == target_loops);
    for (int p = 0; p < target_loops; ++p) CHECK(c->values[p] == p);
    // Its radius-1 neighbours differ from the centre in that step's loop only, and compute the
    // right answer.
    DropletPolicy policy(dag, t, centre, {1.0, 1.0}, 1);
    int moved = 0;
    for (const schedule::State& n : policy.propose(10000, {})) {
      if (n.steps().size() != centre.steps().size()) continue;
      bool only_at = true;
      for (int i = 0; i < int(n.steps().size()); ++i)
        if (i != at && schedule::canonical_key({n.steps()[i]}) != schedule::canonical_key({centre.steps()[i]}))
          only_at = false;
      const auto* ca = std::get_if<schedule::ComputeAtStep>(&n.steps()[at].v);
      if (!only_at || !ca || ca->target_iter == now) continue;
      INFO("neighbour:\n" << n.steps_text());
      CHECK(std::abs(ca->target_iter - now) == 1);
      const search::MeasureResult r = measurer.measure(n);
      INFO(r.message);
      CHECK(r.valid());
      ++moved;
    }
    CHECK(moved == (now > 0) + (now + 1 < target_loops));
  }
  CHECK(found == 3);
}

TEST_CASE("droplet neighbours of every shipped kernel's samples lower", "[droplet]") {
  const target::Target t = target::host_target();
  te::KernelRegistry reg;
  reg.add_directory(te::shipped_kernel_dir());
  int proposed = 0, rejected = 0;
  for (const auto& def : reg.kernels()) {
    auto dag = std::make_shared<const te::ComputeDAG>(def.instantiate({}));
    search::RandomSampler sampler(dag, t, 1);
    for (int sample = 0; sample < 4; ++sample) {
      const schedule::State centre = sampler.sample();
      INFO(def.name << ", centre:\n" << centre.steps_text());
      DropletPolicy policy(dag, t, centre, {1.0, 1.0}, 1);
      const auto coords = search::droplet_coordinates(centre, t);
      const auto ns = policy.propose(10000, {});
      CHECK(int(ns.size()) + policy.rejected() == moves_at_radius_1(coords));
      for (const schedule::State& n : ns) {
        INFO("neighbour:\n" << n.steps_text());
        CHECK_NOTHROW(schedule::lower(schedule::replay(dag, n.steps()), "check"));
      }
      proposed += int(ns.size());
      rejected += policy.rejected();
    }
  }
  WARN("shipped kernels: " << proposed << " neighbours at radius 1, " << rejected << " invalid");
}

TEST_CASE("droplet measures a start given without timings first; a failed start is replaced", "[droplet]") {
  const target::Target t = target::host_target();
  const schedule::State start = synthetic_start(1);
  DropletPolicy policy(start.dag_ptr(), t, start, {}, 1);
  CHECK(std::isinf(policy.centre_ms()));
  auto batch = policy.propose(8, {});
  REQUIRE(batch.size() == 1);
  CHECK(schedule::canonical_key(batch[0].steps()) == schedule::canonical_key(start.steps()));
  CHECK(policy.propose(8, {}).empty());  // nothing more until the start is measured
  search::MeasureResult failed = fake_result({1e-3, 1e-3});
  failed.error = runtime::ErrorClass::WrongAnswer;
  policy.observe(batch, {failed});
  CHECK(std::isinf(policy.centre_ms()));
  // Any valid neighbour now wins on its mean alone (the centre has no timings); failed ones don't.
  batch = policy.propose(4, {});
  REQUIRE(batch.size() == 4);
  std::vector<search::MeasureResult> results = {failed, fake_result({3.0, 3.1, 2.9}), fake_result({2.0}), failed};
  policy.observe(batch, results);
  REQUIRE(policy.accepted().size() == 1);
  CHECK(policy.centre_ms() == Approx(2.0));
  CHECK(schedule::canonical_key(policy.centre().steps()) == schedule::canonical_key(batch[2].steps()));
  CHECK(std::isnan(policy.accepted()[0].p_value));
  CHECK(policy.accepted()[0].trial == 4);  // the start was measured 1st, batch[2] 4th
  CHECK(policy.radius() == 1);
}

namespace {

// A descent on the synthetic objective on a machine whose speed drifts: every measurement
// (of 5 group means, 0.2% noise) is taken `drift` faster than the one before (a measurement
// later in time looks faster). With `confirm`, faster-looking neighbours are confirmed by
// interleaved re-measurement on the same drifting clock. Counts the accepted moves that are
// truly worse (a higher objective than the centre they left) and those truly better.
struct DriftRun {
  int worse = 0, better = 0, moves = 0, measured = 0, remeasured = 0;
  double final_objective = 0;
  std::vector<search::DropletTest> tests;
};

// `end_slow`: in each re-measured batch the first and the last measurement run this much
// slower (as the ends of a group did on this machine); `odd_round_slow`: the second, fourth,
// ... pair of measurements of each re-measured batch (a confirmation round) runs this much
// slower (a slow stretch of the machine); `opt`: the policy's options; a point's time is its
// objective to the power `power` (< 1: neighbours differ by less); `slow_every` > 0: runs of
// slow_every re-measured batches in a slow stretch (1.6x), in which the kernels' order
// reverses (a point's time is centre^2 / point), alternate with as many quiet ones.
DriftRun drift_descend(const schedule::State& start, bool confirm, double drift, uint64_t seed, double end_slow = 0,
                       search::DropletOptions opt = {}, double odd_round_slow = 0, double power = 1,
                       int slow_every = 0) {
  const target::Target t = target::host_target();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n01(0, 1);
  double speed = 1;
  DriftRun run;
  std::function<double(const schedule::State&)> point_ms = [&](const schedule::State& st) {
    return std::pow(objective(st), power);
  };
  auto measure = [&](const schedule::State& st) {
    search::MeasureResult r;
    if (fails(st)) {
      r = fake_result({1e-3, 1e-3});
      r.error = runtime::ErrorClass::RuntimeError;
    } else {
      std::vector<double> v;
      for (int g = 0; g < 5; ++g) v.push_back(point_ms(st) * speed * (1 + 0.002 * n01(rng)));
      r = fake_result(v);
      std::vector<double> sorted = v;
      std::sort(sorted.begin(), sorted.end());
      r.timing.median_ms = sorted[2];
    }
    speed *= 1 - drift;
    return r;
  };
  DropletPolicy policy(start.dag_ptr(), t, start, measure(start).timing.group_means_ms, seed, opt);
  int batches = 0;
  if (confirm)
    policy.set_remeasure([&](const std::vector<schedule::State>& states) {
      std::vector<search::MeasureResult> out;
      const auto normal = point_ms;
      if (slow_every > 0 && (batches++ / slow_every) % 2 == 1) {
        const double c = objective(policy.centre());
        point_ms = [c](const schedule::State& st) { return 1.6 * c * c / objective(st); };
      }
      for (size_t i = 0; i < states.size(); ++i) {
        const double slow = (i == 0 || i + 1 == states.size() ? 1 + end_slow : 1.0) *
                            ((i / 2) % 2 == 1 ? 1 + odd_round_slow : 1.0);
        speed *= slow;
        out.push_back(measure(states[i]));
        speed /= slow;
      }
      point_ms = normal;
      run.remeasured += int(states.size());
      return out;
    });
  std::unordered_set<std::string> measured = {schedule::canonical_key(start.steps())};
  while (run.measured < 600) {
    const std::vector<schedule::State> batch = policy.propose(16, measured);
    if (batch.empty()) break;
    std::vector<search::MeasureResult> results;
    for (const auto& st : batch) {
      measured.insert(schedule::canonical_key(st.steps()));
      results.push_back(measure(st));
    }
    run.measured += int(batch.size());
    const double before = objective(policy.centre());
    const size_t accepted = policy.accepted().size();
    policy.observe(batch, results);
    if (policy.accepted().size() == accepted) continue;
    ++run.moves;
    const double after = objective(policy.centre());
    run.worse += after > before + 1e-12;
    run.better += after < before - 1e-12;
  }
  run.final_objective = objective(policy.centre());
  run.tests = policy.tests();
  return run;
}

}  // namespace

TEST_CASE("droplet confirms moves by interleaved re-measurement, so drift cannot make a move win", "[droplet]") {
  const schedule::State start = synthetic_start(2);
  INFO("start:\n" << start.steps_text());
  // The machine speeds up by 0.3% per measurement (about 4% over a batch of 16): against the
  // centre's stored timings a later neighbour looks faster than it is, so truly worse moves
  // win (the old experiment design); interleaved with the centre they do not.
  const DriftRun stale = drift_descend(start, false, 0.003, 7);
  CHECK(stale.worse > 0);
  CHECK(stale.remeasured == 0);
  for (uint64_t seed : {7, 8, 9}) {
    INFO("seed " << seed);
    const DriftRun fresh = drift_descend(start, true, 0.003, seed);
    CHECK(fresh.worse == 0);
    CHECK(fresh.better > 0);
    CHECK(fresh.final_objective < objective(start));
    CHECK(!fresh.tests.empty());
    CHECK(fresh.remeasured == 8 * int(fresh.tests.size()));  // 4 rounds of (centre, neighbour)
    int taken = 0;  // moves: a neighbour accepted by two confirmations in a row
    for (size_t i = 0; i < fresh.tests.size(); ++i) {
      const search::DropletTest& t = fresh.tests[i];
      if (!t.accepted) continue;
      CHECK(t.p_value < 0.05);
      CHECK(t.candidate_ms < t.centre_ms);
      CHECK(2 * t.rounds_won > t.rounds);
      if (t.repeat == 1) {
        ++taken;
        REQUIRE(i > 0);
        CHECK(fresh.tests[i - 1].move == t.move);
        CHECK(fresh.tests[i - 1].accepted);
      }
    }
    CHECK(taken == fresh.better);
  }
  // The machine slows down by 0.3% per measurement: against stored timings every neighbour
  // looks slower, and real improvements are missed; confirmation still finds them.
  const DriftRun slowing_stale = drift_descend(start, false, -0.003, 7);
  search::DropletOptions any_speed;  // a steady slow-down, not a stretch that reorders kernels
  any_speed.slow_stretch = std::numeric_limits<double>::infinity();
  const DriftRun slowing = drift_descend(start, true, -0.003, 7, 0, any_speed);
  CHECK(slowing.worse == 0);
  CHECK(slowing.final_objective < slowing_stale.final_objective);
  WARN("drift +0.3%/measurement: stored timings accept " << stale.worse << " worse and " << stale.better
                                                           << " better moves; confirmed: 0 worse; drift -0.3%: final "
                                                           << slowing_stale.final_objective << " (stored) vs "
                                                           << slowing.final_objective << " (confirmed), start "
                                                           << objective(start));
}

TEST_CASE("droplet takes a move only when a second confirmation repeats the first", "[droplet]") {
  // Every point takes the same time (objective^0), measured with 0.2% noise: every move a
  // descent takes is a false one. One confirmation at alpha = 0.05 passes now and then (each
  // tune makes dozens); two in a row rarely do.
  const schedule::State start = synthetic_start(2);
  search::DropletOptions once;
  once.confirm_tests = 1;
  int false_once = 0, false_twice = 0, tests_once = 0, tests_twice = 0;
  for (uint64_t seed : {7, 8, 9, 10, 11, 12}) {
    const DriftRun a = drift_descend(start, true, 0, seed, 0, once, 0, 0);
    const DriftRun b = drift_descend(start, true, 0, seed, 0, {}, 0, 0);
    false_once += a.moves;
    false_twice += b.moves;
    tests_once += int(a.tests.size());
    tests_twice += int(b.tests.size());
  }
  INFO("false moves: one confirmation " << false_once << " in " << tests_once << " tests, two " << false_twice
                                         << " in " << tests_twice);
  CHECK(false_once >= 3);
  CHECK(4 * false_twice <= false_once);
  CHECK(search::fisher_combined_p({0.05}) == Approx(0.05));
  CHECK(search::fisher_combined_p({0.05, 0.05}) == Approx(0.0025 * (1 - std::log(0.0025))));
  CHECK(search::fisher_combined_p({1.0, 1.0}) == Approx(1.0));
  CHECK(std::isnan(search::fisher_combined_p({})));
}

TEST_CASE("droplet's confirmations give the centre and the neighbour one end each of the re-measured batch", "[droplet]") {
  // The first and the last measurement of every re-measured batch run 8% slow, and neighbours
  // differ by a few percent (time = objective^0.05). With the centre at both ends (2 rounds,
  // C X X C) every neighbour gains against it, and truly worse moves are accepted; in the
  // four-round order (C X X C X C C X) each takes one end.
  const schedule::State start = synthetic_start(2);
  // (The slow-stretch check is off: it would stop the biased descent, as a brake, once the
  // gains it believed added up to 1.5x; here the order of the rounds alone is tested.)
  search::DropletOptions two, four_rounds;
  two.confirm_rounds = 2;
  two.slow_stretch = four_rounds.slow_stretch = std::numeric_limits<double>::infinity();
  int worse_two = 0, worse_four = 0, better_four = 0;
  for (uint64_t seed : {7, 8, 9}) {
    worse_two += drift_descend(start, true, 0, seed, 0.08, two, 0, 0.05).worse;
    const DriftRun four = drift_descend(start, true, 0, seed, 0.08, four_rounds, 0, 0.05);
    worse_four += four.worse;
    better_four += four.better;
    CHECK(four.final_objective < objective(start));
  }
  CHECK(worse_two > 0);
  CHECK(worse_four == 0);
  CHECK(better_four > 0);
}

TEST_CASE("droplet accepts no move on a confirmation run in a slow stretch of the machine", "[droplet]") {
  // Two re-measured batches in every four run 1.6x slow, and in them the points' order reverses (as
  // matmul 512^3 kernels did here: a 19% gain in the quiet rounds, a 7% loss in the slow
  // ones). Without the check worse moves are accepted; with it none, and the descent still
  // gets there on the quiet confirmations.
  const schedule::State start = synthetic_start(2);
  search::DropletOptions any_speed;
  any_speed.slow_stretch = std::numeric_limits<double>::infinity();
  int worse_unchecked = 0;
  for (uint64_t seed : {7, 8, 9}) {
    INFO("seed " << seed);
    worse_unchecked += drift_descend(start, true, 0, seed, 0, any_speed, 0, 1, 2).worse;
    const DriftRun r = drift_descend(start, true, 0, seed, 0, {}, 0, 1, 2);
    CHECK(r.worse == 0);
    CHECK(r.better > 0);
    CHECK(r.final_objective < objective(start));
    int slow = 0;
    for (const search::DropletTest& t : r.tests) {
      slow += t.slow;
      if (t.slow) CHECK(!t.accepted);
    }
    CHECK(slow > 0);
  }
  CHECK(worse_unchecked > 0);
}

TEST_CASE("droplet's confirmations scale each round, so a slow stretch in one round hides no gain", "[droplet]") {
  // Every measurement is noisy (0.2%), neighbours differ by a few percent at most (time =
  // objective^0.05), and every other confirmation round runs in a stretch twice as slow.
  // Pooled, the rounds' samples are two clusters a factor 2 apart and Welch's test finds no
  // gain; scaled by their round, the neighbours' real gains show.
  const schedule::State start = synthetic_start(2);
  for (uint64_t seed : {7, 8}) {
    INFO("seed " << seed);
    search::DropletOptions any_speed;  // these slow rounds keep the kernels' order
    any_speed.slow_stretch = std::numeric_limits<double>::infinity();
    const DriftRun r = drift_descend(start, true, 0, seed, 0, any_speed, 1.0, 0.05);
    const DriftRun calm = drift_descend(start, true, 0, seed, 0, {}, 0, 0.05);
    INFO("slow rounds: final " << r.final_objective << ", calm: " << calm.final_objective << ", start " << objective(start));
    CHECK(r.worse == 0);
    CHECK(r.better > 0);
    CHECK(r.final_objective <= 1.1 * calm.final_objective);  // pooled, it stays at the start (6.45)
  }
}

namespace {

// The innermost lengths of the j and i splits of a plain-tiled matmul (splits k, j, i).
std::pair<int64_t, int64_t> inner_tile(const schedule::State& st) {
  const auto sps = splits(st);
  return {sps[2].lengths.back(), sps[1].lengths.back()};  // i, j
}

// Runs a DropletPolicy on an exact objective (one timing per point, so the means decide)
// until it converges; returns the final centre.
schedule::State descend_exact(const schedule::State& start, const std::function<double(const schedule::State&)>& f,
                              search::DropletOptions opt) {
  const target::Target t = target::host_target();
  DropletPolicy policy(start.dag_ptr(), t, start, {f(start)}, 7, opt);
  const std::unordered_set<std::string> nothing;
  for (int round = 0; round < 500; ++round) {
    const std::vector<schedule::State> batch = policy.propose(16, nothing);
    if (batch.empty()) break;
    std::vector<search::MeasureResult> results;
    for (const schedule::State& st : batch) results.push_back(fake_result({f(st)}));
    policy.observe(batch, results);
  }
  CHECK(policy.converged());
  return policy.centre();
}

}  // namespace

TEST_CASE("droplet reshapes the register tile when each half of the move alone is slower", "[droplet]") {
  // An objective of the innermost i and j lengths only: best with as many accumulators as
  // the start (i x j fixed) and half its rows. Every single move is slower or no faster, and
  // so is every pair of the fastest single moves; only the reshape move (i / 2, j x 2)
  // reaches the optimum.
  const target::Target t = target::host_target();
  int tried = 0, reverse_checked = 0;
  for (uint64_t seed = 1; seed < 400 && tried < 3; ++seed) {
    const schedule::State start = synthetic_start(seed);
    const auto [i0, j0] = inner_tile(start);
    const auto sps = splits(start);
    const int64_t j_outer = 128 / product(sps[1].lengths) * sps[1].lengths[0] * sps[1].lengths[1];
    if (i0 < 2 || i0 % 2 || j_outer % 2 || j0 * 2 > 64) continue;
    ++tried;
    INFO("seed " << seed << ", start:\n" << start.steps_text());
    auto f = [i0 = i0, j0 = j0](const schedule::State& st) {
      const auto [i, j] = inner_tile(st);
      return 1 + 0.5 * std::abs(std::log2(double(i * j)) - std::log2(double(i0 * j0))) +
             0.3 * std::abs(std::log2(double(i)) - std::log2(double(i0 / 2)));
    };
    REQUIRE(f(start) == Approx(1.3));
    search::DropletOptions with, without;
    without.reshape_moves = false;
    const schedule::State a = descend_exact(start, f, with);
    INFO("with reshape moves:\n" << a.steps_text());
    CHECK(f(a) == Approx(1.0));
    CHECK(inner_tile(a) == std::make_pair(i0 / 2, j0 * 2));
    const schedule::State b = descend_exact(start, f, without);
    INFO("without:\n" << b.steps_text());
    CHECK(f(b) == Approx(1.3));
    // The reverse reshape would shrink the vectorized j loop: not a move.
    auto g = [i0 = i0, j0 = j0](const schedule::State& st) {
      const auto [i, j] = inner_tile(st);
      return 1 + 0.5 * std::abs(std::log2(double(i * j)) - std::log2(double(i0 * j0))) +
             0.3 * std::abs(std::log2(double(j)) - std::log2(double(j0 / 2)));
    };
    if (start.stage(0).iters[start.stage(0).leaf.back()].annotation == schedule::Annotation::Vectorize) {
      const schedule::State c = descend_exact(start, g, with);
      INFO("reverse objective:\n" << c.steps_text());
      CHECK(g(c) == Approx(1.3));
      ++reverse_checked;
    }
  }
  CHECK(reverse_checked > 0);
  CHECK(tried == 3);
}
