#pragma once

// What a pass may use besides the model it transforms.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "passes/analysis_manager.h"
#include "support/source_location.h"

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
  // Bytes the run may use (--memory-limit); 0: no limit. Hidden states of layer-streamed
  // passes above a quarter of it go to temporary files.
  std::int64_t memory_limit = 0;
  nlohmann::json statistics = nlohmann::json::object();  // this pass's section of the report
  nlohmann::json metrics = nlohmann::json::object();     // the run's metrics, by evaluation label
  std::vector<std::string> summary;                       // this pass's lines for the terminal report

  // Folder for the run's side files (CSV tables, SVG pictures): beside the report. Empty when
  // the run writes no report; then write_artifact writes nothing and returns an empty path.
  std::filesystem::path artifacts_dir;
  std::filesystem::path write_artifact(const std::string& name, const std::string& text);
  nlohmann::json artifacts = nlohmann::json::array();     // every file written, for the report
};

}  // namespace lathe
