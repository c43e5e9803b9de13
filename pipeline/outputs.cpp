#include "pipeline/outputs.h"

#include <algorithm>
#include <filesystem>

#include "core/model.h"
#include "pipeline/fingerprints.h"
#include "support/allocator.h"
#include "support/errors.h"
#include "writers/onnx_writer.h"
#include "writers/safetensors_model_writer.h"

namespace lathe {
namespace {

// The files an output consists of, sorted: the ONNX graph and its external data, or every file
// of a safetensors folder.
std::vector<std::filesystem::path> files_of(const OutputSpec& output) {
  std::vector<std::filesystem::path> files;
  if (std::filesystem::is_regular_file(output.path)) {
    files.push_back(output.path);
    auto external = output.path;
    external += ".data";
    if (std::filesystem::exists(external)) files.push_back(external);
    return files;
  }
  for (const auto& entry : std::filesystem::recursive_directory_iterator(output.path))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

const std::vector<std::string>& output_formats() {
  static const std::vector<std::string> formats = {"onnx", "safetensors"};
  return formats;
}

nlohmann::json write_output(const Model& model, const OutputSpec& output,
                            const std::map<std::string, std::string>& provenance) {
  if (output.format == "onnx") {
    OnnxExportOptions options;
    options.metadata = provenance;
    if (output.external_data) options.external_data_threshold = 0;
    write_onnx(model, output.path, options);
  } else if (output.format == "safetensors") {
    write_safetensors_model(model, output.path, provenance, {output.dtype, output.max_shard_size});
  } else {
    throw InputError(output.where.str() + ": unknown output format \"" + output.format + "\"");
  }
  return_freed_memory();  // what the writer freed, so the next stage starts from the model alone
  const auto files = file_fingerprints(files_of(output));
  std::uintmax_t bytes = 0;
  for (const auto& file : files) bytes += file["bytes"].get<std::uintmax_t>();
  return {{"format", output.format}, {"path", output.path.string()}, {"bytes", bytes}, {"files", files}};
}

}  // namespace lathe
