// Errors, in three channels kept apart (STYLE 8):
//  - UserError: the user can act on it (bad kernel file, bad flag, bad log). main() prints
//    the message and exits with code 2.
//  - InternalError: a ktune bug. main() prints it and exits with code 1.
//  - InvalidCandidate: a schedule the search produced that cannot be lowered or compiled.
//    The search records it with its error class and moves on.
// Messages are built only when a check fails (the KT_* macros evaluate their message lazily).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ktune {

class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InternalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InvalidCandidate : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace ktune

// KT_USER_CHECK(cond, parts...): throw UserError(concat(parts...)) when cond is false.
#define KT_USER_CHECK(cond, ...) \
  do {                           \
    if (!(cond)) throw ::ktune::UserError(::ktune::detail::concat(__VA_ARGS__)); \
  } while (0)

// KT_CHECK(cond, parts...): an internal invariant; failure is a ktune bug.
#define KT_CHECK(cond, ...)                                                                   \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw ::ktune::InternalError(::ktune::detail::concat(__FILE__, ":", __LINE__, ": ",    \
                                                           "internal error: " __VA_OPT__(, ) \
                                                               __VA_ARGS__));                 \
  } while (0)

// KT_CANDIDATE_CHECK(cond, parts...): the candidate is invalid; the search skips it.
#define KT_CANDIDATE_CHECK(cond, ...) \
  do {                                \
    if (!(cond)) throw ::ktune::InvalidCandidate(::ktune::detail::concat(__VA_ARGS__)); \
  } while (0)
