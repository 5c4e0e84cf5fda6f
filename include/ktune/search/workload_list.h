// Shape lists: the workloads of a model, tuned together by `ktune tune LIST.json`
// (configs/workloads/*.json; format in docs/cli.md).
//
//     {"name": "resnet18",
//      "workloads": [{"kernel": "conv2d", "params": {"N": 1, "C": 64, ...}, "weight": 4}, ...]}
//
// Every entry names a kernel, states every integer parameter the kernel declares (a shape
// with a forgotten stride is a mistake, not a default; a dtype parameter may be left out and
// takes the kernel's default), and may give a weight (how often the workload occurs in the
// model, default 1) and a name (a label, e.g. the layer). Reading a list validates it
// completely — unknown kernel, missing or unknown parameter, a value of the wrong type, a
// duplicate workload, an empty list, invalid JSON (reported as file:line:col) — before
// anything is tuned; each problem is a UserError naming the file and the entry.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ktune/te/kernel.h"

namespace ktune::search {

struct WorkloadEntry {
  int index = 0;  // position in the file's "workloads" array
  std::string kernel;
  std::map<std::string, int64_t> params;  // integer parameters, all of the kernel's
  std::string dtype;                      // the dtype parameter's value ("" when none)
  double weight = 1;
  std::string name;                       // optional label
  std::shared_ptr<const te::ComputeDAG> dag;
  std::string key;  // "conv2d(N=1,C=64,...,dtype=f32)": the workload's identity
};

struct WorkloadList {
  std::string path;
  std::string name;  // the list's "name", else the file's stem
  std::vector<WorkloadEntry> workloads;
};

// Parses and validates a shape list; kernels are looked up in `reg`.
WorkloadList parse_workload_list(const std::string& text, const std::string& path, const te::KernelRegistry& reg);
WorkloadList read_workload_list(const std::string& path, const te::KernelRegistry& reg);

// `--shard=i/n`: the i-th of n slices of a list (0 <= i < n).
struct Shard {
  int index = 0, count = 1;
};
// Parses "i/n"; UserError for anything else or i out of range.
Shard parse_shard(const std::string& s);
// The workloads of a shard: rank the workloads by key (so the slice does not depend on the
// order of the file), take those whose rank % n == i, and return them in file order.
std::vector<WorkloadEntry> select_shard(const WorkloadList& list, Shard shard);

// Parses JSON text; invalid JSON is a UserError "path:line:col: invalid JSON: ...".
nlohmann::json parse_json_text(const std::string& text, const std::string& path);
// Reads and parses a JSON file (UserError when it cannot be read).
nlohmann::json read_json_file(const std::string& path);

}  // namespace ktune::search
