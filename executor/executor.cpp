#include "executor/executor.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "support/errors.h"

namespace lathe {

std::string site_key(int layer, ActivationSite site) {
  return layer < 0 ? std::string(activation_site_name(site)) : layer_name(layer, activation_site_name(site));
}

namespace {

// Applies the model's activation quantization at a site (fake-quantized, so the float model
// computes what the int8 model computes), then the caller's observer.
at::Tensor observe(const Model& model, const ForwardHooks* hooks, int layer, ActivationSite site, at::Tensor activation) {
  const auto& quantization = model.quantization;
  if (quantization.mode == ModelQuantization::Mode::Static) {
    if (auto found = quantization.activations.find(site_key(layer, site)); found != quantization.activations.end())
      activation = fake_quantize(activation, found->second);
  } else if (quantization.mode == ModelQuantization::Mode::Dynamic) {
    if (quantization.dynamic_sites.count(site_key(layer, site))) activation = fake_quantize_dynamic(activation);
  }
  if (hooks == nullptr || !hooks->on_activation) return activation;
  auto replaced = hooks->on_activation(layer, site, activation);
  return replaced.defined() ? replaced : activation;
}

// Rotate-half rotary embedding on [B, H, T, d] at positions offset .. offset + T.
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const auto half = x.size(-1) / 2;
  auto first = x.narrow(-1, 0, half);
  auto second = x.narrow(-1, half, half);
  auto rotated = at::cat({-second, first}, -1);
  return x * cos + rotated * sin;
}

// Constants are rounded to float32, as the exported graph stores them: a float model computes
// the same either way, and a model evaluated in double (the tests' reference) then computes what
// the graph specifies rather than differing from it by float32 rounding, which would move
// int8 activations across rounding boundaries.
double as_float32(double value) { return static_cast<float>(value); }

// GELU, exact (erf) or with the tanh approximation; in double with the graph's float32 constants.
at::Tensor gelu(const at::Tensor& x, bool tanh_approximation) {
  if (x.scalar_type() != at::kDouble) return tanh_approximation ? at::gelu(x, "tanh") : at::gelu(x);
  if (!tanh_approximation) return x * (at::erf(x / as_float32(std::sqrt(2.0))) + 1.0) * 0.5;
  const double beta = as_float32(std::sqrt(2.0 / M_PI));
  return x * (at::tanh((x + x.pow(3) * as_float32(0.044715)) * beta) + 1.0) * 0.5;
}

// A per-layer mask of `gates`, or an undefined tensor.
at::Tensor layer_gate(const std::vector<at::Tensor>& gates, int layer) {
  return layer < static_cast<int>(gates.size()) ? gates[layer] : at::Tensor();
}

// A residual branch's output (or the embedding output) times the hidden-dimension mask.
at::Tensor gate_hidden(const ForwardHooks* hooks, at::Tensor x) {
  return hooks != nullptr && hooks->hidden_gate.defined() ? x * hooks->hidden_gate : x;
}

}  // namespace

const char* activation_site_name(ActivationSite site) {
  switch (site) {
    case ActivationSite::AttentionInput: return "attention_input";
    case ActivationSite::AttentionContext: return "attention_context";
    case ActivationSite::AttentionOutput: return "attention_output";
    case ActivationSite::MlpInput: return "mlp_input";
    case ActivationSite::MlpHidden: return "mlp_hidden";
    case ActivationSite::MlpOutput: return "mlp_output";
    case ActivationSite::FinalHidden: return "final_hidden";
  }
  return "unknown";
}

void rotary_tables(std::int64_t positions, std::int64_t head_dim, double theta, at::Tensor& cos, at::Tensor& sin) {
  // Computed like Hugging Face's Llama: inverse frequencies and angles in float32.
  auto exponents = at::arange(0, head_dim, 2, at::kLong).to(at::kFloat) / static_cast<float>(head_dim);
  auto inverse_frequency = 1.0 / at::pow(static_cast<float>(theta), exponents);
  auto steps = at::arange(positions, at::kLong).to(at::kFloat);
  auto angles = at::outer(steps, inverse_frequency);
  auto doubled = at::cat({angles, angles}, -1);
  cos = doubled.cos().contiguous();
  sin = doubled.sin().contiguous();
}

Executor::Executor(const Model& model) : model_(model) {}

void Executor::cover_rotary_positions(std::int64_t positions) const {
  if (rotary_cos_.defined() && rotary_cos_.size(0) >= positions) return;
  // Each position's angles depend on that position alone, so a longer table starts with the
  // shorter one's values. Doubling keeps token-by-token decoding from recomputing every step.
  const auto covered = rotary_cos_.defined() ? rotary_cos_.size(0) : 0;
  const auto wanted = std::min(model_.config.max_positions, std::max({positions, 2 * covered, std::int64_t{256}}));
  rotary_tables(wanted, model_.config.head_dim, model_.config.rope_theta, rotary_cos_, rotary_sin_);
}

at::Tensor Executor::weight(const std::string& name) const {
  const auto& held = model_.stored(name);
  if (holds_float_values(held)) return held;
  auto found = converted_.find(name);
  if (found != converted_.end()) return found->second;
  // The values Model::tensor() gives, computed into reused storage.
  auto values = converted_storage(held.numel()).view(held.sizes());
  model_.populate_pages(name);
  model_.rows_into(name, 0, values);
  model_.release_pages(name);
  return converted_.emplace(name, std::move(values)).first->second;
}

at::Tensor Executor::converted_storage(std::int64_t elements) const {
  constexpr std::int64_t kAlignment = 16;  // floats: 64 bytes
  const auto rounded = (elements + kAlignment - 1) / kAlignment * kAlignment;
  arena_wanted_ += rounded;
  if (arena_.defined() && arena_used_ + rounded <= arena_.numel()) {
    auto slice = arena_.narrow(0, arena_used_, elements);
    arena_used_ += rounded;
    return slice;
  }
  return at::empty({elements}, at::kFloat);
}

at::Tensor Executor::optional_weight(const std::string& name) const {
  return model_.has(name) ? weight(name) : at::Tensor();
}

void Executor::release_layer(int layer) const {
  const auto names = layer < 0 ? std::vector<std::string>{"embed.weight", "pos_embed.weight", "final_norm.weight",
                                                           "final_norm.bias", "lm_head.weight"}
                               : model_.layer_tensor_names(layer);
  for (const auto& name : names) {
    converted_.erase(name);
    model_.release_pages(name);
  }
  if (!converted_.empty()) return;
  // Nothing converted is alive: the buffer starts over, large enough for what the layer needed.
  if (!arena_.defined() || arena_wanted_ > arena_.numel()) arena_ = at::empty({arena_wanted_}, at::kFloat);
  arena_used_ = 0;
  arena_wanted_ = 0;
}

at::Tensor Executor::linear(int layer, const std::string& name, const at::Tensor& x) const {
  return at::linear(x, weight(layer_name(layer, name + ".weight")), optional_weight(layer_name(layer, name + ".bias")));
}

at::Tensor Executor::norm(const at::Tensor& x, const std::string& prefix, const ForwardHooks* hooks) const {
  const auto eps = as_float32(model_.config.norm_eps);
  const bool layer_norm = model_.family.block.norm == NormKind::Layer;
  if (hooks != nullptr && hooks->hidden_kept.defined()) {
    const auto& kept = hooks->hidden_kept;
    const auto count = kept.sum().clamp_min(1.0);
    auto centered = layer_norm ? x - (x * kept).sum(-1, /*keepdim=*/true) / count : x;
    auto variance = (centered.pow(2) * kept).sum(-1, /*keepdim=*/true) / count;
    auto y = centered * at::rsqrt(variance + eps) * weight(prefix + ".weight");
    if (const auto bias = optional_weight(prefix + ".bias"); bias.defined()) y = y + bias;
    return y * kept;
  }
  if (layer_norm)
    return at::layer_norm(x, {x.size(-1)}, weight(prefix + ".weight"), optional_weight(prefix + ".bias"), eps);
  auto variance = x.pow(2).mean(-1, /*keepdim=*/true);
  return x * at::rsqrt(variance + eps) * weight(prefix + ".weight");
}

at::Tensor Executor::attention(int layer, const at::Tensor& x, std::int64_t offset, const ForwardHooks* hooks,
                               KvCache* cache) const {
  const auto& structure = model_.layers[layer];
  const auto batch = x.size(0), length = x.size(1);
  const auto heads = structure.query_heads;
  auto kv_heads = structure.kv_heads, group = structure.group_size();
  const auto head_dim = model_.config.head_dim;

  auto q = linear(layer, "attn.q", x).view({batch, length, heads, head_dim}).transpose(1, 2);
  auto k = linear(layer, "attn.k", x).view({batch, length, kv_heads, head_dim}).transpose(1, 2);
  auto v = linear(layer, "attn.v", x).view({batch, length, kv_heads, head_dim}).transpose(1, 2);
  if (model_.family.block.position == PositionKind::Rotary) {
    cover_rotary_positions(offset + length);
    auto cos = rotary_cos_.narrow(0, offset, length);
    auto sin = rotary_sin_.narrow(0, offset, length);
    q = apply_rotary(q, cos, sin);
    k = apply_rotary(k, cos, sin);
  }
  if (cache != nullptr) {
    if (cache->keys[layer].defined()) {
      k = at::cat({cache->keys[layer], k}, 2);
      v = at::cat({cache->values[layer], v}, 2);
    }
    cache->keys[layer] = k;
    cache->values[layer] = v;
  }
  const auto span = k.size(2);
  if (!structure.regular_groups()) {
    // Groups of different sizes: give every query head its own copy of the kv head it reads.
    auto index = at::tensor(structure.kv_of_query, at::kLong);
    k = k.index_select(1, index);
    v = v.index_select(1, index);
    kv_heads = heads;
    group = 1;
  }

  // Query heads grouped by the kv head they read, so k and v are never copied per query head:
  // [B, Hkv, g*T, d] against [B, Hkv, S, d]. Row r of a group is query head r / T at step r % T.
  const auto score_scale = as_float32(1.0 / std::sqrt(static_cast<double>(head_dim)));
  auto grouped_q = (q * score_scale).reshape({batch, kv_heads, group * length, head_dim});
  at::Tensor causal_mask;
  if (model_.family.block.causal && length > 1)  // query t (position offset + t) sees keys 0 .. offset + t
    causal_mask = at::ones({length, span}, at::kBool).triu(offset + 1).repeat({group, 1});
  const auto& clipped = model_.attention.clipped_softmax;
  auto attend = [&](const at::Tensor& queries, const at::Tensor& keys, const at::Tensor& values) {
    auto scores = at::matmul(queries, keys.transpose(-1, -2));
    if (causal_mask.defined()) scores.masked_fill_(causal_mask, -std::numeric_limits<float>::infinity());
    auto probabilities = at::softmax(scores, -1);
    if (clipped)
      probabilities = at::clamp(probabilities * static_cast<float>(clipped->zeta - clipped->gamma) +
                                    static_cast<float>(clipped->gamma),
                                0.0, 1.0);
    if (hooks != nullptr && hooks->on_attention)
      hooks->on_attention(layer, probabilities.reshape({queries.size(0), heads, length, span}));
    return at::matmul(probabilities, values);
  };
  // Score tensors of long sequences are large; a few (batch row, kv head) slices at a time keep
  // them in cache instead of streaming tens of MB through memory per layer.
  constexpr std::int64_t kScoresPerChunk = 1 << 18;
  const auto slices = batch * kv_heads;
  const auto slices_per_chunk = std::max<std::int64_t>(1, kScoresPerChunk / (group * length * span));
  at::Tensor context;
  if (slices_per_chunk >= slices || (hooks != nullptr && hooks->on_attention)) {
    context = attend(grouped_q, k, v);
  } else {
    auto flat_q = grouped_q.reshape({slices, group * length, head_dim});
    auto flat_k = k.reshape({slices, span, head_dim});
    auto flat_v = v.reshape({slices, span, head_dim});
    context = at::empty({slices, group * length, head_dim}, q.options());
    for (std::int64_t first = 0; first < slices; first += slices_per_chunk) {
      const auto count = std::min(slices_per_chunk, slices - first);
      context.narrow(0, first, count)
          .copy_(attend(flat_q.narrow(0, first, count), flat_k.narrow(0, first, count), flat_v.narrow(0, first, count)));
    }
  }
  context = context.reshape({batch, heads, length, head_dim});
  if (model_.attention.gated) context = context * head_output_gates(layer, x);
  if (const auto gates = hooks != nullptr ? layer_gate(hooks->head_gates, layer) : at::Tensor(); gates.defined())
    context = context * gates.view({1, heads, 1, 1});
  context = context.transpose(1, 2).reshape({batch, length, heads * head_dim});
  context = observe(model_, hooks, layer, ActivationSite::AttentionContext, context);
  return linear(layer, "attn.o", context);
}

at::Tensor Executor::head_output_gates(int layer, const at::Tensor& x) const {
  const auto gate_weight = weight(layer_name(layer, "attn.gate.weight"));  // [Hq, hidden / Hq]
  const auto gate_bias = weight(layer_name(layer, "attn.gate.bias"));      // [Hq]
  auto slices = x.reshape({x.size(0), x.size(1), gate_weight.size(0), gate_weight.size(1)});
  auto logits = (slices * gate_weight).sum(-1) + gate_bias;  // [B, T, Hq]
  return at::sigmoid(logits).transpose(1, 2).unsqueeze(-1);
}

at::Tensor Executor::mlp(int layer, const at::Tensor& x, const ForwardHooks* hooks) const {
  at::Tensor hidden;
  switch (model_.family.block.mlp) {
    case MlpKind::GatedSiLU:
      hidden = at::silu(linear(layer, "mlp.gate", x)) * linear(layer, "mlp.up", x);
      break;
    case MlpKind::GeluTanh: hidden = gelu(linear(layer, "mlp.up", x), /*tanh_approximation=*/true); break;
    case MlpKind::Gelu: hidden = gelu(linear(layer, "mlp.up", x), /*tanh_approximation=*/false); break;
    case MlpKind::Relu: hidden = at::relu(linear(layer, "mlp.up", x)); break;
  }
  if (const auto gates = hooks != nullptr ? layer_gate(hooks->ffn_gates, layer) : at::Tensor(); gates.defined())
    hidden = hidden * gates;
  hidden = observe(model_, hooks, layer, ActivationSite::MlpHidden, hidden);
  return linear(layer, "mlp.down", hidden);
}

at::Tensor Executor::embed(const at::Tensor& input_ids, std::int64_t offset, const ForwardHooks* hooks) const {
  if (input_ids.dim() != 2) throw std::invalid_argument("input_ids must be [batch, sequence]");
  const auto length = input_ids.size(1);
  if (offset + length > model_.config.max_positions)
    throw InputError("sequence of " + std::to_string(offset + length) + " positions exceeds the model's maximum of " +
                     std::to_string(model_.config.max_positions));
  const auto ids = input_ids.to(at::kLong);
  at::Tensor x;
  const auto& table = model_.stored("embed.weight");
  if (holds_float_values(table)) {
    x = at::embedding(table, ids);
  } else if (table.scalar_type() == at::kChar) {  // the rows the tokens pick, times their scales
    x = at::embedding(table, ids).to(at::kFloat) *
        model_.quantization.weight_scales.at("embed.weight").index_select(0, ids.reshape({-1})).view(ids.sizes()).unsqueeze(-1);
  } else {  // only the rows the tokens pick are converted, never the whole table
    x = at::embedding(table, ids).to(at::kFloat);
  }
  if (model_.family.block.position == PositionKind::Learned)
    x = x + weight("pos_embed.weight").narrow(0, offset, length);
  return gate_hidden(hooks, x);
}

at::Tensor Executor::decoder_layer(int layer, const at::Tensor& x, std::int64_t offset, const ForwardHooks* hooks,
                                   KvCache* cache) const {
  const auto& structure = model_.layers[layer];
  // A branch's output, observed, then times its block mask and the hidden-dimension mask.
  auto branch_output = [&](ActivationSite site, const std::vector<at::Tensor>* block_gates, at::Tensor output) {
    output = observe(model_, hooks, layer, site, std::move(output));
    if (hooks == nullptr) return output;
    if (const auto gate = layer_gate(*block_gates, layer); gate.defined()) output = output * gate;
    return gate_hidden(hooks, output);
  };
  auto y = x;
  if (structure.has_attention()) {
    auto h = observe(model_, hooks, layer, ActivationSite::AttentionInput, norm(y, layer_name(layer, "attn_norm"), hooks));
    y = y + branch_output(ActivationSite::AttentionOutput, hooks ? &hooks->attention_gates : nullptr,
                          attention(layer, h, offset, hooks, cache));
  }
  if (structure.ffn_width > 0) {
    auto h = observe(model_, hooks, layer, ActivationSite::MlpInput, norm(y, layer_name(layer, "mlp_norm"), hooks));
    y = y + branch_output(ActivationSite::MlpOutput, hooks ? &hooks->mlp_gates : nullptr, mlp(layer, h, hooks));
  }
  return y;
}

at::Tensor Executor::final_hidden(const at::Tensor& x, const ForwardHooks* hooks) const {
  return observe(model_, hooks, -1, ActivationSite::FinalHidden, norm(x, "final_norm", hooks));
}

at::Tensor Executor::output_head(const at::Tensor& x, const ForwardHooks* hooks) const {
  auto h = final_hidden(x, hooks);
  const auto name = model_.output_weight_name();
  const auto& held = model_.stored(name);
  if (holds_float_values(held)) return at::linear(h, held);
  // A float16, bfloat16 or int8 head is converted a slice of the vocabulary at a time: its
  // float32 copy would be as large as a decoder layer or two.
  constexpr std::int64_t kRowsPerSlice = 4096;
  const auto vocab = held.size(0);
  auto sizes = h.sizes().vec();
  sizes.back() = vocab;
  auto logits = at::empty(sizes, h.options());
  auto slice = at::empty({std::min(kRowsPerSlice, vocab), held.size(1)}, at::kFloat);
  for (std::int64_t first = 0; first < vocab; first += kRowsPerSlice) {
    const auto rows = std::min(kRowsPerSlice, vocab - first);
    model_.rows_into(name, first, slice.narrow(0, 0, rows));
    logits.narrow(-1, first, rows).copy_(at::linear(h, slice.narrow(0, 0, rows)));
  }
  return logits;
}

at::Tensor Executor::forward(const at::Tensor& input_ids, const ForwardHooks* hooks, KvCache* cache) const {
  std::int64_t offset = 0;
  if (cache != nullptr) {
    offset = cache->length;
    cache->keys.resize(model_.layers.size());
    cache->values.resize(model_.layers.size());
  }
  auto x = embed(input_ids, offset, hooks);
  for (int layer = 0; layer < model_.layer_count(); ++layer) x = decoder_layer(layer, x, offset, hooks, cache);
  if (cache != nullptr) cache->length = offset + input_ids.size(1);
  return output_head(x, hooks);
}

std::vector<std::int64_t> Executor::greedy_decode(const std::vector<std::int64_t>& prompt, std::int64_t steps) const {
  if (prompt.empty()) throw std::invalid_argument("greedy decoding needs a prompt");
  at::NoGradGuard no_grad;
  KvCache cache;
  auto input = at::tensor(prompt, at::kLong).unsqueeze(0);
  std::vector<std::int64_t> produced;
  for (std::int64_t step = 0; step < steps; ++step) {
    auto logits = forward(input, nullptr, &cache);
    const auto next = logits.select(1, logits.size(1) - 1).argmax(-1).item<std::int64_t>();
    produced.push_back(next);
    input = at::full({1, 1}, next, at::kLong);
  }
  return produced;
}

}  // namespace lathe
