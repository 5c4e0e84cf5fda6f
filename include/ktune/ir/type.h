// Scalar and vector element types of the IR and the kernel language.
// Index arithmetic (loop variables, buffer offsets) is always i64.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ktune::ir {

enum class TypeCode : uint8_t { Int, Float, BFloat, Bool };

struct Type {
  TypeCode code = TypeCode::Float;
  uint8_t bits = 32;
  uint16_t lanes = 1;

  static constexpr Type f32(int lanes = 1) { return {TypeCode::Float, 32, uint16_t(lanes)}; }
  static constexpr Type f64(int lanes = 1) { return {TypeCode::Float, 64, uint16_t(lanes)}; }
  static constexpr Type f16(int lanes = 1) { return {TypeCode::Float, 16, uint16_t(lanes)}; }
  static constexpr Type bf16(int lanes = 1) { return {TypeCode::BFloat, 16, uint16_t(lanes)}; }
  static constexpr Type i8(int lanes = 1) { return {TypeCode::Int, 8, uint16_t(lanes)}; }
  static constexpr Type i32(int lanes = 1) { return {TypeCode::Int, 32, uint16_t(lanes)}; }
  static constexpr Type i64(int lanes = 1) { return {TypeCode::Int, 64, uint16_t(lanes)}; }
  static constexpr Type boolean(int lanes = 1) { return {TypeCode::Bool, 1, uint16_t(lanes)}; }

  bool is_float() const { return code == TypeCode::Float || code == TypeCode::BFloat; }
  bool is_int() const { return code == TypeCode::Int; }
  bool is_bool() const { return code == TypeCode::Bool; }
  bool is_scalar() const { return lanes == 1; }
  Type element_of() const { return {code, bits, 1}; }
  Type with_lanes(int n) const { return {code, bits, uint16_t(n)}; }
  // Bytes of one element in memory (bool is stored as one byte).
  int bytes() const { return code == TypeCode::Bool ? 1 : bits / 8; }

  bool operator==(const Type&) const = default;

  // "f32", "f32x8", "i64", "bool".
  std::string to_string() const;
  // Parses a scalar element type name: f32 f64 f16 bf16 i8 i32 i64 bool.
  static std::optional<Type> parse(std::string_view s);
};

}  // namespace ktune::ir
