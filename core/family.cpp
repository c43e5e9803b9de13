#include "core/family.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "core/embedded_files.h"
#include "support/bounded_file.h"
#include "support/errors.h"

namespace lathe {
namespace {

std::string where(const std::string& source, const YAML::Node& node) {
  const auto mark = node.Mark();
  if (mark.line < 0) return source;
  return source + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

template <typename Enum>
Enum parse_choice(const YAML::Node& node, const std::string& source, const std::string& key,
                  const std::vector<std::pair<std::string, Enum>>& choices) {
  const auto text = node.as<std::string>();
  std::string names;
  for (const auto& [name, value] : choices) {
    if (name == text) return value;
    names += (names.empty() ? "" : ", ") + name;
  }
  throw InputError(where(source, node) + ": unknown " + key + " \"" + text + "\"; valid: " + names);
}

bool get_bool(const YAML::Node& map, const char* key, bool fallback, const std::string& source) {
  const auto node = map[key];
  if (!node) return fallback;
  try {
    return node.as<bool>();
  } catch (const YAML::Exception&) {
    throw InputError(where(source, node) + ": \"" + key + "\" must be true or false");
  }
}

// A family file is data lathe trusts to describe a computation: a key it does not read is a
// mistake (a typo, or an option this lathe does not have), not something to skip.
void check_keys(const YAML::Node& map, const std::string& source, const std::string& section,
                const std::vector<std::string>& known) {
  for (const auto& entry : map) {
    const auto key = entry.first.as<std::string>();
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string names;
    for (const auto& name : known) names += (names.empty() ? "" : ", ") + name;
    throw InputError(where(source, entry.first) + ": unknown key \"" + key + "\"" +
                     (section.empty() ? "" : " in " + section) + "; valid: " + names);
  }
}

std::string get_string(const YAML::Node& map, const char* key) {
  const auto node = map[key];
  return node ? node.as<std::string>() : std::string();
}

BlockOptions parse_block(const YAML::Node& node, const std::string& source) {
  BlockOptions block;
  if (!node || !node.IsMap()) throw InputError(where(source, node) + ": \"block\" must be a map");
  check_keys(node, source, "block",
             {"norm", "norm_bias", "position", "mlp", "attention_bias", "mlp_bias", "fused_qkv", "linear_layout",
              "causal", "pre_norm"});
  if (node["norm"])
    block.norm = parse_choice<NormKind>(node["norm"], source, "norm",
                                        {{"rms", NormKind::RMS}, {"layer", NormKind::Layer}});
  if (node["position"])
    block.position = parse_choice<PositionKind>(
        node["position"], source, "position",
        {{"rotary", PositionKind::Rotary}, {"learned", PositionKind::Learned}});
  if (node["mlp"])
    block.mlp = parse_choice<MlpKind>(node["mlp"], source, "mlp",
                                      {{"gated-silu", MlpKind::GatedSiLU},
                                       {"gelu-tanh", MlpKind::GeluTanh},
                                       {"gelu", MlpKind::Gelu},
                                       {"relu", MlpKind::Relu}});
  if (node["linear_layout"])
    block.linear_layout = parse_choice<LinearLayout>(
        node["linear_layout"], source, "linear_layout",
        {{"out-in", LinearLayout::OutIn}, {"in-out", LinearLayout::InOut}});
  block.attention_bias = get_bool(node, "attention_bias", false, source);
  block.mlp_bias = get_bool(node, "mlp_bias", false, source);
  block.norm_bias = get_bool(node, "norm_bias", false, source);
  block.fused_qkv = get_bool(node, "fused_qkv", false, source);
  block.causal = get_bool(node, "causal", true, source);
  block.pre_norm = get_bool(node, "pre_norm", true, source);
  if (!block.pre_norm) throw InputError(where(source, node) + ": post-norm blocks are not supported yet");
  if (!block.causal) throw InputError(where(source, node) + ": bidirectional attention is not supported yet");
  return block;
}

// A YAML scalar as the JSON value config.json would hold: null, a boolean, a number or a string.
nlohmann::json json_scalar(const YAML::Node& node, const std::string& source) {
  if (node.IsNull()) return nullptr;
  if (!node.IsScalar()) throw InputError(where(source, node) + ": expected a scalar value");
  if (node.Tag() != "!") {  // unquoted: YAML's plain scalars
    bool flag = false;
    if (YAML::convert<bool>::decode(node, flag)) return flag;
    std::int64_t integer = 0;
    if (YAML::convert<std::int64_t>::decode(node, integer)) return integer;
    double number = 0;
    if (YAML::convert<double>::decode(node, number)) return number;
  }
  return node.as<std::string>();
}

ConfigKeys parse_config_keys(const YAML::Node& node, const YAML::Node& model_types,
                             const std::string& source) {
  ConfigKeys keys;
  if (!node || !node.IsMap()) throw InputError(where(source, node) + ": \"config\" must be a map");
  check_keys(node, source, "config",
             {"hidden", "layers", "heads", "kv_heads", "head_dim", "ffn", "vocab", "max_positions", "norm_eps",
              "rope_theta", "tie_embeddings", "bos_id", "eos_id", "default_rope_theta", "default_tie_embeddings",
              "ffn_multiple_of_hidden", "implements", "no_effect"});
  for (const auto& type : model_types) keys.model_types.push_back(type.as<std::string>());
  keys.hidden = get_string(node, "hidden");
  keys.layers = get_string(node, "layers");
  keys.heads = get_string(node, "heads");
  keys.kv_heads = get_string(node, "kv_heads");
  keys.head_dim = get_string(node, "head_dim");
  keys.ffn = get_string(node, "ffn");
  keys.vocab = get_string(node, "vocab");
  keys.max_positions = get_string(node, "max_positions");
  keys.norm_eps = get_string(node, "norm_eps");
  keys.rope_theta = get_string(node, "rope_theta");
  keys.tie_embeddings = get_string(node, "tie_embeddings");
  keys.bos_id = get_string(node, "bos_id");
  keys.eos_id = get_string(node, "eos_id");
  if (node["default_rope_theta"]) keys.default_rope_theta = node["default_rope_theta"].as<double>();
  if (node["default_tie_embeddings"])
    keys.default_tie_embeddings = node["default_tie_embeddings"].as<bool>();
  if (node["ffn_multiple_of_hidden"])
    keys.ffn_multiple_of_hidden = node["ffn_multiple_of_hidden"].as<int>();
  if (const auto implemented = node["implements"]) {
    if (!implemented.IsMap()) throw InputError(where(source, implemented) + ": \"implements\" must map config keys to value lists");
    for (const auto& entry : implemented) {
      if (!entry.second.IsSequence() || entry.second.size() == 0)
        throw InputError(where(source, entry.second) + ": implements." + entry.first.as<std::string>() +
                         " must be a non-empty list of values");
      std::vector<nlohmann::json> values;
      for (const auto& value : entry.second) values.push_back(json_scalar(value, source));
      keys.implemented_values.emplace_back(entry.first.as<std::string>(), std::move(values));
    }
  }
  if (const auto harmless = node["no_effect"]) {
    if (!harmless.IsSequence())
      throw InputError(where(source, harmless) + ": \"no_effect\" must be a list of config.json keys");
    for (const auto& key : harmless) keys.no_effect.push_back(key.as<std::string>());
  }
  for (const auto* required : {&keys.hidden, &keys.layers, &keys.heads, &keys.vocab})
    if (required->empty())
      throw InputError(where(source, node) + ": config needs hidden, layers, heads and vocab keys");
  return keys;
}

std::map<std::string, std::string> parse_name_map(const YAML::Node& node) {
  std::map<std::string, std::string> names;
  if (!node) return names;
  for (const auto& entry : node) names[entry.first.as<std::string>()] = entry.second.as<std::string>();
  return names;
}

TensorNames parse_tensor_names(const YAML::Node& node, const std::string& source) {
  if (!node || !node.IsMap()) throw InputError(where(source, node) + ": \"tensors\" must be a map");
  check_keys(node, source, "tensors", {"model", "layer", "fused_qkv_weight", "fused_qkv_bias", "ignored"});
  TensorNames names;
  names.model = parse_name_map(node["model"]);
  names.layer = parse_name_map(node["layer"]);
  names.fused_qkv_weight = get_string(node, "fused_qkv_weight");
  names.fused_qkv_bias = get_string(node, "fused_qkv_bias");
  if (node["ignored"])
    for (const auto& pattern : node["ignored"]) names.ignored.push_back(pattern.as<std::string>());
  if (!names.model.count("embed.weight"))
    throw InputError(where(source, node) + ": tensors.model must name embed.weight");
  return names;
}

std::vector<FamilyDescription> load_known_families() {
  std::vector<FamilyDescription> families;
  for (const auto& file : embedded_family_files())
    families.push_back(parse_family(file.text, "configs/" + file.name));
  if (const char* extra = std::getenv("LATHE_FAMILY_PATH"); extra != nullptr && *extra != '\0') {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(extra, ec)) {
      if (entry.path().extension() != ".yaml") continue;
      auto family = parse_family(read_bounded_file(entry.path(), kFamilyFile), entry.path().string());
      std::erase_if(families, [&](const auto& known) { return known.name == family.name; });
      families.push_back(std::move(family));
    }
  }
  return families;
}

}  // namespace

FamilyDescription parse_family(const std::string& yaml_text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& error) {
    throw InputError(source + ":" + std::to_string(error.mark.line + 1) + ":" +
                     std::to_string(error.mark.column + 1) + ": " + error.msg);
  }
  try {
    FamilyDescription family;
    family.source = source;
    if (!root.IsMap()) throw InputError(source, "a family description must be a map");
    check_keys(root, source, "", {"name", "model_types", "block", "config", "tensors"});
    family.name = get_string(root, "name");
    if (family.name.empty()) throw InputError(source, "a family description needs a name");
    family.block = parse_block(root["block"], source);
    family.config = parse_config_keys(root["config"], root["model_types"], source);
    family.tensors = parse_tensor_names(root["tensors"], source);
    if (family.block.fused_qkv && family.tensors.fused_qkv_weight.empty())
      throw InputError(source, "fused_qkv needs tensors.fused_qkv_weight");
    return family;
  } catch (const YAML::Exception& error) {
    throw InputError(source + ":" + std::to_string(error.mark.line + 1) + ":" +
                     std::to_string(error.mark.column + 1) + ": " + error.msg);
  }
}

const std::vector<FamilyDescription>& known_families() {
  static const std::vector<FamilyDescription> families = load_known_families();
  return families;
}

const FamilyDescription& family_by_name(const std::string& name) {
  std::string names;
  for (const auto& family : known_families()) {
    if (family.name == name) return family;
    names += (names.empty() ? "" : ", ") + family.name;
  }
  throw InputError("unknown model family \"" + name + "\"; known families: " + names);
}

const FamilyDescription& family_for_model_type(const std::string& model_type, const std::string& file) {
  std::string types;
  for (const auto& family : known_families()) {
    for (const auto& type : family.config.model_types) {
      if (type == model_type) return family;
      types += (types.empty() ? "" : ", ") + type;
    }
  }
  throw InputError(file, "model_type \"" + model_type + "\" is not a family lathe knows; known: " + types);
}

std::string layer_tensor_name(const std::string& pattern, int layer) {
  std::string name = pattern;
  const auto at = name.find("{i}");
  if (at != std::string::npos) name.replace(at, 3, std::to_string(layer));
  return name;
}

}  // namespace lathe
