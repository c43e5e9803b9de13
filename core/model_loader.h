#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "core/model.h"

namespace lathe {

struct ModelLocation {
  std::filesystem::path path;                   // folder, .safetensors, index .json, .pt/.bin/.pth
  std::optional<std::filesystem::path> config;  // config.json when not beside the checkpoint
  std::optional<std::string> family;            // instead of the config's model_type
};

// Loads a checkpoint into the IR: finds its config and family, maps checkpoint tensor names to
// canonical ones, converts to float32 and [out, in] layout, splits fused QKV. Every problem is
// an InputError naming the file.
Model load_model(const ModelLocation& location);

// The config.json key lathe writes for per-layer structure that differs between layers.
inline constexpr const char* kLayerStructureKey = "lathe_layers";

}  // namespace lathe
