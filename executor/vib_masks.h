#pragma once

// Variational information-bottleneck masks over a model's structure (VIBNet, Dai et al. 2018;
// VTrans, Dutta et al. 2024): per layer, one mask over its query heads, one over its kv groups
// (grouped-query attention only), one over its FFN neurons and one each over the whole
// attention and MLP blocks; and one mask over the hidden dimensions shared by all layers.
//
// A mask over n units holds mu and log sigma^2 [n]. Training draws z = mu + eps * sigma,
// eps ~ N(0, 1); evaluation uses z = mu where log alpha = log sigma^2 - log mu^2 < 0, else 0.
// Units held fixed (protected heads, and the groups and blocks holding them) are always 1.

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "core/head_annotations.h"
#include "executor/executor.h"

namespace lathe {

class Model;

class VibMask {
 public:
  VibMask() = default;
  // n units, mu ~ N(1, 0.01), log sigma^2 ~ N(-9, 0.01) (standard deviations 0.01), drawn from
  // `generator`; `fixed` [n] bool (or undefined) marks units held at 1.
  VibMask(std::int64_t units, at::Generator& generator, at::Tensor fixed = {});

  std::int64_t units() const { return mu_.defined() ? mu_.numel() : 0; }
  bool empty() const { return units() == 0; }
  const at::Tensor& mu() const { return mu_; }
  const at::Tensor& log_sigma2() const { return log_sigma2_; }
  std::vector<at::Tensor> parameters() const { return {mu_, log_sigma2_}; }

  // z: sampled with `generator`, or (null) mu alone.
  at::Tensor sample(at::Generator* generator) const;
  at::Tensor log_alpha() const;
  // sigmoid(-beta * log alpha), the probability-like keep of each unit the expected size uses.
  at::Tensor soft_keep(double beta) const;
  // 0.5 * sum over the units not fixed of log(1 + mu^2 / sigma^2) = softplus(-log alpha).
  at::Tensor kl() const;
  // mu (1 for fixed units) * keep (keep [n], 0 or 1): the deterministic mask of a selection.
  at::Tensor deterministic(const std::vector<bool>& keep) const;

 private:
  at::Tensor hold_fixed(at::Tensor values) const;
  at::Tensor mu_;
  at::Tensor log_sigma2_;
  at::Tensor fixed_;  // bool, or undefined
};

struct LayerVibMasks {
  VibMask heads;   // [Hq]
  VibMask groups;  // [Hkv]; empty without grouped-query attention (groups of one head)
  VibMask ffn;     // [ffn]; empty when the layer has no MLP
  VibMask attention;  // [1]; empty when the layer has no attention
  VibMask mlp;        // [1]; empty when the layer has no MLP
};

struct VibMasks {
  std::vector<LayerVibMasks> layers;
  VibMask hidden;  // [hidden]
  std::vector<at::Tensor> parameters() const;
};

// Masks for every structure `model` has, seeded; protected heads (and their kv groups and
// attention blocks) are held at 1.
VibMasks make_vib_masks(const Model& model, const std::vector<HeadId>& protected_heads, std::uint64_t seed);

// Executor hooks applying sampled masks (generator set) or the masks' mu (null), with the
// norms' statistics over the soft-kept hidden dimensions.
ForwardHooks vib_training_hooks(const Model& model, const VibMasks& masks, at::Generator* generator, double beta);

// What a selection keeps: per layer and structure, per unit.
struct LayerKeep {
  std::vector<bool> heads, groups, ffn;
  bool attention = false, mlp = false;
};
struct VibKeep {
  std::vector<LayerKeep> layers;
  std::vector<bool> hidden;
};

// The same selection in its one consistent form: a head is kept only with its kv group and its
// attention block, a kv group only while a kept head reads it, a block only while it keeps a
// unit; FFN neurons likewise with their MLP block.
VibKeep consistent_keep(const Model& model, VibKeep keep);

// The deterministically masked model's hooks: z = mu on the kept units, 0 elsewhere, and the
// norms over the kept hidden dimensions.
ForwardHooks vib_deterministic_hooks(const Model& model, const VibMasks& masks, const VibKeep& keep);

// Sum over structures of multiplier * KL (heads and attention blocks use `heads`, kv groups
// too; FFN neurons and MLP blocks `ffn`; hidden dimensions `hidden`).
struct KlMultipliers {
  double heads = 256;
  double ffn = 1;
  double hidden = 30;
};
at::Tensor weighted_kl(const VibMasks& masks, const KlMultipliers& multipliers);

// The expected number of parameters the counted part of the model keeps (its decoder layers,
// and with `include_embeddings` the tables, final norm and head) under soft masks
// sigmoid(-beta log alpha), differentiable in the masks.
at::Tensor expected_parameters(const Model& model, const VibMasks& masks, double beta, bool include_embeddings);

}  // namespace lathe
