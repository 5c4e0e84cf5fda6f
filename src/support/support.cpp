#include "ktune/support/debug.h"
#include "ktune/support/util.h"

#include <cstdio>
#include <cstdlib>

namespace ktune {

namespace {
int read_env_level() {
  const char* s = std::getenv("KTUNE_DEBUG");
  return s ? std::atoi(s) : 0;
}
int g_level = read_env_level();
}  // namespace

int debug_level() { return g_level; }
void set_debug_level(int level) { g_level = level; }

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> lo, hi;
  for (int64_t d = 1; d * d <= n; ++d) {
    if (n % d == 0) {
      lo.push_back(d);
      if (d != n / d) hi.push_back(n / d);
    }
  }
  lo.insert(lo.end(), hi.rbegin(), hi.rend());
  return lo;
}

}  // namespace ktune
