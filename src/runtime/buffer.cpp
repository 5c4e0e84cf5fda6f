// Host buffers for measurement and verification (DESIGN §8): 64-byte aligned memory typed by
// an IR element type, deterministic random fill, poisoning, and the relative error check.
#include "ktune/runtime/buffer.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "ktune/support/error.h"

namespace ktune::runtime {

namespace {

// splitmix64: a small, fast, well-mixed generator; the stream depends only on the seed.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double unit() { return double(next() >> 11) * 0x1.0p-53; }
};

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = int32_t((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (((x >> 23) & 0xff) == 0xff) return uint16_t(sign | 0x7c00u | (mant ? 0x200u : 0u));
  if (exp >= 31) return uint16_t(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return uint16_t(sign);
    mant |= 0x800000u;
    uint32_t shift = uint32_t(14 - exp);
    uint32_t h = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return uint16_t(sign | h);
  }
  uint32_t h = sign | (uint32_t(exp) << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;  // may carry into the exponent
  return uint16_t(h);
}

float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while (!(mant & 0x400u));
      x = sign | (uint32_t(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet NaN
  // Round to nearest even.
  x += 0x7fffu + ((x >> 16) & 1u);
  return uint16_t(x >> 16);
}

float bf16_to_float(uint16_t h) {
  uint32_t x = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

void set_element(void* data, ir::Type t, int64_t i, double v) {
  switch (t.code) {
    case ir::TypeCode::Float:
      if (t.bits == 32)
        static_cast<float*>(data)[i] = float(v);
      else if (t.bits == 64)
        static_cast<double*>(data)[i] = v;
      else
        static_cast<uint16_t*>(data)[i] = float_to_half(float(v));
      return;
    case ir::TypeCode::BFloat:
      static_cast<uint16_t*>(data)[i] = float_to_bf16(float(v));
      return;
    case ir::TypeCode::Int:
      if (t.bits == 8)
        static_cast<int8_t*>(data)[i] = int8_t(v);
      else if (t.bits == 16)
        static_cast<int16_t*>(data)[i] = int16_t(v);
      else if (t.bits == 32)
        static_cast<int32_t*>(data)[i] = int32_t(v);
      else
        static_cast<int64_t*>(data)[i] = int64_t(v);
      return;
    case ir::TypeCode::Bool:
      static_cast<uint8_t*>(data)[i] = v != 0 ? 1 : 0;
      return;
  }
}

}  // namespace

void HostBuffer::Free::operator()(void* p) const { std::free(p); }

HostBuffer::HostBuffer(ir::Type dtype, std::vector<int64_t> shape)
    : dtype_(dtype.element_of()), shape_(std::move(shape)) {
  count_ = 1;
  for (int64_t d : shape_) {
    KT_CHECK(d >= 0, "negative buffer extent ", d);
    count_ *= d;
  }
  size_t bytes = size_t(count_) * size_t(dtype_.bytes());
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, rounded);
  data_.reset(p);
}

void HostBuffer::fill_random(uint64_t seed) {
  SplitMix64 rng{seed * 0x2545F4914F6CDD1Dull + 1};
  bool any_nonzero = false;
  for (int64_t i = 0; i < count_; ++i) {
    double v;
    if (dtype_.is_float()) {
      v = rng.unit() * 2.0 - 1.0;
    } else if (dtype_.is_bool()) {
      v = double(rng.next() >> 63);
    } else {
      v = double(int64_t(rng.next() >> 60) - 8);  // [-8, 8)
    }
    set_element(data(), dtype_, i, v);
    any_nonzero = any_nonzero || get(i) != 0;
  }
  if (count_ > 0 && !any_nonzero) set_element(data(), dtype_, 0, 1);
}

void HostBuffer::poison() {
  for (int64_t i = 0; i < count_; ++i) {
    if (dtype_.is_float()) {
      set_element(data(), dtype_, i, std::numeric_limits<double>::quiet_NaN());
    } else if (dtype_.is_bool()) {
      static_cast<uint8_t*>(data())[i] = 0xA5;
    } else {
      // 0x5A repeated: large, odd, and unlikely to be computed by accident.
      std::memset(static_cast<char*>(data()) + i * dtype_.bytes(), 0x5A, size_t(dtype_.bytes()));
    }
  }
}

void HostBuffer::copy_from(const HostBuffer& other) {
  KT_CHECK(other.dtype_ == dtype_ && other.count_ == count_,
           "copy_from between buffers of different type or size");
  if (count_ > 0) std::memcpy(data(), other.data(), size_t(bytes()));
}

double HostBuffer::get(int64_t i) const {
  KT_CHECK(i >= 0 && i < count_, "buffer index ", i, " out of range [0, ", count_, ")");
  const void* d = data();
  switch (dtype_.code) {
    case ir::TypeCode::Float:
      if (dtype_.bits == 32) return static_cast<const float*>(d)[i];
      if (dtype_.bits == 64) return static_cast<const double*>(d)[i];
      return half_to_float(static_cast<const uint16_t*>(d)[i]);
    case ir::TypeCode::BFloat:
      return bf16_to_float(static_cast<const uint16_t*>(d)[i]);
    case ir::TypeCode::Int:
      if (dtype_.bits == 8) return static_cast<const int8_t*>(d)[i];
      if (dtype_.bits == 16) return static_cast<const int16_t*>(d)[i];
      if (dtype_.bits == 32) return static_cast<const int32_t*>(d)[i];
      return double(static_cast<const int64_t*>(d)[i]);
    case ir::TypeCode::Bool:
      return static_cast<const uint8_t*>(d)[i];
  }
  return 0;
}

double relative_l2_error(const HostBuffer& got, const HostBuffer& want) {
  KT_CHECK(got.num_elements() == want.num_elements(), "comparing buffers of ", got.num_elements(),
           " and ", want.num_elements(), " elements");
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < got.num_elements(); ++i) {
    double g = got.get(i), w = want.get(i);
    if (std::isnan(g) != std::isnan(w)) return std::numeric_limits<double>::infinity();
    if (std::isnan(g)) continue;  // NaN in both: the reference computes a NaN there too
    if (std::isinf(g) || std::isinf(w)) {
      if (g != w) return std::numeric_limits<double>::infinity();
      continue;
    }
    diff += (g - w) * (g - w);
    norm += w * w;
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

double tolerance_for(ir::Type t) {
  switch (t.code) {
    case ir::TypeCode::Float:
      if (t.bits == 64) return 1e-9;
      if (t.bits == 16) return 1e-2;
      return 1e-4;
    case ir::TypeCode::BFloat:
      return 1e-2;
    case ir::TypeCode::Int:
    case ir::TypeCode::Bool:
      return 0;
  }
  return 0;
}

}  // namespace ktune::runtime
