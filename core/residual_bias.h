#pragma once

// A block that loses all its units still adds its output bias to the residual stream; that
// constant moves into whatever adds to the stream just before it, so the block can go.

#include <ATen/core/Tensor.h>

namespace lathe {

class Model;

enum class ResidualBranch { Attention, Mlp };

// Adds `bias` [hidden] to the nearest output bias before `branch` of `layer` (the layer's own
// attention for its MLP, then earlier MLPs and attentions, then the position table).
// std::invalid_argument when nothing before it has a bias to take it.
void fold_into_earlier_bias(Model& model, int layer, ResidualBranch branch, const at::Tensor& bias);

}  // namespace lathe
