#pragma once

// One transformer forward for every family, driven by the family's block options. Passes that
// run the model (evaluation, calibration, gradient importance, retrieval scoring) go through
// it; autograd works through it, so gradients need no second implementation.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/model.h"

namespace lathe {

// Points in a block where observers see (and may replace) activations.
enum class ActivationSite {
  AttentionInput,    // normalized input of the q, k and v projections   [B, T, hidden]
  AttentionContext,  // concatenated head outputs, input of the o projection [B, T, Hq*d]
  AttentionOutput,   // output of the o projection, before the residual add [B, T, hidden]
  MlpInput,          // normalized input of the MLP's first projection(s) [B, T, hidden]
  MlpHidden,         // input of the MLP's down projection                [B, T, ffn]
  MlpOutput,         // output of the down projection, before the residual add
  FinalHidden,       // input of the output head (after the final norm), layer = -1
};
const char* activation_site_name(ActivationSite site);
// The key of a site in ModelQuantization: "layers.{i}.{site}", or the site alone for layer -1.
std::string site_key(int layer, ActivationSite site);

struct ForwardHooks {
  // Per layer, a gate per query head multiplying that head's output before the o projection
  // ([Hq] tensors; an undefined tensor means no gate). Gates may require grad.
  std::vector<at::Tensor> head_gates;
  // Structural masks (VIB pruning), each multiplying what it masks; an undefined tensor (or a
  // layer past the end) masks nothing.
  std::vector<at::Tensor> ffn_gates;        // per layer [ffn]: the down projection's input
  std::vector<at::Tensor> attention_gates;  // per layer, one element: the attention branch's output
  std::vector<at::Tensor> mlp_gates;        // per layer, one element: the MLP branch's output
  at::Tensor hidden_gate;                   // [hidden]: the embedding output and every branch's output
  // [hidden] in [0, 1]: every norm weighs each dimension's part in its statistics by this and
  // multiplies its output by it, so that masked dimensions take no part (CoFi's norms over the
  // kept dimensions, for 0/1 values).
  at::Tensor hidden_kept;
  // Sees each layer's attention probabilities [B, Hq, T, S] (S = cached + new positions).
  std::function<void(int layer, const at::Tensor& probabilities)> on_attention;
  // Sees activations; returning a defined tensor replaces the activation (fake quantization).
  std::function<at::Tensor(int layer, ActivationSite site, const at::Tensor& activation)> on_activation;
};

// Keys and values of the positions seen so far, per layer, for incremental decoding.
struct KvCache {
  std::vector<at::Tensor> keys;    // [B, Hkv, S, d]
  std::vector<at::Tensor> values;  // [B, Hkv, S, d]
  std::int64_t length = 0;
};

class Executor {
 public:
  explicit Executor(const Model& model);

  // input_ids [B, T] (int64) -> logits [B, T, vocab]. With a cache, the tokens continue the
  // cached positions and the cache is extended.
  at::Tensor forward(const at::Tensor& input_ids, const ForwardHooks* hooks = nullptr,
                     KvCache* cache = nullptr) const;

  // The three stages of forward(), for running a model one layer at a time over many batches
  // (see streamed_forward.h): token (and position) embeddings [B, T, hidden] for ids at
  // positions offset .. offset + T; one decoder layer; the final norm and output head.
  at::Tensor embed(const at::Tensor& input_ids, std::int64_t offset = 0, const ForwardHooks* hooks = nullptr) const;
  at::Tensor decoder_layer(int layer, const at::Tensor& x, std::int64_t offset, const ForwardHooks* hooks,
                           KvCache* cache = nullptr) const;
  at::Tensor output_head(const at::Tensor& x, const ForwardHooks* hooks) const;
  // The output head's input (the final norm, observed as FinalHidden) without the projection.
  at::Tensor final_hidden(const at::Tensor& x, const ForwardHooks* hooks) const;

  // The float32 values of a model tensor. Float32 tensors are the model's own; others
  // (float16, bfloat16, int8 times scales) are converted on first use and kept until
  // release_layer() (or for the executor's lifetime).
  at::Tensor weight(const std::string& name) const;
  // Drops the converted tensors of one decoder layer (or of the embeddings and head, layer
  // -1) and gives their memory-mapped pages back to the kernel.
  void release_layer(int layer) const;

  // Greedy decoding with a KV cache: `steps` new ids after `prompt`.
  std::vector<std::int64_t> greedy_decode(const std::vector<std::int64_t>& prompt, std::int64_t steps) const;

  const Model& model() const { return model_; }

 private:
  at::Tensor attention(int layer, const at::Tensor& x, std::int64_t offset, const ForwardHooks* hooks,
                       KvCache* cache) const;
  // Gated attention: sigmoid(<w_h, x_h> + b_h) per query head and position, [B, Hq, T, 1].
  at::Tensor head_output_gates(int layer, const at::Tensor& x) const;
  at::Tensor mlp(int layer, const at::Tensor& x, const ForwardHooks* hooks) const;
  at::Tensor norm(const at::Tensor& x, const std::string& prefix, const ForwardHooks* hooks) const;
  at::Tensor linear(int layer, const std::string& name, const at::Tensor& x) const;
  at::Tensor optional_weight(const std::string& name) const;

  const Model& model_;
  mutable std::unordered_map<std::string, at::Tensor> converted_;
  // Converted weights live in one buffer reused layer after layer, grown to what a layer needs,
  // so a streamed run neither faults fresh pages in for every layer nor fragments the heap.
  // Conversions that do not fit (the first layer, a whole-model run) get their own memory.
  at::Tensor converted_storage(std::int64_t elements) const;
  mutable at::Tensor arena_;  // float32
  mutable std::int64_t arena_used_ = 0;
  mutable std::int64_t arena_wanted_ = 0;
  // Rotary cos and sin tables [positions, head_dim] cover the positions forwards have reached
  // so far, not max_positions, which a config may set to millions.
  void cover_rotary_positions(std::int64_t positions) const;
  mutable at::Tensor rotary_cos_;
  mutable at::Tensor rotary_sin_;
};

// Rotary tables as the executor and the ONNX writer use them.
void rotary_tables(std::int64_t positions, std::int64_t head_dim, double theta, at::Tensor& cos, at::Tensor& sin);

}  // namespace lathe
