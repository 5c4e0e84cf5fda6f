// Shape lists: parsing, validation and sharding (see workload_list.h).
#include "ktune/search/workload_list.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "ktune/log/record.h"
#include "ktune/support/error.h"

namespace ktune::search {

using nlohmann::json;

json parse_json_text(const std::string& text, const std::string& path) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // nlohmann's byte is the 1-based offset of the last character read.
    const size_t pos = std::min<size_t>(e.byte == 0 ? 1 : e.byte, text.size() + 1);
    size_t line = 1, line_start = 0;
    for (size_t k = 0; k + 1 < pos && k < text.size(); ++k) {
      if (text[k] == '\n') {
        ++line;
        line_start = k + 1;
      }
    }
    const size_t col = pos - line_start;
    std::string msg = e.what();
    // "[json.exception.parse_error.101] parse error at line 2, column 3: syntax error ..."
    const size_t c = msg.find("column ");
    const size_t colon = c == std::string::npos ? std::string::npos : msg.find(": ", c);
    if (colon != std::string::npos) msg = msg.substr(colon + 2);
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) msg = "the file is empty";
    throw UserError(detail::concat(path, ":", line, ":", col, ": invalid JSON: ", msg));
  }
}

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  KT_USER_CHECK(in.good() && !std::filesystem::is_directory(path), "cannot read '", path, "': ",
                std::filesystem::is_directory(path) ? "it is a directory" : std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_json_text(ss.str(), path);
}

namespace {

std::string join_names(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

WorkloadEntry parse_entry(const json& j, int index, const std::string& where, const te::KernelRegistry& reg) {
  WorkloadEntry w;
  w.index = index;
  KT_USER_CHECK(j.is_object(), where, ": an entry must be an object like {\"kernel\": \"conv2d\", \"params\": {...}}");
  static const std::set<std::string> fields = {"kernel", "params", "weight", "name"};
  for (const auto& [k, v] : j.items())
    KT_USER_CHECK(fields.count(k), where, ": unknown field '", k, "' (fields: kernel, params, weight, name)");
  KT_USER_CHECK(j.contains("kernel") && j["kernel"].is_string(), where, ": field 'kernel' (a kernel name) is missing");
  w.kernel = j["kernel"].get<std::string>();
  const te::KernelDef* def = reg.find(w.kernel);
  KT_USER_CHECK(def, where, ": unknown kernel '", w.kernel, "' (run 'ktune kernels' to list the kernels)");
  const std::string at = where + " (" + w.kernel + ")";
  if (j.contains("name")) {
    KT_USER_CHECK(j["name"].is_string(), at, ": field 'name' must be a string");
    w.name = j["name"].get<std::string>();
  }
  if (j.contains("weight")) {
    const json& wt = j["weight"];
    KT_USER_CHECK(wt.is_number() && wt.get<double>() > 0, at,
                  ": field 'weight' must be a positive number (how often the workload occurs), got ", wt.dump());
    w.weight = wt.get<double>();
  }
  KT_USER_CHECK(j.contains("params") && j["params"].is_object(), at,
                ": field 'params' (an object of the kernel's parameters) is missing");
  std::map<std::string, std::string> dtypes;
  std::vector<std::string> declared;
  for (const auto& p : def->params) declared.push_back(p.name);
  for (const auto& [k, v] : j["params"].items()) {
    const te::KernelParam* p = def->find_param(k);
    KT_USER_CHECK(p, at, ": unknown parameter '", k, "' (", w.kernel, " has ", join_names(declared), ")");
    if (p->is_dtype) {
      KT_USER_CHECK(v.is_string(), at, ": parameter '", k, "' must be an element type name such as \"f32\", got ",
                    v.dump());
      dtypes[k] = v.get<std::string>();
    } else {
      KT_USER_CHECK(v.is_number_integer(), at, ": parameter '", k, "' must be an integer, got ", v.dump());
      w.params[k] = v.get<int64_t>();
    }
  }
  std::vector<std::string> missing;
  for (const auto& p : def->params)
    if (!p.is_dtype && !w.params.count(p.name)) missing.push_back(p.name);
  KT_USER_CHECK(missing.empty(), at, ": missing parameter", missing.size() > 1 ? "s " : " ", join_names(missing),
                " (a shape list states every shape parameter of the kernel)");
  try {
    w.dag = std::make_shared<const te::ComputeDAG>(def->instantiate(w.params, dtypes));
  } catch (const UserError& e) {
    throw UserError(at + ": " + e.what());
  }
  w.dtype = w.dag->dtype;
  w.key = log::Workload::of(*w.dag).key();
  return w;
}

}  // namespace

WorkloadList parse_workload_list(const std::string& text, const std::string& path, const te::KernelRegistry& reg) {
  const json j = parse_json_text(text, path);
  WorkloadList list;
  list.path = path;
  list.name = std::filesystem::path(path).stem().string();
  KT_USER_CHECK(j.is_object(), path, ": a shape list is an object like {\"name\": ..., \"workloads\": [...]}");
  static const std::set<std::string> fields = {"name", "description", "source", "workloads"};
  for (const auto& [k, v] : j.items())
    KT_USER_CHECK(fields.count(k), path, ": unknown field '", k, "' (fields: name, description, source, workloads)");
  if (j.contains("name")) {
    KT_USER_CHECK(j["name"].is_string(), path, ": field 'name' must be a string");
    list.name = j["name"].get<std::string>();
  }
  KT_USER_CHECK(j.contains("workloads") && j["workloads"].is_array(), path,
                ": field 'workloads' (an array of workloads) is missing");
  const json& ws = j["workloads"];
  KT_USER_CHECK(!ws.empty(), path, ": the list has no workloads");
  std::map<std::string, int> seen;
  for (size_t i = 0; i < ws.size(); ++i) {
    const std::string where = path + ": workloads[" + std::to_string(i) + "]";
    WorkloadEntry w = parse_entry(ws[i], int(i), where, reg);
    auto [it, fresh] = seen.emplace(w.key + "|" + w.dag->hash(), int(i));
    KT_USER_CHECK(fresh, where, " duplicates workloads[", it->second, "]: ", w.key,
                  " (list each workload once; its weight counts its occurrences)");
    list.workloads.push_back(std::move(w));
  }
  return list;
}

WorkloadList read_workload_list(const std::string& path, const te::KernelRegistry& reg) {
  std::ifstream in(path, std::ios::binary);
  KT_USER_CHECK(in.good() && !std::filesystem::is_directory(path), "cannot read the shape list '", path, "': ",
                std::filesystem::is_directory(path) ? "it is a directory" : std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_workload_list(ss.str(), path, reg);
}

Shard parse_shard(const std::string& s) {
  const size_t slash = s.find('/');
  auto number = [&](const std::string& part, int* out) {
    if (part.empty() || part.size() > 9 || part.find_first_not_of("0123456789") != std::string::npos) return false;
    *out = std::stoi(part);
    return true;
  };
  Shard sh;
  KT_USER_CHECK(slash != std::string::npos && number(s.substr(0, slash), &sh.index) &&
                    number(s.substr(slash + 1), &sh.count),
                "--shard must be INDEX/COUNT, e.g. --shard=0/4 (got '", s, "')");
  KT_USER_CHECK(sh.count >= 1, "--shard=", s, ": the shard count must be at least 1");
  KT_USER_CHECK(sh.index < sh.count, "--shard=", s, ": the shard index must be between 0 and ", sh.count - 1);
  return sh;
}

std::vector<WorkloadEntry> select_shard(const WorkloadList& list, Shard shard) {
  std::vector<size_t> rank(list.workloads.size());
  for (size_t i = 0; i < rank.size(); ++i) rank[i] = i;
  std::sort(rank.begin(), rank.end(), [&](size_t a, size_t b) {
    const auto& wa = list.workloads[a];
    const auto& wb = list.workloads[b];
    return wa.key != wb.key ? wa.key < wb.key : wa.dag->hash() < wb.dag->hash();
  });
  std::vector<bool> take(rank.size(), false);
  for (size_t r = 0; r < rank.size(); ++r) take[rank[r]] = int(r % size_t(shard.count)) == shard.index;
  std::vector<WorkloadEntry> out;
  for (size_t i = 0; i < take.size(); ++i)
    if (take[i]) out.push_back(list.workloads[i]);
  return out;
}

}  // namespace ktune::search
