#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace lathe {

// The report a person reads on stdout: model, passes with times, metrics, gates, outputs.
std::string format_report(const nlohmann::json& report);

// The JSON report, written atomically.
void write_report(const nlohmann::json& report, const std::filesystem::path& path);

}  // namespace lathe
