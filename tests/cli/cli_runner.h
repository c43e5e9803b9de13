#pragma once

// Runs the lathe binary as a user's shell script would and captures what it says.

#include <filesystem>
#include <string>
#include <vector>

namespace lathe::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `lathe` with `arguments` (each shell-quoted) in `working_directory`, with `environment`
// ("NAME=value") added to this process's.
CommandResult run_lathe(const std::vector<std::string>& arguments,
                        const std::filesystem::path& working_directory = LATHE_SOURCE_DIR,
                        const std::vector<std::string>& environment = {});

std::filesystem::path shared_path(const std::string& relative);
std::string read_text(const std::filesystem::path& path);
void write_text(const std::filesystem::path& path, const std::string& text);

class ScratchFolder {
 public:
  ScratchFolder();
  ~ScratchFolder();
  ScratchFolder(const ScratchFolder&) = delete;
  ScratchFolder& operator=(const ScratchFolder&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace lathe::testing
