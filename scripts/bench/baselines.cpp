// Vendor-library baselines for ktune's workloads: oneDNN (matmul, convolution, depthwise
// convolution) and OpenBLAS (sgemm), timed with ktune's protocol.
//
// Not part of the CMake build and not needed by the tests; scripts/bench_cpu.sh builds it:
//   g++ -std=c++20 -O3 -march=native -fopenmp baselines.cpp -ldnnl -lopenblas
//
// Usage:
//   baselines [--lib onednn|openblas|all] [--threads T] [--quick] [--groups G,G,...]
//             [--only ID,ID,...] [--min-group-ms MS] [--repeat R] [--no-check]
//   baselines --only ID --versus KERNEL.so KERNEL.h [--versus ...] [--rounds R] [--slice-ms MS]
//             [--threads T] [--lib ...]
//   baselines --list [--quick] [--groups ...] [--only ...]
//   baselines --openblas-core      (the kernels OpenBLAS picked for this CPU)
//
// Groups: matmul, resnet18_conv, mobilenet_dw. One JSON line per (workload, variant, threads)
// on stdout, a readable table on stderr. --list prints, per workload and ktune kernel that
// computes it, the workload's id, group, the kernel, its ktune flags and the MACs
// (tab-separated), for the script to tune the same workloads with ktune: a conv2d layer
// is listed with conv2d (NCHW), conv2d_nhwc and conv2d_nchwc (blocks of 16 channels; the
// 3-channel stem has one block of 3 input channels), the layouts oneDNN picks among, and a
// depthwise layer with depthwise_conv2d (NCHW) and depthwise_conv2d_nchwc (blocks of 16).
//
// Timing (as ktune's CompiledKernel::time): warm-up, then one calibration run picks the
// number of runs per group so that a group lasts >= 10 ms; 5 groups; the median of the group
// means; the whole protocol is repeated --repeat times (default 3) and the fastest median
// counts (see time_it). GFLOP/s = 2 * MACs / time. Everything that is not the computation itself (creating
// primitives, reordering inputs and weights to the layouts oneDNN chose, packing B) happens
// outside the timed loop. Outputs are checked at sampled points against a direct sum.
//
// Threads: oneDNN as packaged by Debian uses OpenMP (omp_set_num_threads); OpenBLAS
// (openblas-pthread) uses openblas_set_num_threads. The two thread pools spin after use, so
// the script runs each library in its own process (--lib), and runs oneDNN both with
// OpenMP's default (spinning) and with OMP_WAIT_POLICY=passive when using several threads.

#include <cblas.h>
#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <regex>
#include <stdexcept>
#include <functional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

extern "C" {
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
char* openblas_get_corename(void);
}

namespace {

using Clock = std::chrono::steady_clock;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------
// Workloads

enum class Kind { Matmul, Conv, Depthwise };

struct Workload {
  Kind kind = Kind::Matmul;
  std::string id, group;
  // matmul: M N K; conv: C H W K R S stride pad; depthwise: C H W stride (3x3, pad 1)
  long M = 0, N = 0, K = 0;
  long C = 0, H = 0, W = 0, R = 0, S = 0, stride = 1, pad = 0;
  bool quick = false;

  long P() const { return (H + 2 * pad - R) / stride + 1; }
  long Q() const { return (W + 2 * pad - S) / stride + 1; }
  double macs() const {
    switch (kind) {
      case Kind::Matmul: return double(M) * N * K;
      case Kind::Conv: return double(K) * P() * Q() * C * R * S;
      case Kind::Depthwise: return double(C) * P() * Q() * R * S;
    }
    return 0;
  }
  std::string ktune_kernel() const {
    return kind == Kind::Matmul ? "matmul" : kind == Kind::Conv ? "conv2d" : "depthwise_conv2d";
  }
  // The ktune kernels computing this workload and their flags: the plain layout; for matmul
  // the one with B pre-packed into panels of 64 columns (as oneDNN's pre-packed B: packing
  // is outside the timed kernel); for conv2d the NHWC and blocked ones; for depthwise the
  // blocked one (one block of all channels when C is not a multiple of 16).
  std::vector<std::pair<std::string, std::string>> ktune_kernels() const {
    std::vector<std::pair<std::string, std::string>> out = {{ktune_kernel(), ktune_flags()}};
    const long cb = C % 16 == 0 ? 16 : C;
    if (kind == Kind::Matmul && N % 64 == 0) {
      out.push_back({"matmul_packed", ktune_flags() + " --nb=64"});
    } else if (kind == Kind::Conv) {
      out.push_back({"conv2d_nhwc", ktune_flags()});
      out.push_back({"conv2d_nchwc", ktune_flags() + " --cb=" + std::to_string(cb) + " --kb=16"});
    } else if (kind == Kind::Depthwise) {
      out.push_back({"depthwise_conv2d_nchwc", ktune_flags() + " --cb=" + std::to_string(cb)});
    }
    return out;
  }
  std::string ktune_flags() const {
    std::ostringstream o;
    if (kind == Kind::Matmul) {
      o << "--M=" << M << " --N=" << N << " --K=" << K;
    } else if (kind == Kind::Conv) {
      o << "--C=" << C << " --H=" << H << " --W=" << W << " --K=" << K << " --R=" << R
        << " --S=" << S << " --stride=" << stride << " --pad=" << pad;
    } else {
      o << "--C=" << C << " --H=" << H << " --W=" << W << " --R=" << R << " --S=" << S
        << " --stride=" << stride << " --pad=" << pad;
    }
    return o.str();
  }
  std::string params_json() const {
    std::ostringstream o;
    if (kind == Kind::Matmul) {
      o << "{\"M\":" << M << ",\"N\":" << N << ",\"K\":" << K << "}";
    } else if (kind == Kind::Conv) {
      o << "{\"N\":1,\"C\":" << C << ",\"H\":" << H << ",\"W\":" << W << ",\"K\":" << K
        << ",\"R\":" << R << ",\"S\":" << S << ",\"stride\":" << stride << ",\"pad\":" << pad
        << "}";
    } else {
      o << "{\"N\":1,\"C\":" << C << ",\"H\":" << H << ",\"W\":" << W << ",\"R\":" << R
        << ",\"S\":" << S << ",\"stride\":" << stride << ",\"pad\":" << pad << "}";
    }
    return o.str();
  }
};

std::vector<Workload> all_workloads() {
  std::vector<Workload> w;
  auto mm = [&](long M, long N, long K, bool quick) {
    Workload x;
    x.kind = Kind::Matmul;
    x.M = M, x.N = N, x.K = K, x.group = "matmul", x.quick = quick;
    x.id = "matmul_" + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K);
    w.push_back(x);
  };
  mm(256, 256, 256, true);
  mm(512, 512, 512, true);
  mm(1024, 1024, 1024, false);
  mm(2048, 2048, 2048, false);
  mm(128, 768, 768, true);
  mm(128, 3072, 768, false);

  // The 11 distinct conv2d layers of ResNet-18 at batch 1: C, H, W, K, R, S, stride, pad.
  auto conv = [&](long C, long H, long W, long K, long R, long S, long st, long pad,
                  bool quick) {
    Workload x;
    x.kind = Kind::Conv;
    x.C = C, x.H = H, x.W = W, x.K = K, x.R = R, x.S = S, x.stride = st, x.pad = pad;
    x.group = "resnet18_conv", x.quick = quick;
    x.id = "conv_C" + std::to_string(C) + "_" + std::to_string(H) + "x" + std::to_string(W) +
           "_K" + std::to_string(K) + "_" + std::to_string(R) + "x" + std::to_string(S) +
           "_s" + std::to_string(st);
    w.push_back(x);
  };
  conv(3, 224, 224, 64, 7, 7, 2, 3, false);
  conv(64, 56, 56, 64, 3, 3, 1, 1, true);
  conv(64, 56, 56, 128, 3, 3, 2, 1, false);
  conv(64, 56, 56, 128, 1, 1, 2, 0, false);
  conv(128, 28, 28, 128, 3, 3, 1, 1, false);
  conv(128, 28, 28, 256, 3, 3, 2, 1, false);
  conv(128, 28, 28, 256, 1, 1, 2, 0, true);
  conv(256, 14, 14, 256, 3, 3, 1, 1, true);
  conv(256, 14, 14, 512, 3, 3, 2, 1, false);
  conv(256, 14, 14, 512, 1, 1, 2, 0, false);
  conv(512, 7, 7, 512, 3, 3, 1, 1, false);

  // MobileNet-v2 depthwise layers at batch 1: C, H, W, stride; 3x3, pad 1.
  auto dw = [&](long C, long H, long W, long st, bool quick) {
    Workload x;
    x.kind = Kind::Depthwise;
    x.C = C, x.H = H, x.W = W, x.R = 3, x.S = 3, x.stride = st, x.pad = 1;
    x.group = "mobilenet_dw", x.quick = quick;
    x.id = "dw_C" + std::to_string(C) + "_" + std::to_string(H) + "x" + std::to_string(W) +
           "_s" + std::to_string(st);
    w.push_back(x);
  };
  dw(32, 112, 112, 1, false);
  dw(96, 112, 112, 2, true);
  dw(144, 56, 56, 1, false);
  dw(144, 56, 56, 2, false);
  dw(192, 28, 28, 1, false);
  dw(192, 28, 28, 2, false);
  dw(384, 14, 14, 1, true);
  dw(576, 14, 14, 1, false);
  dw(576, 14, 14, 2, true);
  dw(960, 7, 7, 1, false);
  return w;
}

// ---------------------------------------------------------------------------------------
// Timing (ktune's protocol)

struct Timing {
  double median_ms = 0;
  int number = 0;
  std::vector<double> groups_ms;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double g_min_group_ms = 10;

int g_repeat = 3;

Timing time_once(const std::function<void()>& run) {
  // Warm-up: at least two runs and 10 ms (caches, page faults, scratchpads, thread start).
  auto w0 = Clock::now();
  for (int i = 0; i < 2 || ms_since(w0) < 10; ++i) run();
  // Calibration: one timed run decides how many runs make a group last min_group_ms.
  auto t0 = Clock::now();
  run();
  double once = std::max(ms_since(t0), 1e-6);
  Timing out;
  out.number = int(std::clamp(std::ceil(g_min_group_ms / once), 1.0, 1e9));
  auto start = Clock::now();
  for (int g = 0; g < 5; ++g) {
    auto g0 = Clock::now();
    for (int i = 0; i < out.number; ++i) run();
    out.groups_ms.push_back(ms_since(g0) / out.number);
    if (ms_since(start) > 4000) break;  // ktune stops adding groups past its limit too
  }
  out.median_ms = median(out.groups_ms);
  return out;
}

// The protocol above, g_repeat times; the fastest median counts. On a shared machine a
// time slice lost to another process can wreck a whole measurement (worst with several
// threads, whose barriers wait for the descheduled one); ktune's number is the best of
// many candidates, so the baselines get a best-of-a-few too.
Timing time_it(const std::function<void()>& run) {
  Timing best;
  for (int r = 0; r < std::max(1, g_repeat); ++r) {
    Timing t = time_once(run);
    if (r == 0 || t.median_ms < best.median_ms) best = t;
  }
  return best;
}

// ---------------------------------------------------------------------------------------
// Data and checks

// Buffers aligned to 64 bytes (a cache line, one AVX-512 vector), as ktune's runtime and
// oneDNN's own allocations are: glibc's malloc gives large blocks 16-byte alignment, which
// would split every vector access of the first row across two cache lines.
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const Aligned64&) const { return true; }
};
using Floats = std::vector<float, Aligned64<float>>;

Floats random_vec(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  Floats v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Compares sampled output points against a double-precision direct sum; returns the
// largest error relative to sum |a*b| (the scale of the rounding error).
struct Check {
  double max_rel = 0;
  int points = 0;
  bool ok() const { return max_rel < 1e-4; }
};

Check check_matmul(const Workload& w, const float* A, const float* B, const float* C) {
  std::mt19937 rng(7);
  Check c;
  for (int t = 0; t < 64; ++t) {
    long i = rng() % w.M, j = rng() % w.N;
    double s = 0, mag = 0;
    for (long k = 0; k < w.K; ++k) {
      s += double(A[i * w.K + k]) * B[k * w.N + j];
      mag += std::fabs(double(A[i * w.K + k]) * B[k * w.N + j]);
    }
    c.max_rel = std::max(c.max_rel, std::fabs(s - C[i * w.N + j]) / std::max(mag, 1e-30));
    ++c.points;
  }
  return c;
}

// I: C x H x W, Wt: K x C x R x S (depthwise: C x R x S), O: K x P x Q (NCHW, batch 1).
Check check_conv(const Workload& w, const float* I, const float* Wt, const float* O) {
  std::mt19937 rng(11);
  Check c;
  bool dw = w.kind == Kind::Depthwise;
  long Kout = dw ? w.C : w.K, P = w.P(), Q = w.Q();
  for (int t = 0; t < 64; ++t) {
    long k = rng() % Kout, p = rng() % P, q = rng() % Q;
    double s = 0, mag = 0;
    long c0 = dw ? k : 0, c1 = dw ? k + 1 : w.C;
    for (long ch = c0; ch < c1; ++ch)
      for (long r = 0; r < w.R; ++r)
        for (long sx = 0; sx < w.S; ++sx) {
          long h = p * w.stride + r - w.pad, x = q * w.stride + sx - w.pad;
          if (h < 0 || h >= w.H || x < 0 || x >= w.W) continue;
          double a = I[(ch * w.H + h) * w.W + x];
          double b = dw ? Wt[(k * w.R + r) * w.S + sx] : Wt[((k * w.C + ch) * w.R + r) * w.S + sx];
          s += a * b;
          mag += std::fabs(a * b);
        }
    c.max_rel = std::max(c.max_rel, std::fabs(s - O[(k * P + p) * Q + q]) / std::max(mag, 1e-30));
    ++c.points;
  }
  return c;
}

// ---------------------------------------------------------------------------------------
// oneDNN helpers

// A memory descriptor's layout in oneDNN's tag notation: dimensions outermost first by
// stride, upper case where blocked, then the inner blocks ("aBcd16b" is nChw16c).
std::string layout_of(const memory::desc& md) {
  const dnnl_memory_desc_t& d = md.data;
  if (d.format_kind != dnnl_blocked) return "opaque";
  const auto& b = d.format_desc.blocking;
  std::vector<int> order(d.ndims);
  for (int i = 0; i < d.ndims; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](int x, int y) { return b.strides[x] > b.strides[y]; });
  std::set<int> blocked(b.inner_idxs, b.inner_idxs + b.inner_nblks);
  std::string s;
  for (int i : order) s += char((blocked.count(i) ? 'A' : 'a') + i);
  for (int i = 0; i < b.inner_nblks; ++i)
    s += std::to_string(b.inner_blks[i]) + char('a' + b.inner_idxs[i]);
  return s;
}

struct Result {
  std::string lib, variant, impl, layout;
  Timing t;
  Check check;
};

// A baseline (or ktune's kernel) set up and run once, ready to be timed: run() computes the
// workload on buffers that State keeps alive.
struct State {
  std::vector<Floats> f;
  std::vector<void*> ptrs;
  dnnl::primitive prim;
  std::unordered_map<int, memory> args;
};

struct Prepared {
  Result r;
  std::function<void()> run;
  bool checked = true;
};

struct Dnnl {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};

  memory to_layout(memory src, const memory::desc& md) {
    if (src.get_desc() == md) return src;
    memory dst(md, eng);
    dnnl::reorder(src, dst).execute(strm, src, dst);
    strm.wait();
    return dst;
  }

  // matmul: B plain row-major (variant "plain") or B in the layout oneDNN picks for weights,
  // reordered once outside the timed loop ("packed").
  Prepared matmul(const Workload& w, bool packed) {
    auto st = std::make_shared<State>();
    st->f = {random_vec(w.M * w.K, 1), random_vec(w.K * w.N, 2),
             Floats(w.M * w.N, NAN)};
    auto& A = st->f[0];
    auto& B = st->f[1];
    auto& C = st->f[2];
    memory::desc a_md({w.M, w.K}, dt::f32, tag::ab), b_plain({w.K, w.N}, dt::f32, tag::ab),
        c_md({w.M, w.N}, dt::f32, tag::ab);
    memory::desc b_md = packed ? memory::desc({w.K, w.N}, dt::f32, tag::any) : b_plain;
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), eng);
    memory a_mem(a_md, eng, A.data()), b_user(b_plain, eng, B.data()), c_mem(c_md, eng, C.data());
    memory b_mem = to_layout(b_user, pd.weights_desc());
    st->prim = dnnl::matmul(pd);
    st->args = {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}};
    Prepared p;
    p.run = [st, this] {
      st->prim.execute(strm, st->args);
      strm.wait();
    };
    p.run();
    p.r.lib = "onednn", p.r.variant = packed ? "packed" : "plain", p.r.impl = pd.impl_info_str();
    p.r.layout = "B:" + layout_of(pd.weights_desc());
    p.r.check = check_matmul(w, A.data(), B.data(), C.data());
    return p;
  }

  // conv2d / depthwise: formats "any" (oneDNN picks blocked layouts; src and weights are
  // reordered to them once, dst is reordered back to NCHW after timing) or plain NCHW/OIHW.
  Prepared conv(const Workload& w, bool any) {
    bool dw = w.kind == Kind::Depthwise;
    long Kout = dw ? w.C : w.K;
    auto st = std::make_shared<State>();
    st->f = {random_vec(w.C * w.H * w.W, 3),
             random_vec(dw ? w.C * w.R * w.S : w.K * w.C * w.R * w.S, 4),
             Floats(Kout * w.P() * w.Q(), NAN)};
    auto& I = st->f[0];
    auto& Wt = st->f[1];
    auto& O = st->f[2];
    memory::dims src_d{1, w.C, w.H, w.W}, dst_d{1, Kout, w.P(), w.Q()};
    memory::dims wei_d = dw ? memory::dims{w.C, 1, 1, w.R, w.S} : memory::dims{w.K, w.C, w.R, w.S};
    tag wei_plain_tag = dw ? tag::goihw : tag::oihw;
    memory::desc src_plain(src_d, dt::f32, tag::nchw), dst_plain(dst_d, dt::f32, tag::nchw),
        wei_plain(wei_d, dt::f32, wei_plain_tag);
    memory::desc src_md = any ? memory::desc(src_d, dt::f32, tag::any) : src_plain;
    memory::desc dst_md = any ? memory::desc(dst_d, dt::f32, tag::any) : dst_plain;
    memory::desc wei_md = any ? memory::desc(wei_d, dt::f32, tag::any) : wei_plain;
    dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference,
                                      dnnl::algorithm::convolution_direct, src_md, wei_md,
                                      dst_md, {w.stride, w.stride}, {w.pad, w.pad},
                                      {w.pad, w.pad});
    dnnl::convolution_forward::primitive_desc pd(d, eng);
    memory src_user(src_plain, eng, I.data()), wei_user(wei_plain, eng, Wt.data()),
        dst_user(dst_plain, eng, O.data());
    memory src_mem = to_layout(src_user, pd.src_desc());
    memory wei_mem = to_layout(wei_user, pd.weights_desc());
    memory dst_mem = pd.dst_desc() == dst_plain ? dst_user : memory(pd.dst_desc(), eng);
    st->prim = dnnl::convolution_forward(pd);
    st->args = {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, wei_mem}, {DNNL_ARG_DST, dst_mem}};
    Prepared p;
    p.run = [st, this] {
      st->prim.execute(strm, st->args);
      strm.wait();
    };
    p.run();
    if (dst_mem.get() != dst_user.get()) {
      dnnl::reorder(dst_mem, dst_user).execute(strm, dst_mem, dst_user);
      strm.wait();
    }
    p.r.lib = "onednn", p.r.variant = any ? "any" : "nchw", p.r.impl = pd.impl_info_str();
    p.r.layout = "src:" + layout_of(pd.src_desc()) + " wei:" + layout_of(pd.weights_desc()) +
                 " dst:" + layout_of(pd.dst_desc());
    p.r.check = check_conv(w, I.data(), Wt.data(), O.data());
    return p;
  }
};

Prepared openblas_sgemm(const Workload& w) {
  auto st = std::make_shared<State>();
  st->f = {random_vec(w.M * w.K, 1), random_vec(w.K * w.N, 2), Floats(w.M * w.N, NAN)};
  Prepared p;
  p.run = [st, w] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(w.M), int(w.N), int(w.K), 1.f,
                st->f[0].data(), int(w.K), st->f[1].data(), int(w.N), 0.f, st->f[2].data(),
                int(w.N));
  };
  p.run();
  p.r.lib = "openblas", p.r.variant = "sgemm";
  p.r.impl = std::string(openblas_get_corename()) + " kernels; " + openblas_get_config();
  p.r.layout = "row-major";
  p.r.check = check_matmul(w, st->f[0].data(), st->f[1].data(), st->f[2].data());
  return p;
}

// --versus: KERNEL.so / KERNEL.h that cannot be used (unreadable, not an export of ktune,
// a missing symbol): a user error, exit code 2.
struct BadKernelFiles : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The kernel ktune exported for a workload (`ktune replay SCHEDULE --emit obj`), linked into
// a shared library with its ktune_parallel_for.c built with -fopenmp, so that it runs on the
// same OpenMP threads as oneDNN. The arguments come from the kernel's header: one comment
// line per argument ("NAME input|output float[..]..  (N elements)"), inputs first.
Prepared ktune_kernel_from(const Workload& w, const std::string& so, const std::string& header,
                           int threads) {
  std::ifstream h(header);
  if (!h) throw BadKernelFiles("cannot read " + header);
  std::regex arg_line(R"(^\s*\*\s+(\w+)\s+(input|output)(?: \(\w+\))?\s+float\[.*\((\d+) elements\))");
  std::regex elements_line(R"(^#define\s+\w+_ELEMENTS\s+\d+)");
  size_t defines = 0;
  std::regex sym_line(R"(^void\s+(\w+_args)\(void\*\*\s*args\);)");
  auto st = std::make_shared<State>();
  std::vector<std::string> roles;
  std::regex title_line(R"(^/\* \w+\.h: (\w+)\(([^)]*)\))");
  std::string symbol, line, kernel;
  long nb = 0;  // matmul_packed: the panel width of B
  unsigned seed = 21;
  while (std::getline(h, line)) {
    std::smatch m;
    if (kernel.empty() && std::regex_search(line, m, title_line)) {
      kernel = m[1];
      std::smatch p;
      const std::string params = m[2];
      if (std::regex_search(params, p, std::regex(R"((?:^|,)nb=(\d+))"))) nb = std::stol(p[1]);
    } else if (std::regex_search(line, m, arg_line)) {
      long n = std::stol(m[3]);
      roles.push_back(m[2]);
      st->f.push_back(m[2] == "input" ? random_vec(n, seed++) : Floats(n, NAN));
    } else if (std::regex_search(line, m, sym_line)) {
      symbol = m[1];
    } else if (std::regex_search(line, elements_line)) {
      ++defines;
    }
  }
  if (defines != st->f.size())
    throw BadKernelFiles(header + ": read " + std::to_string(st->f.size()) +
                             " float arguments but the header defines " +
                             std::to_string(defines) + " (an argument of another type?)");
  if (symbol.empty() || st->f.empty())
    throw BadKernelFiles(header + ": no kernel symbol or no float arguments found");
  void* lib = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) throw BadKernelFiles(std::string("dlopen: ") + dlerror());
  auto fn = reinterpret_cast<void (*)(void**)>(dlsym(lib, symbol.c_str()));
  auto set_threads = reinterpret_cast<void (*)(int)>(dlsym(lib, "ktune_set_num_threads"));
  if (!fn || !set_threads) throw BadKernelFiles(so + ": no " + symbol + " or ktune_set_num_threads");
  set_threads(threads);
  // matmul's arguments are A, B, C row-major as the check expects; matmul_packed's B is
  // packed here from a row-major B (outside the timing, as oneDNN's pre-packed B) and the
  // output checked against that B; other kernels use other layouts (ktune checked them
  // against its reference when it measured them).
  const bool matmul_args = w.kind == Kind::Matmul && st->f.size() == 3 && roles[2] == "output" &&
                           st->f[0].size() == size_t(w.M * w.K) && st->f[1].size() == size_t(w.K * w.N);
  Floats plain_b;
  if (matmul_args && kernel == "matmul_packed") {
    if (nb <= 0 || w.N % nb != 0) throw BadKernelFiles(header + ": matmul_packed without a panel width nb dividing N");
    plain_b = st->f[1];
    for (long jo = 0; jo < w.N / nb; ++jo)
      for (long k = 0; k < w.K; ++k)
        for (long ji = 0; ji < nb; ++ji) st->f[1][(jo * w.K + k) * nb + ji] = plain_b[k * w.N + jo * nb + ji];
  }
  for (auto& v : st->f) st->ptrs.push_back(v.data());
  Prepared p;
  p.run = [st, fn] { fn(st->ptrs.data()); };
  p.run();
  p.r.lib = "ktune", p.r.variant = "exported", p.r.impl = symbol, p.r.layout = "";
  p.checked = false;
  if (matmul_args && (kernel == "matmul" || kernel == "matmul_packed")) {
    p.r.check = check_matmul(w, st->f[0].data(), kernel == "matmul" ? st->f[1].data() : plain_b.data(), st->f[2].data());
    p.checked = true;
  }
  return p;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (c == '\n') o += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) o += ' ';
    else o += c;
  }
  return o;
}

std::set<std::string> split_csv(const std::string& s) {
  std::set<std::string> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ','))
    if (!x.empty()) out.insert(x);
  return out;
}

// --versus: ktune's exported kernels (one or more --versus pairs) and the baselines of one
// workload, timed in turns in this process. Each contender first goes through time_once (warm-up; its time decides how many
// calls make a slice of >= --slice-ms, default 5 ms). Then each round times one slice of every
// contender, in an order that reverses from one round to the next (ABBA), each slice preceded
// by one untimed call (the caches the previous contender emptied). The ratio of a round is the
// fastest baseline's time over ktune's (> 1: ktune is faster); the summary is the median of
// the rounds' ratios, one JSON line per ktune kernel. This machine's speed changes within a second (other tenants on the
// memory system: L1/L2 bandwidth drops by 10-20% for a while), so the slices are short and
// adjacent: a round's contenders see the same machine. ktune's export and Debian's oneDNN
// share one OpenMP runtime, so no library's threads spin against another's.
// (Before the ninth session a round timed each contender with the whole time_once protocol,
// ~0.3 s apart: the ratios of one run's rounds spread over 0.5-1.4 on mm512, now ~0.1 wide.)
// KERNEL.so / KERNEL.h that cannot be used exit with code 2, a wrong answer with 1.
int run_versus(const Workload& w, Dnnl& dnnl_ctx,
               const std::vector<std::pair<std::string, std::string>>& kernels, int threads,
               int rounds, double slice_ms, bool use_dnnl, bool use_blas, bool check) {
  std::vector<Prepared> cs;
  if (w.kind == Kind::Matmul) {
    if (use_dnnl) cs.push_back(dnnl_ctx.matmul(w, false));
    if (use_dnnl) cs.push_back(dnnl_ctx.matmul(w, true));
    if (use_blas) cs.push_back(openblas_sgemm(w));
  } else if (use_dnnl) {
    cs.push_back(dnnl_ctx.conv(w, true));
  }
  const size_t nb = cs.size();  // baselines first, then ktune's kernels in argument order
  for (const auto& [so, header] : kernels) cs.push_back(ktune_kernel_from(w, so, header, threads));
  const size_t n = cs.size();
  int failures = 0;
  for (auto& c : cs)
    if (check && c.checked && !c.r.check.ok()) {
      std::fprintf(stderr, "baselines: %s: %s %s: WRONG ANSWER (max relative error %.3g)\n",
                   w.id.c_str(), c.r.lib.c_str(), c.r.variant.c_str(), c.r.check.max_rel);
      ++failures;
    }
  std::vector<std::vector<double>> ms(n), ratios(n - nb);
  std::vector<int> calls(n);
  for (size_t i = 0; i < n; ++i)
    calls[i] = int(std::clamp(std::ceil(slice_ms / time_once(cs[i].run).median_ms), 1.0, 1e9));
  for (int r = 0; r < rounds; ++r) {
    std::vector<double> t(n);
    for (size_t j = 0; j < n; ++j) {
      size_t i = r % 2 ? n - 1 - j : j;
      cs[i].run();
      auto t0 = Clock::now();
      for (int c = 0; c < calls[i]; ++c) cs[i].run();
      t[i] = ms_since(t0) / calls[i];
      ms[i].push_back(t[i]);
    }
    const double best_base = *std::min_element(t.begin(), t.begin() + nb);
    for (size_t k = nb; k < n; ++k) ratios[k - nb].push_back(best_base / t[k]);
    if (r + 1 == rounds || (r + 1) % 50 == 0) {
      std::fprintf(stderr, "%s round %d/%d: best baseline %.4f ms; ktune", w.id.c_str(), r + 1,
                   rounds, best_base);
      for (size_t k = nb; k < n; ++k)
        std::fprintf(stderr, " %.4f ms (ratio %.3f)", t[k], ratios[k - nb].back());
      std::fprintf(stderr, "\n");
    }
  }
  // One JSON line per ktune kernel, with the baselines' times of the same rounds.
  for (size_t k = nb; k < n; ++k) {
    const std::vector<double>& rk = ratios[k - nb];
    double geo = 0;
    for (double x : rk) geo += std::log(x);
    geo = std::exp(geo / rk.size());
    std::printf("{\"workload\":\"%s\",\"group\":\"%s\",\"kernel\":\"%s\",\"params\":%s,"
                "\"threads\":%d,\"rounds\":%d,\"slice_ms\":%g,\"contenders\":%zu,"
                "\"ratio_median\":%.4g,\"ratio_geomean\":%.4g,"
                "\"ktune_symbol\":\"%s\",\"ktune_checked\":%s,\"times_ms\":{",
                w.id.c_str(), w.group.c_str(), w.ktune_kernel().c_str(), w.params_json().c_str(), threads,
                rounds, slice_ms, n, median(rk), geo, cs[k].r.impl.c_str(),
                cs[k].checked ? "true" : "false");
    bool first = true;
    for (size_t i = 0; i < n; ++i) {
      if (i >= nb && i != k) continue;
      std::printf("%s\"%s %s\":[", first ? "" : ",", cs[i].r.lib.c_str(), cs[i].r.variant.c_str());
      first = false;
      for (size_t q = 0; q < ms[i].size(); ++q) std::printf("%s%.6g", q ? "," : "", ms[i][q]);
      std::printf("]");
    }
    std::printf("},\"ratios\":[");
    for (size_t q = 0; q < rk.size(); ++q) std::printf("%s%.4g", q ? "," : "", rk[q]);
    std::printf("],\"ok\":%s}\n", failures ? "false" : "true");
    std::fprintf(stderr, "%-28s %s / best baseline, %d rounds side by side: median %.3f (geomean %.3f)\n",
                 w.id.c_str(), kernels[k - nb].first.c_str(), rounds, median(rk), geo);
  }
  std::fflush(stdout);
  for (size_t i = 0; i < nb; ++i)
    std::fprintf(stderr, "%-28s %s %s median %.4f ms\n", w.id.c_str(), cs[i].r.lib.c_str(),
                 cs[i].r.variant.c_str(), median(ms[i]));
  return failures;
}

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "baselines: %s\nusage: baselines [--lib onednn|openblas|all] [--threads T] "
               "[--quick] [--groups matmul,resnet18_conv,mobilenet_dw] [--only ID,...] "
               "[--min-group-ms MS] [--repeat R] [--no-check] [--versus SO HEADER ... [--rounds R] [--slice-ms MS]] | --list [--quick] [--groups ...] [--only ...]\n",
               msg);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string lib = "all";
  int threads = 1;
  bool quick = false, list = false, check = true;
  std::set<std::string> groups, only;
  std::vector<std::pair<std::string, std::string>> versus;  // --versus SO HEADER, may repeat
  int rounds = 200;
  double slice_ms = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--lib") lib = value();
    else if (a == "--threads") threads = std::atoi(value().c_str());
    else if (a == "--quick") quick = true;
    else if (a == "--list") list = true;
    else if (a == "--openblas-core") {
      std::printf("%s\n", openblas_get_corename());
      return 0;
    }
    else if (a == "--no-check") check = false;
    else if (a == "--groups") groups = split_csv(value());
    else if (a == "--only") only = split_csv(value());
    else if (a == "--min-group-ms") g_min_group_ms = std::atof(value().c_str());
    else if (a == "--repeat") g_repeat = std::atoi(value().c_str());
    else if (a == "--versus") {
      std::string so = value();
      versus.emplace_back(so, value());
    }
    else if (a == "--rounds") rounds = std::atoi(value().c_str());
    else if (a == "--slice-ms") slice_ms = std::atof(value().c_str());
    else if (a == "-h" || a == "--help") usage("help");
    else usage(("unknown argument " + a).c_str());
  }
  if (lib != "onednn" && lib != "openblas" && lib != "all") usage("--lib must be onednn, openblas or all");
  if (threads < 1) usage("--threads must be >= 1");

  std::vector<Workload> work;
  for (auto& w : all_workloads()) {
    if (quick && !w.quick) continue;
    if (!groups.empty() && !groups.count(w.group)) continue;
    if (!only.empty() && !only.count(w.id)) continue;
    work.push_back(w);
  }
  if (list) {
    for (auto& w : work)
      for (auto& [kernel, flags] : w.ktune_kernels())
        std::printf("%s\t%s\t%s\t%s\t%.0f\n", w.id.c_str(), w.group.c_str(), kernel.c_str(), flags.c_str(),
                    w.macs());
    return 0;
  }

  if (!versus.empty() && work.size() != 1) usage("--versus needs exactly one workload (--only ID)");
  if (rounds < 1) usage("--rounds must be >= 1");
  if (!(slice_ms > 0 && slice_ms <= 10000)) usage("--slice-ms must be in (0, 10000]");
  bool use_dnnl = lib != "openblas", use_blas = lib != "onednn";
  if (use_dnnl) omp_set_num_threads(threads);
  if (use_blas) openblas_set_num_threads(threads);

  Dnnl dnnl_ctx;
  int failures = 0;
  if (!versus.empty()) {
    try {
      return run_versus(work[0], dnnl_ctx, versus, threads, rounds, slice_ms, use_dnnl, use_blas,
                        check) ? 1 : 0;
    } catch (const BadKernelFiles& e) {
      std::fprintf(stderr, "baselines: %s: %s\n", work[0].id.c_str(), e.what());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "baselines: %s: %s\n", work[0].id.c_str(), e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "%-28s %-9s %-7s %3s %10s %9s  %s\n", "workload", "lib", "variant", "thr",
               "time ms", "GFLOP/s", "implementation / layout");
  for (auto& w : work) {
    std::vector<Result> rs;
    auto timed = [](Prepared p) {
      p.r.t = time_it(p.run);
      return p.r;
    };
    try {
      if (w.kind == Kind::Matmul) {
        if (use_dnnl) rs.push_back(timed(dnnl_ctx.matmul(w, false)));
        if (use_dnnl) rs.push_back(timed(dnnl_ctx.matmul(w, true)));
        if (use_blas) rs.push_back(timed(openblas_sgemm(w)));
      } else if (use_dnnl) {
        rs.push_back(timed(dnnl_ctx.conv(w, true)));
        rs.push_back(timed(dnnl_ctx.conv(w, false)));
      }
    } catch (const dnnl::error& e) {
      std::fprintf(stderr, "baselines: %s: oneDNN error: %s (status %d)\n", w.id.c_str(),
                   e.what(), int(e.status));
      ++failures;
      continue;
    }
    for (auto& r : rs) {
      double gflops = 2 * w.macs() / (r.t.median_ms * 1e6);
      bool ok = !check || r.check.ok();
      if (!ok) ++failures;
      std::printf(
          "{\"workload\":\"%s\",\"group\":\"%s\",\"kernel\":\"%s\",\"params\":%s,\"lib\":\"%s\","
          "\"variant\":\"%s\",\"threads\":%d,\"time_ms\":%.6g,\"gflops\":%.4g,\"repeat\":%d,\"number\":%d,"
          "\"groups_ms\":[",
          w.id.c_str(), w.group.c_str(), w.ktune_kernel().c_str(), w.params_json().c_str(),
          r.lib.c_str(), r.variant.c_str(), threads, r.t.median_ms, gflops, g_repeat, r.t.number);
      for (size_t g = 0; g < r.t.groups_ms.size(); ++g)
        std::printf("%s%.6g", g ? "," : "", r.t.groups_ms[g]);
      const char* policy = std::getenv("OMP_WAIT_POLICY");
      std::printf("],\"impl\":\"%s\",\"layout\":\"%s\",\"omp_wait_policy\":\"%s\","
                  "\"check_max_rel_err\":%.3g,\"ok\":%s}\n",
                  json_escape(r.impl).c_str(), json_escape(r.layout).c_str(),
                  r.lib == "onednn" && policy ? json_escape(policy).c_str() : "",
                  r.check.max_rel, ok ? "true" : "false");
      std::fflush(stdout);
      std::string impl = r.lib == "openblas" ? "" : r.impl;
      std::string note = r.lib == "onednn" && policy ? std::string(" OMP_WAIT_POLICY=") + policy : "";
      std::fprintf(stderr, "%-28s %-9s %-7s %3d %10.4f %9.1f  %s %s%s%s\n", w.id.c_str(),
                   r.lib.c_str(), r.variant.c_str(), threads, r.t.median_ms, gflops,
                   impl.c_str(), r.layout.c_str(), note.c_str(), ok ? "" : "  WRONG ANSWER");
    }
  }
  return failures ? 1 : 0;
}
