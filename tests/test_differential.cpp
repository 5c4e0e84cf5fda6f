// Differential tests of lowering and code generation: random kernels × random schedules,
// compiled by the LLVM JIT and compared with the interpreter on the naive schedule
// (support/random_kernels.h). scripts/fuzz_codegen.sh runs many more cases.
#include <catch2/catch.hpp>

#include "ktune/search/sampler.h"
#include "ktune/support/error.h"
#include "support/random_kernels.h"

using namespace ktune;
using namespace ktune::testing;

TEST_CASE("random kernels are well defined and tame", "[differential]") {
  runtime::CpuRunner runner(target::host_target(), 1);
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    auto dag = random_kernel(seed);
    INFO(dag->canonical_text());
    CHECK(random_kernel(seed)->canonical_text() == dag->canonical_text());  // deterministic
    DiffChecker checker(dag, runner);
    CHECK(checker.reference_vs_te_eval() < 1e-4);
  }
}

TEST_CASE("random schedules of random kernels compile to the reference's values", "[differential][jit]") {
  runtime::CpuRunner runner(target::host_target(), 2);
  const target::Target t = target::host_target();
  int cases = 0, invalid = 0, step_cases = 0, step_invalid = 0;
  for (uint64_t seed = 1000; seed < 1040; ++seed) {
    auto dag = random_kernel(seed);
    DiffChecker checker(dag, runner);
    search::RandomSampler sampler(dag, t, seed);
    for (int j = 0; j < 8; ++j) {
      schedule::State st = j < 2 ? sampler.sample() : random_step_schedule(dag, seed * 16 + uint64_t(j));
      DiffResult r = checker.check(st);
      ++cases;
      const bool compared = r.status != DiffStatus::Invalid && r.status != DiffStatus::Skipped;
      invalid += !compared;
      if (j >= 2) {
        ++step_cases;
        step_invalid += !compared;
      }
      // Sampler schedules always lower; random step sequences may not (then nothing to compare).
      if (r.failed() || (j < 2 && r.status != DiffStatus::Match))
        FAIL_CHECK("kernel seed " << seed << ", schedule " << j << ": " << diff_status_name(r.status) << ": "
                                  << r.message << "\n"
                                  << describe_case(st));
    }
  }
  INFO(cases << " cases, " << invalid << " not compared (do not lower, or too slow)");
  CHECK(cases == 320);
  CHECK(step_invalid * 3 < step_cases);  // most random step sequences give a lowerable state
}
