// Target descriptions: host detection through LLVM, named targets from configs/targets/*.json.
//
// The host target is described by its triple and its enabled CPU *features*; the CPU name is
// recorded for the log but never used to choose code (DESIGN §10). A JSON target file holds
// the same fields as Target; missing fields keep Target's defaults, and a CPU target with
// "cores": 0 (or no "cores") takes the number of hardware threads of the machine it runs on.
#include "ktune/target/target.h"

#include <llvm/ADT/StringMap.h>
#include <llvm/TargetParser/Host.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "ktune/support/error.h"
#include "ktune/support/util.h"

namespace ktune::target {

namespace fs = std::filesystem;

const char* kind_name(TargetKind k) {
  switch (k) {
    case TargetKind::CPU:
      return "cpu";
    case TargetKind::CUDA:
      return "cuda";
    case TargetKind::HIP:
      return "hip";
  }
  return "?";
}

bool Target::has_feature(const std::string& f) const {
  return std::find(features.begin(), features.end(), f) != features.end();
}

int Target::vector_registers() const {
  if (triple.rfind("aarch64", 0) == 0 || triple.rfind("arm64", 0) == 0) return 32;
  return has_feature("avx512f") ? 32 : 16;
}

std::string Target::feature_string() const {
  return join(features, ",", [](const std::string& f) { return "+" + f; });
}

namespace {

int hardware_cores() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : int(n);
}

// The widest SIMD register the feature list enables.
int vector_bits_for(const std::string& triple, const std::vector<std::string>& features) {
  auto has = [&](const char* f) {
    return std::find(features.begin(), features.end(), f) != features.end();
  };
  bool x86 = triple.rfind("x86_64", 0) == 0 || triple.rfind("i386", 0) == 0 ||
             triple.rfind("i686", 0) == 0;
  if (x86) {
    if (has("avx512f")) return 512;
    if (has("avx") || has("avx2")) return 256;
    return 128;
  }
  // AArch64 (NEON; SVE lengths are implementation-defined, so the host says 128 unless a
  // target file states the length) and everything else.
  return 128;
}

TargetKind parse_kind(const std::string& s, const std::string& file) {
  if (s == "cpu") return TargetKind::CPU;
  if (s == "cuda") return TargetKind::CUDA;
  if (s == "hip") return TargetKind::HIP;
  throw UserError(
      detail::concat("target file ", file, ": unknown kind '", s, "' (expected cpu, cuda or hip)"));
}

Target parse_target_file(const fs::path& path) {
  std::ifstream in(path);
  KT_USER_CHECK(in, "cannot read target file ", path.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw UserError(detail::concat("target file ", path.string(), ": malformed JSON: ", e.what()));
  }
  KT_USER_CHECK(j.is_object(), "target file ", path.string(), ": expected a JSON object");
  Target t;
  try {
    t.name = j.value("name", path.stem().string());
    t.kind = parse_kind(j.value("kind", std::string("cpu")), path.string());
    KT_USER_CHECK(j.contains("triple"), "target file ", path.string(), ": missing field 'triple'");
    t.triple = j.at("triple").get<std::string>();
    t.cpu = j.value("cpu", std::string());
    if (j.contains("features")) {
      for (const auto& f : j.at("features")) {
        std::string s = f.get<std::string>();
        if (!s.empty() && s[0] == '+') s.erase(0, 1);
        t.features.push_back(s);
      }
    }
    t.vector_bits = j.value("vector_bits", vector_bits_for(t.triple, t.features));
    t.cores = j.value("cores", 0);
    if (t.cores <= 0) t.cores = t.kind == TargetKind::CPU ? hardware_cores() : 1;
    t.l1_bytes = j.value("l1_bytes", t.l1_bytes);
    t.l2_bytes = j.value("l2_bytes", t.l2_bytes);
    t.l3_bytes = j.value("l3_bytes", t.l3_bytes);
    t.max_threads_per_block = j.value("max_threads_per_block", 0);
    t.max_shared_memory_per_block = j.value("max_shared_memory_per_block", int64_t(0));
    t.warp_size = j.value("warp_size", 0);
  } catch (const nlohmann::json::exception& e) {
    throw UserError(detail::concat("target file ", path.string(), ": bad field: ", e.what()));
  }
  KT_USER_CHECK(t.vector_bits > 0 && t.vector_bits % 32 == 0, "target file ", path.string(),
                ": vector_bits must be a positive multiple of 32");
  if (t.kind != TargetKind::CPU) {
    KT_USER_CHECK(
        t.warp_size > 0 && t.max_threads_per_block > 0 && t.max_shared_memory_per_block > 0,
        "target file ", path.string(),
        ": GPU targets need warp_size, max_threads_per_block and "
        "max_shared_memory_per_block");
  }
  return t;
}

std::vector<fs::path> config_files() {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(targets_config_dir(), ec)) {
    if (e.path().extension() == ".json") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Target host_target() {
  Target t;
  t.name = "host";
  t.kind = TargetKind::CPU;
  t.triple = llvm::sys::getProcessTriple();
  t.cpu = llvm::sys::getHostCPUName().str();
  for (const auto& f : llvm::sys::getHostCPUFeatures()) {
    if (f.second) t.features.push_back(f.first().str());
  }
  std::sort(t.features.begin(), t.features.end());
  t.vector_bits = vector_bits_for(t.triple, t.features);
  t.cores = hardware_cores();
  return t;
}

std::string targets_config_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path dir = exe.parent_path().parent_path() / "configs" / "targets";
    if (fs::is_directory(dir, ec)) return dir.string();
  }
  return std::string(KTUNE_SOURCE_DIR) + "/configs/targets";
}

std::vector<std::string> known_targets() {
  std::vector<std::string> names{"host"};
  for (const auto& p : config_files()) names.push_back(p.stem().string());
  return names;
}

Target resolve_target(const std::string& name) {
  if (name == "host") return host_target();
  fs::path p(name);
  std::error_code ec;
  if (p.extension() == ".json") {
    KT_USER_CHECK(fs::is_regular_file(p, ec), "target file ", name, " does not exist");
    return parse_target_file(p);
  }
  fs::path in_dir = fs::path(targets_config_dir()) / (name + ".json");
  if (name.find('/') == std::string::npos && fs::is_regular_file(in_dir, ec)) {
    return parse_target_file(in_dir);
  }
  throw UserError(detail::concat(
      "unknown target '", name,
      "'; known targets: ", join(known_targets(), ", ", [](const std::string& s) { return s; }),
      " (or a path to a .json target file)"));
}

}  // namespace ktune::target
