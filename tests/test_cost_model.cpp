// SKELETON (being written): tests of cost_model.h.
#include <catch2/catch.hpp>

#include "ktune/search/cost_model.h"
