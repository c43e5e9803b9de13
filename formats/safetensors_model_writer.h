#pragma once

#include <filesystem>
#include <map>
#include <string>

namespace lathe {

class Model;

// Writes a Hugging Face-style model folder: model.safetensors in the family's own tensor names
// and layout (fused QKV joined again, Conv1D weights transposed back), a config.json that
// states the current shapes (per-layer structure under "lathe_layers" when layers differ), the
// tokenizer when the source had one, and `metadata` plus the model's annotations in
// __metadata__. Every file is written through a temporary file and a rename.
void write_safetensors_model(const Model& model, const std::filesystem::path& folder,
                             const std::map<std::string, std::string>& metadata = {});

}  // namespace lathe
