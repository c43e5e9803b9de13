#pragma once

// The report as JUnit XML, for the test views of CI systems: a test case per pass (with its
// wall time), per quality gate (a failure when the model misses it), and for the run itself
// (an error naming the message when it stopped on bad input or an internal error).

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace lathe {

std::string junit_xml(const nlohmann::json& report);

// Written atomically, like the report.
void write_junit(const nlohmann::json& report, const std::filesystem::path& path);

}  // namespace lathe
