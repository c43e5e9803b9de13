#include "cli_runner.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>

namespace lathe::testing {
namespace {

std::string quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

}  // namespace

std::filesystem::path shared_path(const std::string& relative) {
  return std::filesystem::path(LATHE_SHARED_DIR) / relative;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

ScratchFolder::ScratchFolder() {
  std::random_device entropy;
  path_ = std::filesystem::temp_directory_path() /
          ("lathe-cli-test-" + std::to_string(::getpid()) + "-" + std::to_string(entropy()));
  std::filesystem::create_directories(path_);
}

ScratchFolder::~ScratchFolder() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

CommandResult run_lathe(const std::vector<std::string>& arguments, const std::filesystem::path& working_directory,
                        const std::vector<std::string>& environment) {
  ScratchFolder capture;
  std::string command = "cd " + quote(working_directory.string()) + " && ";
  if (!environment.empty()) {
    command += "env";
    for (const auto& variable : environment) command += " " + quote(variable);
    command += " ";
  }
  command += quote(LATHE_BINARY);
  for (const auto& argument : arguments) command += " " + quote(argument);
  command += " >" + quote((capture / "out").string()) + " 2>" + quote((capture / "err").string()) + " </dev/null";
  const int status = std::system(command.c_str());
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = read_text(capture / "out");
  result.err = read_text(capture / "err");
  return result;
}

}  // namespace lathe::testing
