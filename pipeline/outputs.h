#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "pipeline/recipe.h"

namespace lathe {

class Model;

// The output formats a recipe may name, for validation messages.
const std::vector<std::string>& output_formats();

// Writes one recipe output and returns its report entry {format, path, bytes}.
nlohmann::json write_output(const Model& model, const OutputSpec& output,
                            const std::map<std::string, std::string>& provenance);

}  // namespace lathe
