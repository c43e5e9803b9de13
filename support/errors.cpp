#include "support/errors.h"

namespace lathe {

InputError::InputError(const std::string& file, const std::string& problem)
    : std::runtime_error(file + ": " + problem) {}

}  // namespace lathe
