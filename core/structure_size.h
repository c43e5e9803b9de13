#pragma once

// Parameter counts of a block and of the embeddings from their widths, written once for any
// number type: integers count a model's structure exactly, and tensors of expected widths (sums
// of soft masks) give the differentiable expected size mask training constrains.

#include <cstdint>

#include "core/family.h"

namespace lathe {

// The widths one decoder layer keeps. `attention` and `mlp` are 1 while the block is there (0
// once removed), so the block's norm and output bias count only with it.
template <typename Count>
struct LayerWidths {
  Count query_heads;
  Count kv_heads;
  Count attention;
  Count ffn;
  Count mlp;
};

template <typename Count>
Count layer_parameter_count(const BlockOptions& block, std::int64_t head_dim, const Count& hidden,
                            const LayerWidths<Count>& widths) {
  const double d = static_cast<double>(head_dim);
  const double norm = block.norm_bias ? 2.0 : 1.0;
  // q and o, then k and v, then the attention norm.
  Count count = widths.query_heads * hidden * (2.0 * d) + widths.kv_heads * hidden * (2.0 * d) +
                widths.attention * hidden * norm;
  if (block.attention_bias) count = count + widths.query_heads * d + widths.kv_heads * (2.0 * d) + widths.attention * hidden;
  const double projections = block.mlp == MlpKind::GatedSiLU ? 3.0 : 2.0;
  count = count + widths.ffn * hidden * projections + widths.mlp * hidden * norm;
  if (block.mlp_bias) count = count + widths.ffn + widths.mlp * hidden;
  return count;
}

// The token (and position) tables, the final norm and an untied output head.
template <typename Count>
Count embedding_parameter_count(const BlockOptions& block, std::int64_t vocab, std::int64_t max_positions,
                                bool tied_embeddings, const Count& hidden) {
  double rows = static_cast<double>(vocab) * (tied_embeddings ? 1.0 : 2.0) + (block.norm_bias ? 2.0 : 1.0);
  if (block.position == PositionKind::Learned) rows += static_cast<double>(max_positions);
  return hidden * rows;
}

}  // namespace lathe
