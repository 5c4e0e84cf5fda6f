// One levelled debug stream (STYLE 9). The level comes from --debug=N on the command line
// (or KTUNE_DEBUG when no flag is given); debug(2) << ... prints only at level >= 2, to stderr.
#pragma once

#include <iostream>
#include <sstream>

namespace ktune {

int debug_level();
void set_debug_level(int level);

class debug {
 public:
  explicit debug(int level) : on_(level <= debug_level()) {}
  ~debug() {
    if (on_) std::cerr << buf_.str() << std::flush;
  }
  template <typename T>
  debug& operator<<(const T& v) {
    if (on_) buf_ << v;
    return *this;
  }

 private:
  bool on_;
  std::ostringstream buf_;
};

}  // namespace ktune
