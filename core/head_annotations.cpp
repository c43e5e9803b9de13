#include "core/head_annotations.h"

#include <algorithm>
#include <sstream>

#include "core/model.h"
#include "support/errors.h"

namespace lathe {
namespace {

nlohmann::json& heads_section(Model& model) {
  if (!model.annotations.is_object()) model.annotations = nlohmann::json::object();
  auto& heads = model.annotations["heads"];
  if (!heads.is_object()) heads = nlohmann::json::object();
  return heads;
}

const nlohmann::json* find_section(const Model& model, const std::string& key) {
  if (!model.annotations.is_object() || !model.annotations.contains("heads")) return nullptr;
  const auto& heads = model.annotations["heads"];
  if (!heads.is_object() || !heads.contains(key)) return nullptr;
  return &heads[key];
}

nlohmann::json to_json(const std::vector<HeadId>& heads) {
  auto list = nlohmann::json::array();
  for (const auto& head : heads) list.push_back({head.layer, head.head});
  return list;
}

std::vector<HeadId> from_json(const nlohmann::json* list) {
  std::vector<HeadId> heads;
  if (list == nullptr || !list->is_array()) return heads;
  for (const auto& entry : *list)
    if (entry.is_array() && entry.size() == 2 && entry[0].is_number_integer() && entry[1].is_number_integer())
      heads.push_back({entry[0].get<int>(), entry[1].get<int>()});
  return heads;
}

}  // namespace

void set_head_scores(Model& model, const std::string& kind, const std::vector<std::vector<double>>& scores) {
  heads_section(model)["scores"][kind] = scores;
}

std::vector<std::vector<double>> head_scores(const Model& model, const std::string& kind) {
  const auto* scores = find_section(model, "scores");
  if (scores == nullptr || !scores->is_object() || !scores->contains(kind)) return {};
  try {
    return (*scores)[kind].get<std::vector<std::vector<double>>>();
  } catch (const nlohmann::json::exception&) {
    return {};
  }
}

void set_head_role(Model& model, const std::string& role, std::vector<HeadId> heads) {
  std::sort(heads.begin(), heads.end());
  heads_section(model)[role] = to_json(heads);
}

std::vector<HeadId> heads_with_role(const Model& model, const std::string& role) {
  return from_json(find_section(model, role));
}

void protect_heads(Model& model, const std::vector<HeadId>& heads) {
  auto all = protected_heads(model);
  all.insert(all.end(), heads.begin(), heads.end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  heads_section(model)["protected"] = to_json(all);
}

std::vector<HeadId> protected_heads(const Model& model) { return from_json(find_section(model, "protected")); }

void check_not_protected(const Model& model, const std::vector<HeadId>& removed, const std::string& origin) {
  const auto guarded = protected_heads(model);
  for (const auto& head : removed)
    if (std::find(guarded.begin(), guarded.end(), head) != guarded.end())
      throw InputError(origin + ": head " + head.str() + " is protected and cannot be removed");
}

std::vector<HeadId> parse_protect(const Model& model, const std::string& value, const std::string& origin) {
  if (value.empty()) return {};
  if (value == "retrieval") {
    if (find_section(model, "retrieval") == nullptr)
      throw InputError(origin + ": protect: retrieval needs a retrieval-heads pass before this one");
    return heads_with_role(model, "retrieval");
  }
  std::vector<HeadId> heads;
  std::stringstream list(value);
  std::string item;
  while (std::getline(list, item, ',')) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    int layer = -1, head = -1;
    char dot = 0, rest = 0;
    std::stringstream parse(item);
    if (!(parse >> layer >> dot >> head) || dot != '.' || (parse >> rest) || layer < 0 || head < 0 ||
        layer >= model.layer_count() || head >= model.layers[layer].query_heads)
      throw InputError(origin + ": protect: \"" + item + "\" is not a head of this model; give \"retrieval\" or "
                       "layer.head pairs like \"1.0, 1.3\"");
    heads.push_back({layer, head});
  }
  return heads;
}

}  // namespace lathe
