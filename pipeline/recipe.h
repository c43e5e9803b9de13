#pragma once

// A recipe: which model, which data, which passes with which parameters, which outputs, and
// which quality gates. Parsing validates everything against the pass registry before any
// work starts; every error names file:line:col and, where there is a closed set, the choices.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "datasets/data_spec.h"
#include "passes/pass.h"
#include "support/source_location.h"

namespace lathe {

struct ModelSpec {
  std::filesystem::path path;                  // folder, .safetensors, index .json, .pt or .bin
  std::optional<std::filesystem::path> config; // config.json for checkpoints without one
  std::optional<std::string> family;           // overrides the config's model_type
  SourceLocation where;                        // of the path
};

struct PassInvocation {
  std::string name;
  ParamValues params;    // every declared parameter, defaults filled in
  std::set<std::string> given;  // the parameters the recipe names
  SourceLocation where;  // of the pass name
};

struct OutputSpec {
  std::string format;  // "onnx" or "safetensors"
  std::filesystem::path path;
  SourceLocation where;  // of the path
  // safetensors: the dtype of float tensors ("source": each tensor's own) and the largest
  // shard in bytes (more go to model-0000i-of-0000n.safetensors with an index).
  std::string dtype = "source";
  std::int64_t max_shard_size = 2'000'000'000;
  // onnx: weights in <file>.data whatever the model's size (by default only above 1 GB).
  bool external_data = false;
};

struct Gates {
  std::optional<double> max_perplexity_increase;  // relative: 0.05 = 5 %
  std::optional<double> max_loss_increase;        // absolute, nats/token
  std::optional<double> max_kl;                   // nats/token
  std::optional<double> min_top1_agreement;       // 0..1
  SourceLocation where;                           // of the gates key; empty without one
};

struct Recipe {
  std::string source;  // file name, or "<embedded default>"
  ModelSpec model;
  std::map<std::string, DataSpec> data;  // "eval", "calibration"
  std::vector<PassInvocation> passes;
  std::vector<OutputSpec> outputs;
  Gates gates;
};

// `overrides` are `--set key=value` strings: a dotted path into the YAML document (sequence
// elements by index, e.g. passes.0.eval.batch_size=4) and a YAML scalar or flow value.
// Relative paths in the recipe are taken relative to the current working directory.
Recipe parse_recipe(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides = {});
Recipe load_recipe(const std::filesystem::path& path, const std::vector<std::string>& overrides = {});

// The recipe back as YAML with every default filled in (what `lathe validate` prints).
std::string recipe_to_yaml(const Recipe& recipe);
// The same as JSON: numbers, bools and lists typed (`validate --json`, the report).
nlohmann::json recipe_to_json(const Recipe& recipe);

}  // namespace lathe
