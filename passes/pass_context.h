#pragma once

// What a pass may use besides the model it transforms.

#include <cstdint>

#include <nlohmann/json.hpp>

#include "passes/analysis_manager.h"
#include "pipeline/recipe.h"

namespace lathe {

class DataSets;
class Model;
class Progress;

class PassContext {
 public:
  PassContext(const Model& original, DataSets& data, AnalysisManager& analyses, Progress& progress)
      : original(original), data(data), analyses(analyses), progress(progress) {}

  const Model& original;       // the model as loaded, for comparisons (KL, agreement)
  DataSets& data;
  AnalysisManager& analyses;
  Progress& progress;
  SourceLocation where;        // the recipe entry of the running pass
  std::int64_t transforms_applied = 0;  // transforms run so far: 0 means the model is the original
  nlohmann::json statistics = nlohmann::json::object();  // this pass's section of the report
  nlohmann::json metrics = nlohmann::json::object();     // the run's metrics, by evaluation label
};

}  // namespace lathe
