#pragma once

// SHA-256 fingerprints for the report, so that a CI job can tell which inputs made a model and
// check the files it got. Large weight files are fingerprinted by their headers (a
// safetensors file's length and JSON header, which name every tensor's dtype, shape and
// offsets; a .pt archive's central directory, which holds every record's CRC-32); everything
// else, and every file an output wrote, whole.

#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

namespace lathe {

class Model;
struct Recipe;

// [{role, path, bytes, sha256, of: "file" | "header", hashed_bytes}], in a fixed order: the
// recipe, the checkpoint's config, index, weight files and tokenizer, then the data entries.
nlohmann::json input_fingerprints(const Recipe& recipe, const Model& model);

// [{path, bytes, sha256}] of the given files, whole.
nlohmann::json file_fingerprints(const std::vector<std::filesystem::path>& files);

}  // namespace lathe
