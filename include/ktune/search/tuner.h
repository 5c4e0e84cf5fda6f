// The tuning driver: draws candidates, measures each once (never the same candidate twice),
// writes every measurement to the log, and reports the best verified candidate.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "ktune/log/record.h"
#include "ktune/runtime/cpu_runner.h"
#include "ktune/schedule/state.h"
#include "ktune/target/target.h"
#include "ktune/te/compute_dag.h"

namespace ktune::search {

struct TuneOptions {
  int budget = 300;      // measured candidates
  uint64_t seed = 0;
  int threads = 1;
  std::string strategy = "random";
  std::string log_path;  // empty: no log
  runtime::TimingOptions timing;
};

struct TuneProgress {
  int trial = 0, budget = 0, valid = 0, errors = 0;
  double best_ms = 0, best_gflops = 0;
  double elapsed_s = 0;
};

struct TuneResult {
  int trials = 0, valid = 0, errors = 0;
  std::map<std::string, int> error_counts;  // by error class
  double seconds = 0;
  std::string reference;                    // how candidates were verified
  std::optional<log::Record> best;          // the best valid record, as logged
  std::string best_steps_text;              // its steps, readable
};

TuneResult tune(std::shared_ptr<const te::ComputeDAG> dag, const target::Target& target, const TuneOptions& opt,
                const std::function<void(const TuneProgress&)>& on_progress = {});

}  // namespace ktune::search
