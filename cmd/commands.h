#pragma once

// The subcommands of the lathe command line. Each returns the process exit code and lets
// InputError and GateFailure escape to main, which turns them into exit codes 2 and 3.

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lathe {

struct RunCommand {
  std::optional<std::filesystem::path> recipe;  // none: the embedded default recipe
  std::vector<std::string> overrides;
  bool dry_run = false;
  int threads = 0;  // 0: all cores
  std::optional<std::filesystem::path> report;
  std::optional<std::filesystem::path> junit;  // the report as JUnit XML, on every exit
  std::string memory_limit;  // "24G", "512M", bytes; empty: the memory available at start
  std::string progress = "auto";  // auto, plain or none (support/progress.h)
};
int run_command(const RunCommand& command);

struct InspectCommand {
  std::filesystem::path model;
  std::optional<std::filesystem::path> config;
  std::optional<std::string> family;
  bool json = false;
  bool tensors = false;
};
int inspect_command(const InspectCommand& command);

struct PassesCommand {
  bool json = false;
  bool markdown = false;
};
int passes_command(const PassesCommand& command);

struct ValidateCommand {
  std::optional<std::filesystem::path> recipe;
  std::vector<std::string> overrides;
  bool json = false;
};
int validate_command(const ValidateCommand& command);

}  // namespace lathe
