#include "random_llama.h"

#include <ATen/ATen.h>

namespace lathe {

Model random_llama(const RandomLlamaShape& shape, std::uint64_t seed) {
  at::manual_seed(seed);
  Model model;
  model.family = family_by_name("llama");
  model.config.hidden = shape.hidden;
  model.config.vocab = shape.vocab;
  model.config.max_positions = shape.max_positions;
  model.config.head_dim = shape.hidden / shape.heads;
  model.config.tied_embeddings = true;
  model.config.bos_id = 1;
  model.config.eos_id = 2;
  model.source.path = "random-llama";
  model.source.format = "memory";
  const auto d = model.config.head_dim;
  auto weight = [](std::int64_t rows, std::int64_t columns) { return at::randn({rows, columns}) * (1.0 / std::sqrt(columns)); };
  model.tensors["embed.weight"] = at::randn({shape.vocab, shape.hidden}) * 0.5;
  model.tensors["final_norm.weight"] = at::ones({shape.hidden});
  for (int i = 0; i < shape.layers; ++i) {
    model.layers.push_back({shape.heads, shape.kv_heads, shape.ffn});
    model.tensors[layer_name(i, "attn_norm.weight")] = at::ones({shape.hidden});
    model.tensors[layer_name(i, "mlp_norm.weight")] = at::ones({shape.hidden});
    model.tensors[layer_name(i, "attn.q.weight")] = weight(shape.heads * d, shape.hidden);
    model.tensors[layer_name(i, "attn.k.weight")] = weight(shape.kv_heads * d, shape.hidden);
    model.tensors[layer_name(i, "attn.v.weight")] = weight(shape.kv_heads * d, shape.hidden);
    model.tensors[layer_name(i, "attn.o.weight")] = weight(shape.hidden, shape.heads * d);
    model.tensors[layer_name(i, "mlp.gate.weight")] = weight(shape.ffn, shape.hidden);
    model.tensors[layer_name(i, "mlp.up.weight")] = weight(shape.ffn, shape.hidden);
    model.tensors[layer_name(i, "mlp.down.weight")] = weight(shape.hidden, shape.ffn);
  }
  validate_model(model, "random-llama");
  return model;
}

}  // namespace lathe
