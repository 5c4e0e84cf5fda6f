// The evolutionary search (evolution.h): every mutation gives a valid, different state whose
// splits stay perfect (and computes the right values on small kernels); propose() returns
// the requested number of unique unmeasured states, and better ones by the model's measure
// than random sampling when the model knows the answer; observe() trains the model on what
// was measured.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <numeric>
#include <set>
#include <unordered_set>

#include <sys/resource.h>

#include "ktune/log/record.h"
#include "ktune/schedule/lower.h"
#include "ktune/search/evolution.h"
#include "ktune/search/sketch.h"
#include "ktune/support/error.h"
#include "ktune/te/kernel.h"
#include "support/dags.h"

using namespace ktune;
using namespace ktune::testing;
using schedule::State;

namespace {

using MutateFn = std::optional<State> (*)(const State&, std::mt19937_64&);

std::string key_of(const State& s) { return schedule::canonical_key(s.steps()); }

std::shared_ptr<const te::ComputeDAG> shipped(const std::string& kernel, const std::map<std::string, int64_t>& p) {
  te::KernelDef def = te::parse_kernel_file(te::shipped_kernel_dir() + "/" + kernel + ".kt");
  return std::make_shared<const te::ComputeDAG>(def.instantiate(p));
}

std::shared_ptr<const te::ComputeDAG> resnet_conv() {
  return shipped("conv2d", {{"N", 1}, {"C", 128}, {"H", 28}, {"W", 28}, {"K", 128}, {"R", 3}, {"S", 3}, {"pad", 1}});
}

// The extent of the loop each split step splits (0 for other steps).
std::vector<int64_t> split_extents(const State& s) {
  State st(s.dag_ptr());
  std::vector<int64_t> out;
  for (const auto& step : s.steps()) {
    const auto* sp = std::get_if<schedule::SplitStep>(&step.v);
    out.push_back(sp ? st.stage(sp->stage).leaf_iter(sp->iter).extent : 0);
    st.apply(step);
  }
  return out;
}

bool is_prime(int64_t v) {
  for (int64_t d = 2; d * d <= v; ++d)
    if (v % d == 0) return false;
  return v >= 2;
}

int64_t product(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t(1), std::multiplies<>()); }

// Whether each step is a split of a reduction loop.
std::vector<bool> reduction_splits(const State& s) {
  State st(s.dag_ptr());
  std::vector<bool> out;
  for (const auto& step : s.steps()) {
    const auto* sp = std::get_if<schedule::SplitStep>(&step.v);
    out.push_back(sp && st.stage(sp->stage).leaf_iter(sp->iter).kind == schedule::IterKind::Reduce);
    st.apply(step);
  }
  return out;
}

// Every split divides its loop exactly, with an innermost length <= 64 for a spatial loop
// (an inner reduction loop may be as long as its extent).
void check_perfect_splits(const State& s) {
  const auto ext = split_extents(s);
  const auto reduce = reduction_splits(s);
  for (size_t i = 0; i < s.steps().size(); ++i)
    if (const auto* sp = std::get_if<schedule::SplitStep>(&s.steps()[i].v)) {
      INFO("step " << i << ": " << s.steps()[i].key() << " of a loop of extent " << ext[i]);
      CHECK(ext[i] % product(sp->lengths) == 0);
      if (!reduce[i]) CHECK(sp->lengths.back() <= 64);
    }
}

struct Outcome {
  int tried = 0, changed = 0;
};

// Mutates `samples` states of `dag` with `fn`; each result must lower, differ from its parent
// and keep its splits perfect; with `values`, it must also compute the right values.
Outcome check_mutation(std::shared_ptr<const te::ComputeDAG> dag, MutateFn fn, int samples, bool values,
                       uint64_t seed) {
  search::RandomSampler sampler(dag, target::host_target(), seed);
  std::mt19937_64 rng(seed);
  Outcome out;
  for (int i = 0; i < samples; ++i) {
    const State parent = sampler.sample();
    const auto child = fn(parent, rng);
    ++out.tried;
    if (!child) continue;
    ++out.changed;
    INFO(dag->kernel << " sample " << i << "\nparent:\n" << parent.steps_text() << "child:\n" << child->steps_text());
    CHECK(key_of(*child) != key_of(parent));
    CHECK_NOTHROW(schedule::lower(*child, "k"));
    check_perfect_splits(*child);
    // The child replays from its own steps to itself.
    CHECK(key_of(schedule::replay(dag, child->steps())) == key_of(*child));
    if (values) CHECK(check_lowering(*child, i) < 1e-5);
  }
  return out;
}

// Test features: one row whose first value is the sum over split steps of log2 of their
// innermost length (larger inner tiles score higher), the rest zero.
double inner_tile_score(const State& s) {
  double v = 0;
  for (const auto& step : s.steps())
    if (const auto* sp = std::get_if<schedule::SplitStep>(&step.v)) v += std::log2(double(sp->lengths.back()));
  return v;
}

search::ProgramFeatures inner_tile_features(const State& s, const target::Target&) {
  search::ProgramFeatures f;
  f.data.assign(search::feature_width(), 0.0f);
  f.data[0] = float(inner_tile_score(s));
  return f;
}

// A model that knows the answer: the score is the first feature. It records its updates.
class FirstFeatureModel : public search::CostModel {
 public:
  void update(const std::vector<search::ProgramFeatures>& programs, const std::vector<double>& gflops,
              const std::string& workload) override {
    updates.push_back({programs, gflops, workload});
  }
  std::vector<double> predict(const std::vector<search::ProgramFeatures>& programs) override {
    std::vector<double> out;
    for (const auto& p : programs) out.push_back(p.data.at(0));
    ++predict_calls;
    return out;
  }
  int num_samples() const override { return 0; }
  std::string name() const override { return "first-feature"; }

  struct Update {
    std::vector<search::ProgramFeatures> programs;
    std::vector<double> gflops;
    std::string workload;
  };
  std::vector<Update> updates;
  int predict_calls = 0;
};

search::EvolutionOptions small_options() {
  search::EvolutionOptions o;
  o.population = 256;
  o.generations = 3;
  return o;
}

}  // namespace

TEST_CASE("each mutation gives a valid, different state with perfect splits", "[evolution]") {
  const auto mm = shipped("matmul", {{"M", 128}, {"N", 128}, {"K", 128}});
  const auto conv = resnet_conv();
  const struct {
    const char* name;
    MutateFn fn;
  } kinds[] = {{"tile_size", search::mutate_tile_size},
               {"unroll", search::mutate_unroll},
               {"compute_location", search::mutate_compute_location},
               {"parallel", search::mutate_parallel}};
  for (const auto& k : kinds) {
    SECTION(k.name) {
      const Outcome a = check_mutation(mm, k.fn, 40, false, 1);
      const Outcome b = check_mutation(conv, k.fn, 25, false, 2);
      INFO("matmul " << a.changed << "/" << a.tried << ", conv2d " << b.changed << "/" << b.tried);
      // Every sampled state has a split to change and a reduction to unroll; the pack stage of
      // half the matmul sketches can move; most states have a parallel loop to widen.
      if (k.fn == search::mutate_tile_size || k.fn == search::mutate_unroll) {
        CHECK(a.changed == a.tried);
        CHECK(b.changed == b.tried);
      } else {
        CHECK(a.changed > 0);
      }
      if (k.fn == search::mutate_parallel) CHECK(b.changed > 0);
    }
  }
}

TEST_CASE("mutated schedules compute the right values", "[evolution]") {
  const std::vector<std::shared_ptr<const te::ComputeDAG>> dags = {matmul_dag(24, 20, 12), dense_relu_dag(8, 12, 6),
                                                                    conv1d_dag(3, 12, 4, 3, 1), softmax_dag(6, 10)};
  int moved = 0;
  for (const auto& dag : dags) {
    check_mutation(dag, search::mutate_tile_size, 6, true, 3);
    check_mutation(dag, search::mutate_unroll, 3, true, 4);
    moved += check_mutation(dag, search::mutate_compute_location, 8, true, 5).changed;
    check_mutation(dag, search::mutate_parallel, 6, true, 6);
  }
  CHECK(moved > 0);  // softmax's reductions and matmul's pack stage move
}

TEST_CASE("tile-size mutation moves one prime factor within one split", "[evolution]") {
  const auto conv = resnet_conv();
  search::RandomSampler sampler(conv, target::host_target(), 7);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 30; ++i) {
    const State parent = sampler.sample();
    const auto child = search::mutate_tile_size(parent, rng);
    REQUIRE(child);
    REQUIRE(child->steps().size() == parent.steps().size());
    const auto ext = split_extents(parent);
    INFO("parent:\n" << parent.steps_text() << "child:\n" << child->steps_text());
    int changed = 0;
    for (size_t s = 0; s < parent.steps().size(); ++s) {
      const auto* a = std::get_if<schedule::SplitStep>(&parent.steps()[s].v);
      if (!a) {
        CHECK(parent.steps()[s].key() == child->steps()[s].key());
        continue;
      }
      const auto& b = std::get<schedule::SplitStep>(child->steps()[s].v);
      if (a->lengths == b.lengths) continue;
      ++changed;
      // All levels, the outer one included, still multiply to the extent, and the levels
      // that changed differ by one prime factor.
      std::vector<int64_t> la = {ext[s] / product(a->lengths)}, lb = {ext[s] / product(b.lengths)};
      la.insert(la.end(), a->lengths.begin(), a->lengths.end());
      lb.insert(lb.end(), b.lengths.begin(), b.lengths.end());
      CHECK(product(la) == ext[s]);
      CHECK(product(lb) == ext[s]);
      std::vector<int64_t> ratios;
      for (size_t l = 0; l < la.size(); ++l)
        if (la[l] != lb[l]) ratios.push_back(la[l] > lb[l] ? la[l] / lb[l] : lb[l] / la[l]);
      REQUIRE(ratios.size() == 2);
      CHECK(ratios[0] == ratios[1]);
      CHECK(is_prime(ratios[0]));
    }
    CHECK(changed == 1);
  }
}

TEST_CASE("propose returns the requested number of unique unmeasured states", "[evolution]") {
  const auto mm = shipped("matmul", {{"M", 128}, {"N", 128}, {"K", 128}});
  search::EvolutionaryPolicy policy(mm, target::host_target(), search::make_cost_model("random", 1), 1,
                                    small_options());
  std::unordered_set<std::string> measured;
  for (int round = 0; round < 3; ++round) {
    const auto batch = policy.propose(32, measured);
    REQUIRE(batch.size() == 32);
    std::unordered_set<std::string> keys;
    for (const State& s : batch) {
      const std::string k = key_of(s);
      CHECK(!measured.count(k));
      CHECK(keys.insert(k).second);
      CHECK_NOTHROW(schedule::lower(s, "k"));
    }
    measured.insert(keys.begin(), keys.end());
    std::vector<search::MeasureResult> results(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) results[i].gflops = double(i);
    policy.observe(batch, results);
  }
  CHECK(policy.phase() == "explore");
  CHECK(policy.propose(0, measured).empty());
}

TEST_CASE("propose returns fewer states when the space is exhausted", "[evolution]") {
  // A 4x4 transposition has a few dozen schedules: each round measures what it proposes.
  const auto dag = shipped("nchw_to_nhwc", {{"N", 1}, {"C", 4}, {"H", 1}, {"W", 4}});
  search::EvolutionOptions o = small_options();
  o.population = 64;
  search::EvolutionaryPolicy policy(dag, target::host_target(), search::make_cost_model("random", 2), 2, o);
  std::unordered_set<std::string> measured;
  std::vector<size_t> sizes;
  for (int round = 0; round < 20; ++round) {
    const auto batch = policy.propose(16, measured);
    for (const State& s : batch) CHECK(measured.insert(key_of(s)).second);
    sizes.push_back(batch.size());
    if (batch.empty()) break;
  }
  CHECK(sizes.front() == 16);
  CHECK(sizes.back() == 0);
}

TEST_CASE("the search follows the cost model", "[evolution]") {
  // The model prefers larger inner tiles; the proposed batch must have them, where random
  // samples of the same sketches do not.
  const auto mm = shipped("matmul", {{"M", 128}, {"N", 128}, {"K", 128}});
  search::EvolutionOptions o = small_options();
  o.features = inner_tile_features;
  o.eps_greedy = 0;
  auto model = std::make_shared<FirstFeatureModel>();
  search::EvolutionaryPolicy policy(mm, target::host_target(), model, 3, o);
  const auto batch = policy.propose(32, {});
  REQUIRE(batch.size() == 32);
  CHECK(model->predict_calls >= o.generations);

  search::RandomSampler sampler(mm, target::host_target(), 3);
  double random_mean = 0, random_best = 0, batch_mean = 0;
  for (int i = 0; i < 32; ++i) {
    const double v = inner_tile_score(sampler.sample());
    random_mean += v / 32;
    random_best = std::max(random_best, v);
  }
  for (const State& s : batch) batch_mean += inner_tile_score(s) / 32;
  INFO("random mean " << random_mean << ", best " << random_best << "; proposed mean " << batch_mean);
  CHECK(batch_mean > random_mean + 3);
  CHECK(batch_mean >= random_best - 1);

  // With the opposite preference the batch goes the other way.
  class Inverse : public FirstFeatureModel {
    std::vector<double> predict(const std::vector<search::ProgramFeatures>& p) override {
      auto v = FirstFeatureModel::predict(p);
      for (double& x : v) x = -x;
      return v;
    }
  };
  search::EvolutionaryPolicy inverse(mm, target::host_target(), std::make_shared<Inverse>(), 3, o);
  double inverse_mean = 0;
  for (const State& s : inverse.propose(32, {})) inverse_mean += inner_tile_score(s) / 32;
  INFO("inverse model: proposed mean " << inverse_mean);
  CHECK(inverse_mean < random_mean);
}

TEST_CASE("observe trains the model on the measured throughputs", "[evolution]") {
  const auto mm = shipped("matmul", {{"M", 64}, {"N", 64}, {"K", 64}});
  search::EvolutionOptions o = small_options();
  // The features of one state cannot be computed: it is left out of the update.
  search::RandomSampler sampler(mm, target::host_target(), 4);
  std::vector<State> states;
  for (int i = 0; i < 6; ++i) states.push_back(sampler.sample());
  const std::string broken = key_of(states[4]);
  o.features = [broken](const State& s, const target::Target& t) {
    if (key_of(s) == broken) throw InvalidCandidate("features: broken on purpose");
    return inner_tile_features(s, t);
  };
  auto model = std::make_shared<FirstFeatureModel>();
  search::EvolutionaryPolicy policy(mm, target::host_target(), model, 4, o);
  std::vector<search::MeasureResult> results(states.size());
  for (size_t i = 0; i < results.size(); ++i) results[i].gflops = 10.0 * double(i + 1);
  results[2].error = runtime::ErrorClass::WrongAnswer;  // its GFLOP/s do not count
  policy.observe(states, results);

  REQUIRE(model->updates.size() == 1);
  const auto& u = model->updates[0];
  CHECK(u.workload == log::Workload::of(*mm).key());
  CHECK(u.gflops == std::vector<double>{10, 20, 0, 40, 60});
  REQUIRE(u.programs.size() == 5);
  CHECK(u.programs[3].data[0] == Approx(inner_tile_score(states[3])));
  CHECK(u.programs[4].data[0] == Approx(inner_tile_score(states[5])));

  // Measured states are never proposed again.
  std::unordered_set<std::string> none;
  for (const State& s : policy.propose(16, none))
    for (const State& m : states) CHECK(key_of(s) != key_of(m));
}

TEST_CASE("failed mutations are counted by reason", "[evolution]") {
  // Most matmul states have no untiled stage to move: only compute-location mutations.
  const auto mm = matmul_dag(32, 32, 32);
  search::EvolutionOptions o = small_options();
  o.w_tile = o.w_unroll = o.w_parallel = 0;
  o.w_compute_location = 1;
  search::EvolutionaryPolicy policy(mm, target::host_target(), search::make_cost_model("random", 5), 5, o);
  policy.propose(8, {});
  int mutation_rejects = 0;
  for (const auto& [reason, n] : policy.rejected())
    if (reason.rfind("mutation compute_location: ", 0) == 0) mutation_rejects += n;
  CHECK(mutation_rejects > 0);
}

TEST_CASE("tile-size mutations rarely grow a register tile past the vector registers", "[evolution]") {
  // An AVX-512 target described by hand (32 zmm, 16 f32 lanes: a budget of 28 vectors).
  target::Target t = target::host_target();
  t.features = {"avx512f", "fma"};
  t.vector_bits = 512;
  REQUIRE(search::register_tile_budget(t) == 28);
  const auto mm = shipped("matmul", {{"M", 256}, {"N", 256}, {"K", 256}});
  search::EvolutionOptions o = small_options();
  o.w_unroll = o.w_parallel = o.w_compute_location = 0;
  o.w_tile = 1;
  o.mutation_prob = 1;
  search::EvolutionaryPolicy policy(mm, t, search::make_cost_model("random", 3), 3, o);
  const std::vector<State> batch = policy.propose(64, {});
  int refused = 0;
  for (const auto& [reason, n] : policy.rejected())
    if (reason == "mutation tile_size: register tile over the budget") refused += n;
  // Tile moves grow the innermost tile often (a uniform move of a prime factor): the check
  // refuses some of them, and few proposals end over the budget.
  CHECK(refused > 0);
  int over = 0;
  for (const State& s : batch)
    for (int x = 0; x < s.num_stages(); ++x)
      over += search::register_tile_vectors(s.stage(x), t) > 28;
  INFO(over << " of " << batch.size() << " proposals over the budget, " << refused << " mutations refused");
  CHECK(over < int(batch.size()) / 4);
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// Not a unit test (hidden; run `test_evolution "[.benchmark]" -s`): the time of one propose()
// with the default options, as the driver calls it every 64 measurements, with and without
// measured states in the initial population, and the reject counts.
TEST_CASE("propose() time with the default options", "[.benchmark]") {
  const std::pair<const char*, std::shared_ptr<const te::ComputeDAG>> dags[] = {
      {"matmul 512^3", shipped("matmul", {{"M", 512}, {"N", 512}, {"K", 512}})}, {"conv2d resnet18", resnet_conv()}};
  for (const auto& [name, dag] : dags) {
    search::EvolutionaryPolicy policy(dag, target::host_target(), search::make_cost_model("xgboost", 1), 1);
    std::unordered_set<std::string> measured;
    for (int round = 0; round < 3; ++round) {
      const auto t0 = std::chrono::steady_clock::now();
      const double cpu0 = cpu_seconds();
      const auto batch = policy.propose(64, measured);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::cout << name << " round " << round << ": " << batch.size() << " states in " << s
                << " s (CPU time of all threads " << cpu_seconds() - cpu0 << " s)\n";
      std::vector<search::MeasureResult> results(batch.size());
      std::mt19937_64 rng(round);
      for (size_t i = 0; i < batch.size(); ++i) {
        results[i].gflops = std::uniform_real_distribution<double>(1, 100)(rng);
        measured.insert(key_of(batch[i]));
      }
      policy.observe(batch, results);
    }
    for (const auto& [reason, n] : policy.rejected()) std::cout << name << " rejected " << n << ": " << reason << "\n";
  }
}


TEST_CASE("tile-size mutation grows an inner reduction loop past 64, an inner spatial loop not", "[evolution]") {
  // C = A * B with K = 1024: k split 16 x 64, j split 2 x 64 (innermost already at the cap).
  State s(matmul_dag(8, 128, 1024));
  s.apply(schedule::SplitStep{0, 2, {64}});
  s.apply(schedule::SplitStep{0, 1, {64}});
  std::mt19937_64 rng(3);
  int k128 = 0;
  for (int i = 0; i < 60; ++i) {
    const auto child = search::mutate_tile_size(s, rng);
    REQUIRE(child);
    const auto& k = std::get<schedule::SplitStep>(child->steps()[0].v);
    const auto& j = std::get<schedule::SplitStep>(child->steps()[1].v);
    k128 += k.lengths.back() == 128;
    CHECK(j.lengths.back() <= 64);
  }
  CHECK(k128 > 0);
}

TEST_CASE("each batch holds the best predicted state of every structure", "[evolution]") {
  // The model prefers one structure (a cache_write stage) above all others: without the
  // structure slots every proposal has it; with them the batch holds the best of each
  // structure as well, the least measured first.
  const auto mm = shipped("matmul", {{"M", 128}, {"N", 128}, {"K", 128}});
  search::EvolutionOptions o = small_options();
  o.features = [](const State& s, const target::Target& t) {
    search::ProgramFeatures f = inner_tile_features(s, t);
    const bool local = search::structure_key(s).find('W') != std::string::npos;
    f.data[0] = (local ? 100.0f : 0.0f) + 0.01f * f.data[0];
    return f;
  };
  o.eps_greedy = 0;
  o.transplants = 0;
  std::set<std::string> all;
  search::RandomSampler sampler(mm, target::host_target(), 5);
  for (int i = 0; i < 200; ++i) all.insert(search::structure_key(sampler.sample()));
  REQUIRE(all.size() >= 4);
  auto structures = [](const std::vector<State>& batch) {
    std::map<std::string, int> n;
    for (const State& s : batch) ++n[search::structure_key(s)];
    return n;
  };
  auto without_local = [](const std::map<std::string, int>& n) {
    int k = 0;
    for (const auto& [key, c] : n) k += key.find('W') == std::string::npos ? c : 0;
    return k;
  };
  o.structure_slots = 0;
  search::EvolutionaryPolicy plain(mm, target::host_target(), std::make_shared<FirstFeatureModel>(), 3, o);
  const auto b0 = structures(plain.propose(32, {}));
  CHECK(without_local(b0) == 0);

  o.structure_slots = 8;
  search::EvolutionaryPolicy slots(mm, target::host_target(), std::make_shared<FirstFeatureModel>(), 3, o);
  const auto batch = slots.propose(32, {});
  REQUIRE(batch.size() == 32);
  const auto b1 = structures(batch);
  INFO(all.size() << " structures among random samples; " << b1.size() << " in the batch");
  CHECK(int(b1.size()) >= std::min<int>(int(all.size()), 8) - 1);
  CHECK(without_local(b1) >= 2);
  // Once measured, a structure gives its slot to the less measured ones: after observing the
  // batch, the next one's slots go to other states of the same structures (none measured
  // twice), and every structure is still there.
  std::vector<search::MeasureResult> results(batch.size());
  for (auto& r : results) r.gflops = 1.0;
  slots.observe(batch, results);
  std::unordered_set<std::string> measured;
  for (const State& s : batch) measured.insert(schedule::canonical_key(s.steps()));
  const auto next = slots.propose(32, measured);
  for (const State& s : next) CHECK_FALSE(measured.count(schedule::canonical_key(s.steps())));
  CHECK(structures(next).size() >= b1.size() - 1);
}
