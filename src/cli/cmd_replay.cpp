// `ktune replay FILE`: rebuild candidates from their steps — the best record of each workload
// in a tuning log, or a hand-written schedule file — then either verify and time them on
// this machine, or export them (--emit=c|llvm|asm|obj) for use outside ktune. See
// docs/cli.md and docs/export.md.
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "ktune/codegen/export.h"
#include "ktune/log/record.h"
#include "ktune/schedule/lower.h"
#include "ktune/schedule/steps.h"
#include "ktune/search/measurer.h"
#include "ktune/search/workload_list.h"
#include "ktune/support/error.h"
#include "subcommands.h"

namespace ktune::cli {

namespace {

using nlohmann::json;

struct ReplayFlags {
  std::string file;
  std::string emit;
  std::string out = "kernels_out";
  std::string target;  // empty: the record's target (logs), host (schedule files)
  int threads = 0;
  bool json_out = false;
};

// One candidate to replay.
struct Candidate {
  std::shared_ptr<const te::ComputeDAG> dag;
  schedule::State state;
  std::string where;        // for messages: "sched.json" or "log.jsonl: matmul(...)"
  const log::Record* record = nullptr;  // the log record, for logs
  target::Target target;    // what it was tuned for (logs) or --target
};

// The target a record was measured on, rebuilt from what the record says about it.
target::Target target_of(const log::TargetInfo& ti) {
  KT_USER_CHECK(ti.kind == "cpu", "the record's target '", ti.name, "' is a ", ti.kind,
                " target; replay supports CPU targets only");
  target::Target t;
  try {
    if (ti.name != "host") {
      t = target::resolve_target(ti.name);
      if (t.triple == ti.triple && t.features == ti.features) return t;
    }
  } catch (const UserError&) {
  }
  t = target::Target{};
  t.name = ti.name;
  t.kind = target::TargetKind::CPU;
  t.triple = ti.triple;
  t.cpu = ti.cpu;
  t.features = ti.features;
  const bool x86 = ti.triple.rfind("x86_64", 0) == 0 || ti.triple.rfind("i686", 0) == 0;
  t.vector_bits = x86 && t.has_feature("avx512f") ? 512 : x86 && (t.has_feature("avx") || t.has_feature("avx2")) ? 256 : 128;
  t.cores = target::host_target().cores;
  return t;
}

// Replays steps on a DAG; a step that does not apply is the user's problem here.
schedule::State replay_steps(std::shared_ptr<const te::ComputeDAG> dag, const json& steps, const std::string& where) {
  try {
    return schedule::replay(dag, schedule::steps_from_json(steps));
  } catch (const UserError& e) {
    throw UserError(where + ": " + e.what());
  } catch (const InvalidCandidate& e) {
    throw UserError(where + ": " + e.what());
  }
}

std::vector<Candidate> from_schedule_file(const json& j, const ReplayFlags& f, const te::KernelRegistry& reg) {
  const std::string& path = f.file;
  static const std::set<std::string> fields = {"kernel", "params", "steps", "name", "description"};
  for (const auto& [k, v] : j.items())
    KT_USER_CHECK(fields.count(k), path, ": unknown field '", k, "' (fields: kernel, params, steps, name, description)");
  KT_USER_CHECK(j["kernel"].is_string(), path, ": field 'kernel' must be a kernel name");
  const std::string kernel = j["kernel"].get<std::string>();
  const te::KernelDef* def = reg.find(kernel);
  KT_USER_CHECK(def, path, ": unknown kernel '", kernel, "' (run 'ktune kernels' to list the kernels)");
  std::map<std::string, int64_t> ints;
  std::map<std::string, std::string> types;
  if (j.contains("params")) {
    KT_USER_CHECK(j["params"].is_object(), path, ": field 'params' must be an object");
    for (const auto& [k, v] : j["params"].items()) {
      const te::KernelParam* p = def->find_param(k);
      KT_USER_CHECK(p, path, ": unknown parameter '", k, "' of ", kernel);
      if (p->is_dtype) {
        KT_USER_CHECK(v.is_string(), path, ": parameter '", k, "' must be an element type name such as \"f32\"");
        types[k] = v.get<std::string>();
      } else {
        KT_USER_CHECK(v.is_number_integer(), path, ": parameter '", k, "' must be an integer, got ", v.dump());
        ints[k] = v.get<int64_t>();
      }
    }
  }
  KT_USER_CHECK(j.contains("steps"), path, ": field 'steps' (the schedule, a list of steps) is missing");
  Candidate c;
  try {
    c.dag = std::make_shared<const te::ComputeDAG>(def->instantiate(ints, types));
  } catch (const UserError& e) {
    throw UserError(path + ": " + e.what());
  }
  c.where = path;
  c.state = replay_steps(c.dag, j["steps"], path);
  c.target = target::resolve_target(f.target.empty() ? "host" : f.target);
  return {std::move(c)};
}

std::vector<Candidate> from_log(const std::vector<log::Record>& best, const ReplayFlags& f,
                                const te::KernelRegistry& reg) {
  std::vector<Candidate> out;
  for (const log::Record& r : best) {
    const std::string where = f.file + ": " + r.workload.key();
    const te::KernelDef* def = reg.find(r.workload.kernel);
    KT_USER_CHECK(def, where, ": kernel '", r.workload.kernel,
                  "' is not known (pass the directory of its file with --kernels DIR)");
    std::map<std::string, int64_t> ints(r.workload.params.begin(), r.workload.params.end());
    std::map<std::string, std::string> types;
    for (const auto& p : def->params)
      if (p.is_dtype && !r.workload.dtype.empty()) types[p.name] = r.workload.dtype;
    Candidate c;
    try {
      c.dag = std::make_shared<const te::ComputeDAG>(def->instantiate(ints, types));
    } catch (const UserError& e) {
      throw UserError(where + ": " + e.what());
    }
    if (c.dag->hash() != r.workload.dag_hash)
      std::cerr << "ktune: warning: " << where << ": the kernel's definition changed since it was tuned (hash "
                << c.dag->hash() << ", log " << r.workload.dag_hash << "); replaying on the current definition\n";
    c.where = where;
    c.record = &r;
    c.state = replay_steps(c.dag, r.steps, where);
    c.target = f.target.empty() ? target_of(r.target) : target::resolve_target(f.target);
    out.push_back(std::move(c));
  }
  return out;
}

// Distinct C identifiers for the kernels: KERNEL_HASH8, with the target when two records
// of one workload were tuned for different targets.
std::vector<std::string> symbols_for(const std::vector<Candidate>& cs) {
  std::vector<std::string> out;
  std::set<std::string> used;
  for (const auto& c : cs) {
    std::string base = c.dag->kernel + "_" + c.dag->hash().substr(0, 8);
    for (char& ch : base)
      if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    std::string s = base;
    if (used.count(s)) {
      s = base + "_" + c.target.name;
      for (char& ch : s)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    }
    for (int k = 2; used.count(s); ++k) s = base + "_" + std::to_string(k);
    used.insert(s);
    out.push_back(s);
  }
  return out;
}

int emit(const std::vector<Candidate>& cs, const ReplayFlags& f) {
  codegen::ExportFormat fmt;
  KT_USER_CHECK(codegen::parse_export_format(f.emit, &fmt), "--emit must be one of c, llvm, asm, obj (got '", f.emit,
                "')");
  for (const auto& c : cs)
    KT_USER_CHECK(c.target.kind == target::TargetKind::CPU, c.where, ": target '", c.target.name,
                  "' is a GPU target; export supports CPU targets only");
  const std::vector<std::string> syms = symbols_for(cs);
  std::vector<codegen::ExportInfo> infos;
  std::vector<codegen::ExportedKernel> exported;
  for (size_t i = 0; i < cs.size(); ++i) {
    const Candidate& c = cs[i];
    codegen::ExportInfo info;
    info.symbol = syms[i];
    info.workload = log::Workload::of(*c.dag).key();
    info.num_inputs = int(c.dag->inputs().size());
    for (int k : c.dag->inputs()) info.weights.push_back(c.dag->ops[size_t(k)].is_const);
    info.schedule = c.state.steps_text();
    info.flops = c.dag->flop_count();
    if (c.record) {
      const log::Record& r = *c.record;
      info.threads = r.threads;
      std::ostringstream p;
      p << "tuning log " << f.file << ", " << fmt_num(r.median_ms) << " ms, " << fmt_num(r.gflops)
        << " GFLOP/s (trial " << r.trial << ", phase " << r.phase << ", " << r.threads << " threads, " << r.timestamp
        << ")";
      info.provenance = p.str();
    } else {
      info.threads = f.threads > 0 ? f.threads : std::max(1, c.target.cores);
      info.provenance = "schedule file " + f.file + " (not measured)";
    }
    ir::LoweredFunc fn;
    try {
      fn = schedule::lower(c.state, info.symbol);
      exported.push_back(codegen::export_kernel(fn, c.target, fmt, info, f.out));
    } catch (const InvalidCandidate& e) {
      throw UserError(detail::concat(c.where, ": the schedule cannot be compiled: ", e.what()));
    }
    infos.push_back(info);
  }
  const target::Target& t = cs.front().target;
  const std::vector<std::string> support = codegen::write_export_support(f.out, fmt, t, infos, exported);
  json files = json::array();
  for (size_t i = 0; i < cs.size(); ++i) {
    if (!f.json_out)
      std::cout << infos[i].workload << " -> " << (std::filesystem::path(f.out) / exported[i].files[0]).string()
                << ", " << exported[i].files[1] << "\n";
    for (const auto& x : exported[i].files) files.push_back((std::filesystem::path(f.out) / x).string());
  }
  for (const auto& x : support) files.push_back((std::filesystem::path(f.out) / x).string());
  if (f.json_out)
    std::cout << json{{"emit", f.emit}, {"out", f.out}, {"kernels", cs.size()}, {"files", files}}.dump(2) << "\n";
  else
    std::cout << "wrote " << cs.size() << " kernel" << (cs.size() == 1 ? "" : "s") << " into " << f.out
              << " (see README.md there)\n";
  return 0;
}

int measure(const std::vector<Candidate>& cs, const ReplayFlags& f) {
  KT_USER_CHECK(f.threads >= 0, "--threads must be positive (got ", f.threads, ")");
  const target::Target host = target::host_target();
  std::vector<std::vector<std::string>> rows;
  json out = json::array();
  int failures = 0;
  for (const auto& c : cs) {
    // Measure with the code the record was generated for, which this machine must run.
    target::Target t = c.target;
    KT_USER_CHECK(t.kind == target::TargetKind::CPU, c.where, ": target '", t.name, "' is a GPU target; replay measures on CPUs only");
    const auto arch = [](const std::string& triple) { return triple.substr(0, triple.find('-')); };
    KT_USER_CHECK(arch(t.triple) == arch(host.triple), c.where, ": tuned for ", t.triple, " but this machine is ",
                  host.triple, "; export it with --emit instead");
    for (const auto& feat : t.features)
      KT_USER_CHECK(host.has_feature(feat), c.where, ": tuned for a CPU with '", feat,
                    "', which this machine lacks; export it with --emit, or measure with --target=host");
    check_cpu_dtypes(*c.dag, c.where);
    try {
      schedule::lower(c.state, "replay_check");
    } catch (const InvalidCandidate& e) {
      throw UserError(detail::concat(c.where, ": the schedule cannot be lowered: ", e.what()));
    }
    const int threads = f.threads > 0 ? f.threads : c.record ? c.record->threads : std::max(1, host.cores);
    search::Measurer m(c.dag, t, threads);
    const search::MeasureResult r = m.measure(c.state);
    const std::string key = log::Workload::of(*c.dag).key();
    json j = {{"workload", key}, {"target", t.name}, {"threads", threads}, {"verified_against", m.reference_kind()}};
    if (c.record) j["logged_ms"] = c.record->median_ms;
    std::vector<std::string> row = {key, t.name, c.record ? fmt_num(c.record->median_ms) : "-"};
    if (r.valid()) {
      j["time_ms"] = r.timing.median_ms;
      j["gflops"] = r.gflops;
      j["error"] = nullptr;
      row.insert(row.end(), {fmt_num(r.timing.median_ms), fmt_num(r.gflops), "verified (" + m.reference_kind() + ")"});
    } else {
      ++failures;
      j["error"] = runtime::error_class_name(r.error);
      j["error_message"] = r.message;
      row.insert(row.end(), {"-", "-", std::string(runtime::error_class_name(r.error)) + ": " + r.message});
    }
    rows.push_back(row);
    out.push_back(j);
  }
  if (f.json_out)
    std::cout << out.dump(2) << "\n";
  else
    std::cout << format_table({"workload", "target", "logged ms", "time ms", "GFLOP/s", "result"}, rows,
                              {false, false, true, true, true, false});
  return failures ? 1 : 0;
}

int run_replay(const ReplayFlags& f, const te::KernelRegistry& reg) {
  std::ifstream in(f.file, std::ios::binary);
  KT_USER_CHECK(in.good() && !std::filesystem::is_directory(f.file), "cannot read '", f.file, "': ",
                std::filesystem::is_directory(f.file) ? "it is a directory" : std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (!f.emit.empty()) {
    codegen::ExportFormat fmt;
    KT_USER_CHECK(codegen::parse_export_format(f.emit, &fmt), "--emit must be one of c, llvm, asm, obj (got '",
                  f.emit, "')");
  }
  // A tuning log has a record (with format_version) on its first line; anything else must
  // be one JSON schedule object.
  std::string first = text.substr(0, text.find('\n'));
  bool is_log = false;
  try {
    const json j = json::parse(first);
    is_log = j.is_object() && j.contains("format_version");
  } catch (const json::exception&) {
  }
  std::vector<Candidate> cs;
  std::vector<log::Record> best;
  if (is_log) {
    log::LogContents c = log::read_log(f.file);
    for (const auto& w : c.warnings) std::cerr << "ktune: warning: " << w << "\n";
    best = log::best_records(c.records);
    KT_USER_CHECK(!best.empty(), f.file, ": the log has no valid record to replay (", c.records.size(), " records)");
    cs = from_log(best, f, reg);
  } else {
    const json j = search::parse_json_text(text, f.file);
    KT_USER_CHECK(j.is_object() && j.contains("kernel"), f.file,
                  ": neither a tuning log nor a schedule file ({\"kernel\": ..., \"params\": {...}, \"steps\": [...]})");
    cs = from_schedule_file(j, f, reg);
  }
  return f.emit.empty() ? measure(cs, f) : emit(cs, f);
}

}  // namespace

void register_replay_command(CLI::App& app, const te::KernelRegistry& reg, std::vector<Subcommand>& out) {
  auto f = std::make_shared<ReplayFlags>();
  CLI::App* cmd = app.add_subcommand(
      "replay", "Rebuild the best candidates of a log (or a schedule file): verify and time them, or export them");
  cmd->add_option("file", f->file, "Tuning log (the best record of each workload) or schedule file (JSON)")->required();
  cmd->add_option("--emit", f->emit, "Export instead of measuring: c, llvm, asm or obj");
  cmd->add_option("--out", f->out, "Directory for --emit")->capture_default_str();
  cmd->add_option("--target", f->target,
                  "Target to compile for (default: the record's target for a log, host for a schedule file)");
  cmd->add_option("--threads", f->threads, "Threads for parallel loops when measuring (default: as tuned)");
  cmd->add_flag("--json", f->json_out, "Print one JSON document on stdout");
  out.push_back({cmd, [f, &reg] { return run_replay(*f, reg); }});
}

}  // namespace ktune::cli
