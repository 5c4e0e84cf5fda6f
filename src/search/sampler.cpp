// Random schedules from the sketch space (see sampler.h).
#include "ktune/search/sampler.h"

#include <algorithm>
#include <numeric>
#include <unordered_set>

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

std::optional<schedule::State> RandomSampler::without_pack(const schedule::State& src) const {
  using namespace schedule;
  const std::vector<Step>& steps = src.steps();
  State replay(dag_);
  int at = -1, pack = -1;
  for (int i = 0; i < int(steps.size()) && at < 0; ++i) {
    const bool cache_read = std::holds_alternative<CacheReadStep>(steps[i].v);
    std::vector<std::string> before;  // the stage names before a cache_read
    for (int s = 0; cache_read && s < replay.num_stages(); ++s) before.push_back(replay.stage(s).op.name);
    replay.apply(steps[i]);
    if (cache_read && replay.num_stages() == int(before.size()) + 1) {
      at = i;
      // The new stage: the first whose name the state before did not have there.
      for (int s = 0; s < replay.num_stages() && pack < 0; ++s)
        if (s >= int(before.size()) || replay.stage(s).op.name != before[s]) pack = s;
    }
  }
  if (at < 0 || pack < 0) return std::nullopt;
  std::vector<Step> out;
  std::vector<int> new_index(steps.size(), -1);
  auto fix = [&](int& stage) { if (stage > pack) --stage; };
  for (int i = 0; i < int(steps.size()); ++i) {
    if (i == at) continue;
    Step st = steps[i];
    if (i < at) {  // before the pack existed: stage indices as they were
      new_index[i] = int(out.size());
      out.push_back(std::move(st));
      continue;
    }
    bool drop = false;
    std::visit(
        [&](auto& x) {
          if constexpr (requires { x.stage; }) {
            if (x.stage == pack) drop = true;
            fix(x.stage);
          }
          if constexpr (requires { x.target_stage; }) {
            if (x.target_stage == pack) drop = true;
            fix(x.target_stage);
          }
          if constexpr (requires { x.readers; })
            for (int& r : x.readers) fix(r);
        },
        st.v);
    if (drop) continue;  // a step following a dropped split makes it nullopt below
    new_index[i] = int(out.size());
    out.push_back(std::move(st));
  }
  for (Step& st : out) {
    if (auto* f = std::get_if<FollowSplitStep>(&st.v)) {
      if (new_index[f->src_step_id] < 0) return std::nullopt;
      f->src_step_id = new_index[f->src_step_id];
    } else if (auto* ff = std::get_if<FollowFusedSplitStep>(&st.v)) {
      for (int& id : ff->src_step_ids) {
        if (new_index[id] < 0) return std::nullopt;
        id = new_index[id];
      }
    }
  }
  try {
    State st(dag_);
    for (const Step& step : out) st.apply(step);
    lower(st, "check");
    return st;
  } catch (const InvalidCandidate&) {
    return std::nullopt;
  } catch (const InternalError&) {
    return std::nullopt;
  }
}

std::vector<schedule::State> RandomSampler::transplants(const schedule::State& src, int n) {
  std::vector<schedule::State> out;
  if (n <= 0) return out;
  const TileSizes tiles = annotator_.tile_sizes(src);
  if (tiles.empty()) return out;
  std::vector<size_t> order(sketches_.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::shuffle(order.begin(), order.end(), annotator_.rng());
  std::unordered_set<std::string> keys = {schedule::canonical_key(src.steps())};
  for (size_t i : order) {
    if (int(out.size()) >= n) break;
    try {
      schedule::State st = annotator_.annotate(sketches_[i], &tiles);
      schedule::lower(st, "check");
      if (keys.insert(schedule::canonical_key(st.steps())).second) out.push_back(std::move(st));
    } catch (const InvalidCandidate& e) {
      std::string reason = e.what();
      ++rejected_["transplant: " + reason.substr(0, reason.find(':'))];
    }
  }
  return out;
}

}  // namespace ktune::search
