#pragma once

#include <stdexcept>
#include <string>

namespace lathe {

// Bad input from the user: a recipe, checkpoint or data file that lathe cannot accept.
// The message is one line that names the file, where in it, and what is wrong. Exit code 2.
class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
  InputError(const std::string& file, const std::string& problem);
};

// A quality gate of the recipe was not met. Exit code 3.
class GateFailure : public std::runtime_error {
 public:
  explicit GateFailure(const std::string& message) : std::runtime_error(message) {}
};

enum ExitCode : int {
  kExitOk = 0,
  kExitInternalError = 1,
  kExitBadInput = 2,
  kExitGateFailed = 3,
};

}  // namespace lathe
