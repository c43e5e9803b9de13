#pragma once

// Writes the model as a float32 ONNX graph: input_ids [batch, sequence] (int64) ->
// logits [batch, sequence, vocab], opset 17, dynamic batch and sequence axes.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace lathe {

class Model;

struct OnnxExportOptions {
  std::int64_t opset = 17;
  // Extra metadata_props (provenance: lathe version, source checkpoint, recipe, passes).
  std::map<std::string, std::string> metadata;
  // Weights above this many bytes go to an external data file beside the model
  // (<file>.data); protobuf cannot hold a message over 2 GB.
  std::uint64_t external_data_threshold = (std::uint64_t{1} << 31) - (std::uint64_t{64} << 20);
};

// Writes through a temporary file and rename (the external data file too).
void write_onnx(const Model& model, const std::filesystem::path& path, const OnnxExportOptions& options = {});

}  // namespace lathe
