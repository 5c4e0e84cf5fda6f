#include "ktune/schedule/step_edit.h"

#include <algorithm>

#include "ktune/support/error.h"

namespace ktune::schedule {

int step_stage(const Step& s) {
  return std::visit(
      [](const auto& x) {
        if constexpr (requires { x.stage; })
          return int(x.stage);
        else
          return -1;
      },
      s.v);
}

Trace trace_steps(const State& s) {
  State st(s.dag_ptr());
  Trace out;
  out.reserve(s.steps().size());
  for (const Step& step : s.steps()) {
    StepInfo info;
    const int si = step_stage(step);
    if (si >= 0 && si < st.num_stages()) {
      const Stage& stage = st.stage(si);
      info.stage = stage.op.name;
      while (info.lead_spatial < int(stage.leaf.size()) &&
             stage.leaf_iter(info.lead_spatial).kind == IterKind::Spatial)
        ++info.lead_spatial;
      const auto* sp = std::get_if<SplitStep>(&step.v);
      if (sp && sp->iter >= 0 && sp->iter < int(stage.leaf.size())) {
        info.extent = stage.leaf_iter(sp->iter).extent;
        info.reduce = stage.leaf_iter(sp->iter).kind == IterKind::Reduce;
      }
    }
    const auto* ca = std::get_if<ComputeAtStep>(&step.v);
    if (ca && ca->target_stage >= 0 && ca->target_stage < st.num_stages()) {
      info.target = st.stage(ca->target_stage).op.name;
      info.target_loops = int(st.stage(ca->target_stage).leaf.size());
    }
    st.apply(step);
    out.push_back(std::move(info));
  }
  return out;
}

std::unordered_set<std::string> tiled_stages(const State& s, const Trace& tr) {
  std::unordered_set<std::string> out;
  for (size_t i = 0; i < s.steps().size() && i < tr.size(); ++i)
    if (std::holds_alternative<ReorderStep>(s.steps()[i].v)) out.insert(tr[i].stage);
  return out;
}

int location_step(const State& s, const Trace& tr, const std::string& name) {
  int at = -1;
  for (int i = 0; i < int(s.steps().size()) && i < int(tr.size()); ++i) {
    const auto& v = s.steps()[i].v;
    if (tr[i].stage == name && (std::holds_alternative<ComputeAtStep>(v) || std::holds_alternative<ComputeInlineStep>(v) ||
                                std::holds_alternative<ComputeRootStep>(v)))
      at = i;
  }
  return at;
}

void renumber_sources(std::vector<Step>& steps, int from, int delta) {
  auto fix = [&](int& id) {
    if (id >= from) id += delta;
  };
  for (Step& s : steps) {
    if (auto* f = std::get_if<FollowSplitStep>(&s.v)) fix(f->src_step_id);
    if (auto* f = std::get_if<FollowFusedSplitStep>(&s.v))
      for (int& id : f->src_step_ids) fix(id);
  }
}

void insert_step(std::vector<Step>& steps, int i, Step s) {
  renumber_sources(steps, i, +1);
  steps.insert(steps.begin() + i, std::move(s));
}

void erase_step(std::vector<Step>& steps, int i) {
  KT_CHECK(!std::holds_alternative<SplitStep>(steps[i].v), "erasing split step ", i);
  for (const Step& s : steps) {
    if (const auto* f = std::get_if<FollowSplitStep>(&s.v)) KT_CHECK(f->src_step_id != i, "erasing a split source");
    if (const auto* f = std::get_if<FollowFusedSplitStep>(&s.v))
      KT_CHECK(std::find(f->src_step_ids.begin(), f->src_step_ids.end(), i) == f->src_step_ids.end(),
               "erasing a split source");
  }
  steps.erase(steps.begin() + i);
  renumber_sources(steps, i + 1, -1);
}

}  // namespace ktune::schedule
