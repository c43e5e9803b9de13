#pragma once

// Folding per-unit scales into the weights they multiply, so that a model without the scales
// computes what the scaled one did: VIB pruning's cut folds each kept unit's mask value in
// before the units at zero are removed. All scales are float tensors; weights become float32.

#include <ATen/core/Tensor.h>

#include "core/residual_bias.h"

namespace lathe {

class Model;

// Each query head's output [Hq]: its head_dim columns of the o projection.
void scale_head_outputs(Model& model, int layer, const at::Tensor& scales);
// Each FFN neuron [ffn]: its column of the down projection.
void scale_ffn_neurons(Model& model, int layer, const at::Tensor& scales);
// A residual branch's output [hidden]: the rows (and bias) of its o or down projection.
void scale_branch_output(Model& model, int layer, ResidualBranch branch, const at::Tensor& scales);
// The embedding output [hidden]: the columns of the token and position tables. A tied output
// head reads the token table too, so the final norm's weight and bias are divided by the
// scales (where they are not 0) to keep the logits as they were.
void scale_embedding_output(Model& model, const at::Tensor& scales);

}  // namespace lathe
