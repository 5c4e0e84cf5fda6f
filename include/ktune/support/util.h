// Small helpers shared by every module: hashing, string joins, integer math.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ktune {

// 64-bit FNV-1a of a string; stable across runs and builds (used in logs).
uint64_t fnv1a64(std::string_view s);
std::string hex64(uint64_t v);

template <typename Range, typename F>
std::string join(const Range& r, std::string_view sep, F&& f) {
  std::string out;
  bool first = true;
  for (const auto& x : r) {
    if (!first) out += sep;
    first = false;
    out += f(x);
  }
  return out;
}

// Positive divisors of n in increasing order (n >= 1).
std::vector<int64_t> divisors(int64_t n);
// Ceiling division for a >= 0, b > 0.
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// Floor division and modulo (result has the sign of b), as the IR defines Div/Mod on ints.
inline int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
inline int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

}  // namespace ktune
