#pragma once

// Runs a validated recipe: load the model, run the passes in order (dropping cached analyses a
// transform invalidates), check the quality gates, write the outputs, and return the report.

#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/model_loader.h"
#include "pipeline/recipe.h"

namespace lathe {

class Progress;

struct RunOptions {
  bool dry_run = false;  // load and check everything, run nothing, write nothing
  int threads = 1;
  // Bytes the run may use (see PassContext::memory_limit); 0: no limit.
  std::int64_t memory_limit = 0;
  std::filesystem::path artifacts_dir;  // where passes put CSV tables and SVG pictures; empty: nowhere
};

struct RunResult {
  nlohmann::json report;
  int exit_code = 0;  // kExitOk, or kExitGateFailed
};

ModelLocation model_location(const ModelSpec& spec);

// The model's summary in reports: family, sizes, layers, parameters, bytes on disk.
nlohmann::json describe_model(const Model& model);

// Everything about the recipe that can be known from the model's header, before any work: the
// data entries the passes name exist, each pass's own checks (PassInfo::check) hold, and the
// order of the passes can work (PassInfo::plan).
void check_recipe_against_model(const Recipe& recipe, const Model& model);

// Bad input is an InputError; a failed gate is reported in the result (the outputs are then
// not written: a model that failed its gates must not be picked up by a later step).
// `final_model`, when given, receives the model as the passes left it.
RunResult run_recipe(const Recipe& recipe, const RunOptions& options, Progress& progress, Model* final_model = nullptr);

}  // namespace lathe
