#include "pipeline/outputs.h"

#include <filesystem>

#include "core/model.h"
#include "formats/onnx_writer.h"
#include "formats/safetensors_model_writer.h"
#include "support/allocator.h"
#include "support/errors.h"

namespace lathe {
namespace {

std::uintmax_t bytes_under(const std::filesystem::path& path) {
  if (std::filesystem::is_regular_file(path)) return std::filesystem::file_size(path);
  std::uintmax_t total = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(path))
    if (entry.is_regular_file()) total += entry.file_size();
  return total;
}

}  // namespace

const std::vector<std::string>& output_formats() {
  static const std::vector<std::string> formats = {"onnx", "safetensors"};
  return formats;
}

nlohmann::json write_output(const Model& model, const OutputSpec& output,
                            const std::map<std::string, std::string>& provenance) {
  std::uintmax_t bytes = 0;
  if (output.format == "onnx") {
    OnnxExportOptions options;
    options.metadata = provenance;
    if (output.external_data) options.external_data_threshold = 0;
    write_onnx(model, output.path, options);
    bytes = bytes_under(output.path);
    auto external = output.path;
    external += ".data";
    if (std::filesystem::exists(external)) bytes += bytes_under(external);
  } else if (output.format == "safetensors") {
    write_safetensors_model(model, output.path, provenance, {output.dtype, output.max_shard_size});
    bytes = bytes_under(output.path);
  } else {
    throw InputError(output.where.str() + ": unknown output format \"" + output.format + "\"");
  }
  return_freed_memory();  // what the writer freed, so the next stage starts from the model alone
  return {{"format", output.format}, {"path", output.path.string()}, {"bytes", bytes}};
}

}  // namespace lathe
