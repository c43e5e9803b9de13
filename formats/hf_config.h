#pragma once

// Hugging Face `config.json`: parsed once, queried by key with file-naming errors.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace lathe {

class HfConfig {
 public:
  static HfConfig load(const std::filesystem::path& path);
  static HfConfig from_json(nlohmann::json json, std::filesystem::path origin);

  // A key whose value is null ("pad_token_id": null) counts as absent: has() is false and
  // find_*() return nullopt.
  bool has(const std::string& key) const;
  // Typed getters: a missing key or a wrong type is an InputError naming the file and key.
  // get_int accepts integral floats (64.0); get_double accepts integers.
  std::int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::optional<std::int64_t> find_int(const std::string& key) const;
  std::optional<double> find_double(const std::string& key) const;
  std::optional<bool> find_bool(const std::string& key) const;
  std::optional<std::string> find_string(const std::string& key) const;

  const nlohmann::json& json() const { return json_; }
  nlohmann::json& json() { return json_; }
  const std::filesystem::path& origin() const { return origin_; }

 private:
  nlohmann::json json_;
  std::filesystem::path origin_;
};

}  // namespace lathe
