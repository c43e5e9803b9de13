#pragma once

// Caches analysis results (head importance, retrieval scores, activation ranges, ...) so that
// several passes share one computation, and drops them when a transform changes the model.

#include <any>
#include <functional>
#include <map>
#include <string>

#include "passes/pass.h"

namespace lathe {

class AnalysisManager {
 public:
  // The cached result under `key`, computing it first when absent. `key` names the analysis
  // and its parameters; results of one analysis share the prefix before the first '('.
  template <typename Result>
  const Result& get(const std::string& key, const std::function<Result()>& compute) {
    auto found = results_.find(key);
    if (found == results_.end()) {
      ++computations_;
      found = results_.emplace(key, std::any(compute())).first;
    } else {
      ++hits_;
    }
    return std::any_cast<const Result&>(found->second);
  }

  bool cached(const std::string& key) const { return results_.count(key) != 0; }
  // Drops every result whose analysis `preserved` does not keep.
  void invalidate(const PreservedAnalyses& preserved);

  int computations() const { return computations_; }
  int hits() const { return hits_; }

 private:
  std::map<std::string, std::any> results_;
  int computations_ = 0;
  int hits_ = 0;
};

}  // namespace lathe
