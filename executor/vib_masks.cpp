#include "executor/vib_masks.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "core/model.h"
#include "core/structure_size.h"

namespace lathe {

VibMask::VibMask(std::int64_t units, at::Generator& generator, at::Tensor fixed) : fixed_(std::move(fixed)) {
  mu_ = (at::randn({units}, generator, at::kFloat) * 0.01 + 1.0).requires_grad_(true);
  log_sigma2_ = (at::randn({units}, generator, at::kFloat) * 0.01 - 9.0).requires_grad_(true);
  if (fixed_.defined() && !fixed_.any().item<bool>()) fixed_ = at::Tensor();
}

at::Tensor VibMask::hold_fixed(at::Tensor values) const {
  return fixed_.defined() ? at::where(fixed_, at::ones_like(values), values) : values;
}

at::Tensor VibMask::sample(at::Generator* generator) const {
  if (generator == nullptr) return hold_fixed(mu_);
  const auto eps = at::randn({units()}, *generator, at::kFloat);
  // The KL term alone keeps raising sigma of a unit it has switched off; noise beyond sigma = e
  // would only blow activations up, so sampling stops following it there.
  return hold_fixed(mu_ + eps * at::exp(0.5 * log_sigma2_.clamp_max(2.0)));
}

at::Tensor VibMask::log_alpha() const { return log_sigma2_ - at::log(mu_.pow(2) + 1e-12); }

at::Tensor VibMask::soft_keep(double beta) const { return hold_fixed(at::sigmoid(-beta * log_alpha())); }

at::Tensor VibMask::kl() const {
  auto per_unit = at::softplus(-log_alpha()) * 0.5;
  if (fixed_.defined()) per_unit = per_unit.masked_fill(fixed_, 0.0);
  return per_unit.sum();
}

at::Tensor VibMask::deterministic(const std::vector<bool>& keep) const {
  std::vector<float> flags(keep.begin(), keep.end());
  return hold_fixed(mu_.detach()) * at::tensor(flags, at::kFloat);
}

std::vector<at::Tensor> VibMasks::parameters() const {
  std::vector<at::Tensor> all = hidden.parameters();
  for (const auto& layer : layers)
    for (const auto* mask : {&layer.heads, &layer.groups, &layer.ffn, &layer.attention, &layer.mlp})
      if (!mask->empty())
        for (auto& parameter : mask->parameters()) all.push_back(parameter);
  return all;
}

VibMasks make_vib_masks(const Model& model, const std::vector<HeadId>& protected_heads, std::uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  VibMasks masks;
  masks.hidden = VibMask(model.config.hidden, generator);
  for (int l = 0; l < model.layer_count(); ++l) {
    const auto& structure = model.layers[l];
    LayerVibMasks layer;
    if (structure.has_attention()) {
      auto fixed_heads = at::zeros({structure.query_heads}, at::kBool);
      auto fixed_groups = at::zeros({structure.kv_heads}, at::kBool);
      for (const auto& head : protected_heads)
        if (head.layer == l && head.head < structure.query_heads) {
          fixed_heads[head.head] = true;
          fixed_groups[structure.kv_head_of(head.head)] = true;
        }
      const bool any_fixed = fixed_heads.any().item<bool>();
      layer.heads = VibMask(structure.query_heads, generator, fixed_heads);
      if (structure.kv_heads < structure.query_heads) layer.groups = VibMask(structure.kv_heads, generator, fixed_groups);
      layer.attention = VibMask(1, generator, at::full({1}, any_fixed, at::kBool));
    }
    if (structure.ffn_width > 0) {
      layer.ffn = VibMask(structure.ffn_width, generator);
      layer.mlp = VibMask(1, generator);
    }
    masks.layers.push_back(std::move(layer));
  }
  return masks;
}

namespace {

// The kv head each query head reads, as an index tensor.
at::Tensor kv_index(const LayerStructure& structure) {
  std::vector<std::int64_t> index(structure.query_heads);
  for (std::int64_t h = 0; h < structure.query_heads; ++h) index[h] = structure.kv_head_of(h);
  return at::tensor(index, at::kLong);
}

// Hooks from per-structure mask values (any of them undefined: that structure unmasked).
struct MaskValues {
  at::Tensor heads, groups, ffn, attention, mlp;
};

ForwardHooks hooks_from(const Model& model, const std::vector<MaskValues>& layers, at::Tensor hidden, at::Tensor kept) {
  ForwardHooks hooks;
  for (int l = 0; l < model.layer_count(); ++l) {
    const auto& values = layers[l];
    at::Tensor heads = values.heads;
    if (heads.defined() && values.groups.defined())
      heads = heads * values.groups.index_select(0, kv_index(model.layers[l]));
    hooks.head_gates.push_back(heads);
    hooks.attention_gates.push_back(values.attention);
    hooks.ffn_gates.push_back(values.ffn);
    hooks.mlp_gates.push_back(values.mlp);
  }
  hooks.hidden_gate = std::move(hidden);
  hooks.hidden_kept = std::move(kept);
  return hooks;
}

at::Tensor sampled(const VibMask& mask, at::Generator* generator) {
  return mask.empty() ? at::Tensor() : mask.sample(generator);
}

}  // namespace

ForwardHooks vib_training_hooks(const Model& model, const VibMasks& masks, at::Generator* generator, double beta) {
  std::vector<MaskValues> values;
  for (const auto& layer : masks.layers)
    values.push_back({sampled(layer.heads, generator), sampled(layer.groups, generator), sampled(layer.ffn, generator),
                      sampled(layer.attention, generator), sampled(layer.mlp, generator)});
  return hooks_from(model, values, masks.hidden.sample(generator), masks.hidden.soft_keep(beta));
}

VibKeep consistent_keep(const Model& model, VibKeep keep) {
  for (int l = 0; l < model.layer_count(); ++l) {
    const auto& structure = model.layers[l];
    auto& layer = keep.layers[l];
    std::vector<bool> read(structure.kv_heads, false);
    for (std::int64_t h = 0; h < structure.query_heads; ++h) {
      const auto kv = structure.kv_head_of(h);
      layer.heads[h] = layer.heads[h] && layer.groups[kv] && layer.attention;
      if (layer.heads[h]) read[kv] = true;
    }
    layer.groups = read;
    layer.attention = std::find(read.begin(), read.end(), true) != read.end();
    for (std::size_t i = 0; i < layer.ffn.size(); ++i) layer.ffn[i] = layer.ffn[i] && layer.mlp;
    layer.mlp = std::find(layer.ffn.begin(), layer.ffn.end(), true) != layer.ffn.end();
  }
  return keep;
}

ForwardHooks vib_deterministic_hooks(const Model& model, const VibMasks& masks, const VibKeep& selected) {
  at::NoGradGuard no_grad;
  const auto keep = consistent_keep(model, selected);
  std::vector<MaskValues> values;
  auto flag = [](const VibMask& mask, bool kept) { return mask.empty() ? at::Tensor() : mask.deterministic({kept}); };
  auto each = [](const VibMask& mask, const std::vector<bool>& kept) {
    return mask.empty() ? at::Tensor() : mask.deterministic(kept);
  };
  for (std::size_t l = 0; l < masks.layers.size(); ++l) {
    const auto& layer = masks.layers[l];
    const auto& kept = keep.layers[l];
    values.push_back({each(layer.heads, kept.heads), each(layer.groups, kept.groups), each(layer.ffn, kept.ffn),
                      flag(layer.attention, kept.attention), flag(layer.mlp, kept.mlp)});
  }
  std::vector<float> hidden_flags(keep.hidden.begin(), keep.hidden.end());
  return hooks_from(model, values, masks.hidden.deterministic(keep.hidden), at::tensor(hidden_flags, at::kFloat));
}

at::Tensor weighted_kl(const VibMasks& masks, const KlMultipliers& multipliers) {
  auto total = masks.hidden.kl() * multipliers.hidden;
  for (const auto& layer : masks.layers) {
    for (const auto* mask : {&layer.heads, &layer.groups, &layer.attention})
      if (!mask->empty()) total = total + mask->kl() * multipliers.heads;
    for (const auto* mask : {&layer.ffn, &layer.mlp})
      if (!mask->empty()) total = total + mask->kl() * multipliers.ffn;
  }
  return total;
}

at::Tensor expected_parameters(const Model& model, const VibMasks& masks, double beta, bool include_embeddings) {
  const auto& block = model.family.block;
  const auto hidden = masks.hidden.soft_keep(beta).sum();
  auto zero = at::zeros({}, at::kFloat);
  auto total = include_embeddings ? embedding_parameter_count(block, model.config.vocab, model.config.max_positions,
                                                              model.config.tied_embeddings, hidden)
                                  : zero;
  for (int l = 0; l < model.layer_count(); ++l) {
    const auto& structure = model.layers[l];
    const auto& layer = masks.layers[l];
    LayerWidths<at::Tensor> widths{zero, zero, zero, zero, zero};
    if (structure.has_attention()) {
      const auto attention = layer.attention.soft_keep(beta).sum();
      auto heads = layer.heads.soft_keep(beta);
      if (!layer.groups.empty()) {
        const auto groups = layer.groups.soft_keep(beta);
        widths.query_heads = (heads * groups.index_select(0, kv_index(structure))).sum() * attention;
        widths.kv_heads = groups.sum() * attention;
      } else {
        widths.query_heads = heads.sum() * attention;
        widths.kv_heads = widths.query_heads;
      }
      widths.attention = attention;
    }
    if (structure.ffn_width > 0) {
      widths.mlp = layer.mlp.soft_keep(beta).sum();
      widths.ffn = layer.ffn.soft_keep(beta).sum() * widths.mlp;
    }
    total = total + layer_parameter_count(block, model.config.head_dim, hidden, widths);
  }
  return total;
}

}  // namespace lathe
