// Internal interface between the kernel-language parser (parser.cpp) and kernel.cpp.
//
// The parser reads a whole file in one pass with every parameter bound to a value (its
// default, or the value the caller gives), so parameters and derived values are integer
// constants by the time the body is read and every shape is known when its statement ends.
// Instantiating a kernel with other values therefore simply parses the file again.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "ktune/te/compute_dag.h"
#include "ktune/te/kernel.h"

namespace ktune::te::detail {

struct ParsedKernel {
  KernelDef def;   // name, doc, parameters with the file's defaults, file, source
  ComputeDAG dag;  // built with the bound values
};

// Parses `source` and builds its DAG. Parameters named in `int_values` / `type_values` take
// those values, the others their defaults. The names and value kinds must already have been
// checked (KernelDef::instantiate does); every error in the text is a UserError that starts
// with `file:line:col: `.
ParsedKernel parse_kernel_source(const std::string& source, const std::string& file,
                                 const std::map<std::string, int64_t>& int_values,
                                 const std::map<std::string, ir::Type>& type_values);

// The element type a name denotes in the language (f32 f64 f16 bf16 i8 i32 i64), if any.
std::optional<ir::Type> element_type(std::string_view name);
// The language's spelling of an element type ("f32", "bf16", ...).
std::string element_type_name(ir::Type t);

// The operands of a binary IR node (arithmetic, comparison, logic); false for other kinds.
bool binary_operands(const ir::Expr& e, const ir::Expr** a, const ir::Expr** b);

}  // namespace ktune::te::detail
