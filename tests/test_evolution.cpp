// SKELETON (being written): tests of evolution.h.
#include <catch2/catch.hpp>

#include "ktune/search/evolution.h"
