// SKELETON (being written): program features (features.h).
#include "ktune/search/features.h"

#include "ktune/schedule/lower.h"

namespace ktune::search {

int ProgramFeatures::rows() const { return data.empty() ? 0 : int(data.size()) / feature_width(); }
int feature_width() { return 1; }
const std::vector<std::string>& feature_names() {
  static const std::vector<std::string> names{"placeholder"};
  return names;
}
ProgramFeatures extract_features(const schedule::State& state, const target::Target& t) {
  schedule::lower(state, "features");
  ProgramFeatures f;
  f.data = {1.0f};
  return f;
}

}  // namespace ktune::search
