#include "core/unit_scaling.h"

#include <ATen/ATen.h>

#include <string>

#include "core/model.h"

namespace lathe {
namespace {

// tensor * scales broadcast along `dim` (scales has the tensor's size there).
void scale_along(Model& model, const std::string& name, const at::Tensor& scales, std::int64_t dim) {
  if (!model.has(name)) return;
  const auto values = model.tensor(name);
  std::vector<std::int64_t> shape(values.dim(), 1);
  shape[dim] = scales.numel();
  model.tensors[name] = (values * scales.to(values.scalar_type()).view(shape)).contiguous();
}

}  // namespace

void scale_head_outputs(Model& model, int layer, const at::Tensor& scales) {
  // Head h owns columns h * head_dim .. (h + 1) * head_dim of o.
  const auto columns = scales.repeat_interleave(model.config.head_dim);
  scale_along(model, layer_name(layer, "attn.o.weight"), columns, 1);
}

void scale_ffn_neurons(Model& model, int layer, const at::Tensor& scales) {
  scale_along(model, layer_name(layer, "mlp.down.weight"), scales, 1);
}

void scale_branch_output(Model& model, int layer, ResidualBranch branch, const at::Tensor& scales) {
  const std::string projection = branch == ResidualBranch::Attention ? "attn.o" : "mlp.down";
  scale_along(model, layer_name(layer, projection + ".weight"), scales, 0);
  scale_along(model, layer_name(layer, projection + ".bias"), scales, 0);
}

void scale_embedding_output(Model& model, const at::Tensor& scales) {
  scale_along(model, "embed.weight", scales, 1);
  scale_along(model, "pos_embed.weight", scales, 1);
  if (!model.config.tied_embeddings) return;
  const auto inverse = at::where(scales != 0, scales.reciprocal(), at::zeros_like(scales));
  scale_along(model, "final_norm.weight", inverse, 0);
  scale_along(model, "final_norm.bias", inverse, 0);
}

}  // namespace lathe
