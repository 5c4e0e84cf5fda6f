// Per-thread cache of kernel workspace blocks (see workspace.h).
#include "ktune/runtime/workspace.h"

#include <atomic>
#include <cstdlib>
#include <deque>

namespace ktune::runtime {

namespace {

std::atomic<int64_t> g_reused{0};
std::atomic<int64_t> g_allocated{0};

struct Block {
  void* p;
  int64_t bytes;
};

// The blocks a thread released and has not yet reused, oldest first; freed at thread exit.
struct Cache {
  std::deque<Block> blocks;
  int64_t bytes = 0;
  ~Cache() {
    for (const Block& b : blocks) std::free(b.p);
  }
};

Cache& cache() {
  thread_local Cache c;
  return c;
}

}  // namespace

WorkspaceStats workspace_stats() { return {g_reused.load(), g_allocated.load()}; }

}  // namespace ktune::runtime

extern "C" void* ktune_workspace_alloc(int64_t bytes) {
  using namespace ktune::runtime;
  if (bytes <= 0) bytes = 64;
  Cache& c = cache();
  // The most recently released block of this size: the one a kernel called in a loop freed
  // on its previous call.
  for (auto it = c.blocks.rbegin(); it != c.blocks.rend(); ++it) {
    if (it->bytes != bytes) continue;
    void* p = it->p;
    c.bytes -= bytes;
    c.blocks.erase(std::next(it).base());
    g_reused.fetch_add(1, std::memory_order_relaxed);
    return p;
  }
  g_allocated.fetch_add(1, std::memory_order_relaxed);
  return std::aligned_alloc(64, size_t((bytes + 63) / 64 * 64));
}

extern "C" void ktune_workspace_free(void* p, int64_t bytes) {
  using namespace ktune::runtime;
  if (!p) return;
  if (bytes <= 0) bytes = 64;
  if (bytes > kWorkspaceBytesKept) {
    std::free(p);
    return;
  }
  Cache& c = cache();
  c.blocks.push_back({p, bytes});
  c.bytes += bytes;
  while (int(c.blocks.size()) > kWorkspaceBlocksKept || c.bytes > kWorkspaceBytesKept) {
    std::free(c.blocks.front().p);
    c.bytes -= c.blocks.front().bytes;
    c.blocks.pop_front();
  }
}
