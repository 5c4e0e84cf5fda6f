// Unit tests of the loop-nest IR: builders, printer, mutator, simplifier, interpreter.
#include <catch2/catch.hpp>

#include "ktune/ir/ir.h"
#include "ktune/ir/ir_ops.h"
#include "ktune/ir/printer.h"
#include "ktune/ir/visitor.h"

using namespace ktune::ir;

TEST_CASE("ir: placeholder", "[ir]") {
  Expr x = Var::make("x");
  CHECK(to_string(x * 8 + 7) == "((x*8) + 7)");
}
