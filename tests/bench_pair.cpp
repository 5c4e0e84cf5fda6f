// ktune_bench_pair: two schedules of one workload (schedule files {"kernel","params","steps"},
// e.g. from scripts/bench/refine_report.py --schedules-out) timed against each other in a
// worker, in ktune's own runtime (JIT, ktune's thread pool), as a tune times them:
//
//   ktune_bench_pair A.json B.json [--threads T] [--confirm N] [--rank N]
//
// --confirm N: N confirmations as the refinement makes them (4 rounds of the two, in the order
//   A B, B A, B A, A B, DropletOptions' defaults); per confirmation the means, Welch's
//   one-sided p of "B is faster" on the round-scaled group means, and whether one confirmation
//   would accept B (p < 0.05, B faster, B's median lower in most rounds). With A = B this
//   measures how often a confirmation passes by chance.
// --rank N: N final rankings of the two (40 rounds of 5-ms slices each).
// Prints for each mode the median over all rounds of A's time / B's (above 1: B is faster) and
// its quartiles. Exit code 2 for bad arguments or schedule files, 1 when a schedule fails.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "ktune/schedule/state.h"
#include "ktune/schedule/steps.h"
#include "ktune/search/droplet.h"
#include "ktune/search/measurer.h"
#include "ktune/target/target.h"
#include "ktune/te/kernel.h"

using namespace ktune;
using json = nlohmann::json;

namespace {

void summary(const char* what, std::vector<double> r) {
  std::sort(r.begin(), r.end());
  std::printf("%s: %zu rounds, A / B median %.4f, quartiles %.4f-%.4f\n", what, r.size(), r[r.size() / 2],
              r[r.size() / 4], r[3 * r.size() / 4]);
}

[[noreturn]] void usage(const std::string& msg) {
  std::cerr << "ktune_bench_pair: " << msg
            << "\nusage: ktune_bench_pair A.json B.json [--threads T] [--confirm N] [--rank N]\n";
  std::exit(2);
}

struct Schedule {
  std::string kernel;
  std::map<std::string, int64_t> params;
  json steps;
  std::map<std::string, std::string> types;
};

Schedule read_schedule(const std::string& path) {
  std::ifstream in(path);
  if (!in) usage("cannot read " + path);
  try {
    const json j = json::parse(in);
    Schedule s{j.at("kernel").get<std::string>(), {}, j.at("steps"), {}};
    if (j.contains("params"))
      for (const auto& [k, v] : j.at("params").items()) {
        if (v.is_string()) s.types[k] = v.get<std::string>();  // an element type ("f32")
        else s.params[k] = v.get<int64_t>();
      }
    return s;
  } catch (const std::exception& e) {
    usage(path + ": not a schedule file ({\"kernel\", \"params\", \"steps\"}): " + e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> files;
  int threads = 2, confirms = 0, ranks = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> int {
      if (i + 1 >= argc) usage(a + " needs a value");
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (*end || v < 1 || v > 100000) usage(a + " must be a positive integer");
      return int(v);
    };
    if (a == "--threads") threads = value();
    else if (a == "--confirm") confirms = value();
    else if (a == "--rank") ranks = value();
    else if (!a.empty() && a[0] == '-') usage("unknown option " + a);
    else files.push_back(a);
  }
  if (files.size() != 2) usage("two schedule files are needed");
  if (!confirms && !ranks) confirms = 20;
  const Schedule sa = read_schedule(files[0]), sb = read_schedule(files[1]);
  if (sa.kernel != sb.kernel || sa.params != sb.params || sa.types != sb.types) usage("the two schedules are not of one workload");
  te::KernelRegistry reg;
  reg.add_directory(te::shipped_kernel_dir());
  const te::KernelDef* def = reg.find(sa.kernel);
  if (!def) usage("unknown kernel " + sa.kernel);
  std::shared_ptr<const te::ComputeDAG> dag;
  schedule::State a, b;
  try {
    dag = std::make_shared<const te::ComputeDAG>(def->instantiate(sa.params, sa.types));
    a = schedule::replay(dag, schedule::steps_from_json(sa.steps));
    b = schedule::replay(dag, schedule::steps_from_json(sb.steps));
  } catch (const std::exception& e) {
    usage(std::string("the schedules do not replay: ") + e.what());
  }
  auto backend = search::make_measure_backend(dag, target::host_target(), threads,
                                              runtime::TimingOptions{}, search::IsolationOptions{});

  if (confirms) {
    const search::DropletOptions opt;
    std::vector<double> rounds_ab;
    int passed = 0;
    for (int c = 0; c < confirms; ++c) {
      const search::Confirmation r = search::evaluate_confirmation(
          backend->measure_batch(search::confirmation_batch(a, b, opt.confirm_rounds), {}), opt.confirm_rounds, opt,
          std::numeric_limits<double>::infinity());
      const search::DropletTest& t = r.test;
      if (t.rounds < opt.confirm_rounds) {
        std::cerr << "ktune_bench_pair: a schedule failed in confirmation " << c + 1 << "\n";
        return 1;
      }
      rounds_ab.insert(rounds_ab.end(), r.round_ratios.begin(), r.round_ratios.end());
      passed += t.accepted;
      std::printf("confirmation %d: A %.4f ms, B %.4f ms, A/B %.3f, p %.3g, B won %d/%d rounds%s\n", c + 1,
                  t.centre_ms, t.candidate_ms, t.centre_ms / t.candidate_ms, t.p_value, t.rounds_won, t.rounds,
                  t.accepted ? ": passes" : "");
    }
    summary("confirmations", rounds_ab);
    std::printf("B passed %d of %d single confirmations (alpha %.2f)\n", passed, confirms, opt.alpha);
  }
  if (ranks) {
    search::RankOptions ro;
    std::vector<double> rr;
    for (int c = 0; c < ranks; ++c) {
      const std::vector<search::MeasureResult> r = backend->rank({a, b}, ro);
      if (r.size() != 2 || !r[0].valid() || !r[1].valid()) {
        std::cerr << "ktune_bench_pair: a schedule failed in the ranking\n";
        return 1;
      }
      const std::vector<double>& x = r[0].timing.group_means_ms;
      const std::vector<double>& y = r[1].timing.group_means_ms;
      for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) rr.push_back(x[i] / y[i]);
      std::printf("ranking %d: A %.4f ms, B %.4f ms (ranked times)\n", c + 1, r[0].timing.median_ms,
                  r[1].timing.median_ms);
    }
    summary("rankings", rr);
  }
  return 0;
}
