// The tuning log (DESIGN §9): JSON lines, one self-describing record per measured candidate,
// appended and flushed as written. See docs/log-format.md for the fields.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ktune/target/target.h"
#include "ktune/te/compute_dag.h"

namespace ktune::log {

constexpr int kFormatVersion = 1;

struct Workload {
  std::string kernel;
  std::vector<std::pair<std::string, int64_t>> params;
  std::string dtype;
  std::string dag_hash;
  double flops = 0;

  static Workload of(const te::ComputeDAG& dag);
  // "matmul(M=256,N=256,K=256)": one workload's identity in tables.
  std::string key() const;
};

struct TargetInfo {
  std::string name, kind, triple, cpu;
  std::vector<std::string> features;
  static TargetInfo of(const target::Target& t);
};

struct Record {
  int format_version = kFormatVersion;
  std::string ktune_version, llvm_version;
  Workload workload;
  TargetInfo target;
  int threads = 1;
  nlohmann::json steps = nlohmann::json::array();
  // Result. error is "" for a valid measurement, else an error class ("wrong-answer", ...).
  std::string error;
  std::string error_message;
  std::vector<double> times_ms;  // mean of each timing group
  double median_ms = 0;
  double gflops = 0;
  double compile_ms = 0;
  // Anchored timing (docs/log-format.md): the times above are the candidate's group times
  // divided by those of the anchor (trial anchor_trial of this run) in alternating groups,
  // times the anchor's time anchor_ms; raw_ms is the candidate's own median group time.
  // anchor_ms == 0: timed on its own.
  int anchor_trial = 0;
  double anchor_ms = 0, raw_ms = 0;
  std::string phase = "explore";  // explore | refine | sample | final
  int trial = 0;
  std::string timestamp;  // ISO 8601, UTC

  bool valid() const { return error.empty(); }
};

nlohmann::json to_json(const Record& r);
// Throws UserError naming the missing or malformed field.
Record record_from_json(const nlohmann::json& j);

// A record filled with this build's versions, the workload and the target; the caller fills
// the candidate and the result.
Record make_record(const te::ComputeDAG& dag, const target::Target& t, int threads);
std::string now_iso8601();

// Appends records to a log file, each with one write() as it is written. Never truncates an
// existing file; a last line left without its newline by a killed run is ended before the
// first record.
class LogWriter {
 public:
  LogWriter() = default;
  // Opens `path` for appending; UserError when it cannot be written.
  explicit LogWriter(const std::string& path);
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;
  bool is_open() const { return fd_ >= 0; }
  void write(const Record& r);

 private:
  void write_all(const std::string& text);
  int fd_ = -1;
  bool first_written_ = false;
  std::string path_;
};

struct LogContents {
  std::vector<Record> records;
  std::vector<std::string> warnings;  // e.g. "log.jsonl:17: truncated last line skipped"
};
// Reads a log. A malformed last line (an interrupted write) is skipped with a warning, and so
// is a line anywhere that is a record cut short (JSON that ends early: a run killed while
// writing, then resumed); another malformed line is a UserError with file:line, unless
// skip_bad_lines is set.
LogContents read_log(const std::string& path, bool skip_bad_lines = false);
// The same for a log's text; `name` stands for the file in messages.
LogContents parse_log(std::string_view text, const std::string& name, bool skip_bad_lines = false);

// Whether valid record `a` is a better pick than valid record `b` of the same workload and
// target: a record of the final ranking (phase "final": the top candidates of a tune timed
// against each other in interleaved rounds, the most trustworthy times in a log) beats a
// search measurement; among equals, the lower median time wins.
bool better_pick(const Record& a, const Record& b);
// The best valid record per (workload, target) in a list of records (by better_pick).
std::vector<Record> best_records(const std::vector<Record>& records);

}  // namespace ktune::log
