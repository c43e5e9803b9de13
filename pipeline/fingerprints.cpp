#include "pipeline/fingerprints.h"

#include <algorithm>
#include <fstream>
#include <limits>

#include "core/model.h"
#include "formats/zip_directory.h"
#include "pipeline/recipe.h"
#include "support/errors.h"
#include "support/sha256.h"

namespace lathe {
namespace {

nlohmann::json whole_file(const std::string& role, const std::filesystem::path& path, const char* what) {
  const auto digest = file_sha256(path, what);
  return {{"role", role},      {"path", path.string()},         {"bytes", digest.file_bytes},
          {"sha256", digest.sha256}, {"of", "file"}, {"hashed_bytes", digest.file_bytes}};
}

// The part of a weight file that describes all of it: `size` bytes from `offset`.
nlohmann::json file_part(const std::filesystem::path& path, std::uint64_t offset, std::uint64_t size) {
  const auto digest = file_sha256(path, "checkpoint", offset, size);
  return {{"role", "weights"},       {"path", path.string()}, {"bytes", digest.file_bytes},
          {"sha256", digest.sha256}, {"of", "header"},        {"hashed_bytes", std::min(size, digest.file_bytes - offset)},
          {"hashed_from", offset}};
}

nlohmann::json weight_file(const std::filesystem::path& path, const std::string& format) {
  if (format == "pytorch") return file_part(path, read_zip_directory(path).offset, std::numeric_limits<std::uint64_t>::max());
  // The loader checked the header's length against the file already.
  std::ifstream in(path, std::ios::binary);
  unsigned char length[8] = {};
  in.read(reinterpret_cast<char*>(length), sizeof length);
  if (!in) throw InputError(path.string(), "cannot read its safetensors header");
  std::uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = header << 8 | length[i];
  return file_part(path, 0, 8 + header);
}

}  // namespace

nlohmann::json input_fingerprints(const Recipe& recipe, const Model& model) {
  auto inputs = nlohmann::json::array();
  std::error_code ec;
  if (std::filesystem::is_regular_file(recipe.source, ec)) inputs.push_back(whole_file("recipe", recipe.source, "recipe"));
  const auto& source = model.source;
  if (!source.config_file.empty()) inputs.push_back(whole_file("config", source.config_file, "JSON config"));
  if (!source.index_file.empty()) inputs.push_back(whole_file("index", source.index_file, "safetensors index"));
  for (const auto& file : source.weight_files) inputs.push_back(weight_file(file, source.format));
  if (!source.tokenizer.empty()) inputs.push_back(whole_file("tokenizer", source.tokenizer, "tokenizer"));
  for (const auto& [name, spec] : recipe.data) inputs.push_back(whole_file("data:" + name, spec.path, "data file"));
  return inputs;
}

nlohmann::json file_fingerprints(const std::vector<std::filesystem::path>& files) {
  auto fingerprints = nlohmann::json::array();
  for (const auto& file : files) {
    const auto digest = file_sha256(file, "model file");
    fingerprints.push_back({{"path", file.string()}, {"bytes", digest.file_bytes}, {"sha256", digest.sha256}});
  }
  return fingerprints;
}

}  // namespace lathe
