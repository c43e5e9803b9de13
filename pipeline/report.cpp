#include "pipeline/report.h"

#include <cstdio>
#include <sstream>

#include "support/atomic_file.h"
#include "support/errors.h"

namespace lathe {
namespace {

std::string number(double value, const char* format = "%.4f") {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

std::string bytes(std::uint64_t count) {
  if (count >= (1u << 20)) return number(static_cast<double>(count) / (1 << 20), "%.2f MiB");
  if (count >= (1u << 10)) return number(static_cast<double>(count) / (1 << 10), "%.1f KiB");
  return std::to_string(count) + " B";
}

std::string structure(const nlohmann::json& model) {
  const auto& layers = model["layers"];
  std::ostringstream out;
  out << layers.size() << " layers";
  bool uniform = true;
  for (const auto& layer : layers) uniform = uniform && layer == layers.front();
  if (uniform && !layers.empty()) {
    out << ", " << layers.front()["query_heads"] << " heads (" << layers.front()["kv_heads"] << " kv), FFN "
        << layers.front()["ffn_width"];
  } else {
    out << ", heads per layer:";
    for (const auto& layer : layers) out << " " << layer["query_heads"] << "/" << layer["kv_heads"];
  }
  return out.str();
}

}  // namespace

std::string format_report(const nlohmann::json& report) {
  std::ostringstream out;
  const auto& model = report["model"];
  out << "model    " << model["path"].get<std::string>() << " (" << model["family"].get<std::string>() << ", "
      << structure(model) << ", " << model["parameters"] << " parameters, " << bytes(model["bytes_on_disk"]) << ")\n";
  if (report.value("dry_run", false)) {
    out << "dry run: the recipe, model and data are valid; would run:\n";
    for (const auto& pass : report["passes"]) out << "  " << pass["name"].get<std::string>() << " " << pass["params"].dump() << "\n";
    return out.str();
  }
  for (const auto& pass : report["passes"]) {
    out << "pass     " << pass["name"].get<std::string>() << "  " << number(pass["wall_seconds"], "%.2f s") << ", peak "
        << bytes(pass["peak_rss_bytes"]) << "\n";
    if (pass.contains("summary"))
      for (const auto& line : pass["summary"]) out << "           " << line.get<std::string>() << "\n";
  }
  for (const auto& [label, metrics] : report["metrics"].items()) {
    out << "metrics  " << label << ": " << metrics["tokens"] << " tokens";
    if (metrics.contains("mean_loss"))
      out << ", loss " << number(metrics["mean_loss"]) << ", perplexity " << number(metrics["perplexity"]);
    if (metrics.contains("kl"))
      out << ", KL " << number(metrics["kl"], "%.6f") << ", top-1 agreement " << number(metrics["top1_agreement"])
          << " (original loss " << number(metrics["reference_mean_loss"]) << ")";
    out << ", " << metrics["parameters"] << " parameters\n";
  }
  if (report.contains("gates"))
    for (const auto& gate : report["gates"])
    {
      const bool at_least = gate["gate"].get<std::string>().starts_with("min_");
      out << "gate     " << gate["gate"].get<std::string>() << ": " << number(gate["value"], "%.6f")
          << (gate["passed"].get<bool>() ? (at_least ? " >= " : " <= ") : " FAILS limit ") << number(gate["limit"], "%.6f")
          << "\n";
    }
  if (report.contains("artifacts"))
    for (const auto& artifact : report["artifacts"]) out << "file     " << artifact.get<std::string>() << "\n";
  for (const auto& output : report["outputs"])
    out << "output   " << output["format"].get<std::string>() << " " << output["path"].get<std::string>() << " ("
        << bytes(output["bytes"]) << ")\n";
  out << "status   " << report.value("status", "ok") << "\n";
  return out.str();
}

nlohmann::json failure_report(int exit_code, const std::string& message, const std::string& recipe_source) {
  nlohmann::json report = {{"schema_version", kReportSchemaVersion},
                           {"lathe_version", LATHE_VERSION},
                           {"status", exit_code == kExitBadInput ? "bad_input" : "internal_error"},
                           {"exit_code", exit_code},
                           {"message", message}};
  if (!recipe_source.empty()) report["recipe"] = recipe_source;
  return report;
}

void write_report(const nlohmann::json& report, const std::filesystem::path& path) {
  const auto text = report.dump(2) + "\n";
  write_file_atomically(path, [&](std::ostream& out) { out << text; });
}

}  // namespace lathe
