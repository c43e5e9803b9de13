#include "passes/vib_cut.h"

#include <ATen/ATen.h>

#include <map>

#include "core/ffn_removal.h"
#include "core/head_removal.h"
#include "core/hidden_removal.h"
#include "core/model.h"
#include "core/unit_scaling.h"

namespace lathe {

void cut_to_selection(Model& model, const VibMasks& masks, const VibKeep& selected) {
  at::NoGradGuard no_grad;
  // The very values the masked model multiplies by, so the two cannot disagree.
  const auto gates = vib_deterministic_hooks(model, masks, selected);
  const auto keep = consistent_keep(model, selected);
  const auto& hidden = gates.hidden_gate;
  scale_embedding_output(model, hidden);
  std::vector<HeadId> removed_heads;
  std::map<int, std::vector<std::int64_t>> kept_neurons;
  for (int l = 0; l < model.layer_count(); ++l) {
    const auto& structure = model.layers[l];
    const auto& kept = keep.layers[l];
    if (structure.has_attention()) {
      scale_head_outputs(model, l, gates.head_gates[l]);
      scale_branch_output(model, l, ResidualBranch::Attention, gates.attention_gates[l] * hidden);
      for (int h = 0; h < structure.query_heads; ++h)
        if (!kept.heads[h]) removed_heads.push_back({l, h});
    }
    if (structure.ffn_width > 0) {
      scale_ffn_neurons(model, l, gates.ffn_gates[l]);
      scale_branch_output(model, l, ResidualBranch::Mlp, gates.mlp_gates[l] * hidden);
      auto& neurons = kept_neurons[l];
      if (kept.mlp)
        for (std::int64_t i = 0; i < structure.ffn_width; ++i)
          if (kept.ffn[i]) neurons.push_back(i);
    }
  }
  // A block that goes (no unit of it kept) has its gate, and so its output bias, at 0 above:
  // the removals fold nothing into the stream.
  remove_heads(model, removed_heads);
  keep_ffn_neurons(model, kept_neurons);
  std::vector<std::int64_t> dimensions;
  for (std::size_t i = 0; i < keep.hidden.size(); ++i)
    if (keep.hidden[i]) dimensions.push_back(static_cast<std::int64_t>(i));
  keep_hidden_dimensions(model, dimensions);
}

}  // namespace lathe
