// Kernel files (kernels/*.kt) and the registry of known kernels.
//
// A KernelDef is a parsed file: its name, its parameters with defaults, and its source.
// instantiate() binds parameter values (defaults for those not given) and builds the
// ComputeDAG; a value that makes a shape zero or negative is a UserError naming the
// tensor, dimension and parameters. Every syntax or semantic error in a file is a
// UserError whose message starts with `file:line:col: `.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ktune/te/compute_dag.h"

namespace ktune::te {

struct KernelParam {
  std::string name;
  bool is_dtype = false;     // a `dtype=f32` parameter takes an element type name
  int64_t default_int = 0;   // integer parameters
  std::string default_type;  // dtype parameters
};

struct KernelDef {
  std::string name;
  std::string doc;  // text of the `#` comment lines right before `kernel`, joined
  std::vector<KernelParam> params;
  std::string file;    // path shown in error messages
  std::string source;  // the file's text

  const KernelParam* find_param(const std::string& name) const;
  // Builds the DAG with `values` (by parameter name; unknown names are a UserError).
  // Integer parameters are given as int64; a dtype parameter is given in `dtype_values`.
  ComputeDAG instantiate(const std::map<std::string, int64_t>& values = {},
                         const std::map<std::string, std::string>& dtype_values = {}) const;
};

// Parses one kernel file's text (checking the whole body with the default parameters).
KernelDef parse_kernel(const std::string& source, const std::string& file);
KernelDef parse_kernel_file(const std::string& path);

// Kernels found in directories (every *.kt file). A later directory's kernel with the
// same name as an earlier one replaces it (a user's --kernels DIR overrides the shipped).
class KernelRegistry {
 public:
  void add_directory(const std::string& dir);
  void add(KernelDef def);
  const KernelDef* find(const std::string& name) const;
  const std::vector<KernelDef>& kernels() const { return kernels_; }

 private:
  std::vector<KernelDef> kernels_;
};

// The directory of the shipped kernels: next to the executable (../kernels, or
// ../share/ktune/kernels) or the source tree's kernels/ this binary was built from.
std::string shipped_kernel_dir();

}  // namespace ktune::te
