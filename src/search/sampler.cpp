// Random schedules for the first tuner (see sampler.h).
#include "ktune/search/sampler.h"

#include "ktune/schedule/steps.h"
#include "ktune/support/util.h"

namespace ktune::search {

using namespace schedule;

RandomSampler::RandomSampler(std::shared_ptr<const te::ComputeDAG> dag, target::Target t, uint64_t seed)
    : dag_(std::move(dag)), target_(std::move(t)), rng_(seed) {}

// `parts` factors whose product divides extent, outermost first; the innermost <= inner_max.
std::vector<int64_t> RandomSampler::random_factors(int64_t extent, int parts, int64_t inner_max) {
  std::vector<int64_t> out(parts);
  int64_t rest = extent;
  for (int k = parts - 1; k >= 0; --k) {
    std::vector<int64_t> ds;
    for (int64_t d : divisors(rest))
      if (k != parts - 1 || d <= inner_max) ds.push_back(d);
    out[k] = ds[std::uniform_int_distribution<size_t>(0, ds.size() - 1)(rng_)];
    rest /= out[k];
  }
  return out;
}

void RandomSampler::tile_stage(State& st, int s, bool reduction) {
  const Stage& stage0 = st.stage(s);
  const int nsp = int(stage0.op.axes.size());
  const int nrd = int(stage0.op.reduce_axes.size());
  std::uniform_real_distribution<double> u(0, 1);
  // Structure: levels of spatial (S) and reduction (R) tiles, outermost first.
  std::string structure;
  if (reduction) {
    const double x = u(rng_);
    structure = x < 0.6 ? "SSRSRS" : x < 0.8 ? "SRSRS" : "SRS";
  } else {
    structure = u(rng_) < 0.7 ? "SS" : "SSS";
  }
  const int s_levels = int(std::count(structure.begin(), structure.end(), 'S'));
  const int r_levels = int(std::count(structure.begin(), structure.end(), 'R'));
  const int64_t vec_lanes = std::max(1, target_.vector_lanes(stage0.op.dtype.bits));
  // Split root loops from the last to the first so earlier positions stay put.
  const int nroot = nsp + nrd;
  std::vector<int> levels(nroot);
  for (int a = nroot - 1; a >= 0; --a) {
    const bool spatial = a < nsp;
    levels[a] = spatial ? s_levels : r_levels;
    const int64_t ext = st.stage(s).leaf_iter(a).extent;
    if (levels[a] <= 1) continue;
    const int64_t inner_max = spatial && a == nsp - 1 ? 4 * vec_lanes : 64;
    auto f = random_factors(ext, levels[a], inner_max);
    std::vector<int64_t> lengths(f.begin() + 1, f.end());
    st.apply(SplitStep{s, a, lengths});
  }
  // Position of (axis, level) after the splits.
  auto pos = [&](int axis, int level) {
    int p = 0;
    for (int a = 0; a < axis; ++a) p += std::max(1, levels[a]);
    return p + level;
  };
  std::vector<int> order;
  int sl = 0, rl = 0;
  for (char c : structure) {
    if (c == 'S') {
      for (int a = 0; a < nsp; ++a) order.push_back(pos(a, sl));
      ++sl;
    } else {
      for (int a = nsp; a < nroot; ++a) order.push_back(pos(a, rl));
      ++rl;
    }
  }
  st.apply(ReorderStep{s, order});
  // Parallel: fuse the outer spatial tiles.
  if (nsp >= 1 && u(rng_) < 0.85) {
    int64_t prod = 1;
    int k = 0;
    while (k < nsp && prod < 16 * target_.cores) prod *= st.stage(s).leaf_iter(k++).extent;
    if (k >= 2) {
      std::vector<int> it(k);
      for (int i = 0; i < k; ++i) it[i] = i;
      st.apply(FuseStep{s, it});
    }
    if (st.stage(s).leaf_iter(0).extent > 1) st.apply(AnnotateStep{s, 0, Annotation::Parallel});
  }
  // Vectorize the innermost loop when it is spatial and short.
  const int last = int(st.stage(s).leaf.size()) - 1;
  const Iterator& inner = st.stage(s).leaf_iter(last);
  if (inner.kind == IterKind::Spatial && inner.extent > 1 && inner.extent <= 64 && u(rng_) < 0.8 && last > 0)
    st.apply(AnnotateStep{s, last, Annotation::Vectorize});
  static const int64_t kUnroll[] = {0, 16, 64, 512};
  const int64_t unroll = kUnroll[std::uniform_int_distribution<int>(0, 3)(rng_)];
  if (unroll) st.apply(PragmaStep{s, 0, "auto_unroll_max_step", unroll});
}

State RandomSampler::sample() {
  State st(dag_);
  std::uniform_real_distribution<double> u(0, 1);
  for (int s = 0; s < st.num_stages(); ++s) {
    const auto& op = st.stage(s).op;
    if (!op.is_output && op.reduce == te::ReduceKind::None && u(rng_) < 0.8) st.apply(ComputeInlineStep{s});
  }
  for (int s = 0; s < st.num_stages(); ++s) {
    if (st.stage(s).location != ComputeLocation::Root) continue;
    tile_stage(st, s, st.stage(s).op.reduce != te::ReduceKind::None);
  }
  return st;
}

}  // namespace ktune::search
