// The ktune commands: one subcommand per kernel (its parameters are flags), `kernels` and
// `targets`. Every user error ends here as one line on stderr and exit code 2.
#include <cmath>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "ktune/cli/cli.h"
#include "ktune/schedule/steps.h"
#include "ktune/search/sketch.h"
#include "ktune/search/isolated.h"
#include "ktune/search/tuner.h"
#include "ktune/support/debug.h"
#include "ktune/support/error.h"
#include "ktune/support/interrupt.h"
#include "ktune/target/target.h"
#include "ktune/te/kernel.h"
#include "subcommands.h"

namespace ktune::cli {

using nlohmann::json;

namespace {

struct TuneFlags {
  std::string target = "host";
  int budget = 300;
  std::string log;
  int threads = 0;
  bool json_out = false;
  uint64_t seed = 0;
  std::string strategy = "two-phase";
  int refine_budget = 100;
  double time_budget_s = 0;
  std::vector<std::string> warm_start;
  std::string cost_model = "xgboost";
  int remeasure = 8;
  bool print_sketches = false;  // set by `ktune sketches KERNEL ...`
  bool no_isolate = false;
  bool anchor = false;
  double compile_timeout_s = 30, run_timeout_s = 10;
  bool resume = false;
  std::string inject_faults;  // tests only (hidden)
};

// Candidates one run may measure at most (--budget, --refine-budget).
constexpr int kMaxBudget = 1000000;

void add_tune_flags(CLI::App* cmd, TuneFlags& f) {
  cmd->add_option("--target", f.target, "Target: host, or a name from configs/targets (see 'ktune targets')")
      ->capture_default_str();
  cmd->add_option("--budget", f.budget,
                  "Candidates to measure (two-phase: in the exploration, before the refinement)")
      ->capture_default_str();
  cmd->add_option("--refine-budget", f.refine_budget,
                  "Two-phase: at most this many refinement candidates (Droplet Search stops earlier when it "
                  "converges)")
      ->capture_default_str();
  cmd->add_option("--time-budget", f.time_budget_s,
                  "Stop after this many seconds of wall clock, keeping the best so far (default: no limit)");
  cmd->add_option("--warm-start", f.warm_start,
                  "Tuning logs whose records of this kernel (any shape) train the cost model first")
      ->expected(1, -1);
  cmd->add_option("--remeasure", f.remeasure,
                  "At the end, time the best K candidates against each other in interleaved rounds (the final "
                  "ranking, logged as phase \"final\"; the log's best is its pick) (0: off)")
      ->capture_default_str();
  cmd->add_option("--cost-model", f.cost_model, "Cost model of the learning strategies: xgboost or random")
      ->capture_default_str()
      ->group("");  // ablations
  cmd->add_option("--log", f.log, "Tuning log to append to (default: KERNEL.jsonl)");
  cmd->add_option("--threads", f.threads, "Threads for parallel loops (default: all cores)");
  cmd->add_option("--seed", f.seed, "Random seed")->capture_default_str();
  cmd->add_flag("--json", f.json_out, "Print one JSON document with the summary on stdout");
  cmd->add_option("--strategy", f.strategy,
                  "Search strategy: two-phase (evolutionary exploration, then Droplet Search refinement), "
                  "evolutionary, droplet (refine one random schedule) or random")
      ->capture_default_str();
  cmd->add_flag("--print-sketches", f.print_sketches)->group("");  // hidden; `ktune sketches KERNEL`
  cmd->add_flag("--resume", f.resume,
                "Continue the run in the log: its candidates of this kernel are not measured again and "
                "count against the budget");
  cmd->add_flag("--anchor", f.anchor,
                "Time each candidate against the best so far, in alternating groups, instead of on its own");
  cmd->add_flag("--no-isolate", f.no_isolate,
                "Measure candidates in this process instead of a worker process (a crashing candidate then "
                "ends the tune)");
  cmd->add_option("--compile-timeout", f.compile_timeout_s, "Seconds allowed to compile one candidate")
      ->capture_default_str();
  cmd->add_option("--run-timeout", f.run_timeout_s, "Seconds allowed for one run of a candidate")
      ->capture_default_str();
  cmd->add_option("--inject-faults", f.inject_faults)->group("");  // tests of the isolation only
}

std::string params_text(const te::ComputeDAG& dag) {
  std::string s;
  for (const auto& [k, v] : dag.params) s += (s.empty() ? "" : ", ") + k + "=" + std::to_string(v);
  if (!dag.dtype.empty()) s += (s.empty() ? "" : ", ") + std::string("dtype=") + dag.dtype;
  return s;
}

// `ktune sketches KERNEL [--PARAM=V ...]`: the sketches the rules generate for the kernel.
int print_sketches(const te::KernelDef& def, const std::map<std::string, int64_t>& ints,
                   const std::map<std::string, std::string>& types, const TuneFlags& f) {
  target::Target t = target::resolve_target(f.target);
  auto dag = std::make_shared<const te::ComputeDAG>(def.instantiate(ints, types));
  const auto sketches = search::generate_sketches(dag, t);
  std::cout << sketches.size() << " sketches for " << def.name << "(" << params_text(*dag) << ") on " << t.name
            << "\n";
  for (size_t i = 0; i < sketches.size(); ++i)
    std::cout << "\nsketch " << i << ":\n" << sketches[i].to_string(dag);
  return 0;
}


int tune_kernel(const te::KernelDef& def, const std::map<std::string, int64_t>& ints,
                const std::map<std::string, std::string>& types, const TuneFlags& f) {
  KT_USER_CHECK(f.budget > 0 && f.budget <= kMaxBudget, "--budget must be between 1 and ", kMaxBudget, " (got ",
                f.budget, ")");
  KT_USER_CHECK(f.refine_budget >= 0 && f.refine_budget <= kMaxBudget, "--refine-budget must be between 0 and ",
                kMaxBudget, " (got ", f.refine_budget, ")");
  KT_USER_CHECK(f.time_budget_s >= 0 && f.time_budget_s <= 30 * 86400.0,
                "--time-budget must be a number of seconds between 0 (no limit) and 30 days (got ", f.time_budget_s,
                ")");
  search::check_strategy(f.strategy);
  KT_USER_CHECK(f.remeasure >= 0 && f.remeasure <= 100, "--remeasure must be between 0 and 100 (got ", f.remeasure,
                ")");
  KT_USER_CHECK(f.cost_model == "xgboost" || f.cost_model == "random", "unknown cost model '", f.cost_model,
                "' (available: xgboost, random)");
  KT_USER_CHECK(f.threads >= 0, "--threads must be positive (got ", f.threads, ")");
  KT_USER_CHECK(f.compile_timeout_s > 0, "--compile-timeout must be positive (got ", f.compile_timeout_s, ")");
  KT_USER_CHECK(f.run_timeout_s > 0, "--run-timeout must be positive (got ", f.run_timeout_s, ")");
  KT_USER_CHECK(f.inject_faults.empty() || !f.no_isolate, "--inject-faults needs isolated measurement (drop --no-isolate)");
  if (!f.inject_faults.empty()) search::FaultPlan check(f.inject_faults);
  target::Target t = resolve_measure_target(f.target);
  auto dag = std::make_shared<const te::ComputeDAG>(def.instantiate(ints, types));
  check_cpu_dtypes(*dag, def.name);
  search::TuneOptions opt;
  opt.budget = f.budget;
  opt.seed = f.seed;
  opt.strategy = f.strategy;
  opt.refine_budget = f.refine_budget;
  opt.time_budget_s = f.time_budget_s;
  opt.cost_model = f.cost_model;
  opt.remeasure_top = f.remeasure;
  opt.threads = f.threads > 0 ? f.threads : std::max(1, t.cores);
  opt.log_path = f.log.empty() ? def.name + ".jsonl" : f.log;
  opt.resume = f.resume;
  opt.isolation.enabled = !f.no_isolate;
  opt.anchored = f.anchor;
  opt.isolation.compile_timeout_s = f.compile_timeout_s;
  opt.isolation.run_timeout_s = f.run_timeout_s;
  opt.isolation.inject_faults = f.inject_faults;
  search::WarmStart warm;
  if (!f.warm_start.empty()) {
    KT_USER_CHECK(f.strategy == "two-phase" || f.strategy == "evolutionary", "--warm-start trains the cost model, ",
                  "which only the two-phase and evolutionary strategies use (got --strategy=", f.strategy, ")");
    opt.model = search::make_cost_model(opt.cost_model, opt.seed);
    warm = search::warm_start_model(*opt.model, f.warm_start, def, t);
    for (const auto& w : warm.warnings) std::fprintf(stderr, "ktune: warning: %s\n", w.c_str());
    if (!f.json_out)
      std::cout << "warm start: the cost model learnt from " << warm.used << " records of " << def.name << " in "
                << f.warm_start.size() << " log" << (f.warm_start.size() == 1 ? "" : "s")
                << (warm.skipped ? ", skipped " + std::to_string(warm.skipped) +
                                       " (bad lines, other targets or definitions, candidates that no longer replay)"
                                 : std::string())
                << std::endl;
  }

  const bool tty = isatty(STDERR_FILENO);
  // On a terminal: one line updated in place. Otherwise (CI logs): a line every tenth of
  // the budget, unless --json asked for a quiet stderr.
  const int every = std::max(1, opt.total_budget() / 10);
  auto progress = [&](const search::TuneProgress& p) {
    if (!tty && (f.json_out || (p.trial % every != 0 && p.trial != p.budget))) return;
    std::fprintf(stderr, "%s[%d/%d] %s: valid %d, errors %d, best %.4f ms (%.1f GFLOP/s), %.1f s%s",
                 tty ? "\r" : "", p.trial, p.budget, p.phase.c_str(), p.valid, p.errors, p.best_ms, p.best_gflops,
                 p.elapsed_s, tty ? "   " : "\n");
    std::fflush(stderr);
  };
  if (!f.json_out)
    std::cout << "tuning " << def.name << "(" << params_text(*dag) << ") on " << t.name << " (" << t.triple << ", "
              << opt.threads << " threads), " << opt.strategy << ", budget " << opt.budget
              << (opt.strategy == "two-phase" ? " + refinement " + std::to_string(opt.refine_budget) : std::string())
              << (opt.time_budget_s > 0 ? ", at most " + std::to_string(int(opt.time_budget_s)) + " s" : std::string())
              << ", log " << opt.log_path
              << (opt.resume ? " (resumed)" : "") << (opt.isolation.enabled ? "" : ", measured in-process")
              << std::endl;
  // Ctrl-C: finish the candidate in flight, print the summary, leave a resumable log.
  install_interrupt_handler();
  search::TuneResult r = search::tune(dag, t, opt, progress);
  if (tty) std::fprintf(stderr, "\n");
  for (const auto& w : r.log_warnings) std::fprintf(stderr, "ktune: warning: %s\n", w.c_str());

  if (f.json_out) {
    json params = json::object();
    for (const auto& [k, v] : dag->params) params[k] = v;
    if (!dag->dtype.empty()) params["dtype"] = dag->dtype;
    json out = {{"kernel", def.name},
                {"params", params},
                {"target", t.name},
                {"threads", opt.threads},
                {"strategy", opt.strategy},
                {"trials", r.trials},
                {"phase_trials", r.phase_trials},
                {"resumed", r.resumed},
                {"interrupted", r.interrupted},
                {"timed_out", r.timed_out},
                {"isolated", opt.isolation.enabled},
                {"valid", r.valid},
                {"errors", r.errors},
                {"error_counts", r.error_counts},
                {"tuning_seconds", r.seconds},
                {"verified_against", r.reference},
                {"log", opt.log_path}};
    if (r.sustained)
      out["sustained"] = {{"time_ms", r.sustained->median_ms},
                          {"gflops", r.sustained->gflops},
                          {"trial", r.sustained->trial},
                          {"logged_ms", r.sustained->logged_ms},
                          {"candidates", r.sustained->candidates},
                          {"rounds", r.sustained->rounds}};
    if (!f.warm_start.empty()) out["warm_start"] = {{"records", warm.used}, {"skipped", warm.skipped}};
    if (opt.strategy == "two-phase" || opt.strategy == "droplet") {
      json moves = json::array();
      for (const auto& m : r.refinement)
        moves.push_back({{"trial", m.trial},
                         {"from_ms", m.from_ms},
                         {"to_ms", m.to_ms},
                         {"p_value", std::isnan(m.p_value) ? json(nullptr) : json(m.p_value)},
                         {"move", m.move}});
      out["refinement"] = {{"explore_best_ms", r.explore_best_ms}, {"converged", r.refine_converged}, {"accepted", moves}};
    }
    if (r.best) {
      out["best"] = {{"time_ms", r.best->median_ms},
                     {"gflops", r.best->gflops},
                     {"trial", r.best->trial},
                     {"phase", r.best->phase},
                     {"verified", true},
                     {"log_line", log::to_json(*r.best)}};
    } else {
      out["best"] = nullptr;
    }
    std::cout << out.dump(2) << std::endl;
  } else {
    if (r.interrupted)
      std::cout << "interrupted after " << r.trials << " of " << opt.total_budget()
                << " trials; continue with --resume\n";
    if (r.timed_out)
      std::cout << "time budget of " << opt.time_budget_s << " s reached after " << r.trials
                << " trials; the best so far is kept\n";
    std::cout << "trials " << r.trials << " (valid " << r.valid << ", errors " << r.errors;
    if (r.resumed) std::cout << "; " << r.resumed << " from the log";
    for (const auto& [phase, n] : r.phase_trials) std::cout << "; " << phase << " " << n;
    std::cout << ") in " << r.seconds << " s; every candidate verified against the " << r.reference << "\n";
    for (const auto& [k, v] : r.error_counts) std::cout << "  " << k << ": " << v << "\n";
    if ((opt.strategy == "two-phase" || opt.strategy == "droplet") && r.explore_best_ms > 0) {
      std::cout << "refinement: " << r.refinement.size() << " accepted move" << (r.refinement.size() == 1 ? "" : "s")
                << (r.refine_converged ? ", converged" : "") << "; exploration best " << r.explore_best_ms << " ms";
      if (r.best) std::cout << ", final " << r.best->median_ms << " ms (" << r.explore_best_ms / r.best->median_ms << "x)";
      std::cout << "\n";
      for (const auto& m : r.refinement) {
        std::cout << "  trial " << m.trial << ": " << m.from_ms << " -> " << m.to_ms << " ms, p ";
        if (std::isnan(m.p_value)) std::cout << "n/a (one timing)";
        else std::cout << m.p_value;
        std::cout << ": " << m.move << "\n";
      }
    }
    if (r.best) {
      std::cout << "best: " << r.best->median_ms << " ms, " << r.best->gflops << " GFLOP/s (trial " << r.best->trial
                << ")\n";
      if (r.sustained)
        std::cout << "sustained: " << r.sustained->median_ms << " ms, " << r.sustained->gflops << " GFLOP/s (trial "
                  << r.sustained->trial << ", logged at " << r.sustained->logged_ms << " ms; the pick of the best "
                  << r.sustained->candidates << " timed against each other in " << r.sustained->rounds
                  << " rounds, which the log's best view and replay take)\n";
      std::cout << r.best_steps_text;
    } else {
      std::cout << "no valid candidate found\n";
    }
  }
  if (r.interrupted) return 130;
  return r.best ? 0 : 1;
}

int list_kernels(const te::KernelRegistry& reg) {
  for (const auto& k : reg.kernels()) {
    std::string params;
    for (const auto& p : k.params)
      params += (params.empty() ? "" : ", ") + p.name + "=" + (p.is_dtype ? p.default_type : std::to_string(p.default_int));
    std::string doc = k.doc.substr(0, k.doc.find('\n'));
    std::cout << k.name << "(" << params << ")\n";
    if (!doc.empty()) std::cout << "    " << doc << "\n";
    std::cout << "    " << k.file << "\n";
  }
  return 0;
}

int list_targets() {
  target::Target h = target::host_target();
  std::cout << "detected host: " << h.triple << ", cpu " << h.cpu << ", " << h.cores << " cores, " << h.vector_bits
            << "-bit vectors\n  features: ";
  for (size_t i = 0; i < h.features.size(); ++i) std::cout << (i ? " " : "") << h.features[i];
  std::cout << "\n\ntargets:\n";
  for (const auto& name : target::known_targets()) {
    target::Target t = target::resolve_target(name);
    std::cout << "  " << name << "  (" << target::kind_name(t.kind) << ", " << t.triple << ", " << t.cpu << ")\n";
  }
  return 0;
}

// --kernels DIR must be known before the kernel subcommands are built.
std::vector<std::string> prescan_kernel_dirs(int argc, char** argv) {
  std::vector<std::string> dirs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--kernels" && i + 1 < argc) dirs.push_back(argv[++i]);
    else if (a.rfind("--kernels=", 0) == 0) dirs.push_back(a.substr(10));
  }
  return dirs;
}

int run_cli(int argc, char** argv) {
  // `ktune sketches KERNEL ...` is `ktune KERNEL ... --print-sketches`.
  std::vector<std::string> rewritten;
  std::vector<char*> rewritten_argv;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "sketches") {
      KT_USER_CHECK(i + 1 < argc, "usage: ktune sketches KERNEL [--PARAM=VALUE ...]");
      for (int k = 0; k < argc; ++k)
        if (k != i) rewritten.push_back(argv[k]);
      rewritten.push_back("--print-sketches");
      for (auto& a : rewritten) rewritten_argv.push_back(a.data());
      argc = int(rewritten_argv.size());
      argv = rewritten_argv.data();
      break;
    } else if (argv[i][0] != '-') {
      break;
    }
  CLI::App app{"ktune: a kernel autotuner. Tunes a kernel (see 'ktune kernels') for a target, "
               "verifying every candidate against a reference, and logs every measurement."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for all subcommands");
  std::vector<std::string> kernel_dirs;
  int debug_level_flag = -1;
  app.add_option("--kernels", kernel_dirs, "Extra directory of kernel files (*.kt); may repeat");
  app.add_option("--debug", debug_level_flag, "Debug output level (0-3)");

  te::KernelRegistry reg;
  reg.add_directory(te::shipped_kernel_dir());
  for (const auto& d : prescan_kernel_dirs(argc, argv)) {
    KT_USER_CHECK(std::filesystem::is_directory(d), "--kernels: '", d, "' is not a directory");
    reg.add_directory(d);
  }

  auto* kernels_cmd = app.add_subcommand("kernels", "List the kernels and their parameters");
  auto* targets_cmd = app.add_subcommand("targets", "List the targets and the detected host");
  std::vector<Subcommand> subcommands = register_subcommands(app, reg);

  TuneFlags flags;
  std::map<std::string, std::map<std::string, int64_t>> ints;
  std::map<std::string, std::map<std::string, std::string>> types;
  std::map<CLI::App*, const te::KernelDef*> kernel_cmds;
  for (const auto& k : reg.kernels()) {
    std::string doc = k.doc.substr(0, k.doc.find('\n'));
    auto* cmd = app.add_subcommand(k.name, doc.empty() ? "Tune " + k.name : doc);
    for (const auto& p : k.params) {
      if (p.is_dtype) {
        types[k.name][p.name] = p.default_type;
        cmd->add_option("--" + p.name, types[k.name][p.name], "Element type")
            ->capture_default_str()
            ->check(CLI::IsMember({"f32", "f64", "f16", "bf16", "i32", "i8"}));
      } else {
        ints[k.name][p.name] = p.default_int;
        cmd->add_option("--" + p.name, ints[k.name][p.name], "Parameter " + p.name)->capture_default_str();
      }
    }
    add_tune_flags(cmd, flags);
    kernel_cmds[cmd] = &k;
  }

  // An unknown first word gets a clearer message than CLI11's.
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--kernels" || a == "--debug") {
      ++i;
      continue;
    }
    if (a.rfind("-", 0) == 0) continue;
    KT_USER_CHECK(a == "kernels" || a == "targets" || is_subcommand_name(a) || reg.find(a), "unknown kernel or command '", a,
                  "' (run 'ktune kernels' to list the kernels)");
    break;
  }

  if (argc == 1) {
    std::cerr << app.help();
    throw UserError("a command is required: a kernel name, 'kernels' or 'targets'");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ExtrasError& e) {
    std::string cmd;
    for (auto& [c, def] : kernel_cmds)
      if (c->parsed()) cmd = def->name;
    throw UserError(detail::concat(e.what(), cmd.empty() ? "" : " (unknown parameter or flag for " + cmd +
                                                                     "; see 'ktune " + cmd + " --help')"));
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    throw UserError(e.what());
  }
  if (debug_level_flag >= 0) set_debug_level(debug_level_flag);

  if (kernels_cmd->parsed()) return list_kernels(reg);
  if (targets_cmd->parsed()) return list_targets();
  for (auto& s : subcommands)
    if (s.app->parsed()) return s.run();
  for (auto& [cmd, def] : kernel_cmds)
    if (cmd->parsed())
      return flags.print_sketches ? print_sketches(*def, ints[def->name], types[def->name], flags)
                                  : tune_kernel(*def, ints[def->name], types[def->name], flags);
  return 2;
}

}  // namespace

int run(int argc, char** argv) {
  try {
    return run_cli(argc, argv);
  } catch (const UserError& e) {
    std::cerr << "ktune: error: " << e.what() << std::endl;
    return 2;
  } catch (const InternalError& e) {
    std::cerr << "ktune: internal error (a ktune bug): " << e.what() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "ktune: internal error (a ktune bug): " << e.what() << std::endl;
    return 1;
  }
}

}  // namespace ktune::cli
