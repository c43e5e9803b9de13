#pragma once

#include <string>
#include <vector>

#include "passes/pass.h"

namespace lathe {

// Every pass lathe has, in the order of passes/pass_registry.def.
const std::vector<PassInfo>& pass_registry();
// nullptr when no pass has that name.
const PassInfo* find_pass(const std::string& name);
// "a, b, c": for error messages that list the valid choices.
std::string pass_names();

}  // namespace lathe
