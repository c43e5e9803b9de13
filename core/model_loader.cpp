#include "core/model_loader.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "core/tensor_io.h"
#include "core/torch_checkpoint.h"
#include "formats/hf_config.h"
#include "formats/json_reader.h"
#include "formats/safetensors.h"
#include "support/errors.h"
#include "support/number_text.h"

namespace lathe {
namespace {

namespace fs = std::filesystem;

enum class CheckpointFormat { Safetensors, PyTorch };

struct CheckpointFile {
  fs::path path;
  CheckpointFormat format;
};

bool is_pytorch_file(const fs::path& path) {
  const auto extension = path.extension();
  return extension == ".pt" || extension == ".pth" || extension == ".bin";
}

CheckpointFile locate_checkpoint(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(path.string(), "no such file or folder");
  if (fs::is_directory(path)) {
    for (const char* name : {"model.safetensors", "model.safetensors.index.json"})
      if (fs::exists(path / name)) return {path, CheckpointFormat::Safetensors};
    for (const char* name : {"pytorch_model.bin", "model.pt", "model.pth"})
      if (fs::exists(path / name)) return {path / name, CheckpointFormat::PyTorch};
    throw InputError(path.string(), "holds no checkpoint (model.safetensors, model.safetensors.index.json, "
                                    "pytorch_model.bin or model.pt)");
  }
  if (path.extension() == ".safetensors" || path.extension() == ".json")
    return {path, CheckpointFormat::Safetensors};
  if (is_pytorch_file(path)) return {path, CheckpointFormat::PyTorch};
  throw InputError(path.string(), "unknown checkpoint format; expected .safetensors, an index .json, "
                                  ".pt, .pth, .bin or a folder holding one");
}

fs::path checkpoint_folder(const CheckpointFile& checkpoint) {
  return fs::is_directory(checkpoint.path) ? checkpoint.path : checkpoint.path.parent_path();
}

HfConfig find_config(const ModelLocation& location, const CheckpointFile& checkpoint) {
  if (location.config) return HfConfig::load(*location.config);
  auto beside = checkpoint_folder(checkpoint) / "config.json";
  if (fs::exists(beside)) return HfConfig::load(beside);
  throw InputError(location.path.string(),
                   "no config.json beside the checkpoint; a state dict does not record head counts, "
                   "so give one (recipe: model: {path: ..., config: path/to/config.json}, "
                   "command line: --config)");
}

constexpr std::int64_t kMaxLayers = 4096;
constexpr std::int64_t kMaxWidth = std::int64_t{1} << 20;
constexpr std::int64_t kMaxHeads = std::int64_t{1} << 16;
constexpr std::int64_t kMaxVocabulary = std::int64_t{1} << 24;
constexpr std::int64_t kMaxPositions = std::int64_t{1} << 21;

void check_at_most(const HfConfig& config, const std::string& key, std::int64_t value, std::int64_t limit) {
  if (value > limit)
    throw InputError(config.origin().string(), quote(key) + " is " + std::to_string(value) + ", more than the " +
                                                   std::to_string(limit) + " lathe accepts");
}

std::int64_t config_int(const HfConfig& config, const std::string& key, std::int64_t fallback) {
  if (key.empty()) return fallback;
  auto value = config.find_int(key);
  return value ? *value : fallback;
}

// Keys of every Hugging Face PretrainedConfig: bookkeeping, generation defaults and output
// switches. None changes what a decoder computes (pruned_heads and the encoder-decoder
// switches do, so they are not here: a config that sets them is refused).
const std::set<std::string> kPretrainedConfigKeys = {
    "_name_or_path", "_commit_hash", "_attn_implementation", "_attn_implementation_autoset", "architectures",
    "model_type", "torch_dtype", "transformers_version", "use_cache", "return_dict", "output_hidden_states",
    "output_attentions", "torchscript", "use_bfloat16", "tf_legacy_loss", "chunk_size_feed_forward",
    "finetuning_task", "id2label", "label2id", "problem_type", "tokenizer_class", "prefix", "task_specific_params",
    "pad_token_id", "sep_token_id", "decoder_start_token_id", "max_length", "min_length", "do_sample",
    "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
    "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
    "begin_suppress_tokens", "is_decoder"};

// What lathe writes into the configs of the models it makes (read back by the loader, or
// provenance).
const std::set<std::string> kLatheConfigKeys = {"lathe", "lathe_attention", "lathe_head_dim", "lathe_layers", "lathe_passes",
                                                "lathe_quantization", "lathe_recipe", "lathe_source_model",
                                                "lathe_version"};

// A key lathe does not know might change the computation (sliding_window, a quantization_config,
// pruned_heads); computing the model without it would give a silently different model.
void check_config_keys(const HfConfig& hf, const FamilyDescription& family) {
  const auto& keys = family.config;
  std::set<std::string> known(keys.no_effect.begin(), keys.no_effect.end());
  for (const auto* mapped : {&keys.hidden, &keys.layers, &keys.heads, &keys.kv_heads, &keys.head_dim, &keys.ffn,
                             &keys.vocab, &keys.max_positions, &keys.norm_eps, &keys.rope_theta, &keys.tie_embeddings,
                             &keys.bos_id, &keys.eos_id})
    if (!mapped->empty()) known.insert(*mapped);
  for (const auto& [key, values] : keys.implemented_values) known.insert(key);
  for (const auto& [key, value] : hf.json().items()) {
    if (known.count(key) || kPretrainedConfigKeys.count(key) || kLatheConfigKeys.count(key)) continue;
    throw InputError(hf.origin().string(),
                     quote(key) + " is not a key lathe's " + family.name +
                         " family implements, and it may change what the model computes; " + family.source +
                         " lists the keys it reads, the values it implements and the keys without effect (no_effect)");
  }
}

ModelConfig read_model_config(const HfConfig& hf, const FamilyDescription& family,
                              std::vector<LayerStructure>& layers) {
  const auto& keys = family.config;
  const auto file = hf.origin().string();
  check_config_keys(hf, family);
  for (const auto& [key, values] : keys.implemented_values) {
    if (!hf.json().contains(key) || std::find(values.begin(), values.end(), hf.json()[key]) != values.end()) continue;
    std::string choices;
    for (const auto& value : values) choices += (choices.empty() ? "" : ", ") + value.dump();
    throw InputError(file, quote(key) + " is " + hf.json()[key].dump() + "; lathe's " + family.name +
                               " family computes only " + choices + " (" + family.source + ")");
  }
  ModelConfig config;
  config.hidden = hf.get_int(keys.hidden);
  config.vocab = hf.get_int(keys.vocab);
  const auto layer_count = hf.get_int(keys.layers);
  const auto heads = hf.get_int(keys.heads);
  const auto kv_heads = config_int(hf, keys.kv_heads, heads);
  const std::pair<const std::string*, std::int64_t> sizes[] = {
      {&keys.hidden, config.hidden}, {&keys.vocab, config.vocab}, {&keys.layers, layer_count},
      {&keys.heads, heads},          {&keys.kv_heads, kv_heads}};
  for (const auto& [key, value] : sizes)
    if (value <= 0) throw InputError(file, quote(*key) + " is " + std::to_string(value) + "; it must be positive");
  // Far beyond any released model; the tensors are checked against these sizes once read, and
  // nothing is allocated from them before that but one small entry per layer.
  check_at_most(hf, keys.layers, layer_count, kMaxLayers);
  check_at_most(hf, keys.hidden, config.hidden, kMaxWidth);
  check_at_most(hf, keys.heads, heads, kMaxHeads);
  check_at_most(hf, keys.vocab, config.vocab, kMaxVocabulary);
  // A family whose config has no head size key derives it from the hidden size, unless lathe
  // removed hidden dimensions and wrote the head size under its own key.
  const auto& head_dim_key = keys.head_dim.empty() && hf.has(kHeadDimKey) ? std::string(kHeadDimKey) : keys.head_dim;
  if (config.hidden % heads != 0 && head_dim_key.empty())
    throw InputError(file, "hidden size " + std::to_string(config.hidden) + " is not divisible by " +
                               std::to_string(heads) + " heads");
  config.head_dim = config_int(hf, head_dim_key, config.hidden / heads);
  config.max_positions = config_int(hf, keys.max_positions, 0);
  if (config.max_positions <= 0) throw InputError(file, "needs a positive " + keys.max_positions);
  check_at_most(hf, keys.max_positions, config.max_positions, kMaxPositions);
  if (!keys.norm_eps.empty()) config.norm_eps = hf.find_double(keys.norm_eps).value_or(1e-5);
  if (!(std::isfinite(config.norm_eps) && config.norm_eps > 0 && config.norm_eps < 1))
    throw InputError(file, quote(keys.norm_eps) + " is " + number_text(config.norm_eps) +
                               "; a norm's epsilon must be a number above 0 and below 1");
  if (!keys.rope_theta.empty())
    config.rope_theta = hf.find_double(keys.rope_theta).value_or(keys.default_rope_theta.value_or(10000.0));
  if (family.block.position == PositionKind::Rotary && !(std::isfinite(config.rope_theta) && config.rope_theta > 1))
    throw InputError(file, quote(keys.rope_theta) + " is " + number_text(config.rope_theta) +
                               "; the rotary base must be a finite number above 1");
  config.tied_embeddings = keys.tie_embeddings.empty()
                               ? keys.default_tie_embeddings.value_or(false)
                               : hf.find_bool(keys.tie_embeddings).value_or(keys.default_tie_embeddings.value_or(false));
  config.bos_id = static_cast<std::int32_t>(config_int(hf, keys.bos_id, -1));
  config.eos_id = static_cast<std::int32_t>(config_int(hf, keys.eos_id, -1));

  std::int64_t ffn = 0;
  if (!keys.ffn.empty() && hf.find_int(keys.ffn)) ffn = *hf.find_int(keys.ffn);
  if (ffn == 0 && keys.ffn_multiple_of_hidden) ffn = *keys.ffn_multiple_of_hidden * config.hidden;
  if (ffn <= 0) throw InputError(file, "needs a positive " + keys.ffn);
  check_at_most(hf, keys.ffn, ffn, kMaxWidth);
  check_at_most(hf, head_dim_key, config.head_dim, kMaxWidth);
  if (config.head_dim <= 0) throw InputError(file, "needs a positive " + keys.head_dim);
  if (heads % kv_heads != 0 && !hf.has(kLayerStructureKey))
    throw InputError(file, std::to_string(heads) + " query heads cannot share " + std::to_string(kv_heads) + " kv heads");

  layers.assign(layer_count, LayerStructure{heads, kv_heads, ffn});
  if (hf.has(kLayerStructureKey)) {
    const auto& entries = hf.json()[kLayerStructureKey];
    if (!entries.is_array() || static_cast<std::int64_t>(entries.size()) != layer_count)
      throw InputError(file, std::string(kLayerStructureKey) + " must list one entry per layer");
    for (std::int64_t i = 0; i < layer_count; ++i) {
      const auto& entry = entries[i];
      try {
        layers[i] = LayerStructure{entry.at("query_heads").get<std::int64_t>(),
                                   entry.at("kv_heads").get<std::int64_t>(),
                                   entry.at("ffn_width").get<std::int64_t>(),
                                   entry.value("kv_of_query", std::vector<std::int64_t>{})};
      } catch (const nlohmann::json::exception&) {
        throw InputError(file, std::string(kLayerStructureKey) + "[" + std::to_string(i) +
                                   "] needs integer query_heads, kv_heads and ffn_width (and kv_of_query a list)");
      }
    }
  }
  return config;
}

bool matches_pattern(const std::string& name, const std::string& pattern, int layer_count) {
  if (pattern.find("{i}") == std::string::npos) return name == pattern;
  for (int i = 0; i < layer_count; ++i)
    if (name == layer_tensor_name(pattern, i)) return true;
  return false;
}

// Checkpoints of a Conv1D family may still hold nn.Linear [out, in] weights (a state dict saved
// from a from-scratch model, like makemore's). The first non-square block weight decides.
bool checkpoint_needs_transpose(const Model& model, const std::map<std::string, at::Tensor>& raw) {
  if (model.family.block.linear_layout == LinearLayout::OutIn) return false;
  const auto& names = model.family.tensors;
  auto decide = [&](const std::string& pattern, std::int64_t out_features) -> std::optional<bool> {
    auto found = raw.find(layer_tensor_name(pattern, 0));
    if (found == raw.end() || found->second.dim() != 2) return std::nullopt;
    const auto rows = found->second.size(0), cols = found->second.size(1);
    if (rows == cols) return std::nullopt;
    return rows != out_features;  // [in, out] as the family declares; [out, in] needs no transpose
  };
  const auto& layer = model.layers.front();
  const auto head_dim = model.config.head_dim;
  if (!names.fused_qkv_weight.empty())
    if (auto answer = decide(names.fused_qkv_weight, (layer.query_heads + 2 * layer.kv_heads) * head_dim))
      return *answer;
  if (auto it = names.layer.find("mlp.up.weight"); it != names.layer.end())
    if (auto answer = decide(it->second, layer.ffn_width)) return *answer;
  return true;
}

// Weights stay in their stored dtype (and, read from safetensors, in the file's mapping) until a
// pass uses them; doubles, which nothing computes in, become float32.
at::Tensor to_stored(const at::Tensor& tensor, const std::string& file, const std::string& name) {
  const auto type = tensor.scalar_type();
  if (type == at::kFloat || type == at::kHalf || type == at::kBFloat16 || type == at::kChar) return tensor;
  if (type == at::kDouble) return tensor.to(at::kFloat);
  throw InputError(file, "tensor " + name + " has dtype " + std::string(at::toString(type)) +
                             "; lathe reads float weights (F32, F16, BF16) and its own int8 ones");
}

void canonicalize(Model& model, std::map<std::string, at::Tensor> raw, const std::string& file) {
  const auto& names = model.family.tensors;
  const bool transpose = checkpoint_needs_transpose(model, raw);
  std::set<std::string> used;
  auto take = [&](const std::string& checkpoint_name, const std::string& canonical, bool required) {
    auto found = raw.find(checkpoint_name);
    if (found == raw.end()) {
      if (required) throw InputError(file, "missing tensor " + checkpoint_name);
      return;
    }
    used.insert(checkpoint_name);
    auto tensor = to_stored(found->second, file, checkpoint_name);
    if (transpose && is_block_linear_weight(canonical)) {
      if (tensor.dim() != 2) throw InputError(file, "tensor " + checkpoint_name + " is not a matrix");
      tensor = tensor.t().contiguous();
    }
    model.tensors[canonical] = tensor;
  };

  for (const auto& [canonical, checkpoint_name] : names.model) {
    if (canonical == "lm_head.weight" && model.config.tied_embeddings) {
      used.insert(checkpoint_name);  // HF ignores a stored head when the embedding is tied.
      continue;
    }
    const bool required = canonical != "pos_embed.weight" || model.family.block.position == PositionKind::Learned;
    take(checkpoint_name, canonical, required && canonical != "final_norm.bias");
  }
  for (int i = 0; i < model.layer_count(); ++i) {
    const auto& layer = model.layers[i];
    for (const auto& [canonical, pattern] : names.layer) {
      const bool attention_tensor = canonical.starts_with("attn");
      const bool mlp_tensor = canonical.starts_with("mlp");
      if ((attention_tensor && !layer.has_attention()) || (mlp_tensor && layer.ffn_width == 0)) continue;
      take(layer_tensor_name(pattern, i), layer_name(i, canonical), true);
    }
    if (!model.family.block.fused_qkv || !layer.has_attention()) continue;
    const auto q_rows = layer.query_heads * model.config.head_dim;
    const auto kv_rows = layer.kv_heads * model.config.head_dim;
    auto split = [&](const std::string& pattern, const std::string& suffix) {
      if (pattern.empty()) return;
      const auto name = layer_tensor_name(pattern, i);
      auto found = raw.find(name);
      if (found == raw.end()) throw InputError(file, "missing tensor " + name);
      used.insert(name);
      auto fused = to_stored(found->second, file, name);
      if (transpose && fused.dim() == 2) fused = fused.t();
      if (fused.size(0) != q_rows + 2 * kv_rows)
        throw InputError(file, "tensor " + name + " has " + std::to_string(fused.size(0)) +
                                   " rows of q, k and v, expected " + std::to_string(q_rows + 2 * kv_rows));
      auto parts = fused.split_with_sizes({q_rows, kv_rows, kv_rows}, 0);
      model.tensors[layer_name(i, "attn.q." + suffix)] = parts[0].contiguous();
      model.tensors[layer_name(i, "attn.k." + suffix)] = parts[1].contiguous();
      model.tensors[layer_name(i, "attn.v." + suffix)] = parts[2].contiguous();
    };
    split(names.fused_qkv_weight, "weight");
    if (model.family.block.attention_bias) split(names.fused_qkv_bias, "bias");
  }
  for (const auto& [name, tensor] : raw) {
    if (used.count(name)) continue;
    bool ignored = false;
    for (const auto& pattern : names.ignored) ignored = ignored || matches_pattern(name, pattern, model.layer_count());
    if (!ignored)
      throw InputError(file, "unexpected tensor " + name + " for the " + model.family.name +
                                 " family (see " + model.family.source + ")");
  }
}

void restore_quantization(Model& model, const HfConfig& hf, const std::map<std::string, at::Tensor>& scales,
                          const std::string& origin) {
  if (!hf.has(kQuantizationKey))
    throw InputError(origin, "holds int8 weights but its config.json has no " + std::string(kQuantizationKey));
  const auto& json = hf.json()[kQuantizationKey];
  auto& quantization = model.quantization;
  try {
    const auto mode = json.at("mode").get<std::string>();
    quantization.mode = mode == "w8a8" ? ModelQuantization::Mode::Static
                        : mode == "w8" ? ModelQuantization::Mode::WeightOnly
                        : mode == "dynamic" ? ModelQuantization::Mode::Dynamic
                                            : throw InputError(hf.origin().string(), "unknown quantization mode \"" + mode + "\"");
    quantization.weight_limit = json.at("weight_limit").get<std::int64_t>();
    // Files written before target_cpu existed say only the limit, which implies the target.
    const auto target = json.contains("target_cpu") ? json.at("target_cpu").get<std::string>()
                        : quantization.weight_limit == weight_limit_for(TargetCpu::Vnni) ? "vnni"
                                                                                          : "any";
    if (!parse_target_cpu(target, quantization.target_cpu))
      throw InputError(hf.origin().string(), std::string(kQuantizationKey) + ": unknown target_cpu \"" + target +
                                                 "\"; known: any, avx2, vnni");
    if (quantization.weight_limit != weight_limit_for(quantization.target_cpu))
      throw InputError(hf.origin().string(), std::string(kQuantizationKey) + ": weight_limit " +
                                                 std::to_string(quantization.weight_limit) + " does not match target_cpu " +
                                                 target + " (" + std::to_string(weight_limit_for(quantization.target_cpu)) + ")");
    for (const auto& [site, parameters] : json.at("activations").items())
      quantization.activations[site] = {parameters.at("scale").get<float>(), parameters.at("zero_point").get<std::int32_t>()};
    quantization.dynamic_sites = json.at("dynamic_sites").get<std::set<std::string>>();
  } catch (const nlohmann::json::exception& error) {
    throw InputError(hf.origin().string(), std::string(kQuantizationKey) + " is malformed: " + error.what());
  }
  for (const auto& [canonical, scale] : scales) {
    auto found = model.tensors.find(canonical);
    if (found == model.tensors.end() || found->second.dim() != 2 || found->second.size(0) != scale.numel())
      throw InputError(origin, std::string(kWeightScalePrefix) + canonical + " does not fit a weight of this model");
    if (found->second.scalar_type() != at::kChar)
      throw InputError(origin, std::string(kWeightScalePrefix) + canonical + " scales a weight that is not int8");
    quantization.weight_scales[canonical] = scale.contiguous();
  }
}

void restore_attention_variant(Model& model, const HfConfig& hf, std::map<std::string, at::Tensor> tensors,
                               const std::string& origin) {
  if (hf.has(kAttentionKey)) {
    const auto& json = hf.json()[kAttentionKey];
    try {
      if (json.contains("clipped_softmax"))
        model.attention.clipped_softmax = AttentionVariant::ClippedSoftmax{
            json["clipped_softmax"].at("gamma").get<double>(), json["clipped_softmax"].at("zeta").get<double>()};
      model.attention.gated = json.value("gated", false);
    } catch (const nlohmann::json::exception& error) {
      throw InputError(hf.origin().string(), std::string(kAttentionKey) + " is malformed: " + error.what());
    }
  }
  for (auto& [canonical, tensor] : tensors) {
    const bool gate = canonical.find(".attn.gate.") != std::string::npos;
    if (!gate || !model.attention.gated)
      throw InputError(origin, "unexpected tensor " + std::string(kLatheTensorPrefix) + canonical +
                                   (gate ? " in a model whose config.json does not declare gated attention" : ""));
    model.tensors[canonical] = tensor.contiguous();
  }
}

}  // namespace

Model load_model(const ModelLocation& location) {
  const auto checkpoint = locate_checkpoint(location.path);
  const auto hf = find_config(location, checkpoint);
  Model model;
  model.family = location.family ? family_by_name(*location.family)
                                 : family_for_model_type(hf.get_string("model_type"), hf.origin().string());
  model.config = read_model_config(hf, model.family, model.layers);
  if (hf.has("lathe")) model.annotations = hf.json()["lathe"];
  model.source.config = hf.json();
  model.source.config_file = hf.origin();
  for (const auto& folder : {checkpoint_folder(checkpoint), hf.origin().parent_path()})
    for (const char* name : {"tokenizer.model", "vocab.json"})
      if (model.source.tokenizer.empty() && fs::exists(folder / name)) model.source.tokenizer = folder / name;

  std::map<std::string, at::Tensor> raw;
  model.source.path = checkpoint.path;
  std::string origin = checkpoint.path.string();  // the file to name in errors
  if (checkpoint.format == CheckpointFormat::Safetensors) {
    auto file = std::make_shared<SafetensorsCheckpoint>(SafetensorsCheckpoint::open(checkpoint.path));
    for (const auto* view : file->tensors()) raw[view->name] = tensor_from_view(*view, file);
    for (const auto& shard : file->shards()) {
      model.mapped_files.push_back(shard.mapping());
      model.source.weight_files.push_back(shard.path());
    }
    if (checkpoint.path.extension() == ".json") model.source.index_file = checkpoint.path;
    model.source.format = "safetensors";
    model.source.bytes_on_disk = file->bytes_on_disk();
    if (file->shards().size() == 1) origin = file->shards().front().path().string();
    if (model.annotations.empty()) {
      const auto& metadata = file->metadata();
      if (auto found = metadata.find("lathe"); found != metadata.end()) {
        auto parsed = nlohmann::json::parse(found->second, nullptr, /*allow_exceptions=*/false);
        if (!parsed.is_object())
          throw InputError(origin, "__metadata__ entry \"lathe\" must be a JSON object (lathe's head annotations)");
        model.annotations = parsed;
      }
    }
  } else {
    raw = read_torch_state_dict(checkpoint.path);
    model.source.format = "pytorch";
    model.source.bytes_on_disk = fs::file_size(checkpoint.path);
    model.source.weight_files.push_back(checkpoint.path);
  }
  // Scales of int8 weights and lathe's own tensors: taken out before the names are mapped.
  std::map<std::string, at::Tensor> scales, lathe_tensors;
  for (auto it = raw.begin(); it != raw.end();) {
    if (it->first.rfind(kWeightScalePrefix, 0) == 0) {
      scales[it->first.substr(std::string(kWeightScalePrefix).size())] = it->second.to(at::kFloat);
      it = raw.erase(it);
    } else if (it->first.rfind(kLatheTensorPrefix, 0) == 0) {
      lathe_tensors[it->first.substr(std::string(kLatheTensorPrefix).size())] = it->second.to(at::kFloat);
      it = raw.erase(it);
    } else {
      ++it;
    }
  }
  std::set<std::string> int8_names;
  for (const auto& [name, tensor] : raw)
    if (tensor.scalar_type() == at::kChar) int8_names.insert(name);
  canonicalize(model, std::move(raw), origin);
  restore_attention_variant(model, hf, std::move(lathe_tensors), origin);
  // Also without int8 weights (all excluded), so that a malformed quantization entry is refused.
  if (!int8_names.empty() || !scales.empty() || hf.has(kQuantizationKey)) restore_quantization(model, hf, scales, origin);
  validate_model(model, origin);
  return model;
}

}  // namespace lathe
