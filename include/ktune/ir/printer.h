// Human-readable text of IR: used in debug dumps, golden tests and error messages.
#pragma once

#include <ostream>
#include <string>

#include "ktune/ir/ir.h"

namespace ktune::ir {

std::string to_string(const Expr& e);
std::string to_string(const Stmt& s);
std::string to_string(const LoweredFunc& f);
std::ostream& operator<<(std::ostream& os, const Expr& e);
std::ostream& operator<<(std::ostream& os, const Stmt& s);

}  // namespace ktune::ir
