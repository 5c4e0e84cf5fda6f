// Host buffers for measurement: 64-byte aligned, typed by an IR element type.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "ktune/ir/type.h"

namespace ktune::runtime {

class HostBuffer {
 public:
  HostBuffer() = default;
  HostBuffer(ir::Type dtype, std::vector<int64_t> shape);
  ir::Type dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t num_elements() const { return count_; }
  int64_t bytes() const { return count_ * dtype_.bytes(); }
  void* data() { return data_.get(); }
  const void* data() const { return data_.get(); }

  // Uniform random values in [-1, 1) (ints: [-8, 8)), never all zeros; deterministic in seed.
  void fill_random(uint64_t seed);
  // NaN for floats, a large sentinel for ints: a kernel that skips an element fails.
  void poison();
  void copy_from(const HostBuffer& other);
  // Element i as double.
  double get(int64_t i) const;

 private:
  struct Free {
    void operator()(void* p) const;
  };
  ir::Type dtype_;
  std::vector<int64_t> shape_;
  int64_t count_ = 0;
  std::unique_ptr<void, Free> data_;
};

// Relative L2 error ||got - want|| / max(||want||, tiny). Infinity when got has a NaN.
double relative_l2_error(const HostBuffer& got, const HostBuffer& want);
// The tolerance of a dtype for relative_l2_error (f32: 1e-4).
double tolerance_for(ir::Type t);

}  // namespace ktune::runtime
