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
// canonical ones, keeps each tensor in its stored dtype (memory-mapped where the checkpoint is
// safetensors), transposes to [out, in] layout where the family stores [in, out], splits fused
// QKV. Every problem is an InputError naming the file.
Model load_model(const ModelLocation& location);

// The config.json key lathe writes for per-layer structure that differs between layers.
inline constexpr const char* kLayerStructureKey = "lathe_layers";
// The config.json key holding the head size of a family whose config derives it from the hidden
// size (GPT-2's n_embd / n_head), written once hidden dimensions were removed.
inline constexpr const char* kHeadDimKey = "lathe_head_dim";
// The config.json key holding a quantized model's mode and activation parameters.
inline constexpr const char* kQuantizationKey = "lathe_quantization";
// Safetensors tensors holding the per-output-channel scales of int8 weights, followed by the
// canonical weight name (e.g. lathe.weight_scale.layers.0.attn.q.weight); the weights themselves
// are I8 under their usual names, value = int8 x scale of its output channel.
inline constexpr const char* kWeightScalePrefix = "lathe.weight_scale.";
// The config.json key describing a changed attention (clipped softmax, gated heads), and the
// prefix of tensors no family names, stored under "lathe." + canonical name
// (e.g. lathe.layers.0.attn.gate.weight).
inline constexpr const char* kAttentionKey = "lathe_attention";
inline constexpr const char* kLatheTensorPrefix = "lathe.";

}  // namespace lathe
