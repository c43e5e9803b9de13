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
  // Models whose weights take more than this many bytes (int8 weights a byte each, the rest
  // float32) keep them in an external data file beside the model (<file>.data), written tensor
  // by tensor as the graph is built, so the writer never holds them all (and protobuf cannot
  // hold a message over 2 GB anyway).
  std::uint64_t external_data_threshold = std::uint64_t{1} << 30;
};

// Writes through a temporary file and rename (the external data file too).
void write_onnx(const Model& model, const std::filesystem::path& path, const OnnxExportOptions& options = {});

}  // namespace lathe
