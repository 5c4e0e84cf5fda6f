// Registration of the non-kernel commands and the helpers they share.
#include "subcommands.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ktune/support/error.h"

namespace ktune::cli {

std::vector<Subcommand> register_subcommands(CLI::App& app, const te::KernelRegistry& reg) {
  std::vector<Subcommand> out;
  register_tune_list_command(app, reg, out);
  register_log_commands(app, out);
  register_replay_command(app, reg, out);
  register_model_command(app, reg, out);
  return out;
}

bool is_subcommand_name(const std::string& word) {
  for (const char* n : {"tune", "merge", "best", "report", "replay", "model-eval"})
    if (word == n) return true;
  return false;
}

target::Target resolve_measure_target(const std::string& name) {
  target::Target t = target::resolve_target(name);
  KT_USER_CHECK(t.kind == target::TargetKind::CPU, "target '", t.name, "' is a ", target::kind_name(t.kind),
                " GPU target; this ktune build generates code for CPU targets only (try --target=host)");
  if (t.name != "host") {
    // A named CPU target is measured on this machine: it must be able to run its code.
    const target::Target host = target::host_target();
    const auto arch = [](const std::string& triple) { return triple.substr(0, triple.find('-')); };
    KT_USER_CHECK(arch(t.triple) == arch(host.triple), "target '", t.name, "' is ", arch(t.triple),
                  " but this machine is ", arch(host.triple), "; ktune measures on the machine it runs on");
    for (const auto& feat : t.features)
      KT_USER_CHECK(host.has_feature(feat), "target '", t.name, "' needs the CPU feature '", feat,
                    "', which this machine lacks");
  }
  return t;
}

void check_cpu_dtypes(const te::ComputeDAG& dag, const std::string& what) {
  for (const auto& op : dag.ops)
    KT_USER_CHECK(!(op.dtype.is_float() && op.dtype.bits == 16), what, ": tensor ", op.name, " has element type ",
                  op.dtype.to_string(),
                  ", which the CPU code generator does not support yet (supported: f32, f64, i32, i8)");
}

std::string format_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                         const std::vector<bool>& right) {
  std::vector<size_t> width(header.size(), 0);
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& r : rows)
    for (size_t c = 0; c < r.size() && c < width.size(); ++c) width[c] = std::max(width[c], r[c].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      const std::string pad(width[c] - cell.size(), ' ');
      const bool r = c < right.size() && right[c];
      s += (c ? "  " : "") + (r ? pad + cell : (c + 1 < width.size() ? cell + pad : cell));
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s + "\n";
  };
  std::string out = line(header);
  for (const auto& r : rows) out += line(r);
  return out;
}

std::string fmt_num(double v, int digits) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  if (v != 0 && std::abs(v) < 1e-6) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  } else {
    // `digits` significant digits, never in exponent form for ordinary magnitudes.
    const int magnitude = v == 0 ? 0 : int(std::floor(std::log10(std::abs(v))));
    std::snprintf(buf, sizeof buf, "%.*f", std::clamp(digits - 1 - magnitude, 0, 9), v);
  }
  return buf;
}

}  // namespace ktune::cli
