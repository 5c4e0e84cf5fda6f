// Checked reading of numbers from untrusted JSON (logs, step lists). nlohmann's get<int>()
// converts any number with a cast, which is undefined behaviour for a float outside the int's
// range (the log-reader fuzzer found 2.8e49 read as an int). json_holds<T>(j) is true when j
// is a value of T's kind that T represents exactly; readers check it before get<T>().
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

namespace ktune::schedule {

template <typename T>
struct is_std_vector : std::false_type {};
template <typename T>
struct is_std_vector<std::vector<T>> : std::true_type {};

template <typename T>
bool json_holds(const nlohmann::json& j) {
  if constexpr (std::is_same_v<T, bool>) {
    return j.is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    if (j.is_number_unsigned()) return j.get<uint64_t>() <= uint64_t(std::numeric_limits<T>::max());
    if (!j.is_number_integer()) return false;
    const int64_t v = j.get<int64_t>();
    return v >= int64_t(std::numeric_limits<T>::min()) && (std::is_unsigned_v<T> || v <= int64_t(std::numeric_limits<T>::max()));
  } else if constexpr (std::is_floating_point_v<T>) {
    return j.is_number();
  } else if constexpr (std::is_same_v<T, std::string>) {
    return j.is_string();
  } else if constexpr (is_std_vector<T>::value) {
    if (!j.is_array()) return false;
    for (const auto& e : j)
      if (!json_holds<typename T::value_type>(e)) return false;
    return true;
  } else {
    return true;
  }
}

}  // namespace ktune::schedule
