#include "core/model.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "support/errors.h"
#include "support/mapped_file.h"

namespace lathe {
namespace {

std::string shape_string(at::IntArrayRef shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? "," : "") << shape[i];
  out << "]";
  return out.str();
}

void expect_shape(const Model& model, const std::string& origin, const std::string& name,
                  std::vector<std::int64_t> expected) {
  auto found = model.tensors.find(name);
  if (found == model.tensors.end()) throw InputError(origin, "missing tensor " + name);
  if (found->second.sizes() != at::IntArrayRef(expected))
    throw InputError(origin, "tensor " + name + " has shape " + shape_string(found->second.sizes()) +
                                 ", expected " + shape_string(expected));
}

}  // namespace

std::string layer_name(int layer, const std::string& name) {
  return "layers." + std::to_string(layer) + "." + name;
}

const at::Tensor& Model::stored(const std::string& name) const {
  auto found = tensors.find(name);
  if (found == tensors.end()) throw InputError(source.path.string(), "missing tensor " + name);
  return found->second;
}

bool holds_float_values(const at::Tensor& tensor) {
  return tensor.scalar_type() == at::kFloat || tensor.scalar_type() == at::kDouble;
}

at::Tensor Model::tensor(const std::string& name) const {
  const auto& held = stored(name);
  if (holds_float_values(held)) return held;
  auto values = at::empty(held.sizes(), at::kFloat);
  rows_into(name, 0, values);
  return values;
}

void Model::rows_into(const std::string& name, std::int64_t first, const at::Tensor& out) const {
  const auto held = stored(name).narrow(0, first, out.size(0));
  out.copy_(held);
  if (held.scalar_type() != at::kChar) return;
  auto scales = quantization.weight_scales.find(name);
  if (scales == quantization.weight_scales.end())
    throw InputError(source.path.string(), "int8 tensor " + name + " has no scales");
  out.mul_(scales->second.narrow(0, first, out.size(0)).unsqueeze(1));
}

at::Tensor Model::layer_tensor(int layer, const std::string& name) const { return tensor(layer_name(layer, name)); }

bool Model::has_layer_tensor(int layer, const std::string& name) const {
  return has(layer_name(layer, name));
}

std::int64_t Model::parameter_count() const {
  std::int64_t count = 0;
  for (const auto& [name, tensor] : tensors) count += tensor.numel();
  return count;
}

std::int64_t Model::decoder_parameter_count() const {
  std::int64_t count = 0;
  for (const auto& [name, tensor] : tensors)
    if (name.rfind("layers.", 0) == 0) count += tensor.numel();
  return count;
}

std::int64_t Model::stored_bytes() const {
  std::int64_t bytes = 0;
  for (const auto& [name, tensor] : tensors) bytes += tensor.numel() * tensor.element_size();
  for (const auto& [name, scales] : quantization.weight_scales) bytes += scales.numel() * scales.element_size();
  return bytes;
}

std::int64_t Model::float_bytes() const { return parameter_count() * static_cast<std::int64_t>(sizeof(float)); }

std::vector<std::string> Model::layer_tensor_names(int layer) const {
  const auto prefix = layer_name(layer, "");
  std::vector<std::string> names;
  for (auto it = tensors.lower_bound(prefix); it != tensors.end() && it->first.starts_with(prefix); ++it)
    names.push_back(it->first);
  return names;
}

const MappedFile* Model::mapping_of(const std::string& name, std::span<const std::byte>& bytes) const {
  auto found = tensors.find(name);
  if (found == tensors.end()) return nullptr;
  bytes = {static_cast<const std::byte*>(found->second.data_ptr()),
           static_cast<std::size_t>(found->second.numel() * found->second.element_size())};
  // The tensor owns its mapping, so a mapping holding its bytes is alive while it is.
  for (const auto& entry : mapped_files)
    if (const auto mapping = entry.lock(); mapping && mapping->contains(bytes.data(), bytes.size())) return mapping.get();
  return nullptr;
}

void Model::populate_pages(const std::string& name) const {
  std::span<const std::byte> bytes;
  if (const auto* mapping = mapping_of(name, bytes)) mapping->populate(bytes.data(), bytes.size());
}

bool Model::is_memory_mapped(const std::string& name) const {
  std::span<const std::byte> bytes;
  return mapping_of(name, bytes) != nullptr;
}

void Model::release_pages(const std::string& name) const {
  std::span<const std::byte> bytes;
  if (const auto* mapping = mapping_of(name, bytes)) mapping->release(bytes.data(), bytes.size());
}

Model with_float64_values(const Model& model) {
  Model copy = model.clone();
  for (auto& [name, tensor] : copy.tensors) {
    const auto scales = model.quantization.weight_scales.find(name);
    tensor = scales == model.quantization.weight_scales.end()
                 ? tensor.to(at::kDouble)
                 : tensor.to(at::kDouble) * scales->second.to(at::kDouble).unsqueeze(1);
  }
  copy.quantization.weight_scales.clear();
  return copy;
}

void validate_model(const Model& model, const std::string& origin) {
  const auto& block = model.family.block;
  const auto hidden = model.config.hidden;
  const auto head_dim = model.config.head_dim;
  if (hidden <= 0 || model.config.vocab <= 0 || head_dim <= 0 || model.layers.empty())
    throw InputError(origin, "hidden size, vocabulary, head size and layer count must be positive");
  expect_shape(model, origin, "embed.weight", {model.config.vocab, hidden});
  if (block.position == PositionKind::Learned)
    expect_shape(model, origin, "pos_embed.weight", {model.config.max_positions, hidden});
  if (block.position == PositionKind::Rotary && head_dim % 2 != 0)
    throw InputError(origin, "rotary positions need an even head size, got " + std::to_string(head_dim));
  expect_shape(model, origin, "final_norm.weight", {hidden});
  if (const auto& clipped = model.attention.clipped_softmax;
      clipped && !(clipped->gamma <= 0 && clipped->zeta >= 1 && std::isfinite(clipped->gamma) && std::isfinite(clipped->zeta)))
    throw InputError(origin, "the clipped softmax needs gamma <= 0 and zeta >= 1, got gamma " +
                                 std::to_string(clipped->gamma) + " and zeta " + std::to_string(clipped->zeta));
  if (block.norm_bias) expect_shape(model, origin, "final_norm.bias", {hidden});
  if (!model.config.tied_embeddings) expect_shape(model, origin, "lm_head.weight", {model.config.vocab, hidden});
  for (int i = 0; i < model.layer_count(); ++i) {
    const auto& layer = model.layers[i];
    bool mapping_ok = layer.kv_of_query.empty();
    if (!mapping_ok && static_cast<std::int64_t>(layer.kv_of_query.size()) == layer.query_heads) {
      std::vector<bool> read(layer.kv_heads, false);
      mapping_ok = true;
      for (auto kv : layer.kv_of_query) {
        mapping_ok = mapping_ok && kv >= 0 && kv < layer.kv_heads;
        if (mapping_ok) read[kv] = true;
      }
      mapping_ok = mapping_ok && std::all_of(read.begin(), read.end(), [](bool r) { return r; });
    }
    if (!mapping_ok)
      throw InputError(origin, "layer " + std::to_string(i) + ": the kv head map must name a kv head for each of its " +
                                   std::to_string(layer.query_heads) + " query heads and use every kv head");
    if (layer.query_heads < 0 || layer.kv_heads < 0 || layer.ffn_width < 0 ||
        (layer.kv_heads > 0 && layer.regular_groups() && layer.query_heads % layer.kv_heads != 0) ||
        (layer.query_heads > 0 && layer.kv_heads == 0))
      throw InputError(origin, "layer " + std::to_string(i) + ": " + std::to_string(layer.query_heads) +
                                   " query heads cannot share " + std::to_string(layer.kv_heads) + " kv heads");
    if (layer.has_attention()) {
      expect_shape(model, origin, layer_name(i, "attn_norm.weight"), {hidden});
      if (block.norm_bias) expect_shape(model, origin, layer_name(i, "attn_norm.bias"), {hidden});
      expect_shape(model, origin, layer_name(i, "attn.q.weight"), {layer.query_heads * head_dim, hidden});
      expect_shape(model, origin, layer_name(i, "attn.k.weight"), {layer.kv_heads * head_dim, hidden});
      expect_shape(model, origin, layer_name(i, "attn.v.weight"), {layer.kv_heads * head_dim, hidden});
      expect_shape(model, origin, layer_name(i, "attn.o.weight"), {hidden, layer.query_heads * head_dim});
      if (model.attention.gated) {
        if (hidden % layer.query_heads != 0)
          throw InputError(origin, "layer " + std::to_string(i) + ": gated attention needs the hidden size " +
                                       std::to_string(hidden) + " to split evenly over its " +
                                       std::to_string(layer.query_heads) + " query heads");
        expect_shape(model, origin, layer_name(i, "attn.gate.weight"), {layer.query_heads, hidden / layer.query_heads});
        expect_shape(model, origin, layer_name(i, "attn.gate.bias"), {layer.query_heads});
      }
      if (block.attention_bias) {
        expect_shape(model, origin, layer_name(i, "attn.q.bias"), {layer.query_heads * head_dim});
        expect_shape(model, origin, layer_name(i, "attn.k.bias"), {layer.kv_heads * head_dim});
        expect_shape(model, origin, layer_name(i, "attn.v.bias"), {layer.kv_heads * head_dim});
        expect_shape(model, origin, layer_name(i, "attn.o.bias"), {hidden});
      }
    }
    if (layer.ffn_width > 0) {
      expect_shape(model, origin, layer_name(i, "mlp_norm.weight"), {hidden});
      if (block.norm_bias) expect_shape(model, origin, layer_name(i, "mlp_norm.bias"), {hidden});
      if (block.mlp == MlpKind::GatedSiLU)
        expect_shape(model, origin, layer_name(i, "mlp.gate.weight"), {layer.ffn_width, hidden});
      expect_shape(model, origin, layer_name(i, "mlp.up.weight"), {layer.ffn_width, hidden});
      expect_shape(model, origin, layer_name(i, "mlp.down.weight"), {hidden, layer.ffn_width});
      if (block.mlp_bias) {
        expect_shape(model, origin, layer_name(i, "mlp.up.bias"), {layer.ffn_width});
        expect_shape(model, origin, layer_name(i, "mlp.down.bias"), {hidden});
      }
    }
  }
  for (const auto& [name, tensor] : model.tensors) {
    const auto type = tensor.scalar_type();
    if (type == at::kChar && !model.is_quantized_weight(name))
      throw InputError(origin, "int8 tensor " + name + " has no scales");
    if (type != at::kFloat && type != at::kHalf && type != at::kBFloat16 && type != at::kChar)
      throw InputError(origin, "tensor " + name + " is " + std::string(at::toString(type)) +
                                   "; lathe holds weights as float32, float16, bfloat16 or scaled int8");
  }
}

}  // namespace lathe

namespace lathe {

bool is_block_linear_weight(const std::string& canonical_name) {
  const bool in_block = canonical_name.find(".attn.") != std::string::npos ||
                        canonical_name.find(".mlp.") != std::string::npos;
  return in_block && canonical_name.ends_with(".weight");
}

}  // namespace lathe
