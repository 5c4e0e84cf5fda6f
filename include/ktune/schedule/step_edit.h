// Editing step lists: the helpers that the exploration's mutations (search/evolution.cpp) and
// Droplet Search's moves (search/droplet.cpp) share, so that both read a schedule the same way.
//
// Steps name stages by index at the time they apply, and follow steps name their source split
// by its index in the list; these helpers keep both straight when steps are inserted or erased,
// and say what each step of a list acts on.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include "ktune/schedule/state.h"
#include "ktune/schedule/steps.h"

namespace ktune::schedule {

// What one step of a (valid) state's list acts on, as the state was before the step.
struct StepInfo {
  std::string stage;     // the stage the step acts on ("" for cache_read)
  std::string target;    // compute_at: the stage it computes at
  int64_t extent = 0;    // split: the extent of the loop it splits
  bool reduce = false;   // split: whether that loop is a reduction loop
  int target_loops = 0;  // compute_at: the number of loops of the target stage
  int lead_spatial = 0;  // the number of outermost consecutive spatial loops of `stage`
};
using Trace = std::vector<StepInfo>;

// The stage index a step names (-1: cache_read, which names a tensor).
int step_stage(const Step& s);

// Replays the state's steps and records what each acts on.
Trace trace_steps(const State& s);

// The stages that a reorder step tiles (the sketch's multi-level tiling). The search leaves
// where such a stage is computed alone: its sketch fused it at the level its tiling needs.
std::unordered_set<std::string> tiled_stages(const State& s, const Trace& tr);

// The step that decides where stage `name` is computed: its last compute_at, compute_inline or
// compute_root step; -1 when it has none (it is computed where it was created).
int location_step(const State& s, const Trace& tr, const std::string& name);

// Follow steps name their source splits by step index: keep them pointing at the same steps
// when `delta` steps are inserted (> 0) or erased (< 0) at index `from`.
void renumber_sources(std::vector<Step>& steps, int from, int delta);
void insert_step(std::vector<Step>& steps, int i, Step s);
// Erases step i, which must not be a split step nor the source of a follow step.
void erase_step(std::vector<Step>& steps, int i);

}  // namespace ktune::schedule
