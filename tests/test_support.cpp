// support: integer helpers, hashing, the error channels.
#include <catch2/catch.hpp>

#include "ktune/support/error.h"
#include "ktune/support/util.h"

using namespace ktune;

TEST_CASE("support: divisors, floor division, ceil division", "[support]") {
  CHECK(divisors(1) == std::vector<int64_t>{1});
  CHECK(divisors(12) == std::vector<int64_t>{1, 2, 3, 4, 6, 12});
  CHECK(divisors(49) == std::vector<int64_t>{1, 7, 49});
  CHECK(floor_div(-7, 2) == -4);
  CHECK(floor_mod(-7, 2) == 1);
  CHECK(floor_div(7, -2) == -4);
  CHECK(floor_mod(7, -2) == -1);
  CHECK(ceil_div(10, 4) == 3);
  CHECK(ceil_div(8, 4) == 2);
}

TEST_CASE("support: fnv1a64 is stable and hex64 is 16 digits", "[support]") {
  CHECK(hex64(fnv1a64("")) == "cbf29ce484222325");
  CHECK(fnv1a64("matmul") != fnv1a64("matmul "));
  CHECK(hex64(1).size() == 16);
}

TEST_CASE("support: the check macros throw on their channel only when failing", "[support]") {
  CHECK_NOTHROW([] { KT_USER_CHECK(1 + 1 == 2, "never"); }());
  CHECK_THROWS_AS([] { KT_USER_CHECK(false, "bad ", 42); }(), UserError);
  CHECK_THROWS_WITH([] { KT_USER_CHECK(false, "bad ", 42); }(), "bad 42");
  CHECK_THROWS_AS([] { KT_CANDIDATE_CHECK(false, "x"); }(), InvalidCandidate);
  CHECK_THROWS_AS([] { KT_CHECK(false, "y"); }(), InternalError);
}
