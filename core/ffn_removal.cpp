#include "core/ffn_removal.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/model.h"
#include "core/residual_bias.h"
#include "core/structured_cut.h"

namespace lathe {

std::int64_t mlp_parameters(const Model& model, std::int64_t neurons) {
  if (neurons == 0) return 0;
  const auto& block = model.family.block;
  const auto hidden = model.config.hidden;
  const std::int64_t projections = block.mlp == MlpKind::GatedSiLU ? 3 : 2;
  std::int64_t count = projections * neurons * hidden;
  if (block.mlp_bias) count += neurons + hidden;
  return count + hidden * (block.norm_bias ? 2 : 1);
}

void keep_ffn_neurons(Model& model, const std::map<int, std::vector<std::int64_t>>& kept) {
  for (const auto& [layer, neurons] : kept) {
    if (layer < 0 || layer >= model.layer_count())
      throw std::invalid_argument("no layer " + std::to_string(layer) + " to remove FFN neurons from");
    const auto width = model.layers[layer].ffn_width;
    if (width == 0) throw std::invalid_argument("layer " + std::to_string(layer) + " has no MLP left");
    auto sorted = neurons;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end() ||
        (!sorted.empty() && (sorted.front() < 0 || sorted.back() >= width)))
      throw std::invalid_argument("layer " + std::to_string(layer) + ": FFN neurons to keep must be distinct, in [0, " +
                                  std::to_string(width) + ")");
  }
  for (const auto& [layer, neurons] : kept) {
    auto sorted = neurons;
    std::sort(sorted.begin(), sorted.end());
    if (static_cast<std::int64_t>(sorted.size()) == model.layers[layer].ffn_width) continue;
    if (sorted.empty()) {
      if (model.has_layer_tensor(layer, "mlp.down.bias"))
        fold_into_earlier_bias(model, layer, ResidualBranch::Mlp, model.layer_tensor(layer, "mlp.down.bias"));
      erase_with_prefix(model, layer_name(layer, "mlp."));
      erase_with_prefix(model, layer_name(layer, "mlp_norm."));
      model.layers[layer].ffn_width = 0;
      continue;
    }
    const auto index = at::tensor(sorted, at::kLong);
    for (const char* name : {"mlp.gate.weight", "mlp.gate.bias", "mlp.up.weight", "mlp.up.bias"})
      select_along(model, layer_name(layer, name), index, 0);
    select_along(model, layer_name(layer, "mlp.down.weight"), index, 1);
    model.layers[layer].ffn_width = static_cast<std::int64_t>(sorted.size());
  }
}

}  // namespace lathe
