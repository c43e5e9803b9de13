#pragma once

// Runs the lathe binary as a user's shell script would and captures what it says.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lathe::testing {

struct CommandResult {
  int exit_code = -1;  // 128 + the signal when a signal ended it
  std::string out;
  std::string err;
  double cpu_seconds = 0;  // user + system time of the lathe process
  long max_rss_bytes = 0;  // its peak resident set
};

// Runs `lathe` with `arguments` in `working_directory`, with `environment` ("NAME=value")
// added to this process's and stdin from /dev/null.
CommandResult run_lathe(const std::vector<std::string>& arguments,
                        const std::filesystem::path& working_directory = LATHE_SOURCE_DIR,
                        const std::vector<std::string>& environment = {});

// Runs each argument list as run_lathe does, two at a time (lathe's start is about a second
// of LibTorch loading, and these machines have two cores); results in the same order.
std::vector<CommandResult> run_lathe_each(const std::vector<std::vector<std::string>>& argument_lists);

// The same with the size of any file it writes limited to `file_size_limit` bytes
// (RLIMIT_FSIZE, SIGXFSZ ignored): writes past it fail as on a full disk.
CommandResult run_lathe_on_a_small_disk(const std::vector<std::string>& arguments, std::uint64_t file_size_limit);

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
