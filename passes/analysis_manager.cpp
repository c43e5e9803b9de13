#include "passes/analysis_manager.h"

namespace lathe {

void AnalysisManager::invalidate(const PreservedAnalyses& preserved) {
  if (preserved.preserves_all()) return;
  for (auto it = results_.begin(); it != results_.end();) {
    const auto analysis = it->first.substr(0, it->first.find('('));
    it = preserved.preserved(analysis) ? std::next(it) : results_.erase(it);
  }
}

}  // namespace lathe
