// libFuzzer target: the tuning-log reader on arbitrary bytes, and the step lists of the
// records it accepts (what --resume replays). Any input must give records or a UserError;
// anything else is a bug. Build and run with scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ktune/log/record.h"
#include "ktune/schedule/steps.h"
#include "ktune/support/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (bool skip : {false, true}) {
    try {
      ktune::log::LogContents c = ktune::log::parse_log(text, "fuzz.jsonl", skip);
      for (const auto& r : c.records) {
        try {
          (void)ktune::schedule::canonical_key(ktune::schedule::steps_from_json(r.steps));
        } catch (const ktune::UserError&) {
        }
        (void)ktune::log::to_json(r).dump();
      }
      (void)ktune::log::best_records(c.records);
    } catch (const ktune::UserError&) {
    }
  }
  return 0;
}
