// ktune's thread pool for the parallel loops of compiled kernels.
//
// One process-wide pool of persistent workers. parallel_for publishes a job (body, closure,
// n, chunk count) and bumps a generation counter; worker w runs chunk w, the caller runs
// chunk 0 and then waits for the others. Chunks are contiguous and as even as possible:
// chunk c is [c*n/k, (c+1)*n/k). Between jobs, workers spin for a few microseconds (kernels
// timed back to back start the next job within that window) and then sleep on an atomic
// wait. A parallel_for called from inside a body (a nested parallel loop), or while another
// thread's job is running on the pool, runs serially on the calling thread.
#include "ktune/runtime/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KTUNE_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define KTUNE_PAUSE() asm volatile("yield")
#else
#define KTUNE_PAUSE() ((void)0)
#endif

namespace ktune::runtime {

namespace {

// True on pool workers, and on a caller while it runs its own chunk.
thread_local bool t_inside_parallel = false;

constexpr auto kSpin = std::chrono::microseconds(20);

class ThreadPool {
 public:
  ThreadPool() { start(default_threads()); }
  ~ThreadPool() { stop(); }

  int threads() const { return threads_; }

  void set_threads(int n) {
    n = std::max(1, n);
    std::lock_guard<std::mutex> lock(job_mutex_);
    if (n == threads_) return;
    stop();
    start(n);
  }

  void run(ParallelBody fn, void* closure, int64_t n) {
    if (n <= 0) return;
    std::unique_lock<std::mutex> lock(job_mutex_, std::defer_lock);
    if (t_inside_parallel || threads_ == 1 || n == 1 || !lock.try_lock()) {
      // Nested, single-threaded, trivial, or the pool is busy with another caller's job.
      bool was = t_inside_parallel;
      t_inside_parallel = true;
      fn(closure, 0, n);
      t_inside_parallel = was;
      return;
    }
    int chunks = int(std::min<int64_t>(threads_, n));
    fn_ = fn;
    closure_ = closure;
    n_ = n;
    chunks_ = chunks;
    // Every worker acknowledges every job (even one without a chunk), so no worker can lag
    // into the next job.
    pending_.store(uint32_t(threads_ - 1), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();

    t_inside_parallel = true;
    fn(closure, 0, n / chunks);
    t_inside_parallel = false;

    wait_until_zero();
  }

 private:
  static int default_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : int(n);
  }

  void start(int n) {
    threads_ = n;
    stopping_.store(false, std::memory_order_relaxed);
    uint32_t g0 = generation_.load(std::memory_order_relaxed);
    for (int w = 1; w < n; ++w) workers_.emplace_back([this, w, g0] { worker_loop(w, g0); });
  }

  void stop() {
    stopping_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    threads_ = 1;
  }

  void wait_until_zero() {
    auto spin_until = std::chrono::steady_clock::now() + kSpin;
    for (int i = 0;; ++i) {
      uint32_t p = pending_.load(std::memory_order_acquire);
      if (p == 0) return;
      if ((i & 63) != 63) {
        KTUNE_PAUSE();
      } else if (std::chrono::steady_clock::now() > spin_until) {
        pending_.wait(p, std::memory_order_acquire);
      } else {
        std::this_thread::yield();  // let a descheduled worker run on a busy machine
      }
    }
  }

  void worker_loop(int w, uint32_t seen) {
    t_inside_parallel = true;
    for (;;) {
      uint32_t g = generation_.load(std::memory_order_acquire);
      if (g == seen) {
        auto spin_until = std::chrono::steady_clock::now() + kSpin;
        int i = 0;
        while ((g = generation_.load(std::memory_order_acquire)) == seen) {
          if ((++i & 63) != 0) {
            KTUNE_PAUSE();
          } else if (std::chrono::steady_clock::now() > spin_until) {
            generation_.wait(seen, std::memory_order_acquire);
          } else {
            std::this_thread::yield();
          }
        }
      }
      seen = g;
      if (stopping_.load(std::memory_order_relaxed)) return;
      if (w < chunks_) {
        int64_t begin = int64_t(w) * n_ / chunks_;
        int64_t end = int64_t(w + 1) * n_ / chunks_;
        fn_(closure_, begin, end);
      }
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
    }
  }

  std::mutex job_mutex_;  // one job at a time; also guards restarts
  int threads_ = 1;
  std::vector<std::thread> workers_;
  // The current job, written by the caller before the generation bump (release) and read by
  // workers after observing it (acquire).
  ParallelBody fn_ = nullptr;
  void* closure_ = nullptr;
  int64_t n_ = 0;
  int chunks_ = 0;
  std::atomic<uint32_t> generation_{0};
  std::atomic<uint32_t> pending_{0};
  std::atomic<bool> stopping_{false};
};

ThreadPool& pool() {
  static ThreadPool p;
  return p;
}

}  // namespace

void set_num_threads(int n) { pool().set_threads(n); }
int num_threads() { return pool().threads(); }
void parallel_for(ParallelBody fn, void* closure, int64_t n) { pool().run(fn, closure, n); }

}  // namespace ktune::runtime

extern "C" void ktune_parallel_for(ktune::runtime::ParallelBody fn, void* closure, int64_t n) {
  ktune::runtime::parallel_for(fn, closure, n);
}
