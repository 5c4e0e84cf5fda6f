// Commands of the CLI beyond the kernel subcommands. Each lives in its own file and registers
// itself on the CLI11 app with one function; run_cli (commands.cpp) runs the one parsed.
// Also the checks those commands share with tuning a single kernel.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "ktune/target/target.h"
#include "ktune/te/compute_dag.h"
#include "ktune/te/kernel.h"

namespace ktune::cli {

struct Subcommand {
  CLI::App* app = nullptr;
  std::function<int()> run;  // returns the exit code; throws UserError for bad input
};

// `ktune tune LIST.json ...` (cmd_tune_list.cpp).
void register_tune_list_command(CLI::App& app, const te::KernelRegistry& reg, std::vector<Subcommand>& out);
// `ktune merge`, `ktune best`, `ktune report` (cmd_logs.cpp).
void register_log_commands(CLI::App& app, std::vector<Subcommand>& out);
// `ktune replay` (cmd_replay.cpp).
void register_replay_command(CLI::App& app, const te::KernelRegistry& reg, std::vector<Subcommand>& out);
// `ktune model-eval` (cmd_model.cpp).
void register_model_command(CLI::App& app, const te::KernelRegistry& reg, std::vector<Subcommand>& out);

// Registers all of the above; returns them. The names are those the first-word check of
// run_cli must accept.
std::vector<Subcommand> register_subcommands(CLI::App& app, const te::KernelRegistry& reg);
bool is_subcommand_name(const std::string& word);

// The target to measure on: a CPU target this machine can run (UserError otherwise: a GPU
// target, another architecture, a missing CPU feature).
target::Target resolve_measure_target(const std::string& name);
// UserError when the CPU code generator cannot compile the workload's element types.
void check_cpu_dtypes(const te::ComputeDAG& dag, const std::string& what);

// Plain-text table: columns padded to their widest cell; numbers right-aligned when
// `right[c]` is set.
std::string format_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                         const std::vector<bool>& right);
// A number with `digits` significant digits ("0.130", "257").
std::string fmt_num(double v, int digits = 4);

}  // namespace ktune::cli
