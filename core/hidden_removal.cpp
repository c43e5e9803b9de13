#include "core/hidden_removal.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/model.h"
#include "core/structured_cut.h"

namespace lathe {

void keep_hidden_dimensions(Model& model, const std::vector<std::int64_t>& kept) {
  if (model.attention.gated) throw std::invalid_argument("hidden dimensions of a gated-attention model cannot be removed");
  auto sorted = kept;
  std::sort(sorted.begin(), sorted.end());
  const auto hidden = model.config.hidden;
  if (sorted.empty() || std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end() || sorted.front() < 0 ||
      sorted.back() >= hidden)
    throw std::invalid_argument("hidden dimensions to keep must be distinct, in [0, " + std::to_string(hidden) +
                                "), and at least one");
  if (static_cast<std::int64_t>(sorted.size()) == hidden) return;
  const auto index = at::tensor(sorted, at::kLong);
  for (const char* name : {"embed.weight", "pos_embed.weight", "lm_head.weight"}) select_along(model, name, index, 1);
  for (const char* name : {"final_norm.weight", "final_norm.bias"}) select_along(model, name, index, 0);
  for (int layer = 0; layer < model.layer_count(); ++layer) {
    for (const char* name : {"attn_norm.weight", "attn_norm.bias", "mlp_norm.weight", "mlp_norm.bias", "attn.o.weight",
                             "attn.o.bias", "mlp.down.weight", "mlp.down.bias"})
      select_along(model, layer_name(layer, name), index, 0);
    for (const char* name : {"attn.q.weight", "attn.k.weight", "attn.v.weight", "mlp.gate.weight", "mlp.up.weight"})
      select_along(model, layer_name(layer, name), index, 1);
  }
  model.config.hidden = static_cast<std::int64_t>(sorted.size());
}

}  // namespace lathe
