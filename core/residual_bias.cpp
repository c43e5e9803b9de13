#include "core/residual_bias.h"

#include <ATen/ATen.h>

#include <stdexcept>
#include <string>

#include "core/model.h"

namespace lathe {

void fold_into_earlier_bias(Model& model, int layer, ResidualBranch branch, const at::Tensor& bias) {
  auto add_to = [&](int at, const char* name) {
    if (!model.has_layer_tensor(at, name)) return false;
    model.tensors[layer_name(at, name)] = model.layer_tensor(at, name) + bias;
    return true;
  };
  if (branch == ResidualBranch::Mlp && model.layers[layer].has_attention() && add_to(layer, "attn.o.bias")) return;
  for (int previous = layer - 1; previous >= 0; --previous) {
    if (model.layers[previous].ffn_width > 0 && add_to(previous, "mlp.down.bias")) return;
    if (model.layers[previous].has_attention() && add_to(previous, "attn.o.bias")) return;
  }
  if (model.has("pos_embed.weight")) {
    model.tensors["pos_embed.weight"] = model.tensor("pos_embed.weight") + bias;
    return;
  }
  throw std::invalid_argument(std::string("cannot remove the ") + (branch == ResidualBranch::Mlp ? "MLP" : "attention") +
                              " of layer " + std::to_string(layer) + ": its output bias has nothing before it to fold into");
}

}  // namespace lathe
