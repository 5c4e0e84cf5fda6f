// Commands over tuning logs: `ktune merge` (combine logs without duplicates), `ktune best`
// (the best record per workload and target) and `ktune report` (a self-contained HTML page
// with tuning curves and error counts). None of them modifies an input log. See docs/cli.md.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include <unistd.h>

#include "ktune/log/record.h"
#include "ktune/schedule/steps.h"
#include "ktune/support/error.h"
#include "subcommands.h"

#ifndef KTUNE_VERSION
#define KTUNE_VERSION "0.0.0"
#endif

namespace ktune::cli {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// ---- shared ------------------------------------------------------------------------------

// Identity of a workload on a target: records with equal keys tuned the same computation
// on the same kind of machine.
std::string group_key(const log::Record& r) {
  return r.workload.key() + "|" + r.workload.dag_hash + "|" + r.target.name + "|" + r.target.triple;
}

// The candidate's identity; a step list this ktune cannot read is compared as JSON text.
std::string steps_key(const json& steps) {
  try {
    return schedule::canonical_key(schedule::steps_from_json(steps));
  } catch (const UserError&) {
    return steps.dump();
  }
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) return fs::equivalent(a, b, ec);
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

void check_output_not_input(const std::string& out, const std::vector<std::string>& inputs, const char* flag) {
  for (const auto& in : inputs)
    KT_USER_CHECK(!same_file(out, in), flag, " '", out, "' is one of the input logs; inputs are never modified");
}

// Writes `text` to `path` through a temporary file in the same directory and a rename, so
// that a failure never leaves a half-written file.
void write_atomically(const std::string& path, const std::string& text) {
  const fs::path p(path);
  const fs::path tmp = p.parent_path() / (p.filename().string() + ".tmp" + std::to_string(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    KT_USER_CHECK(out.good(), "cannot write '", path, "': ", std::strerror(errno));
    out.write(text.data(), std::streamsize(text.size()));
    out.close();
    if (!out.good()) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw UserError(detail::concat("cannot write '", path, "': ", std::strerror(errno)));
    }
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw UserError(detail::concat("cannot write '", path, "': ", ec.message()));
  }
}

std::vector<log::Record> read_logs(const std::vector<std::string>& paths) {
  std::vector<log::Record> all;
  for (const auto& p : paths) {
    log::LogContents c = log::read_log(p);
    for (const auto& w : c.warnings) std::cerr << "ktune: warning: " << w << "\n";
    all.insert(all.end(), c.records.begin(), c.records.end());
  }
  return all;
}

// Records grouped by workload and target, groups in order of first appearance.
struct Group {
  std::vector<const log::Record*> records;
  const log::Record* best = nullptr;
  int valid = 0;
  std::map<std::string, int> errors;
  std::map<std::string, std::string> error_example;
};

std::vector<Group> group_records(const std::vector<log::Record>& records) {
  std::vector<Group> groups;
  std::map<std::string, size_t> index;
  for (const auto& r : records) {
    auto [it, fresh] = index.emplace(group_key(r), groups.size());
    if (fresh) groups.emplace_back();
    Group& g = groups[it->second];
    if (r.phase == "final") {  // the final ranking: a candidate for the best, not a trial
      if (r.valid() && (!g.best || log::better_pick(r, *g.best))) g.best = &r;
      continue;
    }
    g.records.push_back(&r);
    if (r.valid()) {
      ++g.valid;
      if (!g.best || log::better_pick(r, *g.best)) g.best = &r;
    } else {
      ++g.errors[r.error];
      if (!g.error_example.count(r.error)) g.error_example[r.error] = r.error_message;
    }
  }
  return groups;
}

// ---- merge -------------------------------------------------------------------------------

struct MergeFlags {
  std::vector<std::string> inputs;
  std::string output;
  bool force = false;
};

int run_merge(const MergeFlags& f) {
  KT_USER_CHECK(!f.inputs.empty(), "merge needs at least one input log");
  KT_USER_CHECK(!f.output.empty(), "merge needs an output file: -o ALL.jsonl");
  check_output_not_input(f.output, f.inputs, "-o");
  KT_USER_CHECK(f.force || !fs::exists(f.output), "'", f.output,
                "' exists; pass --force to replace it (merge never appends to a log)");
  struct Kept {
    std::string line;
    bool valid;
  };
  std::vector<Kept> kept;
  std::map<std::string, size_t> seen;  // candidate identity -> index in kept
  int duplicates = 0, total = 0, replaced = 0;
  for (const auto& path : f.inputs) {
    std::ifstream in(path, std::ios::binary);
    KT_USER_CHECK(in.good() && !fs::is_directory(path), "cannot read the tuning log '", path, "': ",
                  fs::is_directory(path) ? "it is a directory" : std::strerror(errno));
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      lines.push_back(line);
    }
    for (size_t i = 0; i < lines.size(); ++i) {
      const std::string& line = lines[i];
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      const std::string where = path + ":" + std::to_string(i + 1);
      json j;
      try {
        j = json::parse(line);
      } catch (const json::exception&) {
        KT_USER_CHECK(i + 1 == lines.size(), where, ": not valid JSON");
        std::cerr << "ktune: warning: " << where << ": not valid JSON (truncated last line skipped)\n";
        continue;
      }
      KT_USER_CHECK(j.is_object() && j.contains("format_version") && j["format_version"].is_number_integer(), where,
                    ": not a tuning-log record (no format_version)");
      const int version = j["format_version"].get<int>();
      KT_USER_CHECK(version == log::kFormatVersion, where, ": log format version ", version,
                    ", but this ktune reads and writes version ", log::kFormatVersion,
                    "; merge only combines logs of format version ", log::kFormatVersion);
      log::Record r;
      try {
        r = log::record_from_json(j);
      } catch (const UserError& e) {
        throw UserError(where + ": " + e.what());
      }
      ++total;
      // A final-ranking record re-measures a candidate the log already holds: it is kept beside
      // that candidate's search record (and only a copy of the same ranking is a duplicate).
      const std::string key = group_key(r) + "|" + std::to_string(r.threads) + "|" + steps_key(r.steps) +
                              (r.phase == "final" ? "|final|" + r.timestamp : "");
      auto [it, fresh] = seen.emplace(key, kept.size());
      if (fresh) {
        kept.push_back({line, r.valid()});
        continue;
      }
      ++duplicates;
      // Keep one: a valid measurement over a failed one, else the first.
      Kept& k = kept[it->second];
      if (!k.valid && r.valid()) {
        k = {line, true};
        ++replaced;
      }
    }
  }
  std::string text;
  for (const auto& k : kept) text += k.line + "\n";
  write_atomically(f.output, text);
  std::cout << "merged " << total << " records from " << f.inputs.size() << " log" << (f.inputs.size() == 1 ? "" : "s")
            << " into " << f.output << ": " << kept.size() << " kept, " << duplicates << " duplicate"
            << (duplicates == 1 ? "" : "s") << " dropped";
  if (replaced) std::cout << " (" << replaced << " failed record" << (replaced == 1 ? "" : "s") << " replaced by a valid one)";
  std::cout << "\n";
  return 0;
}

// ---- best --------------------------------------------------------------------------------

struct BestFlags {
  std::vector<std::string> logs;
  bool json_out = false;
};

int run_best(const BestFlags& f) {
  const std::vector<log::Record> records = read_logs(f.logs);
  const std::vector<Group> groups = group_records(records);
  std::vector<std::vector<std::string>> rows;
  json out = json::array();
  for (const auto& g : groups) {
    if (!g.best) continue;
    const log::Record& b = *g.best;
    rows.push_back({b.workload.key(), b.target.name, fmt_num(b.median_ms), fmt_num(b.gflops),
                    std::to_string(g.records.size()), b.phase, std::to_string(b.trial)});
    out.push_back({{"workload", b.workload.key()},
                   {"kernel", b.workload.kernel},
                   {"dag_hash", b.workload.dag_hash},
                   {"target", b.target.name},
                   {"time_ms", b.median_ms},
                   {"gflops", b.gflops},
                   {"trials", g.records.size()},
                   {"valid", g.valid},
                   {"phase", b.phase},
                   {"trial", b.trial},
                   {"record", log::to_json(b)}});
  }
  if (f.json_out) {
    std::cout << out.dump(2) << "\n";
  } else if (!rows.empty()) {
    std::cout << format_table({"workload", "target", "time ms", "GFLOP/s", "trials", "phase", "trial"}, rows,
                              {false, false, true, true, true, false, true});
  }
  if (rows.empty()) {
    std::cerr << "ktune: no valid record in " << (f.logs.size() == 1 ? f.logs[0] : "the logs") << " ("
              << records.size() << " record" << (records.size() == 1 ? "" : "s") << ")\n";
    return 1;
  }
  return 0;
}

// ---- report ------------------------------------------------------------------------------

struct ReportFlags {
  std::vector<std::string> logs;
  std::string output;
  bool force = false;
};

constexpr const char* kReportMarker = "<!-- ktune report -->";
constexpr double kMaxGapSeconds = 300;  // longer pauses between records count as this much

std::string html(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

// Seconds since the epoch of "2026-11-21T10:02:11Z"; NaN when malformed.
double parse_timestamp(const std::string& s) {
  std::tm tm{};
  if (std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &tm.tm_sec) != 6)
    return NAN;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return double(timegm(&tm));
}

double nice_step(double range) {
  if (!(range > 0)) return 1;
  const double raw = range / 5, mag = std::pow(10, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

std::string tick(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", std::abs(v) < 1e-12 ? 0.0 : v);
  return buf;
}

// A chart of every valid measurement (dots) and the best so far (a step line).
std::string svg_chart(const std::string& xlabel, const std::vector<double>& x, const std::vector<double>& y) {
  const double W = 460, H = 260, L = 58, R = 12, T = 12, B = 42;
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
    << " " << H << "\" role=\"img\">";
  if (x.empty()) {
    s << "<text x=\"" << W / 2 << "\" y=\"" << H / 2 << "\" text-anchor=\"middle\" class=\"muted\">no valid measurement</text></svg>";
    return s.str();
  }
  double xmax = 0, ymax = 0;
  for (double v : x) xmax = std::max(xmax, v);
  for (double v : y) ymax = std::max(ymax, v);
  if (xmax <= 0) xmax = 1;
  if (ymax <= 0) ymax = 1;
  const double xs = nice_step(xmax), ys = nice_step(ymax);
  xmax = std::ceil(xmax / xs) * xs;
  ymax = std::ceil(ymax * 1.02 / ys) * ys;
  auto px = [&](double v) { return L + (W - L - R) * v / xmax; };
  auto py = [&](double v) { return H - B - (H - T - B) * v / ymax; };
  s << "<g class=\"axis\">";
  for (double v = 0; v <= xmax + xs / 2; v += xs)
    s << "<line x1=\"" << px(v) << "\" y1=\"" << T << "\" x2=\"" << px(v) << "\" y2=\"" << H - B
      << "\" class=\"grid\"/><text x=\"" << px(v) << "\" y=\"" << H - B + 14 << "\" text-anchor=\"middle\">"
      << tick(v) << "</text>";
  for (double v = 0; v <= ymax + ys / 2; v += ys)
    s << "<line x1=\"" << L << "\" y1=\"" << py(v) << "\" x2=\"" << W - R << "\" y2=\"" << py(v)
      << "\" class=\"grid\"/><text x=\"" << L - 5 << "\" y=\"" << py(v) + 4 << "\" text-anchor=\"end\">" << tick(v)
      << "</text>";
  s << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 6 << "\" text-anchor=\"middle\">" << html(xlabel)
    << "</text><text transform=\"translate(14," << (T + H - B) / 2
    << ") rotate(-90)\" text-anchor=\"middle\">GFLOP/s</text></g>";
  for (size_t i = 0; i < x.size(); ++i)
    s << "<circle cx=\"" << px(x[i]) << "\" cy=\"" << py(y[i]) << "\" r=\"2\" class=\"pt\"/>";
  // Best so far: a step line up to the last measurement.
  s << "<polyline class=\"best\" points=\"";
  double best = -1, last_x = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (y[i] > best) {
      if (best >= 0) s << px(x[i]) << "," << py(best) << " ";
      best = y[i];
      s << px(x[i]) << "," << py(best) << " ";
    }
    last_x = std::max(last_x, x[i]);
  }
  s << px(last_x) << "," << py(best) << "\"/></svg>";
  return s.str();
}

int run_report(const ReportFlags& f) {
  KT_USER_CHECK(!f.output.empty(), "report needs an output file: -o report.html");
  check_output_not_input(f.output, f.logs, "-o");
  if (fs::exists(f.output) && !f.force) {
    std::ifstream in(f.output);
    std::string head(256, '\0');
    in.read(head.data(), std::streamsize(head.size()));
    head.resize(size_t(in.gcount()));
    KT_USER_CHECK(head.find(kReportMarker) != std::string::npos, "'", f.output,
                  "' exists and is not a ktune report; pass --force to replace it");
  }
  // Per log: the tuning clock of each record (seconds since the log's first record, long
  // pauses between records shortened to kMaxGapSeconds).
  std::vector<log::Record> records;
  std::vector<double> clock;
  std::vector<std::string> sources;
  for (const auto& p : f.logs) {
    log::LogContents c = log::read_log(p);
    for (const auto& w : c.warnings) std::cerr << "ktune: warning: " << w << "\n";
    double t = 0, prev = NAN;
    for (auto& r : c.records) {
      const double ts = parse_timestamp(r.timestamp);
      if (std::isfinite(prev) && std::isfinite(ts)) t += std::clamp(ts - prev, 0.0, kMaxGapSeconds);
      if (std::isfinite(ts)) prev = ts;
      clock.push_back(t);
      records.push_back(std::move(r));
    }
    sources.push_back(p + " (" + std::to_string(c.records.size()) + " records)");
  }
  std::map<const log::Record*, size_t> position;
  for (size_t i = 0; i < records.size(); ++i) position[&records[i]] = i;
  const std::vector<Group> groups = group_records(records);

  std::ostringstream h;
  h << "<!DOCTYPE html>\n" << kReportMarker << "\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    << "<title>ktune report</title><style>"
    << "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}"
    << "table{border-collapse:collapse;margin:.5em 0}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}"
    << "td.n{text-align:right;font-variant-numeric:tabular-nums}h2{font-size:1.1em;margin-top:2em;word-break:break-all}"
    << ".charts{display:flex;flex-wrap:wrap;gap:12px}.muted{fill:#888;color:#888}"
    << "svg text{font-size:11px;fill:#444}.grid{stroke:#eee}.pt{fill:#9bb7d4}.best{fill:none;stroke:#1f5fa8;stroke-width:2}"
    << "pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:12px}</style></head><body>\n"
    << "<h1>ktune tuning report</h1>\n<p>Logs: " << html([&] {
         std::string s;
         for (const auto& x : sources) s += (s.empty() ? "" : ", ") + x;
         return s;
       }())
    << ". " << groups.size() << " workload" << (groups.size() == 1 ? "" : "s") << ". Generated by ktune "
    << KTUNE_VERSION << " at " << log::now_iso8601() << ".</p>\n";
  h << "<table><tr><th>workload</th><th>target</th><th>best ms</th><th>GFLOP/s</th><th>trials</th><th>valid</th>"
    << "<th>errors</th><th>phase</th></tr>\n";
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const Group& g = groups[gi];
    const log::Record& r0 = *g.records.front();
    h << "<tr><td><a href=\"#w" << gi << "\">" << html(r0.workload.key()) << "</a></td><td>" << html(r0.target.name)
      << "</td>";
    if (g.best)
      h << "<td class=\"n\">" << fmt_num(g.best->median_ms) << "</td><td class=\"n\">" << fmt_num(g.best->gflops)
        << "</td>";
    else
      h << "<td class=\"n\">-</td><td class=\"n\">-</td>";
    h << "<td class=\"n\">" << g.records.size() << "</td><td class=\"n\">" << g.valid << "</td><td class=\"n\">"
      << g.records.size() - size_t(g.valid) << "</td><td>" << (g.best ? html(g.best->phase) : "") << "</td></tr>\n";
  }
  h << "</table>\n";
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const Group& g = groups[gi];
    const log::Record& r0 = *g.records.front();
    h << "<section id=\"w" << gi << "\"><h2>" << html(r0.workload.key()) << " on " << html(r0.target.name) << "</h2>\n<p>";
    if (g.best)
      h << "Best " << fmt_num(g.best->median_ms) << " ms, " << fmt_num(g.best->gflops) << " GFLOP/s, "
        << (g.best->phase == "final" ? "picked by the final ranking (its time there; found as trial "
                                     : "found by the " + html(g.best->phase) + " phase (trial ")
        << g.best->trial << " of its run). ";
    else
      h << "No valid measurement. ";
    h << g.records.size() << " trials: " << g.valid << " valid, " << g.records.size() - size_t(g.valid)
      << " failed. Workload hash " << html(r0.workload.dag_hash) << ", " << fmt_num(r0.workload.flops / 1e9)
      << " GFLOP per run; target " << html(r0.target.triple) << ", " << r0.threads << " threads.</p>\n";
    std::vector<double> tx, sx, gy;
    for (size_t k = 0; k < g.records.size(); ++k) {
      const log::Record* r = g.records[k];
      if (!r->valid()) continue;
      tx.push_back(double(k + 1));
      sx.push_back(clock[position[r]]);
      gy.push_back(r->gflops);
    }
    h << "<div class=\"charts\">" << svg_chart("trials", tx, gy)
      << svg_chart("seconds of tuning (pauses over 5 min shortened)", sx, gy) << "</div>\n";
    if (!g.errors.empty()) {
      h << "<table><tr><th>error class</th><th>count</th><th>first message</th></tr>\n";
      for (const auto& [cls, n] : g.errors)
        h << "<tr><td>" << html(cls) << "</td><td class=\"n\">" << n << "</td><td>" << html(g.error_example.at(cls))
          << "</td></tr>\n";
      h << "</table>\n";
    }
    if (g.best) {
      h << "<details><summary>best schedule (steps)</summary><pre>";
      for (const auto& s : g.best->steps) h << html(s.dump()) << "\n";
      h << "</pre></details>\n";
    }
    h << "</section>\n";
  }
  h << "</body></html>\n";
  write_atomically(f.output, h.str());
  std::cout << "wrote " << f.output << ": " << groups.size() << " workload" << (groups.size() == 1 ? "" : "s") << ", "
            << records.size() << " records\n";
  return 0;
}

}  // namespace

void register_log_commands(CLI::App& app, std::vector<Subcommand>& out) {
  {
    auto f = std::make_shared<MergeFlags>();
    CLI::App* cmd = app.add_subcommand("merge", "Combine tuning logs into one, dropping duplicate measurements");
    cmd->add_option("logs", f->inputs, "Input logs (never modified)")->required();
    cmd->add_option("-o,--output", f->output, "Merged log to write")->required();
    cmd->add_flag("--force", f->force, "Replace the output file if it exists");
    out.push_back({cmd, [f] { return run_merge(*f); }});
  }
  {
    auto f = std::make_shared<BestFlags>();
    CLI::App* cmd = app.add_subcommand("best", "Show the best record of each workload and target in tuning logs");
    cmd->add_option("logs", f->logs, "Tuning logs")->required();
    cmd->add_flag("--json", f->json_out, "Print a JSON array on stdout");
    out.push_back({cmd, [f] { return run_best(*f); }});
  }
  {
    auto f = std::make_shared<ReportFlags>();
    CLI::App* cmd = app.add_subcommand("report", "Write an HTML report (tuning curves, errors) of tuning logs");
    cmd->add_option("logs", f->logs, "Tuning logs")->required();
    cmd->add_option("-o,--output", f->output, "HTML file to write")->required();
    cmd->add_flag("--force", f->force, "Replace the output file even if it is not a ktune report");
    out.push_back({cmd, [f] { return run_report(*f); }});
  }
}

}  // namespace ktune::cli
