#include "formats/safetensors_model_writer.h"

#include <ATen/ATen.h>

#include <fstream>

#include "core/model.h"
#include "core/model_loader.h"
#include "core/tensor_io.h"
#include "formats/safetensors.h"
#include "support/atomic_file.h"

namespace lathe {
namespace {

// The weight as the file stores it: int8 values when the model quantized it (their scales are
// written separately), the float tensor otherwise.
at::Tensor stored_form(const Model& model, const std::string& canonical) {
  return model.is_quantized_weight(canonical) ? model.stored(canonical) : model.tensor(canonical);
}

// The model's tensors under the family's checkpoint names, in the family's layout.
std::vector<std::pair<std::string, at::Tensor>> checkpoint_tensors(const Model& model) {
  const auto& names = model.family.tensors;
  const bool transpose = model.family.block.linear_layout == LinearLayout::InOut;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  auto emit = [&](const std::string& checkpoint_name, at::Tensor tensor, bool linear) {
    if (linear && transpose) tensor = tensor.t();
    tensors.emplace_back(checkpoint_name, tensor.contiguous());
  };
  for (const auto& [canonical, checkpoint_name] : names.model)
    if (model.has(canonical)) emit(checkpoint_name, stored_form(model, canonical), false);
  for (int i = 0; i < model.layer_count(); ++i) {
    for (const auto& [canonical, pattern] : names.layer)
      if (model.has_layer_tensor(i, canonical))
        emit(layer_tensor_name(pattern, i), stored_form(model, layer_name(i, canonical)),
             is_block_linear_weight(layer_name(i, canonical)));
    if (!model.family.block.fused_qkv || !model.layers[i].has_attention()) continue;
    auto fuse = [&](const std::string& pattern, const std::string& suffix, bool linear) {
      if (pattern.empty() || !model.has_layer_tensor(i, "attn.q." + suffix)) return;
      // One fused tensor holds one dtype: int8 only when q, k and v all are.
      std::size_t quantized = 0;
      for (const char* head : {"attn.q.", "attn.k.", "attn.v."})
        quantized += model.quantization.weight_scales.count(layer_name(i, head + suffix));
      std::vector<at::Tensor> parts;
      for (const char* head : {"attn.q.", "attn.k.", "attn.v."})
        parts.push_back(quantized == 3 ? stored_form(model, layer_name(i, head + suffix)) : model.layer_tensor(i, head + suffix));
      emit(layer_tensor_name(pattern, i), at::cat(parts, 0), linear);
    };
    fuse(names.fused_qkv_weight, "weight", true);
    fuse(names.fused_qkv_bias, "bias", false);
  }
  for (const auto& [canonical, tensor] : model.tensors)
    if (canonical.find(".attn.gate.") != std::string::npos) emit(kLatheTensorPrefix + canonical, tensor, false);
  // Scales of int8 weights, one per output channel, under the canonical weight name.
  for (const auto& [canonical, scales] : model.quantization.weight_scales) {
    bool stored_int8 = true;
    if (model.family.block.fused_qkv && canonical.find(".attn.") != std::string::npos &&
        canonical.find(".attn.o.") == std::string::npos) {
      const auto layer = canonical.substr(0, canonical.find(".attn."));
      for (const char* head : {".attn.q.weight", ".attn.k.weight", ".attn.v.weight"})
        stored_int8 = stored_int8 && model.quantization.weight_scales.count(layer + head);
    }
    if (stored_int8) tensors.emplace_back(kWeightScalePrefix + canonical, scales.contiguous());
  }
  return tensors;
}

nlohmann::json quantization_json(const ModelQuantization& quantization) {
  nlohmann::json json = {{"mode", quantization_mode_name(quantization.mode)},
                         {"target_cpu", target_cpu_name(quantization.target_cpu)},
                         {"weight_limit", quantization.weight_limit}};
  auto activations = nlohmann::json::object();
  for (const auto& [site, parameters] : quantization.activations)
    activations[site] = {{"scale", parameters.scale}, {"zero_point", parameters.zero_point}};
  json["activations"] = activations;
  json["dynamic_sites"] = quantization.dynamic_sites;
  return json;
}

bool uniform_layers(const Model& model) {
  for (const auto& layer : model.layers)
    if (!(layer == model.layers.front())) return false;
  return true;
}

nlohmann::json config_json(const Model& model) {
  auto config = model.source.config.is_object() ? model.source.config : nlohmann::json::object();
  const auto& keys = model.family.config;
  if (!config.contains("model_type") && !keys.model_types.empty()) config["model_type"] = keys.model_types.front();
  config[keys.hidden] = model.config.hidden;
  config[keys.vocab] = model.config.vocab;
  config[keys.layers] = model.layer_count();
  if (!keys.max_positions.empty()) config[keys.max_positions] = model.config.max_positions;
  if (!keys.head_dim.empty()) config[keys.head_dim] = model.config.head_dim;
  if (!keys.tie_embeddings.empty()) config[keys.tie_embeddings] = model.config.tied_embeddings;
  // The standard fields state the first layer that still has attention; lathe_layers is exact.
  const LayerStructure* reference = &model.layers.front();
  for (const auto& layer : model.layers)
    if (layer.has_attention()) { reference = &layer; break; }
  config[keys.heads] = reference->query_heads;
  if (!keys.kv_heads.empty()) config[keys.kv_heads] = reference->kv_heads;
  if (!keys.ffn.empty()) config[keys.ffn] = model.layers.front().ffn_width;
  config.erase(kLayerStructureKey);
  if (!uniform_layers(model)) {
    auto layers = nlohmann::json::array();
    for (const auto& layer : model.layers) {
      nlohmann::json entry = {{"query_heads", layer.query_heads}, {"kv_heads", layer.kv_heads}, {"ffn_width", layer.ffn_width}};
      if (!layer.regular_groups()) entry["kv_of_query"] = layer.kv_of_query;
      layers.push_back(entry);
    }
    config[kLayerStructureKey] = layers;
  }
  config.erase("lathe");
  if (!model.annotations.empty()) config["lathe"] = model.annotations;
  config.erase(kAttentionKey);
  if (model.attention.active()) {
    nlohmann::json attention = {{"gated", model.attention.gated}};
    if (const auto& clipped = model.attention.clipped_softmax)
      attention["clipped_softmax"] = {{"gamma", clipped->gamma}, {"zeta", clipped->zeta}};
    config[kAttentionKey] = attention;
  }
  config.erase(kQuantizationKey);
  if (model.quantization.active()) config[kQuantizationKey] = quantization_json(model.quantization);
  return config;
}

}  // namespace

void write_safetensors_model(const Model& model, const std::filesystem::path& folder,
                             const std::map<std::string, std::string>& metadata) {
  auto tensors = checkpoint_tensors(model);
  std::vector<TensorView> views;
  views.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) views.push_back(view_of(name, tensor));
  Metadata file_metadata(metadata.begin(), metadata.end());
  file_metadata["format"] = "pt";
  if (!model.annotations.empty()) file_metadata["lathe"] = model.annotations.dump();

  std::filesystem::create_directories(folder);
  write_safetensors(folder / "model.safetensors", views, file_metadata);
  const auto config = config_json(model).dump(2) + "\n";
  write_file_atomically(folder / "config.json", [&](std::ostream& out) { out << config; });
  if (!model.source.tokenizer.empty() &&
      std::filesystem::absolute(model.source.tokenizer.parent_path()) != std::filesystem::absolute(folder)) {
    std::ifstream in(model.source.tokenizer, std::ios::binary);
    write_file_atomically(folder / model.source.tokenizer.filename(), [&](std::ostream& out) { out << in.rdbuf(); });
  }
}

}  // namespace lathe
