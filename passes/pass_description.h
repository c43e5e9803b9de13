#pragma once

// The pass registry described for scripts and documents: `lathe passes --json` and
// `--markdown` (the README's parameter tables are this text), and parameter values as JSON
// for reports.

#include <string>

#include <nlohmann/json.hpp>

#include "passes/pass.h"

namespace lathe {

// Numbers, bools and strings as themselves; lists as arrays; a head list as ["retrieval",
// "1.0", ...]; an id range as [first, last], or null when empty.
nlohmann::json param_value_json(const ParamValue& value);
nlohmann::json param_values_json(const ParamValues& values);

// Every pass: name, kind, summary, parameters (name, type, default, choices, bounds, doc) and
// the groups of parameters that exclude each other.
nlohmann::json pass_registry_json();

// One section per pass: its summary and a table of its parameters.
std::string pass_registry_markdown();

}  // namespace lathe
