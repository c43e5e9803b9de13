#pragma once

// A model family described as data (configs/<family>.yaml): how its blocks compute and where
// its tensors live in a checkpoint. The executor and the writers read these options instead of
// branching on family names.

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace lathe {

enum class NormKind { RMS, Layer };
enum class PositionKind { Rotary, Learned };
enum class MlpKind { GatedSiLU, GeluTanh, Gelu, Relu };
enum class LinearLayout { OutIn, InOut };  // nn.Linear [out, in] or GPT-2 Conv1D [in, out]

struct BlockOptions {
  NormKind norm = NormKind::RMS;
  PositionKind position = PositionKind::Rotary;
  MlpKind mlp = MlpKind::GatedSiLU;
  bool attention_bias = false;
  bool mlp_bias = false;
  bool norm_bias = false;
  bool fused_qkv = false;
  LinearLayout linear_layout = LinearLayout::OutIn;
  bool causal = true;
  bool pre_norm = true;
};

// Where a canonical IR tensor lives in the family's checkpoints. `{i}` stands for the layer.
// A fused QKV tensor is split on load into q, k and v and joined again by the writers.
struct TensorNames {
  std::map<std::string, std::string> model;  // canonical name -> checkpoint name
  std::map<std::string, std::string> layer;  // canonical per-layer name -> pattern with {i}
  std::string fused_qkv_weight;              // pattern with {i}, empty when not fused
  std::string fused_qkv_bias;
  std::vector<std::string> ignored;          // checkpoint tensors that carry no weights
};

// HF config.json keys for each structural field, with defaults where HF has them.
struct ConfigKeys {
  std::vector<std::string> model_types;
  std::string hidden, layers, heads, kv_heads, head_dim, ffn, vocab, max_positions, norm_eps,
      rope_theta, tie_embeddings, bos_id, eos_id;
  std::optional<double> default_rope_theta;
  std::optional<bool> default_tie_embeddings;
  std::optional<int> ffn_multiple_of_hidden;  // GPT-2's n_inner: null means 4 x hidden
  // config.json keys whose value changes what the model computes, with the values lathe
  // implements for the family ("hidden_act": ["silu"], "rope_scaling": [null]). A config that
  // sets one of these keys to another value is refused rather than computed wrongly (an absent
  // key means the Hugging Face default, which lathe implements).
  std::vector<std::pair<std::string, std::vector<nlohmann::json>>> implemented_values;
  // config.json keys that do not change what the model computes for this family (dropout,
  // initialization, bookkeeping). Together with the keys above, the ones every Hugging Face
  // config has and lathe's own, they are all a config may hold: any other key is refused.
  std::vector<std::string> no_effect;
};

struct FamilyDescription {
  std::string name;
  std::string source;  // the YAML it came from, for error messages
  BlockOptions block;
  ConfigKeys config;
  TensorNames tensors;
};

// Parses one family description; InputError with file:line:col on a malformed one.
FamilyDescription parse_family(const std::string& yaml_text, const std::string& source);

// All families lathe knows: the embedded configs/*.yaml plus any *.yaml in the folder named
// by LATHE_FAMILY_PATH.
const std::vector<FamilyDescription>& known_families();
const FamilyDescription& family_by_name(const std::string& name);
// The family whose model_types include `model_type`; InputError listing the known ones.
const FamilyDescription& family_for_model_type(const std::string& model_type, const std::string& file);

// Expands `{i}` in a tensor-name pattern.
std::string layer_tensor_name(const std::string& pattern, int layer);

}  // namespace lathe
