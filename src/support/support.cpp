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

// ---- interruption --------------------------------------------------------------------------
#include <csignal>
#include <unistd.h>

#include "ktune/support/interrupt.h"

namespace ktune {
namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_sigint(int) {
  if (g_stop) {
    static const char msg[] = "\nktune: interrupted again; exiting now (the log is valid)\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(130);
  }
  g_stop = 1;
  static const char msg[] = "\nktune: interrupted; stopping after the candidate in flight (Ctrl-C again to exit now)\n";
  (void)!write(2, msg, sizeof msg - 1);
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}
bool stop_requested() { return g_stop != 0; }
void request_stop() { g_stop = 1; }
void clear_stop() { g_stop = 0; }

}  // namespace ktune
