// Evolutionary search guided by the cost model (see evolution.h).
//
// A mutation copies a state's step list, changes one decision and replays the list, which
// checks every later step against the edit. Steps name stages by index and loops by position
// at the time each applies, and a cache stage added later shifts the indices, so a mutation
// first traces the list (replays it, noting for each step the name of the stage it acts on,
// the extent of the loop a split splits, ...) and finds what to edit by name.
//
// propose() scores each distinct state once per round: its canonical key maps to its
// predicted score (or to "invalid"), so the duplicates a population is full of cost nothing.
// Features, the expensive part (each state is lowered), are extracted on opt.threads threads
// and kept by key for the next round too (states recur), with one predict call per
// generation. The public mutate_* functions lower their result to check it; inside the
// search, feature extraction is that check.
#include "ktune/search/evolution.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>

#include "ktune/ir/visitor.h"
#include "ktune/log/record.h"
#include "ktune/schedule/lower.h"
#include "ktune/schedule/step_edit.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"

namespace ktune::search {

using namespace schedule;

namespace {

constexpr int64_t kUnrollSteps[] = {0, 16, 64, 512};
constexpr int64_t kMaxInnerLength = 64;

enum class Mutation { TileSize, Unroll, ComputeLocation, Parallel };

const char* mutation_name(Mutation m) {
  switch (m) {
    case Mutation::TileSize: return "tile_size";
    case Mutation::Unroll: return "unroll";
    case Mutation::ComputeLocation: return "compute_location";
    case Mutation::Parallel: return "parallel";
  }
  return "?";
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <class T>
const T& pick(const std::vector<T>& v, std::mt19937_64& rng) {
  return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng)];
}

// The short reason of an InvalidCandidate for the reject counts: replay's "step 12 (fuse):
// fuse on C: ..." gives "fuse on C", a lowering message the text before its first ':'.
std::string invalid_reason(const std::string& msg) {
  std::string m = msg;
  if (m.rfind("step ", 0) == 0) {
    const size_t c = m.find("): ");
    if (c != std::string::npos) m = m.substr(c + 3);
  }
  return m.substr(0, m.find(':'));
}

// ---- editing step lists ------------------------------------------------------------------------

// Distinct prime factors of v >= 1.
std::vector<int64_t> prime_factors(int64_t v) {
  std::vector<int64_t> out;
  for (int64_t p = 2; p * p <= v; ++p) {
    if (v % p) continue;
    out.push_back(p);
    while (v % p == 0) v /= p;
  }
  if (v > 1) out.push_back(v);
  return out;
}

using Edit = std::optional<std::vector<Step>>;

// Moves a prime factor between two levels of a perfect split (the outer level, extent /
// product, included), keeping the innermost length of a spatial loop <= 64 (an inner
// reduction loop may be as long as the extent: the register tile accumulates over it).
Edit edit_tile_size(const State& s, const Trace& tr, std::mt19937_64& rng, std::string* why) {
  struct Move {
    int step, from, to;
    int64_t p;
  };
  std::vector<std::vector<Move>> per_split;
  for (int i = 0; i < int(s.steps().size()); ++i) {
    const auto* sp = std::get_if<SplitStep>(&s.steps()[i].v);
    if (!sp) continue;
    int64_t prod = 1;
    for (int64_t l : sp->lengths) prod *= l;
    if (tr[i].extent <= 0 || tr[i].extent % prod) continue;  // only perfect splits
    std::vector<int64_t> level = {tr[i].extent / prod};
    level.insert(level.end(), sp->lengths.begin(), sp->lengths.end());
    const int inner = int(level.size()) - 1;
    std::vector<Move> moves;
    for (int a = 0; a <= inner; ++a)
      for (int64_t p : prime_factors(level[a]))
        for (int b = 0; b <= inner; ++b)
          if (b != a && !(b == inner && !tr[i].reduce && level[b] * p > kMaxInnerLength)) moves.push_back({i, a, b, p});
    if (!moves.empty()) per_split.push_back(std::move(moves));
  }
  if (per_split.empty()) {
    *why = "no split with a factor to move";
    return std::nullopt;
  }
  const Move mv = pick(pick(per_split, rng), rng);
  std::vector<Step> steps = s.steps();
  auto& lengths = std::get<SplitStep>(steps[mv.step].v).lengths;
  // Level 0 is implicit (extent / product): only the named lengths change.
  if (mv.from > 0) lengths[mv.from - 1] /= mv.p;
  if (mv.to > 0) lengths[mv.to - 1] *= mv.p;
  return steps;
}

// Another auto_unroll_max_step value for a reduction stage; 0 means no pragma step.
Edit edit_unroll(const State& s, const Trace& tr, std::mt19937_64& rng, std::string* why) {
  std::vector<int> stages;
  for (int x = 0; x < s.num_stages(); ++x)
    if (s.stage(x).op.reduce != te::ReduceKind::None && s.stage(x).location != ComputeLocation::Inlined)
      stages.push_back(x);
  if (stages.empty()) {
    *why = "no reduction stage";
    return std::nullopt;
  }
  const int x = pick(stages, rng);
  const std::string& name = s.stage(x).op.name;
  std::vector<int> pragmas;
  for (int i = 0; i < int(s.steps().size()); ++i)
    if (std::holds_alternative<PragmaStep>(s.steps()[i].v) && tr[i].stage == name) pragmas.push_back(i);
  const int64_t cur = pragmas.empty() ? 0 : std::get<PragmaStep>(s.steps()[pragmas.back()].v).value;
  std::vector<int64_t> values;
  for (int64_t v : kUnrollSteps)
    if (v != cur) values.push_back(v);
  const int64_t v = pick(values, rng);
  std::vector<Step> steps = s.steps();
  if (v == 0) {
    for (auto it = pragmas.rbegin(); it != pragmas.rend(); ++it) erase_step(steps, *it);
  } else if (!pragmas.empty()) {
    std::get<PragmaStep>(steps[pragmas.back()].v).value = v;
  } else {
    // After the pragmas of earlier stages, before those of later ones, as annotation orders them.
    int at = int(steps.size());
    while (at > 0 && std::holds_alternative<PragmaStep>(steps[at - 1].v) &&
           std::get<PragmaStep>(steps[at - 1].v).stage > x)
      --at;
    insert_step(steps, at, PragmaStep{x, 0, "auto_unroll_max_step", v});
  }
  return steps;
}

// Another location for an untiled stage with one consumer: another loop of the consumer, root,
// or inlined. Tiled stages keep the location their sketch chose (Ansor's rule too): the
// fusion sketches already cover the useful levels, and elsewhere the tile no longer matches.
Edit edit_compute_location(const State& s, const Trace& tr, std::mt19937_64& rng, std::string* why) {
  const std::unordered_set<std::string> tiled = tiled_stages(s, tr);
  std::vector<std::vector<std::vector<Step>>> per_stage;  // the candidate step lists of each stage
  for (int x = 0; x < s.num_stages(); ++x) {
    const Stage& stage = s.stage(x);
    const std::string& name = stage.op.name;
    if (stage.op.is_output || stage.location == ComputeLocation::Inlined || tiled.count(name)) continue;
    int consumer = -1, n_consumers = 0;
    for (int c = 0; c < s.num_stages(); ++c)
      if (c != x && reads_tensor(s.stage(c).op, name)) consumer = c, ++n_consumers;
    if (n_consumers != 1 || s.stage(consumer).location == ComputeLocation::Inlined) continue;
    // Inlining needs the op's own definition (not a cache stage's copy) and no reduction.
    const bool inlineable = stage.op.reduce == te::ReduceKind::None && s.dag().find(name) >= 0;
    std::vector<std::vector<Step>> options;
    if (stage.location == ComputeLocation::At) {
      const int at = location_step(s, tr, name);  // the step that put it there
      if (at < 0 || !std::holds_alternative<ComputeAtStep>(s.steps()[at].v)) continue;
      const auto& ca = std::get<ComputeAtStep>(s.steps()[at].v);
      for (int p = 0; p < tr[at].target_loops; ++p) {
        if (p == ca.target_iter) continue;
        options.push_back(s.steps());
        std::get<ComputeAtStep>(options.back()[at].v).target_iter = p;
      }
      options.push_back(s.steps());
      erase_step(options.back(), at);
      if (inlineable) {
        options.push_back(s.steps());
        options.back()[at] = ComputeInlineStep{ca.stage};
      }
    } else {
      // At root: computed at a loop of the consumer as it is now, or inlined, after all steps.
      for (int p = 0; p < int(s.stage(consumer).leaf.size()); ++p) {
        options.push_back(s.steps());
        options.back().push_back(ComputeAtStep{x, consumer, p});
      }
      if (inlineable) {
        options.push_back(s.steps());
        options.back().push_back(ComputeInlineStep{x});
      }
    }
    if (!options.empty()) per_stage.push_back(std::move(options));
  }
  if (per_stage.empty()) {
    *why = "no untiled stage with one consumer";
    return std::nullopt;
  }
  return pick(pick(per_stage, rng), rng);
}

// Renumbers the loop positions that `step` names in stage `name` after the fuse at position 0
// of that stage absorbs `delta` fewer loops: position p >= 1 becomes p + delta. False when a
// named loop is absorbed now (or the step reorders the stage's loops).
bool shift_positions(Step& step, const StepInfo& info, const std::string& name, int delta) {
  bool ok = true;
  auto move = [&](int& p) {
    if (p < 1) return;
    p += delta;
    ok = ok && p >= 1;
  };
  std::visit(
      [&](auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, ComputeAtStep>) {
          if (info.target == name) move(x.target_iter);
        } else if (info.stage == name) {
          if constexpr (std::is_same_v<T, FuseStep>) {
            for (int& p : x.iters) move(p);
          } else if constexpr (std::is_same_v<T, ReorderStep> || std::is_same_v<T, RfactorStep>) {
            ok = false;
          } else if constexpr (requires { x.iter; }) {
            move(x.iter);
          }
        }
      },
      step.v);
  return ok;
}

// One loop more or fewer fused into the outermost parallel loop of a stage.
Edit edit_parallel(const State& s, const Trace& tr, std::mt19937_64& rng, std::string* why) {
  struct Choice {
    int annotate, fuse, k, k_new;  // fuse: the step index, or -1 when one loop is parallel
  };
  std::vector<std::vector<Choice>> per_loop;
  const auto& steps = s.steps();
  for (int j = 0; j < int(steps.size()); ++j) {
    const auto* an = std::get_if<AnnotateStep>(&steps[j].v);
    if (!an || an->annotation != Annotation::Parallel || an->iter != 0) continue;
    int i = j - 1;  // the previous step on the stage
    while (i >= 0 && tr[i].stage != tr[j].stage) --i;
    const auto* fu = i >= 0 ? std::get_if<FuseStep>(&steps[i].v) : nullptr;
    if (fu && fu->iters.front() != 0) fu = nullptr;
    const int k = fu ? int(fu->iters.size()) : 1;
    const int lead = fu ? tr[i].lead_spatial : tr[j].lead_spatial;
    std::vector<Choice> choices;
    if (k >= 2) choices.push_back({j, fu ? i : -1, k, k - 1});
    if (k + 1 <= lead) choices.push_back({j, fu ? i : -1, k, k + 1});
    if (!choices.empty()) per_loop.push_back(std::move(choices));
  }
  if (per_loop.empty()) {
    *why = "no parallel loop to change";
    return std::nullopt;
  }
  const Choice c = pick(pick(per_loop, rng), rng);
  const std::string& name = tr[c.annotate].stage;
  std::vector<Step> out = steps;
  // Steps after the fuse name the stage's later loops by position: shift them.
  for (int i = c.fuse >= 0 ? c.fuse + 1 : c.annotate; i < int(out.size()); ++i)
    if (!shift_positions(out[i], tr[i], name, c.k - c.k_new)) {
      *why = "a later step names a loop the change fuses";
      return std::nullopt;
    }
  if (c.fuse >= 0 && c.k_new >= 2) {
    auto& iters = std::get<FuseStep>(out[c.fuse].v).iters;
    iters.resize(c.k_new);
    for (int p = 0; p < c.k_new; ++p) iters[p] = p;
  } else if (c.fuse >= 0) {
    erase_step(out, c.fuse);
  } else {
    insert_step(out, c.annotate, FuseStep{std::get<AnnotateStep>(out[c.annotate].v).stage, {0, 1}});
  }
  return out;
}

Edit edit_steps(Mutation m, const State& s, const Trace& tr, std::mt19937_64& rng, std::string* why) {
  switch (m) {
    case Mutation::TileSize: return edit_tile_size(s, tr, rng, why);
    case Mutation::Unroll: return edit_unroll(s, tr, rng, why);
    case Mutation::ComputeLocation: return edit_compute_location(s, tr, rng, why);
    case Mutation::Parallel: return edit_parallel(s, tr, rng, why);
  }
  return std::nullopt;
}

std::optional<State> mutate(Mutation m, const State& s, std::mt19937_64& rng) {
  std::string why;
  const Edit steps = edit_steps(m, s, trace_steps(s), rng, &why);
  if (!steps) return std::nullopt;
  try {
    State st = replay(s.dag_ptr(), *steps);
    lower(st, "check");
    return st;
  } catch (const InvalidCandidate&) {
    return std::nullopt;
  }
}

}  // namespace

std::optional<State> mutate_tile_size(const State& s, std::mt19937_64& rng) {
  return mutate(Mutation::TileSize, s, rng);
}
std::optional<State> mutate_unroll(const State& s, std::mt19937_64& rng) { return mutate(Mutation::Unroll, s, rng); }
std::optional<State> mutate_compute_location(const State& s, std::mt19937_64& rng) {
  return mutate(Mutation::ComputeLocation, s, rng);
}
std::optional<State> mutate_parallel(const State& s, std::mt19937_64& rng) {
  return mutate(Mutation::Parallel, s, rng);
}

// ---- the policy -------------------------------------------------------------------------------

struct EvolutionaryPolicy::Impl {
  // A state of a population with its predicted score. `trace` is filled when it is first
  // mutated and shared with its copies.
  struct Member {
    State state;
    std::string key;
    std::string origin;  // "sample", "measured" or "mutation <kind>": the prefix of its reject reasons
    double score = 0;
    std::shared_ptr<const Trace> trace;
  };
  struct Measured {
    State state;
    std::string key;
    double gflops;
  };

  Impl(std::shared_ptr<const te::ComputeDAG> d, target::Target t, std::shared_ptr<CostModel> m, uint64_t seed,
       EvolutionOptions o)
      : dag(d),
        target(t),
        model(std::move(m)),
        opt(std::move(o)),
        sampler(d, t, seed),
        rng(seed ^ 0x9e3779b97f4a7c15ULL),
        workload(log::Workload::of(*d).key()) {
    KT_CHECK(model != nullptr, "evolutionary search without a cost model");
    if (!opt.features)
      opt.features = [](const State& s, const target::Target& t) { return extract_features(s, t); };
  }

  // Features of each state (nullopt and a reason for one that does not lower).
  std::vector<std::optional<ProgramFeatures>> features_of(const std::vector<const State*>& states,
                                                          std::vector<std::string>* why) const;
  // Scores the members whose keys this round has not scored yet (one predict call), then
  // drops the invalid ones, counting their reasons.
  void score(std::vector<Member>& batch);
  std::vector<Member> next_generation(std::vector<Member>& pop);
  // Whether `child` grows a reduction stage's register tile past the target's budget.
  bool spills_register_tile(const State& parent, const State& child) const;

  std::shared_ptr<const te::ComputeDAG> dag;
  target::Target target;
  std::shared_ptr<CostModel> model;
  EvolutionOptions opt;
  RandomSampler sampler;
  std::mt19937_64 rng;
  std::string workload;
  RejectCounts rejects;
  mutable RejectCounts all_rejects;  // the sampler's and ours, for rejected()

  // Hashes of the keys passed to observe() (the tuner's own set of measured keys covers them
  // too; a hash is 8 bytes where a key is a few hundred, over a 10,000-candidate run).
  std::unordered_set<size_t> observed;
  std::unordered_map<std::string, int> measured_per_structure;  // by structure_key
  std::vector<Measured> best_measured;       // by GFLOP/s, descending
  // Features by key; null for a state that does not lower. States recur from one round to
  // the next, so the last round's features are kept too.
  using FeaturesPtr = std::shared_ptr<const ProgramFeatures>;
  std::unordered_map<std::string, FeaturesPtr> measured_features;  // of best_measured
  std::unordered_map<std::string, FeaturesPtr> features, last_features;
  std::unordered_map<std::string, double> round_scores;  // this round's predictions; NaN: invalid
  // Seconds of this round spent sampling, mutating (edit + replay), extracting features and
  // predicting, for the debug summary.
  double t_sample = 0, t_mutate = 0, t_features = 0, t_predict = 0;
};

std::vector<std::optional<ProgramFeatures>> EvolutionaryPolicy::Impl::features_of(
    const std::vector<const State*>& states, std::vector<std::string>* why) const {
  const size_t n = states.size();
  std::vector<std::optional<ProgramFeatures>> out(n);
  why->assign(n, "");
  parallel_for_each(n, std::max(1, opt.threads), [&](size_t i) {
    try {
      out[i] = opt.features(*states[i], target);
    } catch (const InvalidCandidate& e) {
      (*why)[i] = invalid_reason(e.what());
    }
  });
  return out;
}

void EvolutionaryPolicy::Impl::score(std::vector<Member>& batch) {
  std::vector<int> todo;  // the first member of each key not scored yet
  std::unordered_set<std::string> queued;
  for (int i = 0; i < int(batch.size()); ++i)
    if (!round_scores.count(batch[i].key) && queued.insert(batch[i].key).second) todo.push_back(i);
  std::vector<FeaturesPtr> feats(todo.size());
  std::vector<size_t> missing;
  for (size_t t = 0; t < todo.size(); ++t) {
    const std::string& key = batch[todo[t]].key;
    if (auto it = measured_features.find(key); it != measured_features.end()) {
      feats[t] = it->second;
    } else if (auto it = last_features.find(key); it != last_features.end()) {
      feats[t] = it->second;
    } else {
      missing.push_back(t);
    }
  }
  std::vector<const State*> extract;
  for (size_t t : missing) extract.push_back(&batch[todo[t]].state);
  std::vector<std::string> why;
  auto t0 = std::chrono::steady_clock::now();
  auto extracted = features_of(extract, &why);
  t_features += seconds_since(t0);
  for (size_t j = 0; j < missing.size(); ++j) {
    if (extracted[j])
      feats[missing[j]] = std::make_shared<const ProgramFeatures>(std::move(*extracted[j]));
    else
      ++rejects[batch[todo[missing[j]]].origin + ": " + why[j]];
  }
  std::vector<ProgramFeatures> programs;
  std::vector<int> program_of;
  for (size_t t = 0; t < todo.size(); ++t) {
    const std::string& key = batch[todo[t]].key;
    features[key] = feats[t];
    if (!feats[t]) {
      round_scores[key] = std::nan("");
      continue;
    }
    programs.push_back(*feats[t]);
    program_of.push_back(todo[t]);
  }
  if (!programs.empty()) {
    t0 = std::chrono::steady_clock::now();
    const std::vector<double> pred = model->predict(programs);
    t_predict += seconds_since(t0);
    KT_CHECK(pred.size() == programs.size(), "the cost model returned ", pred.size(), " scores for ",
             programs.size(), " programs");
    for (size_t j = 0; j < programs.size(); ++j) round_scores[batch[program_of[j]].key] = pred[j];
  }
  std::vector<Member> valid;
  valid.reserve(batch.size());
  for (Member& m : batch) {
    m.score = round_scores.at(m.key);
    if (!std::isnan(m.score)) valid.push_back(std::move(m));
  }
  batch = std::move(valid);
}

bool EvolutionaryPolicy::Impl::spills_register_tile(const State& parent, const State& child) const {
  const int64_t budget = register_tile_budget(target);
  for (int x = 0; x < child.num_stages() && x < parent.num_stages(); ++x) {
    const Stage& c = child.stage(x);
    if (c.op.reduce == te::ReduceKind::None || c.location == ComputeLocation::Inlined) continue;
    const int64_t before = register_tile_vectors(parent.stage(x), target);
    const int64_t after = register_tile_vectors(c, target);
    if (after > budget && after > before) return true;
    // With its operands the tile must fit the vector registers as well.
    const int64_t regs_before = register_tile_registers(parent.stage(x), target);
    const int64_t regs_after = register_tile_registers(c, target);
    if (regs_after > target.vector_registers() && regs_after > regs_before) return true;
  }
  return false;
}

std::vector<EvolutionaryPolicy::Impl::Member> EvolutionaryPolicy::Impl::next_generation(std::vector<Member>& pop) {
  // Roulette over the scores shifted to start at a small positive weight: the model's scores
  // only order states, and may be negative.
  double lo = pop[0].score, hi = pop[0].score;
  for (const Member& m : pop) lo = std::min(lo, m.score), hi = std::max(hi, m.score);
  const double floor = hi > lo ? (hi - lo) * 1e-3 : 1.0;
  std::vector<double> prefix(pop.size());
  double total = 0;
  for (size_t i = 0; i < pop.size(); ++i) prefix[i] = total += pop[i].score - lo + floor;
  auto roulette = [&]() -> Member& {
    const double u = std::uniform_real_distribution<double>(0, total)(rng);
    const size_t i = std::upper_bound(prefix.begin(), prefix.end(), u) - prefix.begin();
    return pop[std::min(i, pop.size() - 1)];
  };
  static const Mutation kinds[] = {Mutation::TileSize, Mutation::Unroll, Mutation::ComputeLocation,
                                   Mutation::Parallel};
  std::discrete_distribution<int> kind({opt.w_tile, opt.w_unroll, opt.w_compute_location, opt.w_parallel});
  std::uniform_real_distribution<double> u(0, 1);

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Member> children;
  children.reserve(opt.population);
  for (int attempt = 0; int(children.size()) < opt.population && attempt < 4 * opt.population; ++attempt) {
    Member& parent = roulette();
    if (u(rng) >= opt.mutation_prob) {
      children.push_back(parent);
      continue;
    }
    const Mutation m = kinds[kind(rng)];
    const std::string origin = std::string("mutation ") + mutation_name(m);
    if (!parent.trace) parent.trace = std::make_shared<const Trace>(trace_steps(parent.state));
    std::string why;
    const Edit steps = edit_steps(m, parent.state, *parent.trace, rng, &why);
    if (!steps) {
      ++rejects[origin + ": " + why];
      continue;
    }
    try {
      State st = replay(dag, *steps);
      // A tile-size mutation that grows a register tile past the target's vector registers
      // makes a kernel that spills: mostly (as annotation does, p = 0.85) refused.
      if (m == Mutation::TileSize && u(rng) < 0.85 && spills_register_tile(parent.state, st)) {
        ++rejects[origin + ": register tile over the budget"];
        continue;
      }
      std::string key = canonical_key(st.steps());
      children.push_back({std::move(st), std::move(key), origin, 0, nullptr});
    } catch (const InvalidCandidate& e) {
      ++rejects[origin + ": " + invalid_reason(e.what())];
    }
  }
  t_mutate += seconds_since(t0);
  score(children);
  return children;
}

EvolutionaryPolicy::EvolutionaryPolicy(std::shared_ptr<const te::ComputeDAG> dag, target::Target t,
                                       std::shared_ptr<CostModel> model, uint64_t seed, EvolutionOptions opt)
    : impl_(std::make_unique<Impl>(std::move(dag), std::move(t), std::move(model), seed, std::move(opt))) {}
EvolutionaryPolicy::~EvolutionaryPolicy() = default;

std::vector<State> EvolutionaryPolicy::propose(int n, const std::unordered_set<std::string>& measured) {
  Impl& im = *impl_;
  if (n <= 0) return {};
  const auto t0 = std::chrono::steady_clock::now();
  using Member = Impl::Member;
  auto taken = [&](const std::string& key) {
    return measured.count(key) || im.observed.count(std::hash<std::string>{}(key));
  };
  im.round_scores.clear();
  im.t_sample = im.t_mutate = im.t_features = im.t_predict = 0;

  // Initial population: random states, then the best measured ones.
  std::vector<Member> pop;
  std::unordered_set<std::string> keys;
  for (int draw = 0; int(pop.size()) < im.opt.init_population && draw < 10 * im.opt.init_population + 100; ++draw) {
    State st = im.sampler.sample();
    std::string key = canonical_key(st.steps());
    if (keys.insert(key).second) pop.push_back({std::move(st), std::move(key), "sample", 0, nullptr});
  }
  for (const auto& m : im.best_measured)
    if (keys.insert(m.key).second) pop.push_back({m.state, m.key, "measured", 0, nullptr});
  im.t_sample += seconds_since(t0);
  im.score(pop);

  // Evolve, keeping the n best-predicted states not measured yet.
  std::unordered_map<std::string, Member> best;
  auto ranked = [&] {
    std::vector<Member*> r;
    for (auto& [k, m] : best) r.push_back(&m);
    std::sort(r.begin(), r.end(), [](const Member* a, const Member* b) {
      return a->score != b->score ? a->score > b->score : a->key < b->key;
    });
    return r;
  };
  // The best-predicted unmeasured state of each structure seen in any generation.
  std::unordered_map<std::string, Member> structure_best;
  int evaluated = int(pop.size());
  for (int g = 0;; ++g) {
    for (const Member& m : pop) {
      if (taken(m.key)) continue;
      if (!best.count(m.key)) best.emplace(m.key, m);
      if (im.opt.structure_slots > 0) {
        auto [it, fresh] = structure_best.try_emplace(structure_key(m.state), m);
        if (!fresh && m.score > it->second.score) it->second = m;
      }
    }
    if (int(best.size()) > n) {
      std::unordered_map<std::string, Member> kept;
      for (Member* m : ranked()) {
        if (int(kept.size()) == n) break;
        kept.emplace(m->key, std::move(*m));
      }
      best = std::move(kept);
    }
    if (g == im.opt.generations || pop.empty()) break;
    pop = im.next_generation(pop);
    evaluated += int(pop.size());
  }

  // The batch: the best predicted, with eps_greedy of it random states.
  std::vector<State> out;
  std::unordered_set<std::string> out_keys;
  const std::vector<Member*> r = ranked();
  const int n_random = std::min(n, int(std::lround(im.opt.eps_greedy * n)));
  // Transplants of the best measured states, best first, one per state, not measured before.
  std::vector<State> moved;
  const int n_moved = std::min(n - n_random, im.opt.transplants);
  for (size_t b = 0; b < im.best_measured.size() && int(moved.size()) < n_moved; ++b) {
    // The same schedule without its pack stage first, then other sketches.
    if (auto st = im.sampler.without_pack(im.best_measured[b].state)) {
      std::string key = canonical_key(st->steps());
      if (!taken(key) && out_keys.insert(key).second) {
        moved.push_back(std::move(*st));
        continue;
      }
    }
    for (State& st : im.sampler.transplants(im.best_measured[b].state, 4)) {
      std::string key = canonical_key(st.steps());
      if (taken(key) || !out_keys.insert(key).second) continue;
      moved.push_back(std::move(st));
      break;
    }
  }
  // The structure slots: the best of each structure, the least measured structures first.
  std::vector<std::pair<std::string, Member*>> structures;
  for (auto& [sk, m] : structure_best) structures.push_back({sk, &m});
  std::sort(structures.begin(), structures.end(), [&](const auto& a, const auto& b) {
    const auto ma = im.measured_per_structure.find(a.first), mb = im.measured_per_structure.find(b.first);
    const int ca = ma == im.measured_per_structure.end() ? 0 : ma->second;
    const int cb = mb == im.measured_per_structure.end() ? 0 : mb->second;
    if (ca != cb) return ca < cb;
    return a.second->score != b.second->score ? a.second->score > b.second->score : a.first < b.first;
  });
  const int n_slots = std::min(n - n_random - int(moved.size()), im.opt.structure_slots);
  for (auto& [sk, m] : structures) {
    if (int(out.size()) >= n_slots) break;
    if (out_keys.insert(m->key).second) out.push_back(m->state);
  }
  const size_t n_best = std::min(r.size(), size_t(std::max(0, n - n_random - int(moved.size()) - int(out.size()))));
  for (size_t i = 0, taken_best = 0; i < r.size() && taken_best < n_best; ++i) {
    if (!out_keys.insert(r[i]->key).second) continue;
    ++taken_best;
    out.push_back(std::move(r[i]->state));
  }
  for (State& st : moved) out.push_back(std::move(st));
  const int want = n - int(out.size()) - int(r.size() - n_best);
  const auto t_random = std::chrono::steady_clock::now();
  for (int added = 0, misses = 0; added < std::max(n_random, want) && int(out.size()) < n && misses < 500;) {
    State st = im.sampler.sample();
    std::string key = canonical_key(st.steps());
    if (taken(key) || !out_keys.insert(key).second) {
      ++misses;
      continue;
    }
    out.push_back(std::move(st));
    ++added;
  }
  im.t_sample += seconds_since(t_random);
  for (size_t i = n_best; i < r.size() && int(out.size()) < n; ++i)
    if (out_keys.insert(r[i]->key).second) out.push_back(std::move(r[i]->state));

  debug(1) << "evolution: proposed " << out.size() << " of " << n << " from " << evaluated << " states ("
           << im.round_scores.size() << " distinct) in " << seconds_since(t0) << " s: sampling " << im.t_sample
           << " s, mutating " << im.t_mutate << " s, features " << im.t_features << " s, predicting "
           << im.t_predict << " s\n";
  im.round_scores.clear();
  im.last_features = std::move(im.features);
  im.features.clear();
  return out;
}

void EvolutionaryPolicy::observe(const std::vector<State>& states, const std::vector<MeasureResult>& results) {
  Impl& im = *impl_;
  KT_CHECK(states.size() == results.size(), "observe: ", states.size(), " states but ", results.size(), " results");
  std::vector<const State*> ptrs;
  for (const State& s : states) ptrs.push_back(&s);
  std::vector<std::string> why;
  auto feats = im.features_of(ptrs, &why);
  std::vector<ProgramFeatures> programs;
  std::vector<double> gflops;
  const size_t keep = size_t(std::max(0.0, im.opt.use_measured_ratio * im.opt.population));
  for (size_t i = 0; i < states.size(); ++i) {
    std::string key = canonical_key(states[i].steps());
    im.observed.insert(std::hash<std::string>{}(key));
    ++im.measured_per_structure[structure_key(states[i])];
    if (!feats[i]) continue;  // does not lower: nothing to learn from
    const double g = results[i].valid() ? results[i].gflops : 0.0;
    programs.push_back(*feats[i]);
    gflops.push_back(g);
    if (g <= 0 || im.measured_features.count(key)) continue;
    im.measured_features.emplace(key, std::make_shared<const ProgramFeatures>(std::move(*feats[i])));
    im.best_measured.push_back({states[i], std::move(key), g});
  }
  std::stable_sort(im.best_measured.begin(), im.best_measured.end(),
                   [](const Impl::Measured& a, const Impl::Measured& b) { return a.gflops > b.gflops; });
  while (im.best_measured.size() > keep) {
    im.measured_features.erase(im.best_measured.back().key);
    im.best_measured.pop_back();
  }
  if (!programs.empty()) im.model->update(programs, gflops, im.workload);
}

std::string structure_key(const State& st) {
  std::string key;
  for (const Step& step : st.steps()) {
    if (const auto* cw = std::get_if<CacheWriteStep>(&step.v)) {
      key += "W" + std::to_string(cw->stage) + ";";
    } else if (const auto* cr = std::get_if<CacheReadStep>(&step.v)) {
      key += "R" + cr->tensor + ";";
    } else if (const auto* ci = std::get_if<ComputeInlineStep>(&step.v)) {
      key += "I" + std::to_string(ci->stage) + ";";
    } else if (const auto* cr2 = std::get_if<ComputeRootStep>(&step.v)) {
      key += "T" + std::to_string(cr2->stage) + ";";
    } else if (const auto* rf = std::get_if<RfactorStep>(&step.v)) {
      key += "F" + std::to_string(rf->stage) + ";";
    }
  }
  return key;
}

const RejectCounts& EvolutionaryPolicy::rejected() const {
  impl_->all_rejects = impl_->sampler.rejected();
  for (const auto& [reason, n] : impl_->rejects) impl_->all_rejects[reason] += n;
  return impl_->all_rejects;
}

}  // namespace ktune::search
