// fuzz_codegen: many differential cases (random kernel × random schedule, JIT vs. the
// interpreter). Usage:
//   fuzz_codegen N [SEED] [--threads T] [--per-kernel K] [--repro-dir DIR] [--timeout S]
//                [--target NAME] [--verbose]
//   fuzz_codegen --replay FILE
// Case c uses kernel seed SEED + c / K; of each kernel's K schedules the first two come
// from search::RandomSampler, the others from random step sequences. A failing case prints
// the kernel, the steps and the lowered IR and writes DIR/fuzz_fail_<kernel>_<j>.json, which
// --replay reruns. Before each case DIR/fuzz_current.json names it, so a crash leaves it; a
// case that runs longer than --timeout seconds (default 300: a compile that never ends) is
// reported as a hang with DIR/fuzz_hang_<kernel>_<j>.json and ends the run.
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ktune/schedule/steps.h"
#include "ktune/search/sampler.h"
#include "ktune/support/error.h"
#include "support/random_kernels.h"

using namespace ktune;
using namespace ktune::testing;
using nlohmann::json;

namespace {

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// The kind of an InvalidCandidate message: its text with names and numbers blanked.
std::string reason_of(const std::string& msg) {
  std::string text, w;
  auto flush = [&] {
    if (w.empty()) return;
    bool plain = true;  // a lower-case word, not a name or a number
    for (char ch : w) plain = plain && std::islower(static_cast<unsigned char>(ch));
    text += plain ? w : "_";
    w.clear();
  };
  for (char ch : msg) {
    if (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.') {
      w += ch;
    } else {
      flush();
      text += ch;
    }
  }
  flush();
  return text.substr(0, 120);
}

int replay(const std::string& path, int threads, const target::Target& t) {
  std::ifstream in(path);
  if (!in) {
    std::cerr << "fuzz_codegen: cannot read " << path << "\n";
    return 2;
  }
  json j = json::parse(in);
  auto dag = random_kernel(j.at("kernel_seed").get<uint64_t>());
  schedule::State st = schedule::replay(dag, schedule::steps_from_json(j.at("steps")));
  std::cout << describe_case(st) << std::flush;  // first: the case may crash
  runtime::CpuRunner runner(j.contains("target") ? target::resolve_target(j["target"].get<std::string>()) : t, threads);
  DiffChecker checker(dag, runner);
  DiffResult r = checker.check(st);
  std::cout << "--- result: " << diff_status_name(r.status) << " " << r.message << "\n";
  return r.failed() ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  long long n = -1;
  uint64_t seed = 1;
  int threads = 2, per_kernel = 8;
  double timeout_s = 300;
  std::string target_name = "host";
  bool verbose = false, have_seed = false;
  std::string repro_dir = ".", replay_file;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "fuzz_codegen: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") threads = std::stoi(value());
    else if (a == "--per-kernel") per_kernel = std::max(1, std::stoi(value()));
    else if (a == "--repro-dir") repro_dir = value();
    else if (a == "--timeout") timeout_s = std::stod(value());
    else if (a == "--target") target_name = value();
    else if (a == "--replay") replay_file = value();
    else if (a == "--verbose") verbose = true;
    else if (n < 0 && !a.empty() && a[0] != '-') n = std::stoll(a);
    else if (!have_seed && !a.empty() && a[0] != '-') {
      seed = std::stoull(a);
      have_seed = true;
    } else {
      std::cerr << "usage: fuzz_codegen N [SEED] [--threads T] [--per-kernel K] [--repro-dir DIR] [--timeout S] "
                   "[--target NAME] [--verbose]\n"
                   "       fuzz_codegen --replay FILE\n";
      return 2;
    }
  }
  const target::Target t = target::resolve_target(target_name);
  if (!replay_file.empty()) return replay(replay_file, threads, t);
  if (n < 0) {
    std::cerr << "usage: fuzz_codegen N [SEED] ...\n";
    return 2;
  }

  runtime::CpuRunner runner(t, threads);
  std::map<std::string, long long> counts, invalid_reasons;
  long long failures = 0, kernels = 0;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  std::unique_ptr<DiffChecker> checker;
  std::unique_ptr<search::RandomSampler> sampler;
  std::shared_ptr<const te::ComputeDAG> dag;
  uint64_t dag_seed = 0;
  std::cout << "fuzz_codegen: " << n << " cases from seed " << seed << " for target " << target_name << ", "
            << per_kernel
            << " schedules per kernel, " << threads << " threads\n"
            << std::flush;
  // Watchdog: a case running past the timeout is a hang (e.g. a compile that never ends).
  std::atomic<double> case_start{-1};
  std::atomic<long long> case_index{0};
  std::atomic<uint64_t> case_kernel{0};
  std::atomic<int> case_j{0};
  std::thread([&] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      const double t0 = case_start.load();
      if (t0 < 0 || elapsed() - t0 < timeout_s) continue;
      const std::string file = repro_dir + "/fuzz_hang_" + std::to_string(case_kernel.load()) + "_" +
                               std::to_string(case_j.load()) + ".json";
      std::ifstream in(repro_dir + "/fuzz_current.json");
      write_file(file, std::string(std::istreambuf_iterator<char>(in), {}));
      std::cout << "=== case " << case_index.load() << " (kernel seed " << case_kernel.load() << ", schedule "
                << case_j.load() << "): HANG: still running after " << timeout_s << " s\nreproducer: " << file
                << "\nsummary: stopped after " << case_index.load() << " cases (" << elapsed() << " s)\nFAILED\n"
                << std::flush;
      _exit(1);
    }
  }).detach();
  for (long long c = 0; c < n; ++c) {
    const uint64_t kseed = seed + uint64_t(c / per_kernel);
    const int j = int(c % per_kernel);
    if (!dag || kseed != dag_seed) {
      dag_seed = kseed;
      ++kernels;
      dag = random_kernel(kseed);
      try {
        checker = std::make_unique<DiffChecker>(dag, runner);
      } catch (const std::exception& e) {
        std::cout << "kernel " << kseed << ": the reference failed: " << e.what() << "\n" << dag->canonical_text();
        ++counts["kernel-error"];
        ++failures;
        checker.reset();
      }
      try {
        sampler = std::make_unique<search::RandomSampler>(dag, t, kseed);
      } catch (const std::exception& e) {
        // The sampler is another module under test, not the code generator: counted apart, but
        // a failure all the same (a user's kernel would meet the same internal error).
        std::cout << "kernel " << kseed << ": the sampler threw: " << e.what() << "\n";
        ++counts["sampler-error"];
        ++failures;
        sampler.reset();
      }
    }
    if (!checker) continue;
    const bool from_sampler = j < 2 && sampler;
    schedule::State st(dag);
    try {
      st = from_sampler ? sampler->sample() : random_step_schedule(dag, kseed * 64 + uint64_t(j));
    } catch (const std::exception& e) {
      ++counts["sampler-error"];
      ++failures;
      std::cout << "kernel " << kseed << " schedule " << j << ": the sampler threw: " << e.what() << "\n";
      continue;
    }
    json repro = {{"kernel_seed", kseed},
                  {"schedule", j},
                  {"source", from_sampler ? "sampler" : "random-steps"},
                  {"target", target_name},
                  {"steps", schedule::steps_to_json(st.steps())}};
    write_file(repro_dir + "/fuzz_current.json", repro.dump(1) + "\n");
    case_index = c;
    case_kernel = kseed;
    case_j = j;
    case_start = elapsed();
    DiffResult r = checker->check(st);
    case_start = -1;
    ++counts[diff_status_name(r.status)];
    if (r.status == DiffStatus::Invalid) ++invalid_reasons[reason_of(r.message)];
    ++counts[std::string(from_sampler ? "sampler " : "steps ") + diff_status_name(r.status)];
    if (r.failed()) {
      ++failures;
      repro["message"] = r.message;
      repro["kernel"] = dag->canonical_text();
      const std::string file = repro_dir + "/fuzz_fail_" + std::to_string(kseed) + "_" + std::to_string(j) + ".json";
      write_file(file, repro.dump(1) + "\n");
      std::cout << "=== case " << c << " (kernel seed " << kseed << ", schedule " << j << ", "
                << (from_sampler ? "sampler" : "random steps") << "): " << diff_status_name(r.status) << ": "
                << r.message << "\n"
                << describe_case(st) << "reproducer: " << file << "\n"
                << std::flush;
    } else if (verbose) {
      std::cout << "case " << c << ": " << diff_status_name(r.status) << " " << r.message << "\n";
    }
    if ((c + 1) % 200 == 0 || c + 1 == n)
      std::cout << "[" << c + 1 << "/" << n << "] match " << counts["match"] << ", invalid " << counts["invalid"]
                << ", skipped " << counts["skipped"]
                << ", failures " << failures << ", " << kernels << " kernels, " << elapsed() << " s\n"
                << std::flush;
  }
  std::remove((repro_dir + "/fuzz_current.json").c_str());
  std::cout << "summary: " << n << " cases on " << kernels << " kernels in " << elapsed() << " s\n";
  for (const auto& [k, v] : counts) std::cout << "  " << k << ": " << v << "\n";
  if (!invalid_reasons.empty()) std::cout << "schedules that do not lower, by reason:\n";
  for (const auto& [k, v] : invalid_reasons) std::cout << "  " << v << "  " << k << "\n";
  std::cout << (failures ? "FAILED: " : "OK: ") << failures << " failing cases\n";
  return failures ? 1 : 0;
}
