// Workspace for the temporary buffers of compiled kernels (global-scope intermediates such as
// a padded input or a packed weight panel, too large for the stack).
//
// A kernel allocates them on entry and releases them before it returns, on every call. With
// plain aligned_alloc/free, glibc serves a block above its mmap threshold with a fresh
// mapping whose pages fault in on first touch, or recycles heap memory, depending on the
// process's heap history: the same kernel timed in two processes ran 1.45 ms or 2.1 ms
// (conv2d_nchwc C=K=256, 256 KiB padded input). The workspace keeps the last few released
// blocks of each thread and hands them back to the next request of the same size, so a kernel
// called in a loop touches warm memory and its time does not depend on the allocator's state.
#pragma once

#include <cstdint>

namespace ktune::runtime {

// Blocks kept per thread, and the most bytes they may hold together.
constexpr int kWorkspaceBlocksKept = 4;
constexpr int64_t kWorkspaceBytesKept = int64_t(1) << 30;

// Blocks handed out from the cache and freshly allocated, by all threads since the start.
struct WorkspaceStats {
  int64_t reused = 0;
  int64_t allocated = 0;
};
WorkspaceStats workspace_stats();

}  // namespace ktune::runtime

// The symbols compiled kernels call: a 64-byte aligned block of `bytes` bytes (a multiple of
// 64), or null when out of memory; and its release (the same size).
extern "C" void* ktune_workspace_alloc(int64_t bytes);
extern "C" void ktune_workspace_free(void* p, int64_t bytes);
