// Kernel definitions (parsed files), instantiation with parameter values, and the registry
// of kernels found in directories (the shipped kernels/ and a user's --kernels DIR).
#include "ktune/te/kernel.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ktune/support/error.h"
#include "ktune/support/util.h"
#include "parser.h"

namespace ktune::te {

namespace fs = std::filesystem;

const KernelParam* KernelDef::find_param(const std::string& pname) const {
  for (const KernelParam& p : params)
    if (p.name == pname) return &p;
  return nullptr;
}

ComputeDAG KernelDef::instantiate(const std::map<std::string, int64_t>& values,
                                  const std::map<std::string, std::string>& dtype_values) const {
  auto unknown = [&](const std::string& n) {
    std::string names = join(params, ", ", [](const KernelParam& p) { return p.name; });
    throw UserError(ktune::detail::concat("kernel ", name, " has no parameter '", n, "'",
                                          params.empty() ? std::string("; it takes no parameters")
                                                         : "; its parameters are " + names));
  };
  for (const auto& [n, v] : values) {
    const KernelParam* p = find_param(n);
    if (!p) unknown(n);
    if (p->is_dtype)
      throw UserError(ktune::detail::concat("parameter '", n, "' of kernel ", name,
                                            " is an element type (e.g. ", n, "=f16), not an integer"));
  }
  std::map<std::string, ir::Type> types;
  for (const auto& [n, v] : dtype_values) {
    const KernelParam* p = find_param(n);
    if (!p) unknown(n);
    if (!p->is_dtype)
      throw UserError(ktune::detail::concat("parameter '", n, "' of kernel ", name,
                                            " is an integer, not an element type (got '", v, "')"));
    auto t = detail::element_type(v);
    if (!t)
      throw UserError(ktune::detail::concat("'", v, "' given for parameter '", n, "' of kernel ", name,
                                            " is not an element type; the element types are f32, f64, "
                                            "f16, bf16, i32, i8, i64"));
    types[n] = *t;
  }
  return detail::parse_kernel_source(source, file, values, types).dag;
}

KernelDef parse_kernel(const std::string& source, const std::string& file) {
  return detail::parse_kernel_source(source, file, {}, {}).def;
}

KernelDef parse_kernel_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError("cannot read kernel file '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_kernel(ss.str(), path);
}

void KernelRegistry::add_directory(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw UserError("kernel directory '" + dir + "' does not exist or is not a directory");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".kt" && entry.is_regular_file(ec)) files.push_back(entry.path());
  }
  if (ec) throw UserError("cannot list kernel directory '" + dir + "': " + ec.message());
  std::sort(files.begin(), files.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename() < b.filename(); });
  for (const fs::path& f : files) add(parse_kernel_file(f.string()));
}

void KernelRegistry::add(KernelDef def) {
  for (KernelDef& k : kernels_) {
    if (k.name == def.name) {
      k = std::move(def);
      return;
    }
  }
  kernels_.push_back(std::move(def));
}

const KernelDef* KernelRegistry::find(const std::string& name) const {
  for (const KernelDef& k : kernels_)
    if (k.name == name) return &k;
  return nullptr;
}

std::string shipped_kernel_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path dir = exe.parent_path();
    for (const fs::path& cand : {dir / ".." / "kernels", dir / ".." / "share" / "ktune" / "kernels"}) {
      if (fs::is_directory(cand, ec)) return cand.lexically_normal().string();
    }
  }
  return KTUNE_SOURCE_DIR "/kernels";
}

}  // namespace ktune::te
