#pragma once

// The model IR: a family, its structural configuration, per-layer structure that passes may
// change layer by layer, the weights under canonical names, and annotations that passes leave
// for later passes and for the writers.
//
// Canonical tensor names (all linear weights in [out, in] layout):
//   embed.weight [vocab, hidden]           pos_embed.weight [max_positions, hidden]
//   final_norm.weight / .bias [hidden]      lm_head.weight [vocab, hidden] (absent when tied)
//   layers.{i}.attn_norm.weight / .bias     layers.{i}.mlp_norm.weight / .bias
//   layers.{i}.attn.q.weight [Hq*d, hidden] layers.{i}.attn.k.weight / .v.weight [Hkv*d, hidden]
//   layers.{i}.attn.o.weight [hidden, Hq*d] (+ .bias on q, k, v, o when the family has them)
//   layers.{i}.mlp.gate.weight [ffn, hidden] (gated MLPs only)
//   layers.{i}.mlp.up.weight [ffn, hidden]  layers.{i}.mlp.down.weight [hidden, ffn] (+ biases)
//   layers.{i}.attn.gate.weight [Hq, hidden / Hq], .bias [Hq] (gated attention only)

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/family.h"
#include "core/quantization.h"

namespace lathe {

struct ModelConfig {
  std::int64_t hidden = 0;
  std::int64_t vocab = 0;
  std::int64_t max_positions = 0;
  std::int64_t head_dim = 0;
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tied_embeddings = false;
  std::int32_t bos_id = -1;
  std::int32_t eos_id = -1;
};

struct LayerStructure {
  std::int64_t query_heads = 0;
  std::int64_t kv_heads = 0;
  std::int64_t ffn_width = 0;
  // The kv head each query head reads, when that is not the usual h / group_size() (after
  // head removal left groups of different sizes). Empty: the usual layout.
  std::vector<std::int64_t> kv_of_query = {};

  // Query heads sharing one kv head; 0 when the layer has no attention left.
  std::int64_t group_size() const { return kv_heads == 0 ? 0 : query_heads / kv_heads; }
  bool has_attention() const { return query_heads > 0; }
  bool regular_groups() const { return kv_of_query.empty(); }
  std::int64_t kv_head_of(std::int64_t query_head) const {
    return kv_of_query.empty() ? query_head / group_size() : kv_of_query[query_head];
  }
  bool operator==(const LayerStructure&) const = default;
};

// Attention changed so that heads need not push activations to extremes to do nothing
// (Bondarenko et al., 2023); applies to every layer with attention.
struct AttentionVariant {
  // clip((zeta - gamma) * softmax(x) + gamma, 0, 1) in place of softmax(x); gamma < 0, zeta >= 1.
  struct ClippedSoftmax {
    double gamma = 0;
    double zeta = 1;
    bool operator==(const ClippedSoftmax&) const = default;
  };
  std::optional<ClippedSoftmax> clipped_softmax;
  // Each query head's output times sigmoid(<w_h, x_h> + b_h), x_h the head's slice of the
  // normalized attention input (width hidden / Hq): layers.{i}.attn.gate.weight and .bias.
  bool gated = false;

  bool active() const { return clipped_softmax.has_value() || gated; }
};

class MappedFile;

// Where a model came from, for reports and writer metadata.
struct ModelSource {
  std::filesystem::path path;
  std::string format;  // "safetensors", "pytorch"
  std::uintmax_t bytes_on_disk = 0;
  nlohmann::json config;  // the config.json it came with, kept so writers can carry unknown keys
  std::filesystem::path tokenizer;  // tokenizer.model or vocab.json found beside it, if any
  // The files it was read from, for the report's fingerprints.
  std::filesystem::path config_file;
  std::filesystem::path index_file;                 // model.safetensors.index.json, if sharded
  std::vector<std::filesystem::path> weight_files;  // the safetensors shards, or the .pt file
};

class Model {
 public:
  FamilyDescription family;
  ModelConfig config;
  std::vector<LayerStructure> layers;
  // Weights as they are held: float32, float16 or bfloat16 (memory-mapped from the checkpoint
  // until a pass replaces them), or int8 for weights the model quantized (their per-output-
  // channel scales in quantization.weight_scales). Read values through tensor().
  std::map<std::string, at::Tensor> tensors;
  // Free-form annotations for later passes and writers (head roles and scores, ...).
  nlohmann::json annotations = nlohmann::json::object();
  AttentionVariant attention;
  ModelQuantization quantization;
  ModelSource source;
  // The file mappings whose bytes stored tensors wrap: checkpoint shards, and temporary files
  // holding tensors a pass made (see tensor_spill.h). The tensors own their mappings, so a
  // temporary file whose tensors have all been replaced goes away (and frees its disk space).
  std::vector<std::weak_ptr<const MappedFile>> mapped_files;

  std::int64_t layer_count() const { return static_cast<std::int64_t>(layers.size()); }
  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  // The values of a tensor in float32 (converted from its stored dtype, int8 weights times
  // their scales; a float32 tensor itself, as is a float64 one of a model a test computes in
  // double), or an InputError naming the missing tensor.
  at::Tensor tensor(const std::string& name) const;
  // The float32 values of rows [first, first + out.size(0)) of a tensor, written into `out`
  // (for consumers that convert a slice at a time, or into memory of their own).
  void rows_into(const std::string& name, std::int64_t first, const at::Tensor& out) const;
  at::Tensor layer_tensor(int layer, const std::string& name) const;
  // The tensor as held (see `tensors`).
  const at::Tensor& stored(const std::string& name) const;
  bool has_layer_tensor(int layer, const std::string& name) const;
  // The output projection's name: lm_head.weight, or the token embedding when tied.
  std::string output_weight_name() const { return config.tied_embeddings ? "embed.weight" : "lm_head.weight"; }
  at::Tensor output_weight() const { return tensor(output_weight_name()); }
  bool is_quantized_weight(const std::string& name) const { return quantization.weight_scales.count(name) != 0; }

  std::int64_t parameter_count() const;
  // The decoder layers' parameters: the embeddings, final norm and output head excluded.
  std::int64_t decoder_parameter_count() const;
  // Bytes of the tensors as held, and as float32 (what a pass that keeps the whole model's
  // values in memory needs for them).
  std::int64_t stored_bytes() const;
  std::int64_t float_bytes() const;
  // Names of the tensors of one decoder layer ("layers.{i}." ...).
  std::vector<std::string> layer_tensor_names(int layer) const;
  // Gives the pages of a memory-mapped tensor back to the kernel (they are read from the file
  // again if used later); nothing for tensors in ordinary memory.
  void release_pages(const std::string& name) const;
  // Maps a memory-mapped tensor's pages in at once before it is read (see MappedFile::populate).
  void populate_pages(const std::string& name) const;
  // Whether a stored tensor's bytes are in one of mapped_files.
  bool is_memory_mapped(const std::string& name) const;

  // A shallow copy: the tensors are shared, so replace a tensor instead of writing into it.
  Model clone() const { return *this; }

 private:
  // The mapping holding a stored tensor's bytes (set to them), or null.
  const MappedFile* mapping_of(const std::string& name, std::span<const std::byte>& bytes) const;
};

std::string layer_name(int layer, const std::string& name);

// Float32 and float64 tensors are computed with as they are; other dtypes are converted.
bool holds_float_values(const at::Tensor& tensor);

// Checks every tensor the family and structure require is present with the right shape;
// InputError naming `origin` and the first problem.
void validate_model(const Model& model, const std::string& origin);

// A copy whose every tensor holds its values in float64 (int8 weights times their scales, in
// float64), for reference evaluations: the executor then computes in float64 throughout.
Model with_float64_values(const Model& model);

}  // namespace lathe

namespace lathe {

// Canonical names of weights that are stored as a linear map inside transformer blocks (and
// so follow the family's linear_layout in checkpoints).
bool is_block_linear_weight(const std::string& canonical_name);

}  // namespace lathe
