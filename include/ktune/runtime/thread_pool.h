// ktune's thread pool for parallel loops of compiled kernels. parallel_for splits [0, n)
// into one contiguous chunk per thread (the calling thread takes the first), so work is
// spread evenly; workers spin briefly then sleep on an atomic wait between kernels.
#pragma once

#include <cstdint>

namespace ktune::runtime {

using ParallelBody = void (*)(void* closure, int64_t begin, int64_t end);

// Sets the number of threads (including the caller) used by later parallel_for calls.
void set_num_threads(int n);
int num_threads();
void parallel_for(ParallelBody fn, void* closure, int64_t n);

}  // namespace ktune::runtime

// The symbol compiled kernels call.
extern "C" void ktune_parallel_for(ktune::runtime::ParallelBody fn, void* closure, int64_t n);
