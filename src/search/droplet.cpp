// Droplet Search (droplet.h): the coordinates of a step list and their edits, the
// neighbourhood state machine (radius, single then pair moves, convergence), acceptance by
// Welch's t-test, and the t distribution it needs.
//
// Every candidate is a fresh step list replayed from scratch: no state is edited in place, so
// candidates never alias each other or the centre.
#include "ktune/search/droplet.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <deque>
#include <limits>
#include <numeric>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "ktune/schedule/lower.h"
#include "ktune/schedule/step_edit.h"
#include "ktune/schedule/steps.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"
#include "ktune/support/util.h"

namespace ktune::search {

using namespace schedule;

namespace {

// As the sampler: the innermost length of a vectorized split stays at most 64.
constexpr int64_t kMaxVectorLength = 64;
constexpr const char* kUnrollPragma = "auto_unroll_max_step";

enum class CoordKind : uint8_t { Split, Unroll, Parallel, ComputeAt };

// A coordinate of one step list, with what it takes to edit that list.
struct Coord {
  explicit Coord(CoordKind k) : kind(k) {}
  CoordKind kind;
  std::string name;             // unique in a state; identifies the coordinate across points
  std::vector<int64_t> values;  // increasing
  int index = 0;                // of the current value
  // Split: the split step, the extent of its loop, the pair of levels (0 = the implicit outer
  // level, k = lengths[k-1]) and the loop's name for descriptions.
  // Parallel: the annotate step; `fused` when a fuse step of the leading loops precedes it.
  // ComputeAt: the compute_at step; its values are the positions of the target stage's loops.
  int step = -1;
  int64_t extent = 0;
  int outer = 0, inner = 0;
  // Split: whether `inner` is the innermost level, and the split's loop is spatial; the
  // nearest level outside the innermost one with a factor > 1 (-1: none).
  bool innermost = false, spatial = false, vectorized = false;
  int nearest_outer = -1;
  std::string stage_name;  // Split: the stage whose loop it splits
  std::string loop;
  bool fused = false;
  int stage = -1;  // Unroll: the stage (final index); Parallel: the stage at the annotate step
  // Unroll: the pragma steps of the stage. Parallel: the later steps naming a loop of the stage
  // after the parallel one (their positions shift with the number of fused loops).
  std::vector<int> edits;
};

std::vector<int64_t> unroll_values(const target::Target& t) {
  std::vector<int64_t> v = {0, 16, 64, 512};
  if (t.kind != target::TargetKind::CPU) v.push_back(1024);
  return v;
}

// The levels of a split, outermost first: [extent / product, lengths...]; the outer level is
// 0 when the split is not perfect (its pairs are then not coordinates).
std::vector<int64_t> split_levels(int64_t extent, const std::vector<int64_t>& lengths) {
  int64_t prod = 1;
  for (int64_t l : lengths) prod *= l;
  std::vector<int64_t> f = {extent % prod == 0 ? extent / prod : 0};
  f.insert(f.end(), lengths.begin(), lengths.end());
  return f;
}

void add_split_coords(const SplitStep& sp, int step, int64_t extent, const std::string& stage_name,
                      const std::string& loop, bool vectorized, bool spatial, std::vector<Coord>& out) {
  const std::vector<int64_t> f = split_levels(extent, sp.lengths);
  const int levels = int(f.size());
  int nearest_outer = -1;
  for (int a = levels - 2; a >= 0 && nearest_outer < 0; --a)
    if (f[a] > 1) nearest_outer = a;
  for (int a = 0; a < levels; ++a) {
    if (f[a] == 0) continue;
    for (int b = a + 1; b < levels; ++b) {
      Coord c(CoordKind::Split);
      c.name = "split " + loop + ": levels " + std::to_string(a) + "-" + std::to_string(b);
      for (int64_t d : divisors(f[a] * f[b]))
        if (!(vectorized && b == levels - 1 && d > kMaxVectorLength) || d == f[b]) c.values.push_back(d);
      c.index = int(std::find(c.values.begin(), c.values.end(), f[b]) - c.values.begin());
      c.step = step;
      c.extent = extent;
      c.outer = a;
      c.inner = b;
      c.loop = loop;
      c.stage_name = stage_name;
      c.innermost = b == levels - 1;
      c.spatial = spatial;
      c.vectorized = vectorized && c.innermost;
      c.nearest_outer = nearest_outer;
      if (c.values.size() >= 2) out.push_back(std::move(c));
    }
  }
}

// The number of leading loops fused into the parallel loop of stage `s`, annotated by step
// `i` (state `st` is the state before it). Left out when a later step would make the edit
// unsafe: a transformation of the stage's loops, or a step that renumbers stages.
std::optional<Coord> parallel_coord(const State& st, const std::vector<Step>& steps, int i, int s) {
  const Stage& stage = st.stage(s);
  if (stage.location != ComputeLocation::Root) return std::nullopt;
  Coord c(CoordKind::Parallel);
  c.step = i;
  c.stage = s;
  int k = 1;
  if (i > 0)
    if (const auto* f = std::get_if<FuseStep>(&steps[i - 1].v); f && f->stage == s && f->iters.front() == 0) {
      k = int(f->iters.size());
      c.fused = true;
    }
  int leading = k;  // spatial loops that could be fused: the fused one stands for k of them
  for (int p = 1; p < int(stage.leaf.size()) && stage.leaf_iter(p).kind == IterKind::Spatial; ++p) ++leading;
  int first_named = std::numeric_limits<int>::max();  // smallest position > 0 a later step names
  for (int j = i + 1; j < int(steps.size()); ++j) {
    bool safe = true;
    auto name_loop = [&](int pos) {
      if (pos >= 1) {
        c.edits.push_back(j);
        first_named = std::min(first_named, pos);
      }
    };
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, AnnotateStep> || std::is_same_v<T, PragmaStep>) {
            if (x.stage == s) name_loop(x.iter);
          } else if constexpr (std::is_same_v<T, ComputeAtStep>) {
            if (x.target_stage == s) name_loop(x.target_iter);
          } else if constexpr (std::is_same_v<T, ComputeInlineStep> || std::is_same_v<T, ComputeRootStep>) {
          } else if constexpr (std::is_same_v<T, CacheWriteStep> || std::is_same_v<T, CacheReadStep> ||
                               std::is_same_v<T, RfactorStep>) {
            safe = false;
          } else {
            safe = x.stage != s;
          }
        },
        steps[j].v);
    if (!safe) return std::nullopt;
  }
  const int max_k = first_named == std::numeric_limits<int>::max() ? leading : std::min(leading, k + first_named - 1);
  for (int v = 1; v <= max_k; ++v) c.values.push_back(v);
  c.index = k - 1;
  c.name = "parallel " + stage.op.name;
  if (c.values.size() < 2) return std::nullopt;
  return c;
}

std::vector<Coord> coordinates(const State& state, const target::Target& t) {
  const std::vector<Step>& steps = state.steps();
  std::vector<Coord> out;
  std::unordered_map<std::string, std::vector<int>> pragmas;  // by stage name
  const Trace tr = trace_steps(state);
  const std::unordered_set<std::string> tiled = tiled_stages(state, tr);
  State st(state.dag_ptr());
  for (int i = 0; i < int(steps.size()); ++i) {
    if (const auto* sp = std::get_if<SplitStep>(&steps[i].v)) {
      const std::string stage_name = st.stage(sp->stage).op.name;
      const Iterator it = st.stage(sp->stage).leaf_iter(sp->iter);
      st.apply(steps[i]);
      // Whether the split's innermost loop ends up vectorized (iterator ids are stable).
      const int last_id = st.stage(sp->stage).leaf[sp->iter + int(sp->lengths.size())];
      const int fs = state.stage_index(stage_name);
      const bool vectorized = fs >= 0 && last_id < int(state.stage(fs).iters.size()) &&
                              state.stage(fs).iters[last_id].annotation == Annotation::Vectorize;
      add_split_coords(*sp, i, it.extent, stage_name, stage_name + " " + it.name, vectorized,
                       it.kind == IterKind::Spatial, out);
      continue;
    }
    if (const auto* an = std::get_if<AnnotateStep>(&steps[i].v);
        an && an->annotation == Annotation::Parallel && an->iter == 0) {
      if (auto c = parallel_coord(st, steps, i, an->stage)) out.push_back(std::move(*c));
    }
    if (const auto* pr = std::get_if<PragmaStep>(&steps[i].v)) pragmas[st.stage(pr->stage).op.name].push_back(i);
    if (const auto* ca = std::get_if<ComputeAtStep>(&steps[i].v)) {
      // The loop of its consumer an untiled stage (a cache stage's copy, a producer) is
      // computed at: any loop of the consumer is legal (the stage's bounds follow), and the
      // deeper the loop the smaller and the more often recomputed the piece. Tiled stages keep
      // the level their sketch fused them at, as in the exploration's mutations; and only the
      // step that decides where the stage is computed is a coordinate.
      const std::string& name = tr[i].stage;
      const int fs = state.stage_index(name);
      if (!tiled.count(name) && location_step(state, tr, name) == i && fs >= 0 &&
          state.stage(fs).location == ComputeLocation::At) {
        Coord c(CoordKind::ComputeAt);
        c.stage_name = name;
        c.name = "compute_at " + name;
        c.loop = tr[i].target;
        c.step = i;
        for (int p = 0; p < tr[i].target_loops; ++p) c.values.push_back(p);
        c.index = ca->target_iter;
        if (c.values.size() >= 2 && c.index >= 0 && c.index < int(c.values.size())) out.push_back(std::move(c));
      }
    }
    st.apply(steps[i]);
  }
  for (int s = 0; s < state.num_stages(); ++s) {
    const Stage& stage = state.stage(s);
    if (stage.location == ComputeLocation::Inlined || stage.leaf.empty()) continue;
    if (stage.op.reduce == te::ReduceKind::None && stage.auto_unroll_max_step == 0) continue;
    Coord c(CoordKind::Unroll);
    c.name = "unroll " + stage.op.name;
    c.values = unroll_values(t);
    if (std::find(c.values.begin(), c.values.end(), stage.auto_unroll_max_step) == c.values.end()) {
      c.values.push_back(stage.auto_unroll_max_step);
      std::sort(c.values.begin(), c.values.end());
    }
    c.index = int(std::find(c.values.begin(), c.values.end(), stage.auto_unroll_max_step) - c.values.begin());
    c.stage = s;
    c.edits = pragmas[stage.op.name];
    out.push_back(std::move(c));
  }
  return out;
}

// The step list with coordinate `c` set to c.values[to].
std::vector<Step> set_coordinate(const std::vector<Step>& from, const Coord& c, int to) {
  std::vector<Step> steps = from;
  const int64_t v = c.values[to];
  switch (c.kind) {
    case CoordKind::Split: {
      SplitStep sp = std::get<SplitStep>(steps[c.step].v);
      std::vector<int64_t> f = split_levels(c.extent, sp.lengths);
      const int64_t pair = f[c.outer] * f[c.inner];
      f[c.inner] = v;
      f[c.outer] = pair / v;
      sp.lengths.assign(f.begin() + 1, f.end());
      steps[c.step] = sp;
      break;
    }
    case CoordKind::Unroll: {
      for (auto it = c.edits.rbegin(); it != c.edits.rend(); ++it) erase_step(steps, *it);
      if (v != 0) steps.push_back(PragmaStep{c.stage, 0, kUnrollPragma, v});
      break;
    }
    case CoordKind::ComputeAt:
      std::get<ComputeAtStep>(steps[c.step].v).target_iter = int(v);
      break;
    case CoordKind::Parallel: {
      const int k = c.index + 1, k2 = int(v);
      for (int j : c.edits)
        std::visit(
            [&](auto& x) {
              using T = std::decay_t<decltype(x)>;
              if constexpr (std::is_same_v<T, AnnotateStep> || std::is_same_v<T, PragmaStep>) x.iter += k - k2;
              if constexpr (std::is_same_v<T, ComputeAtStep>) x.target_iter += k - k2;
            },
            steps[j].v);
      std::vector<int> iters(k2);
      std::iota(iters.begin(), iters.end(), 0);
      if (c.fused && k2 >= 2)
        steps[c.step - 1] = FuseStep{c.stage, iters};
      else if (c.fused)
        erase_step(steps, c.step - 1);
      else
        insert_step(steps, c.step, FuseStep{c.stage, iters});
      break;
    }
  }
  return steps;
}

std::string describe(const Coord& c, const std::vector<Step>& before, const std::vector<Step>& after, int to) {
  auto lengths = [](const std::vector<Step>& steps, int i) {
    std::string s = "[";
    s += join(std::get<SplitStep>(steps[i].v).lengths, ", ", [](int64_t l) { return std::to_string(l); });
    return s + "]";
  };
  switch (c.kind) {
    case CoordKind::Split:
      return "split " + c.loop + ": " + lengths(before, c.step) + " -> " + lengths(after, c.step);
    case CoordKind::Unroll:
      return c.name + ": " + std::to_string(c.values[c.index]) + " -> " + std::to_string(c.values[to]);
    case CoordKind::Parallel:
      return c.name + ": " + std::to_string(c.values[c.index]) + " -> " + std::to_string(c.values[to]) + " fused loops";
    case CoordKind::ComputeAt:
      return c.name + ": loop " + std::to_string(c.values[c.index]) + " -> " + std::to_string(c.values[to]) + " of " +
             c.loop;
  }
  return {};
}

// The identity of a point: its canonical key with the unroll pragmas normalized (all at the
// end, one per stage with a non-zero value), so that where a pragma step stands in the list
// does not make two keys of one point.
std::string point_key(const State& st) {
  std::vector<Step> steps = st.steps();
  for (int i = int(steps.size()) - 1; i >= 0; --i)
    if (std::holds_alternative<PragmaStep>(steps[i].v)) erase_step(steps, i);
  for (int s = 0; s < st.num_stages(); ++s)
    if (st.stage(s).auto_unroll_max_step != 0)
      steps.push_back(PragmaStep{s, 0, kUnrollPragma, st.stage(s).auto_unroll_max_step});
  return canonical_key(steps);
}

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }

double variance(const std::vector<double>& v) {
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / double(v.size() - 1);
}

// The continued fraction of the incomplete beta function (modified Lentz's method), for
// x < (a + 1) / (a + b + 2), where it converges fast.
double beta_continued_fraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300, kEps = 1e-15;
  constexpr int kMaxIter = 1000;
  const double qab = a + b, qap = a + 1, qam = a - 1;
  auto guard = [&](double v) { return std::fabs(v) < kTiny ? kTiny : v; };
  double c = 1, d = 1 / guard(1 - qab * x / qap), h = d;
  for (int m = 1; m <= kMaxIter; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));  // even step
    d = 1 / guard(1 + aa * d);
    c = guard(1 + aa / c);
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));  // odd step
    d = 1 / guard(1 + aa * d);
    c = guard(1 + aa / c);
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < kEps) return h;
  }
  return h;
}

// The regularized incomplete beta function I_x(a, b).
double incomplete_beta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front =
      std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * beta_continued_fraction(a, b, x) / a;
  return 1 - front * beta_continued_fraction(b, a, 1 - x) / b;
}

// One move: coordinates (by name) shifted by a number of values, applied in order.
struct MovePart {
  std::string coord;
  int delta;
};
using Move = std::vector<MovePart>;

struct Candidate {
  Move move;
  State state;
  std::string key;  // point_key
  std::string description;
};

}  // namespace

std::vector<DropletCoordinate> droplet_coordinates(const State& state, const target::Target& t) {
  std::vector<DropletCoordinate> out;
  for (Coord& c : coordinates(state, t)) out.push_back({std::move(c.name), std::move(c.values), c.index});
  return out;
}

double student_t_cdf(double t, double df) {
  KT_CHECK(df > 0, "student_t_cdf: degrees of freedom ", df, " are not positive");
  if (std::isnan(t)) return t;
  // P(|T| > |t|) = I_x(df/2, 1/2) with x = df / (df + t^2).
  const double tail = 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t));
  return t > 0 ? 1 - tail : tail;
}

double welch_p_value(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() < 2 || b.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  const double ma = mean(a), mb = mean(b);
  const double sa = variance(a) / double(a.size()), sb = variance(b) / double(b.size());
  const double se2 = sa + sb;
  if (se2 == 0) return mb < ma ? 0.0 : mb > ma ? 1.0 : 0.5;
  const double t = (mb - ma) / std::sqrt(se2);
  // Welch–Satterthwaite, written with the ratios sa/se2, sb/se2 so that it cannot underflow.
  const double ra = sa / se2, rb = sb / se2;
  const double df = 1 / (ra * ra / double(a.size() - 1) + rb * rb / double(b.size() - 1));
  return student_t_cdf(t, df);
}

double fisher_combined_p(const std::vector<double>& p) {
  if (p.empty()) return std::numeric_limits<double>::quiet_NaN();
  double x = 0;  // half the chi^2 statistic: -sum ln p
  for (double v : p) {
    if (std::isnan(v)) return v;
    if (v <= 0) return 0;
    x -= std::log(std::min(v, 1.0));
  }
  // The survival function of chi^2 with 2k degrees of freedom at 2x: e^-x sum_{j<k} x^j / j!.
  double term = 1, sum = 1;
  for (size_t j = 1; j < p.size(); ++j) {
    term *= x / double(j);
    sum += term;
  }
  return std::min(1.0, std::exp(-x) * sum);
}

// The order of a confirmation's rounds: (centre, neighbour) or (neighbour, centre), following
// the Thue-Morse sequence (C X, X C, X C, C X, X C, C X, C X, X C, ...). Two rounds cancel a
// linear drift; four (C X X C X C C X) also a quadratic one, and give the centre and the
// neighbour one end each of the re-measured batch (a batch's first and last places can run
// slower than the middle ones).
namespace {
bool centre_first(int round) { return std::popcount(unsigned(round)) % 2 == 0; }
}  // namespace

std::vector<State> confirmation_batch(const State& centre, const State& neighbour, int rounds) {
  std::vector<State> states;
  for (int r = 0; r < rounds; ++r) {
    const bool cf = centre_first(r);
    states.push_back(cf ? centre : neighbour);
    states.push_back(cf ? neighbour : centre);
  }
  return states;
}

Confirmation evaluate_confirmation(const std::vector<MeasureResult>& res, int rounds, const DropletOptions& opt,
                                   double centre_quiet_ms) {
  Confirmation c;
  DropletTest& t = c.test;
  std::vector<double>& a = c.centre_times;
  std::vector<double>& b = c.neighbour_times;
  std::vector<double> na, nb;  // a and b, each divided by its round's scale
  for (int r = 0; r < rounds && 2 * r + 1 < int(res.size()); ++r) {
    const bool cf = centre_first(r);
    const MeasureResult& mc = res[2 * r + (cf ? 0 : 1)];
    const MeasureResult& mx = res[2 * r + (cf ? 1 : 0)];
    if (!mc.valid() || !mx.valid() || mc.timing.group_means_ms.empty() || mx.timing.group_means_ms.empty()) {
      // A neighbour that fails now (or a centre that does) is not taken.
      t.rounds = 0;
      break;
    }
    ++t.rounds;
    t.rounds_won += mx.timing.median_ms < mc.timing.median_ms;
    const std::vector<double>& gc = mc.timing.group_means_ms;
    const std::vector<double>& gx = mx.timing.group_means_ms;
    a.insert(a.end(), gc.begin(), gc.end());
    b.insert(b.end(), gx.begin(), gx.end());
    // The machine's speed changes in steps that last seconds: rounds in a slow stretch would
    // widen both samples and hide a real difference, so each round is scaled by the
    // geometric mean of its two kernels' means.
    const double scale = std::sqrt(mean(gc) * mean(gx));
    for (double v : gc) na.push_back(v / scale);
    for (double v : gx) nb.push_back(v / scale);
    c.round_ratios.push_back(mean(gc) / mean(gx));
  }
  if (t.rounds < rounds) {
    t.p_value = std::numeric_limits<double>::quiet_NaN();
    return c;
  }
  t.centre_ms = mean(a);
  t.candidate_ms = mean(b);
  t.p_value = welch_p_value(na, nb);
  t.slow = t.centre_ms > opt.slow_stretch * centre_quiet_ms;
  t.accepted = !t.slow && mean(nb) < mean(na) && !std::isnan(t.p_value) && t.p_value < opt.alpha &&
               2 * t.rounds_won > t.rounds;
  return c;
}

struct DropletPolicy::Impl {
  Impl(std::shared_ptr<const te::ComputeDAG> d, target::Target t, DropletOptions o, uint64_t seed)
      : dag(std::move(d)), target(std::move(t)), opt(o), rng(seed) {}

  std::shared_ptr<const te::ComputeDAG> dag;
  target::Target target;
  DropletOptions opt;
  std::mt19937_64 rng;

  State centre;
  std::vector<double> centre_times;  // group means of its valid measurement
  double centre_quiet_ms = std::numeric_limits<double>::infinity();  // its fastest group mean seen
  double centre_mean = std::numeric_limits<double>::infinity();
  bool measure_start = false;  // no timings given: the start is proposed first
  std::vector<Coord> coords;   // of the centre
  int max_radius = 0;          // the largest useful radius at the centre

  int radius = 1;
  bool pairs = false;  // the round of pair moves of this radius
  bool converged = false;
  std::deque<Move> queue;                        // moves of this round not yet proposed
  std::vector<Candidate> outstanding;            // proposed, not yet observed
  std::vector<std::pair<Move, double>> singles;  // measured single moves of this radius: mean ms
  std::unordered_set<std::string> visited;       // point keys: centres, measured and invalid points

  int measurements = 0, rejected = 0;
  std::vector<DropletStep> accepted;
  RemeasureFn remeasure;
  std::vector<DropletTest> tests;
  std::vector<double> last_candidate_times;  // the fresh samples of the last confirmed neighbour

  // Measures the centre and `cand` again, interleaved, and tests the fresh samples. The
  // centre's timings become its fresh ones either way.
  DropletTest confirm(const Candidate& cand, int repeat = 0) {
    const int rounds = std::max(1, opt.confirm_rounds);
    Confirmation c = evaluate_confirmation(remeasure(confirmation_batch(centre, cand.state, rounds)), rounds, opt,
                                           centre_quiet_ms);
    DropletTest& t = c.test;
    t.move = cand.description;
    t.repeat = repeat;
    tests.push_back(t);
    if (t.rounds < rounds) {
      debug(1) << "droplet: confirmation of " << t.move << " incomplete\n";
      return t;
    }
    last_candidate_times = std::move(c.neighbour_times);
    for (double v : c.centre_times) centre_quiet_ms = std::min(centre_quiet_ms, v);
    centre_times = std::move(c.centre_times);
    centre_mean = t.centre_ms;
    debug(1) << "droplet: confirm " << (repeat ? "again " : "") << t.move << ": centre " << t.centre_ms
             << " ms, neighbour " << t.candidate_ms << " ms, p = " << t.p_value << ", won " << t.rounds_won << "/"
             << t.rounds << " rounds: "
             << (t.accepted ? "accepted" : t.slow ? "rejected (a slow stretch of the machine)" : "rejected") << "\n";
    return t;
  }

  // `quiet_ms`: a fastest time known of `st` besides `times` (DropletOptions::slow_stretch).
  void recentre(State st, std::vector<double> times, double quiet_ms = std::numeric_limits<double>::infinity()) {
    centre = std::move(st);
    centre_times = std::move(times);
    centre_mean = centre_times.empty() ? std::numeric_limits<double>::infinity() : mean(centre_times);
    centre_quiet_ms = quiet_ms;
    for (double v : centre_times) centre_quiet_ms = std::min(centre_quiet_ms, v);
    visited.insert(point_key(centre));
    coords = coordinates(centre, target);
    max_radius = 0;
    for (const Coord& c : coords) max_radius = std::max({max_radius, c.index, int(c.values.size()) - 1 - c.index});
    radius = 1;
    outstanding.clear();
    start_singles();
  }

  void start_singles() {
    pairs = false;
    singles.clear();
    queue.clear();
    if (radius > max_radius) {
      converged = true;
      debug(1) << "droplet: converged at " << centre_mean << " ms after " << measurements << " measurements\n";
      return;
    }
    std::vector<Move> moves;
    for (const Coord& c : coords)
      for (int d : {-radius, radius})
        if (c.index + d >= 0 && c.index + d < int(c.values.size())) moves.push_back({{c.name, d}});
    std::shuffle(moves.begin(), moves.end(), rng);
    queue.assign(moves.begin(), moves.end());
    debug(2) << "droplet: radius " << radius << ", " << queue.size() << " single moves\n";
  }

  void start_pairs() {
    pairs = true;
    queue.clear();
    std::stable_sort(singles.begin(), singles.end(), [](const auto& x, const auto& y) { return x.second < y.second; });
    const int m = std::min<int>(opt.pair_moves, int(singles.size()));
    std::vector<std::pair<double, Move>> moves;
    for (int i = 0; i < m; ++i)
      for (int j = i + 1; j < m; ++j) {
        const MovePart& a = singles[i].first[0];
        const MovePart& b = singles[j].first[0];
        if (a.coord != b.coord) moves.push_back({singles[i].second + singles[j].second, {a, b}});
      }
    std::stable_sort(moves.begin(), moves.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    if (radius == 1 && opt.reshape_moves)
      for (Move& mv : reshape_moves()) queue.push_back(std::move(mv));
    for (auto& mv : moves) queue.push_back(std::move(mv.second));
    debug(2) << "droplet: radius " << radius << ", " << queue.size() << " pair moves\n";
  }

  // Moves that reshape the innermost tile of two spatial loops of one stage (the register
  // tile: rows x columns of accumulators): one split's innermost level gives up a factor to
  // the next level out while the other's takes one from the nearest outer level that has
  // one. Each half alone usually makes the tile too small or too big for the registers, so
  // both single moves are slow and the pairs of the fastest single moves never contain this
  // one; yet a 4 x 64 tile can beat an 8 x 32 one (fewer broadcast rows, wider vector
  // loads). One move per ordered pair of such splits, the vectorized loop never the one that
  // shrinks (narrower vectors were slower in every case measured).
  std::vector<Move> reshape_moves() const {
    std::vector<Move> out;
    for (const Coord& a : coords) {
      if (a.kind != CoordKind::Split || !a.innermost || !a.spatial || a.vectorized || a.outer != a.inner - 1 ||
          a.index < 1)
        continue;
      for (const Coord& b : coords) {
        if (b.kind != CoordKind::Split || !b.innermost || !b.spatial || b.step == a.step ||
            b.stage_name != a.stage_name || b.outer != b.nearest_outer || b.index + 1 >= int(b.values.size()))
          continue;
        out.push_back({{a.name, -1}, {b.name, +1}});
      }
    }
    return out;
  }

  // The next round of this neighbourhood, or the next radius.
  void advance() {
    if (!pairs) {
      start_pairs();
      if (!queue.empty()) return;
    }
    ++radius;
    start_singles();
  }

  // The point `move` leads to from the centre, replayed; nullopt when a coordinate cannot move
  // that far. Throws InvalidCandidate when a step list does not replay.
  std::optional<Candidate> build(const Move& move) {
    State st = centre;
    std::string description;
    for (size_t k = 0; k < move.size(); ++k) {
      const MovePart& part = move[k];
      const std::vector<Coord> cs = k == 0 ? coords : coordinates(st, target);
      const auto c = std::find_if(cs.begin(), cs.end(), [&](const Coord& x) { return x.name == part.coord; });
      if (c == cs.end()) return std::nullopt;
      const int to = c->index + part.delta;
      if (to < 0 || to >= int(c->values.size())) return std::nullopt;
      std::vector<Step> steps = set_coordinate(st.steps(), *c, to);
      description += (description.empty() ? "" : "; ") + describe(*c, st.steps(), steps, to);
      st = replay(dag, steps);
    }
    std::string key = point_key(st);
    return Candidate{move, std::move(st), std::move(key), std::move(description)};
  }
};

DropletPolicy::DropletPolicy(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, State start,
                             std::vector<double> start_times_ms, uint64_t seed, DropletOptions opt)
    : impl_(std::make_unique<Impl>(std::move(dag), std::move(t), opt, seed)) {
  KT_CHECK(opt.alpha > 0 && opt.alpha < 1, "droplet: alpha ", opt.alpha, " is not in (0, 1)");
  impl_->measure_start = start_times_ms.empty();
  impl_->recentre(std::move(start), std::move(start_times_ms));
}

DropletPolicy::~DropletPolicy() = default;

std::vector<State> DropletPolicy::propose(int n, const std::unordered_set<std::string>& measured) {
  Impl& d = *impl_;
  std::vector<State> out;
  if (d.measure_start) {
    KT_CHECK(!measured.count(canonical_key(d.centre.steps())),
             "droplet: the start was measured, but its timings were not given");
    if (d.outstanding.empty() && n > 0) {
      d.outstanding.push_back({{}, d.centre, point_key(d.centre), "start"});
      out.push_back(replay(d.dag, d.centre.steps()));
    }
    return out;
  }
  // Candidates proposed before but never observed (an interrupted batch) are proposed again.
  for (auto it = d.outstanding.rbegin(); it != d.outstanding.rend(); ++it) d.queue.push_front(it->move);
  d.outstanding.clear();
  std::unordered_set<std::string> batch;
  while (int(out.size()) < n && !d.converged) {
    if (d.queue.empty()) {
      if (!d.outstanding.empty()) break;  // the next round depends on this round's results
      d.advance();
      continue;
    }
    const Move move = d.queue.front();
    d.queue.pop_front();
    std::optional<Candidate> cand;
    try {
      cand = d.build(move);
      if (!cand || d.visited.count(cand->key) || batch.count(cand->key) ||
          measured.count(canonical_key(cand->state.steps())))
        continue;
      lower(cand->state, "check");  // reject invalid neighbours before they reach the compiler
    } catch (const InvalidCandidate& e) {
      ++d.rejected;
      if (cand) d.visited.insert(cand->key);
      debug(2) << "droplet: invalid neighbour: " << e.what() << "\n";
      continue;
    }
    batch.insert(cand->key);
    out.push_back(cand->state);
    d.outstanding.push_back(std::move(*cand));
  }
  return out;
}

void DropletPolicy::observe(const std::vector<State>& states, const std::vector<MeasureResult>& results) {
  KT_CHECK(states.size() == results.size(), "droplet: ", states.size(), " states but ", results.size(), " results");
  Impl& d = *impl_;
  struct Measured {
    size_t i;
    double mean;
    const Candidate* cand;
    int ordinal;  // the policy's measurement count with this candidate: its trial in a log
  };
  std::vector<Measured> faster, valid;
  std::vector<Candidate> done;
  done.reserve(states.size());
  for (size_t i = 0; i < states.size(); ++i) {
    const std::string key = point_key(states[i]);
    d.visited.insert(key);
    const auto it =
        std::find_if(d.outstanding.begin(), d.outstanding.end(), [&](const Candidate& c) { return c.key == key; });
    if (it == d.outstanding.end()) continue;  // not this policy's proposal
    done.push_back(std::move(*it));
    d.outstanding.erase(it);
    ++d.measurements;
    const MeasureResult& r = results[i];
    const std::vector<double>& times = r.timing.group_means_ms;
    if (d.measure_start) {
      d.measure_start = false;
      d.recentre(d.centre, r.valid() && !times.empty() ? times : std::vector<double>{});
      return;
    }
    if (!r.valid() || times.empty()) continue;
    const double m = mean(times);
    if (!d.pairs && done.back().move.size() == 1) d.singles.push_back({done.back().move, m});
    if (m < d.centre_mean) faster.push_back({i, m, &done.back(), d.measurements});
    valid.push_back({i, m, &done.back(), d.measurements});
  }
  std::stable_sort(faster.begin(), faster.end(), [](const Measured& x, const Measured& y) { return x.mean < y.mean; });
  if (d.remeasure && !d.centre_times.empty()) {  // a centre without timings loses to any valid one
    std::stable_sort(valid.begin(), valid.end(), [](const Measured& x, const Measured& y) { return x.mean < y.mean; });
    int confirmed = 0;
    for (const Measured& f : valid) {
      if (confirmed >= d.opt.confirm_candidates) break;
      // The fastest is always confirmed (against the centre's stored timings its time says
      // little: the machine may have slowed down since); the others only while they look
      // faster than the centre's fresh timings.
      if (confirmed > 0 && f.mean >= d.centre_mean) break;
      ++confirmed;
      // Every one of confirm_tests confirmations in a row must accept the neighbour.
      std::vector<double> ps;
      double from_ms = 0, to_ms = 0;
      for (int k = 0; k < std::max(1, d.opt.confirm_tests); ++k) {
        const DropletTest t = d.confirm(*f.cand, k);
        if (!t.accepted) break;
        ps.push_back(t.p_value);
        from_ms += t.centre_ms;
        to_ms += t.candidate_ms;
      }
      if (int(ps.size()) < std::max(1, d.opt.confirm_tests)) continue;
      from_ms /= double(ps.size());
      to_ms /= double(ps.size());
      DropletStep step{f.ordinal, from_ms, to_ms, fisher_combined_p(ps), f.cand->description};
      step.confirmed = true;
      d.accepted.push_back(step);
      debug(1) << "droplet: " << f.cand->description << ": " << from_ms << " -> " << to_ms
               << " ms (p = " << step.p_value << ", confirmed " << ps.size() << " times)\n";
      // The new centre's quiet speed: the old centre's, times the gain just confirmed, unless
      // it was seen faster (its own timings may all come from a slow stretch).
      double quiet = d.centre_quiet_ms * to_ms / from_ms;
      for (double v : results[f.i].timing.group_means_ms) quiet = std::min(quiet, v);
      d.recentre(states[f.i], d.last_candidate_times, quiet);
      return;
    }
    return;
  }
  for (const Measured& f : faster) {
    const double p = welch_p_value(d.centre_times, results[f.i].timing.group_means_ms);
    if (!std::isnan(p) && p >= d.opt.alpha) continue;
    d.accepted.push_back({f.ordinal, d.centre_mean, f.mean, p, f.cand->description});
    debug(1) << "droplet: " << f.cand->description << ": " << d.centre_mean << " -> " << f.mean << " ms (p = " << p
             << ")\n";
    d.recentre(states[f.i], results[f.i].timing.group_means_ms);
    return;
  }
}

void DropletPolicy::set_remeasure(RemeasureFn f) { impl_->remeasure = std::move(f); }
const std::vector<DropletTest>& DropletPolicy::tests() const { return impl_->tests; }

bool DropletPolicy::converged() const { return impl_->converged; }
const State& DropletPolicy::centre() const { return impl_->centre; }
double DropletPolicy::centre_ms() const { return impl_->centre_mean; }
const std::vector<DropletStep>& DropletPolicy::accepted() const { return impl_->accepted; }
int DropletPolicy::radius() const { return impl_->radius; }
int DropletPolicy::rejected() const { return impl_->rejected; }

}  // namespace ktune::search
