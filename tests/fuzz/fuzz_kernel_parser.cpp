// libFuzzer target: the kernel-language parser on arbitrary text. Any input must give a
// KernelDef or a UserError; anything else (a crash, a sanitizer report, another exception) is
// a bug. Build and run with scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ktune/support/error.h"
#include "ktune/te/kernel.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    ktune::te::KernelDef def = ktune::te::parse_kernel(text, "fuzz.kt");
    (void)def.instantiate().hash();
  } catch (const ktune::UserError&) {
  }
  return 0;
}
