// Log records: JSON form, the append-only writer and the tolerant reader.
#include "ktune/log/record.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ktune/schedule/json_checked.h"
#include "ktune/support/error.h"

#ifndef KTUNE_VERSION
#define KTUNE_VERSION "0.0.0"
#endif
#ifndef KTUNE_LLVM_VERSION
#define KTUNE_LLVM_VERSION "unknown"
#endif

namespace ktune::log {

using nlohmann::json;

Workload Workload::of(const te::ComputeDAG& dag) {
  return {dag.kernel, dag.params, dag.dtype, dag.hash(), dag.flop_count()};
}

std::string Workload::key() const {
  std::string s = kernel + "(";
  for (size_t i = 0; i < params.size(); ++i)
    s += (i ? "," : "") + params[i].first + "=" + std::to_string(params[i].second);
  if (!dtype.empty()) s += std::string(params.empty() ? "" : ",") + "dtype=" + dtype;
  return s + ")";
}

TargetInfo TargetInfo::of(const target::Target& t) {
  return {t.name, target::kind_name(t.kind), t.triple, t.cpu, t.features};
}

std::string now_iso8601() {
  auto now = std::chrono::system_clock::now();
  std::time_t tt = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", int(ms));
  return std::string(buf) + frac;
}

Record make_record(const te::ComputeDAG& dag, const target::Target& t, int threads) {
  Record r;
  r.ktune_version = KTUNE_VERSION;
  r.llvm_version = KTUNE_LLVM_VERSION;
  r.workload = Workload::of(dag);
  r.target = TargetInfo::of(t);
  r.threads = threads;
  return r;
}

json to_json(const Record& r) {
  json params = json::object();
  for (const auto& [k, v] : r.workload.params) params[k] = v;
  json j;
  j["format_version"] = r.format_version;
  j["ktune_version"] = r.ktune_version;
  j["llvm_version"] = r.llvm_version;
  j["workload"] = {{"kernel", r.workload.kernel},
                   {"params", params},
                   {"param_order", [&] {
                      json a = json::array();
                      for (const auto& p : r.workload.params) a.push_back(p.first);
                      return a;
                    }()},
                   {"dtype", r.workload.dtype},
                   {"dag_hash", r.workload.dag_hash},
                   {"flops", r.workload.flops}};
  j["target"] = {{"name", r.target.name},
                 {"kind", r.target.kind},
                 {"triple", r.target.triple},
                 {"cpu", r.target.cpu},
                 {"features", r.target.features}};
  j["threads"] = r.threads;
  j["steps"] = r.steps;
  j["result"] = {{"error", r.error.empty() ? json(nullptr) : json(r.error)},
                 {"error_message", r.error_message},
                 {"times_ms", r.times_ms},
                 {"median_ms", r.median_ms},
                 {"gflops", r.gflops},
                 {"compile_ms", r.compile_ms}};
  if (r.anchor_ms > 0)
    j["result"]["anchor"] = {{"trial", r.anchor_trial}, {"ms", r.anchor_ms}, {"raw_ms", r.raw_ms}};
  j["phase"] = r.phase;
  j["trial"] = r.trial;
  j["timestamp"] = r.timestamp;
  return j;
}

namespace {
const json& field(const json& j, const char* name, const char* where) {
  KT_USER_CHECK(j.is_object() && j.contains(name), "record has no field '", where, name, "'");
  return j.at(name);
}
template <typename T>
T get(const json& j, const char* name, const char* where = "") {
  try {
    const json& v = field(j, name, where);
    if (!schedule::json_holds<T>(v)) throw json::other_error::create(501, "", nullptr);
    return v.get<T>();
  } catch (const json::exception&) {
    throw UserError(detail::concat("record field '", where, name, "' has the wrong type"));
  }
}
}  // namespace

Record record_from_json(const json& j) {
  Record r;
  r.format_version = get<int>(j, "format_version");
  KT_USER_CHECK(r.format_version == kFormatVersion, "record has format version ", r.format_version,
                "; this ktune reads version ", kFormatVersion);
  r.ktune_version = get<std::string>(j, "ktune_version");
  r.llvm_version = get<std::string>(j, "llvm_version");
  const json& w = field(j, "workload", "");
  r.workload.kernel = get<std::string>(w, "kernel", "workload.");
  const json& params = field(w, "params", "workload.");
  const auto order = get<std::vector<std::string>>(w, "param_order", "workload.");
  for (const auto& k : order) {
    KT_USER_CHECK(params.is_object() && params.contains(k) && schedule::json_holds<int64_t>(params[k]),
                  "record field 'workload.params' lacks '", k, "'");
    r.workload.params.emplace_back(k, params[k].get<int64_t>());
  }
  r.workload.dtype = get<std::string>(w, "dtype", "workload.");
  r.workload.dag_hash = get<std::string>(w, "dag_hash", "workload.");
  r.workload.flops = get<double>(w, "flops", "workload.");
  const json& t = field(j, "target", "");
  r.target.name = get<std::string>(t, "name", "target.");
  r.target.kind = get<std::string>(t, "kind", "target.");
  r.target.triple = get<std::string>(t, "triple", "target.");
  r.target.cpu = get<std::string>(t, "cpu", "target.");
  r.target.features = get<std::vector<std::string>>(t, "features", "target.");
  r.threads = get<int>(j, "threads");
  r.steps = field(j, "steps", "");
  KT_USER_CHECK(r.steps.is_array(), "record field 'steps' is not an array");
  const json& res = field(j, "result", "");
  const json& err = field(res, "error", "result.");
  KT_USER_CHECK(err.is_null() || err.is_string(), "record field 'result.error' has the wrong type");
  r.error = err.is_null() ? "" : err.get<std::string>();
  r.error_message = get<std::string>(res, "error_message", "result.");
  r.times_ms = get<std::vector<double>>(res, "times_ms", "result.");
  r.median_ms = get<double>(res, "median_ms", "result.");
  r.gflops = get<double>(res, "gflops", "result.");
  r.compile_ms = get<double>(res, "compile_ms", "result.");
  if (res.contains("anchor")) {  // optional: records timed on their own have none
    const json& a = res.at("anchor");
    r.anchor_trial = get<int>(a, "trial", "result.anchor.");
    r.anchor_ms = get<double>(a, "ms", "result.anchor.");
    r.raw_ms = get<double>(a, "raw_ms", "result.anchor.");
  }
  r.phase = get<std::string>(j, "phase");
  r.trial = get<int>(j, "trial");
  r.timestamp = get<std::string>(j, "timestamp");
  return r;
}

LogWriter::LogWriter(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  KT_USER_CHECK(fd_ >= 0, "cannot write the tuning log '", path, "': ", std::strerror(errno));
}

LogWriter::~LogWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void LogWriter::write_all(const std::string& text) {
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t w = ::write(fd_, text.data() + off, text.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw UserError(detail::concat("cannot write the tuning log '", path_, "': ", std::strerror(errno)));
    off += size_t(w);
  }
}

void LogWriter::write(const Record& r) {
  KT_CHECK(fd_ >= 0, "log not open");
  std::string prefix;
  if (!first_written_) {
    // A run killed in the middle of a write leaves a last line without its newline: end it, so
    // that this record starts a line of its own (readers skip the cut one). Done with the
    // first record, so that a run that fails before measuring anything leaves the log as it was.
    struct stat st {};
    char last = '\n';
    if (::fstat(fd_, &st) == 0 && st.st_size > 0 && ::pread(fd_, &last, 1, st.st_size - 1) == 1 && last != '\n')
      prefix = "\n";
    first_written_ = true;
  }
  // One write() per record on an O_APPEND file: the record reaches the file (the kernel's page
  // cache, which survives the process being killed) before the next candidate starts.
  write_all(prefix + to_json(r).dump() + "\n");
}

namespace {
// A line cut short by an interrupted write: JSON that ends before the document does.
bool is_truncated_json(const std::string& line) {
  try {
    return json::parse(line).is_discarded();
  } catch (const json::parse_error& e) {
    return e.byte > line.size();
  } catch (const json::exception&) {  // e.g. a number out of range: complete, but not valid
    return false;
  }
}
}  // namespace

LogContents parse_log(std::string_view text, const std::string& name, bool skip_bad_lines) {
  std::vector<std::string_view> lines;
  for (size_t start = 0; start < text.size();) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  LogContents out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string line(lines[i]);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.records.push_back(record_from_json(json::parse(line)));
    } catch (const std::exception& e) {
      const bool last = i + 1 == lines.size();
      const bool json_error = dynamic_cast<const json::exception*>(&e) != nullptr;
      const bool truncated = json_error && is_truncated_json(line);
      std::string what = json_error ? (truncated ? "incomplete record" : "not valid JSON") : e.what();
      std::string msg = name + ":" + std::to_string(i + 1) + ": " + what;
      if (last || truncated || skip_bad_lines) {
        out.warnings.push_back(msg + (last ? " (truncated last line skipped)"
                                      : truncated ? " (truncated line of an interrupted run skipped)"
                                                  : " (line skipped)"));
        continue;
      }
      throw UserError(msg);
    }
  }
  return out;
}

LogContents read_log(const std::string& path, bool skip_bad_lines) {
  std::ifstream in(path, std::ios::binary);
  KT_USER_CHECK(in.good(), "cannot read the tuning log '", path, "': ", std::strerror(errno));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  KT_USER_CHECK(!in.bad(), "cannot read the tuning log '", path, "': ", std::strerror(errno));
  return parse_log(text, path, skip_bad_lines);
}

bool better_pick(const Record& a, const Record& b) {
  const bool fa = a.phase == "final", fb = b.phase == "final";
  if (fa != fb) return fa;
  return a.median_ms < b.median_ms;
}

std::vector<Record> best_records(const std::vector<Record>& records) {
  std::map<std::string, Record> best;
  std::vector<std::string> order;
  for (const Record& r : records) {
    if (!r.valid()) continue;
    const std::string key = r.workload.key() + "|" + r.workload.dag_hash + "|" + r.target.name;
    auto it = best.find(key);
    if (it == best.end()) {
      order.push_back(key);
      best.emplace(key, r);
    } else if (better_pick(r, it->second)) {
      it->second = r;
    }
  }
  std::vector<Record> out;
  for (const auto& k : order) out.push_back(best.at(k));
  return out;
}

}  // namespace ktune::log
