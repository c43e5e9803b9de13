#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace lathe {

// The report a person reads on stdout: model, passes with times, metrics, gates, outputs.
std::string format_report(const nlohmann::json& report);

// The report's format version: scripts may rely on its keys while it stays the same.
inline constexpr int kReportSchemaVersion = 1;

// The JSON report, written atomically.
void write_report(const nlohmann::json& report, const std::filesystem::path& path);

// The report of a run that stopped with an error: status "bad_input" (exit 2) or
// "internal_error" (exit 1), the message as printed, and what was known of the run.
nlohmann::json failure_report(int exit_code, const std::string& message, const std::string& recipe_source);

}  // namespace lathe
