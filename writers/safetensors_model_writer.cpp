#include "writers/safetensors_model_writer.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <set>

#include "core/model.h"
#include "core/model_loader.h"
#include "core/tensor_io.h"
#include "formats/safetensors.h"
#include "support/allocator.h"
#include "support/atomic_file.h"
#include "support/errors.h"

namespace lathe {
namespace {

// One tensor of the output: its checkpoint name, what the file stores, and how to make it when
// the writer gets to it (so only one converted tensor exists at a time).
struct PlannedTensor {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::function<at::Tensor()> make;
  std::vector<std::string> sources;  // canonical names whose mapped pages can go afterwards
};

// The dtype a float tensor is written in: its own ("source"), or the one the output asks for.
DType float_dtype(const at::Tensor& held, const std::string& requested) {
  if (requested == "float32") return DType::F32;
  if (requested == "float16") return DType::F16;
  if (requested == "bfloat16") return DType::BF16;
  return dtype_of(held);
}

// The model's tensors under the family's checkpoint names, in the family's layout: int8 values
// where the model quantized a weight (their scales are separate tensors), floats otherwise.
std::vector<PlannedTensor> plan_checkpoint(const Model& model, const std::string& requested_dtype) {
  const auto& names = model.family.tensors;
  const bool transpose = model.family.block.linear_layout == LinearLayout::InOut;
  std::vector<PlannedTensor> plan;
  auto stored_dtype = [&](const std::string& canonical) {
    return model.is_quantized_weight(canonical) ? DType::I8 : float_dtype(model.stored(canonical), requested_dtype);
  };
  // The stored tensor in the file's dtype (int8 stays int8; floats convert only if asked).
  auto as_written = [&model](const std::string& canonical, DType dtype) {
    const auto& held = model.stored(canonical);
    if (model.is_quantized_weight(canonical)) return held;
    return held.scalar_type() == scalar_type_of(dtype) ? held : held.to(scalar_type_of(dtype));
  };
  auto emit = [&](const std::string& checkpoint_name, const std::string& canonical, bool linear) {
    const auto dtype = stored_dtype(canonical);
    auto shape = model.stored(canonical).sizes().vec();
    const bool flip = linear && transpose;
    if (flip) std::reverse(shape.begin(), shape.end());
    plan.push_back({checkpoint_name, dtype, shape, [=, &model] {
                      auto tensor = as_written(canonical, dtype);
                      return flip ? tensor.t().contiguous() : tensor.contiguous();
                    }, {canonical}});
  };
  for (const auto& [canonical, checkpoint_name] : names.model)
    if (model.has(canonical)) emit(checkpoint_name, canonical, false);
  for (int i = 0; i < model.layer_count(); ++i) {
    for (const auto& [canonical, pattern] : names.layer)
      if (model.has_layer_tensor(i, canonical))
        emit(layer_tensor_name(pattern, i), layer_name(i, canonical), is_block_linear_weight(layer_name(i, canonical)));
    if (!model.family.block.fused_qkv || !model.layers[i].has_attention()) continue;
    auto fuse = [&](const std::string& pattern, const std::string& suffix, bool linear) {
      if (pattern.empty() || !model.has_layer_tensor(i, "attn.q." + suffix)) return;
      std::vector<std::string> parts;
      for (const char* head : {"attn.q.", "attn.k.", "attn.v."}) parts.push_back(layer_name(i, head + suffix));
      // One fused tensor holds one dtype: int8 only when q, k and v all are.
      const bool int8 = std::all_of(parts.begin(), parts.end(), [&](const auto& part) { return model.is_quantized_weight(part); });
      const auto dtype = int8 ? DType::I8 : float_dtype(model.stored(parts[0]), requested_dtype);
      auto shape = model.stored(parts[0]).sizes().vec();
      shape[0] = 0;
      for (const auto& part : parts) shape[0] += model.stored(part).size(0);
      const bool flip = linear && transpose && shape.size() == 2;
      if (flip) std::reverse(shape.begin(), shape.end());
      plan.push_back({layer_tensor_name(pattern, i), dtype, shape, [=, &model] {
                        std::vector<at::Tensor> values;
                        for (const auto& part : parts)
                          values.push_back(int8 ? model.stored(part) : model.tensor(part).to(scalar_type_of(dtype)));
                        auto fused = at::cat(values, 0);
                        return flip ? fused.t().contiguous() : fused;
                      }, parts});
    };
    fuse(names.fused_qkv_weight, "weight", true);
    fuse(names.fused_qkv_bias, "bias", false);
  }
  for (const auto& [canonical, tensor] : model.tensors)
    if (canonical.find(".attn.gate.") != std::string::npos) emit(kLatheTensorPrefix + canonical, canonical, false);
  // Scales of int8 weights, one per output channel, under the canonical weight name.
  for (const auto& [canonical, scales] : model.quantization.weight_scales) {
    bool stored_int8 = true;
    if (model.family.block.fused_qkv && canonical.find(".attn.") != std::string::npos &&
        canonical.find(".attn.o.") == std::string::npos) {
      const auto layer = canonical.substr(0, canonical.find(".attn."));
      for (const char* head : {".attn.q.weight", ".attn.k.weight", ".attn.v.weight"})
        stored_int8 = stored_int8 && model.quantization.weight_scales.count(layer + head);
    }
    if (stored_int8)
      plan.push_back({kWeightScalePrefix + canonical, DType::F32, scales.sizes().vec(),
                      [scales] { return scales.to(at::kFloat).contiguous(); }, {}});
  }
  return plan;
}

const char* torch_dtype_name(DType dtype) {
  return dtype == DType::F16 ? "float16" : dtype == DType::BF16 ? "bfloat16" : "float32";
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

nlohmann::json config_json(const Model& model, const char* torch_dtype) {
  auto config = model.source.config.is_object() ? model.source.config : nlohmann::json::object();
  const auto& keys = model.family.config;
  if (!config.contains("model_type") && !keys.model_types.empty()) config["model_type"] = keys.model_types.front();
  config[keys.hidden] = model.config.hidden;
  config[keys.vocab] = model.config.vocab;
  config[keys.layers] = model.layer_count();
  if (!keys.max_positions.empty()) config[keys.max_positions] = model.config.max_positions;
  if (!keys.head_dim.empty()) config[keys.head_dim] = model.config.head_dim;
  if (!keys.tie_embeddings.empty()) config[keys.tie_embeddings] = model.config.tied_embeddings;
  config["torch_dtype"] = torch_dtype;
  // The standard fields state the first layer that still has attention; lathe_layers is exact.
  const LayerStructure* reference = &model.layers.front();
  for (const auto& layer : model.layers)
    if (layer.has_attention()) { reference = &layer; break; }
  config[keys.heads] = reference->query_heads;
  config.erase(kHeadDimKey);
  if (keys.head_dim.empty() && model.config.head_dim * reference->query_heads != model.config.hidden)
    config[kHeadDimKey] = model.config.head_dim;
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

void write_safetensors_model(const Model& model, const std::filesystem::path& destination,
                             const std::map<std::string, std::string>& metadata, const SafetensorsOutputOptions& options) {
  namespace fs = std::filesystem;
  // Written whole into a staging folder beside the destination, then put in its place at once:
  // an interrupted run never leaves weights without their config or tokenizer there.
  StagedFolder staged(destination);
  try {
    const auto& folder = staged.path();
    if (options.max_shard_bytes <= 0) throw std::invalid_argument("max_shard_bytes must be positive");
    const auto plan = plan_checkpoint(model, options.dtype);
    Metadata file_metadata(metadata.begin(), metadata.end());
    file_metadata["format"] = "pt";
    if (!model.annotations.empty()) file_metadata["lathe"] = model.annotations.dump();

    // Shards in checkpoint order, each up to max_shard_bytes (a larger tensor gets one alone).
    std::vector<std::vector<std::size_t>> shards;
    std::uint64_t shard_bytes = 0, total_bytes = 0;
    for (std::size_t i = 0; i < plan.size(); ++i) {
      const auto bytes = TensorHeader{plan[i].name, plan[i].dtype, plan[i].shape}.byte_count();
      if (shards.empty() || (shard_bytes > 0 && shard_bytes + bytes > static_cast<std::uint64_t>(options.max_shard_bytes))) {
        shards.emplace_back();
        shard_bytes = 0;
      }
      shards.back().push_back(i);
      shard_bytes += bytes;
      total_bytes += bytes;
    }
    auto shard_name = [&](std::size_t index) {
      if (shards.size() == 1) return std::string("model.safetensors");
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", index + 1, shards.size());
      return std::string(name);
    };

    nlohmann::json weight_map = nlohmann::json::object();
    for (std::size_t s = 0; s < shards.size(); ++s) {
      std::vector<TensorHeader> headers;
      for (auto i : shards[s]) {
        headers.push_back({plan[i].name, plan[i].dtype, plan[i].shape});
        weight_map[plan[i].name] = shard_name(s);
      }
      write_safetensors_streamed(folder / shard_name(s), headers, file_metadata, [&](std::size_t k, std::ostream& out) {
        const auto& planned = plan[shards[s][k]];
        const auto tensor = planned.make();
        out.write(static_cast<const char*>(tensor.data_ptr()), static_cast<std::streamsize>(tensor.nbytes()));
        for (const auto& source : planned.sources) model.release_pages(source);
        return_freed_memory();
      });
    }
    const auto index_path = folder / "model.safetensors.index.json";
    if (shards.size() > 1) {
      const auto index = nlohmann::json{{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}}.dump(2) + "\n";
      write_file_atomically(index_path, [&](std::ostream& out) { out << index; });
    }
    // torch_dtype states the floats the file holds (the embedding's, unless that is int8).
    DType float_type = DType::F32;
    for (auto it = plan.rbegin(); it != plan.rend(); ++it)
      if (it->dtype != DType::I8 && !it->name.starts_with(kWeightScalePrefix) &&
          (float_type == DType::F32 || (it->sources.size() == 1 && it->sources[0] == "embed.weight")))
        float_type = it->dtype;
    const auto config = config_json(model, torch_dtype_name(float_type)).dump(2) + "\n";
    write_file_atomically(folder / "config.json", [&](std::ostream& out) { out << config; });
    if (!model.source.tokenizer.empty()) {
      std::ifstream in(model.source.tokenizer, std::ios::binary);
      write_file_atomically(folder / model.source.tokenizer.filename(), [&](std::ostream& out) { out << in.rdbuf(); });
    }
  } catch (const InputError& error) {
    throw InputError(staged.at_destination(error.what()));
  }
  staged.commit();
}

}  // namespace lathe
