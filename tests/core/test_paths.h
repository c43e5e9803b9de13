#pragma once

#include <filesystem>
#include <string>

namespace lathe::testing {

inline std::filesystem::path shared_path(const std::string& relative) {
  return std::filesystem::path(LATHE_SHARED_DIR) / relative;
}

inline std::filesystem::path source_path(const std::string& relative) {
  return std::filesystem::path(LATHE_SOURCE_DIR) / relative;
}

// A fresh folder under the system's temporary folder, removed when the object goes.
class TemporaryFolder {
 public:
  TemporaryFolder();
  ~TemporaryFolder();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace lathe::testing
