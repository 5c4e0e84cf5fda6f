// Target descriptions: what a kernel is compiled for and measured on.
//
// Named targets live in configs/targets/*.json. `host` is built at run time from LLVM's host
// detection: the triple and the CPU *feature list* (the CPU name is recorded, never used to
// pick code), the vector width implied by the features, and the number of cores.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ktune::target {

enum class TargetKind : uint8_t { CPU, CUDA, HIP };
const char* kind_name(TargetKind k);

struct Target {
  std::string name;  // "host", "a100", ...
  TargetKind kind = TargetKind::CPU;
  std::string triple;  // LLVM target triple
  std::string cpu;     // CPU name (informational) or GPU arch (sm_80, gfx90a)
  std::vector<std::string> features;  // enabled features, without '+' ("avx2", "fma", ...)
  int vector_bits = 128;              // widest native SIMD register in bits
  int cores = 1;
  int64_t l1_bytes = 32 * 1024, l2_bytes = 1024 * 1024, l3_bytes = 0;
  // GPU limits (0 on CPUs).
  int max_threads_per_block = 0;
  int64_t max_shared_memory_per_block = 0;
  int warp_size = 0;

  bool has_feature(const std::string& f) const;
  // "+avx2,+fma,..." as LLVM takes it.
  std::string feature_string() const;
  // Vector lanes for an element of `bits` bits.
  int vector_lanes(int element_bits) const { return vector_bits / element_bits; }
  // Architectural vector registers of a CPU target: 32 on AArch64 (NEON and SVE) and on x86
  // with AVX-512, else 16 (x86 with SSE or AVX2).
  int vector_registers() const;
};

// The machine ktune runs on.
Target host_target();

// Resolves a target name: "host", or a file stem of configs/targets/*.json, or a path to a
// .json file. Unknown names are a UserError listing the known ones.
Target resolve_target(const std::string& name);

// Known target names (host first, then configs/targets/*.json).
std::vector<std::string> known_targets();
std::string targets_config_dir();

}  // namespace ktune::target
