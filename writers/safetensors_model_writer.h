#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace lathe {

class Model;

// Writes a Hugging Face-style model folder: safetensors shards in the family's own tensor names
// and layout (fused QKV joined again, Conv1D weights transposed back), a config.json that
// states the current shapes (per-layer structure under "lathe_layers" when layers differ), the
// tokenizer when the source had one, and `metadata` plus the model's annotations in
// __metadata__. The folder is written whole under a temporary sibling name and then replaces the
// destination in one rename (support/atomic_file.h, StagedFolder): an earlier folder there is
// replaced as a whole, and an interrupted write leaves it as it was.
struct SafetensorsOutputOptions {
  // Float tensors: "source" (each in the dtype it is held in), "float32", "float16", "bfloat16".
  // int8 weights stay int8 with float32 scales.
  std::string dtype = "source";
  // Shards up to this size: model-00001-of-0000n.safetensors with model.safetensors.index.json
  // (one shard: model.safetensors).
  std::int64_t max_shard_bytes = 2'000'000'000;
};

// Tensors are converted and written one at a time, so the writer holds about one tensor.
void write_safetensors_model(const Model& model, const std::filesystem::path& destination,
                             const std::map<std::string, std::string>& metadata = {},
                             const SafetensorsOutputOptions& options = {});

}  // namespace lathe
