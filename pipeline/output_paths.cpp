#include "pipeline/output_paths.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/bounded_file.h"
#include "support/errors.h"

namespace lathe {
namespace {

namespace fs = std::filesystem;

// A path lathe reads or writes, resolved once.
struct PlacedPath {
  fs::path resolved;
  std::string what;   // "the model folder", "output 2 (onnx)", ...
  std::string where;  // recipe location of a write, or "--report"
  int owner = -1;     // writes: which output (the report is one more); its parts may nest
};

fs::path resolve(const fs::path& path) {
  std::error_code error;
  auto absolute = fs::absolute(path, error);
  if (error) return path.lexically_normal();
  auto resolved = fs::weakly_canonical(absolute, error);  // symbolic links of the existing part resolved
  return error ? absolute.lexically_normal() : resolved;
}

// `inner` is `outer` or lies inside it (both resolved).
bool within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (o->empty() && std::next(o) == outer.end()) break;  // "dir/" ends in an empty element
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

// The first entry of an existing folder that a model folder lathe writes would not hold (empty
// when there is none, or no folder).
std::string file_not_of_a_model_folder(const fs::path& folder) {
  std::error_code error;
  if (!fs::is_directory(folder, error)) return {};
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    const auto name = entry.path().filename().string();
    const bool model_file = name == "config.json" || name == "model.safetensors.index.json" || name == "tokenizer.model" ||
                            name == "vocab.json" || name == "tokenizer.json" || name == "tokenizer_config.json" ||
                            name == "special_tokens_map.json" || name == "generation_config.json" ||
                            (name.starts_with("model") && name.ends_with(".safetensors"));
    if (!model_file || !entry.is_regular_file()) return name;
  }
  return {};
}

void refuse(const PlacedPath& write, const std::string& problem) {
  throw InputError(write.where + ": " + write.what + " " + write.resolved.string() + " " + problem);
}

void check_not_system(const PlacedPath& write) {
  static const std::array<const char*, 22> kSystemFolders = {
      "/",     "/bin",  "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media",  "/mnt",
      "/opt",  "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp",  "/usr",   "/var",   "/var/tmp"};
  static const std::array<const char*, 11> kSystemTrees = {"/proc", "/sys", "/dev", "/boot", "/etc", "/bin",
                                                           "/sbin", "/lib", "/lib32", "/lib64", "/usr"};
  const auto& path = write.resolved;
  bool system = std::any_of(kSystemFolders.begin(), kSystemFolders.end(), [&](const char* folder) { return path == folder; });
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') system = system || path == resolve(home);
  if (system) refuse(write, "is a system folder; lathe writes only its own outputs");
  for (const char* tree : kSystemTrees)
    if (within(path, tree) && !within(path, "/usr/local"))
      refuse(write, std::string("lies inside ") + tree + ", a system folder");
}

void check_apart(const PlacedPath& write, const PlacedPath& other, const std::string& kind) {
  if (write.resolved == other.resolved) refuse(write, "is " + other.what + " (" + kind + ")");
  if (within(write.resolved, other.resolved))
    refuse(write, "lies inside " + other.what + " " + other.resolved.string() + " (" + kind + ")");
  if (within(other.resolved, write.resolved))
    refuse(write, "holds " + other.what + " " + other.resolved.string() + " (" + kind + ")");
}

}  // namespace

bool may_hold_failure_report(const fs::path& path) {
  const PlacedPath write{resolve(path), "the report", "--report"};
  try {
    check_not_system(write);
  } catch (const InputError&) {
    return false;
  }
  std::error_code error;
  if (!fs::is_directory(write.resolved.parent_path(), error)) return false;
  if (!fs::exists(write.resolved, error)) return true;
  try {
    const auto earlier = nlohmann::json::parse(read_bounded_file(write.resolved, kConfigFile), nullptr, false);
    return earlier.is_object() && earlier.contains("lathe_version");
  } catch (const InputError&) {
    return false;
  }
}

void check_output_paths(const Recipe& recipe, const fs::path& report_path, bool report_on_command_line,
                        const fs::path& recipe_file, const fs::path& junit_path) {
  std::vector<PlacedPath> inputs;
  const auto model = resolve(recipe.model.path);
  std::error_code error;
  const bool model_is_folder = fs::is_directory(model, error);
  inputs.push_back({model_is_folder ? model : model.parent_path(), "the model folder", ""});
  if (recipe.model.config) inputs.push_back({resolve(*recipe.model.config), "the model's config", ""});
  for (const auto& [name, data] : recipe.data) inputs.push_back({resolve(data.path), "data file " + name, ""});
  if (!recipe_file.empty()) inputs.push_back({resolve(recipe_file), "the recipe", ""});

  std::vector<PlacedPath> writes;
  std::vector<PlacedPath> replaced_folders;  // safetensors outputs: replaced as a whole
  for (std::size_t i = 0; i < recipe.outputs.size(); ++i) {
    const auto& output = recipe.outputs[i];
    const std::string what = "output " + std::to_string(i + 1) + " (" + output.format + ")";
    const auto path = resolve(output.path);
    const int owner = static_cast<int>(i);
    PlacedPath write{path, what, output.where.str(), owner};
    if (output.format == "onnx") {
      if (fs::is_directory(path, error)) refuse(write, "is a folder; an ONNX output is a file");
      writes.push_back(write);
      auto data = path;
      data += ".data";
      writes.push_back({data, what + "'s external data", output.where.str(), owner});
    } else {
      if (fs::exists(path, error) && !fs::is_directory(path, error))
        refuse(write, "is a file; a " + output.format + " output is a folder");
      replaced_folders.push_back(write);
      writes.push_back(write);
    }
  }
  if (!report_path.empty()) {
    const auto where = report_on_command_line || recipe.outputs.empty() ? std::string("--report")
                                                                        : recipe.outputs.front().where.str();
    PlacedPath write{resolve(report_path), "the report", where, static_cast<int>(recipe.outputs.size())};
    if (fs::is_directory(write.resolved, error)) refuse(write, "is a folder; the report is a file");
    writes.insert(writes.begin(), write);  // checked first: named on its own, it is the likelier mistake
  }
  if (!junit_path.empty()) {
    PlacedPath write{resolve(junit_path), "the JUnit report", "--junit", static_cast<int>(recipe.outputs.size()) + 1};
    if (fs::is_directory(write.resolved, error)) refuse(write, "is a folder; the JUnit report is a file");
    writes.insert(writes.begin(), write);
  }

  for (const auto& write : writes) check_not_system(write);
  for (std::size_t i = 0; i < writes.size(); ++i) {
    for (const auto& input : inputs) check_apart(writes[i], input, "an input; lathe never writes over what it reads");
    for (std::size_t j = 0; j < writes.size(); ++j)
      if (writes[j].owner != writes[i].owner) check_apart(writes[i], writes[j], "another output");
  }
  for (const auto& folder : replaced_folders)
    if (const auto other = file_not_of_a_model_folder(folder.resolved); !other.empty())
      refuse(folder, "holds " + other + ", which is not part of a model; a safetensors output replaces its folder as a "
                     "whole, so it must be new, empty or an earlier output");
}

}  // namespace lathe
