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

bool has_head_role(const Model& model, const std::string& role) { return find_section(model, role) != nullptr; }

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

void check_heads_exist(const Model& model, const std::vector<HeadId>& heads, const std::string& origin,
                       const std::string& what) {
  for (const auto& head : heads)
    if (head.layer >= model.layer_count() || head.head >= model.layers[head.layer].query_heads)
      throw InputError(origin + ": " + what + ": " + head.str() + " is not a head of this model (" +
                       std::to_string(model.layer_count()) + " layers" +
                       (head.layer < model.layer_count()
                            ? ", layer " + std::to_string(head.layer) + " has " +
                                  std::to_string(model.layers[head.layer].query_heads) + " heads)"
                            : ")"));
}

std::vector<HeadId> resolve_heads(const Model& model, const std::vector<std::string>& roles,
                                  const std::vector<HeadId>& heads, const std::string& origin, const std::string& what) {
  check_heads_exist(model, heads, origin, what);
  std::vector<HeadId> resolved;
  for (const auto& role : roles) {
    if (!has_head_role(model, role))
      throw InputError(origin + ": " + what + ": " + role + " needs a " + role + "-heads pass before this one");
    for (const auto& head : heads_with_role(model, role)) resolved.push_back(head);
  }
  resolved.insert(resolved.end(), heads.begin(), heads.end());
  std::sort(resolved.begin(), resolved.end());
  resolved.erase(std::unique(resolved.begin(), resolved.end()), resolved.end());
  return resolved;
}

}  // namespace lathe
