// Inputs the fuzzers (scripts/fuzz.sh) found, kept as regression tests: every file under
// tests/data/fuzz/ goes through the reader it broke (*.jsonl: the log reader, *.kt: the kernel
// parser) and must give a result or a UserError, nothing else.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "ktune/log/record.h"
#include "ktune/schedule/steps.h"
#include "ktune/support/error.h"
#include "ktune/te/kernel.h"

using namespace ktune;

TEST_CASE("inputs found by fuzzing give a result or a user error", "[fuzz]") {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(KTUNE_SOURCE_DIR) + "/tests/data/fuzz")) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(entry.path().string());
    ++files;
    try {
      if (entry.path().extension() == ".jsonl") {
        (void)log::parse_log(text, "fuzz.jsonl");
        for (const auto& r : log::parse_log(text, "fuzz.jsonl", /*skip_bad_lines=*/true).records) {
          try {
            (void)schedule::steps_from_json(r.steps);
          } catch (const UserError&) {
          }
        }
      } else if (entry.path().extension() == ".kt") {
        (void)te::parse_kernel(text, "fuzz.kt").instantiate();
      }
      SUCCEED();
    } catch (const UserError&) {
      SUCCEED();
    } catch (const std::exception& e) {
      FAIL("not a user error: " << e.what());
    }
  }
  CHECK(files > 0);
}

TEST_CASE("numbers that do not fit their field are a user error, not a cast", "[fuzz]") {
  // log_step_float_as_int.jsonl: a step field holding 2.8e49 was cast to int (undefined
  // behaviour, found by UBSan); such values are now refused.
  using nlohmann::json;
  CHECK_THROWS_WITH(schedule::steps_from_json(json::parse(R"([{"kind":"annotate","stage":2.77e49,"iter":0,"annotation":"parallel"}])")),
                    Catch::Contains("wrong type"));
  CHECK_THROWS_WITH(schedule::steps_from_json(json::parse(R"([{"kind":"annotate","stage":4294967296,"iter":0,"annotation":"parallel"}])")),
                    Catch::Contains("wrong type"));
  CHECK_THROWS_WITH(schedule::steps_from_json(json::parse(R"([{"kind":"annotate","stage":1.5,"iter":0,"annotation":"parallel"}])")),
                    Catch::Contains("wrong type"));
  std::ifstream in(std::string(KTUNE_SOURCE_DIR) + "/tests/data/sample_log.jsonl");
  std::string line;
  std::getline(in, line);
  json rec = json::parse(line);
  rec["trial"] = 1e30;
  CHECK_THROWS_WITH(log::record_from_json(rec), Catch::Contains("'trial' has the wrong type"));
  rec["trial"] = 3;
  rec["workload"]["params"]["M"] = 1e300;
  CHECK_THROWS_WITH(log::record_from_json(rec), Catch::Contains("workload.params"));
}
