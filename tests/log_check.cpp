// ktune_log_check LOG: reads a tuning log with ktune's reader and checks what the robustness
// scripts (scripts/kill9_resume.sh, scripts/fault_inject.sh) rely on. Prints one line:
//   records N skipped S trials-contiguous yes|no unique yes|no final F final-ok yes|no
// (N: the search's records; F: records of the final ranking, phase "final", each of which must
// re-measure a candidate logged before it, under that candidate's trial number) then, for logs with injected faults, the error counts per class and per injected fault, and
// how many injected faults were classified other than expected. Exit code: 0 when the log
// parses, the trials of each workload run 1..n in file order, no candidate appears twice
// and every final record matches an earlier record
// (and, with --faults, every injected fault was classified as expected and no candidate
// without a fault failed); 1 otherwise; 2 when the log cannot be read.
#include <cstdio>
#include <iostream>
#include <map>
#include <set>
#include <string>

#include "ktune/log/record.h"
#include "ktune/schedule/steps.h"
#include "ktune/search/isolated.h"
#include "ktune/support/error.h"

using namespace ktune;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: ktune_log_check LOG [--faults]\n";
    return 2;
  }
  const bool faults = argc > 2 && std::string(argv[2]) == "--faults";
  log::LogContents c;
  try {
    c = log::read_log(argv[1]);
  } catch (const std::exception& e) {
    std::cout << "unreadable: " << e.what() << "\n";
    return 2;
  }
  std::map<std::string, int> next_trial;
  std::map<std::string, std::set<std::string>> keys;
  bool contiguous = true, unique = true;
  std::map<std::string, int> by_class, by_fault;
  int injected = 0, misclassified = 0, unexpected_errors = 0;
  std::map<std::string, std::map<int, std::string>> key_of_trial;  // workload -> trial -> candidate
  int searched = 0, finals = 0;
  bool finals_ok = true;
  for (const auto& r : c.records) {
    const std::string w = r.workload.key();
    if (r.phase == "final") {
      ++finals;
      std::string key;
      try {
        key = schedule::canonical_key(schedule::steps_from_json(r.steps));
      } catch (const UserError&) {
      }
      const auto it = key_of_trial[w].find(r.trial);
      finals_ok = finals_ok && !key.empty() && it != key_of_trial[w].end() && it->second == key;
      continue;
    }
    ++searched;
    try {
      key_of_trial[w][r.trial] = schedule::canonical_key(schedule::steps_from_json(r.steps));
    } catch (const UserError&) {
    }
    contiguous = contiguous && r.trial == ++next_trial[w];
    try {
      unique = keys[w].insert(schedule::canonical_key(schedule::steps_from_json(r.steps))).second && unique;
    } catch (const UserError&) {
      unique = false;
    }
    by_class[r.valid() ? "valid" : r.error]++;
    const auto tag = r.error_message.find("[injected fault: ");
    if (tag == std::string::npos) {
      if (!r.valid()) {
        ++unexpected_errors;
        if (faults) std::cout << "  trial " << r.trial << " failed without a fault: " << r.error << ": " << r.error_message << "\n";
      }
      continue;
    }
    const std::string name = r.error_message.substr(tag + 17, r.error_message.find(']', tag) - tag - 17);
    ++injected;
    ++by_fault[name];
    const char* want = runtime::error_class_name(search::expected_error(search::parse_fault(name)));
    if (r.error != want) {
      ++misclassified;
      std::cout << "  trial " << r.trial << ": fault " << name << " recorded as '" << (r.valid() ? "valid" : r.error)
                << "', expected '" << want << "'\n";
    }
  }
  std::cout << "records " << searched << " skipped " << c.warnings.size() << " trials-contiguous "
            << (contiguous ? "yes" : "no") << " unique " << (unique ? "yes" : "no") << " final " << finals
            << " final-ok " << (finals_ok ? "yes" : "no") << "\n";
  for (const auto& w : c.warnings) std::cout << "  skipped: " << w << "\n";
  bool ok = contiguous && unique && finals_ok;
  if (faults) {
    std::cout << "injected " << injected << ":";
    for (const auto& [k, v] : by_fault) std::cout << " " << k << " " << v;
    std::cout << "\nrecorded:";
    for (const auto& [k, v] : by_class) std::cout << " " << k << " " << v;
    std::cout << "\nmisclassified " << misclassified << ", errors without a fault " << unexpected_errors << "\n";
    ok = ok && misclassified == 0 && unexpected_errors == 0;
  }
  return ok ? 0 : 1;
}
