// SKELETON (being written): tests of droplet.h.
#include <catch2/catch.hpp>

#include "ktune/search/droplet.h"
