#include "passes/head_prune_pass.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/head_annotations.h"
#include "core/head_removal.h"
#include "core/model.h"
#include "passes/head_importance_pass.h"
#include "passes/pass_context.h"
#include "support/errors.h"

namespace lathe {
namespace {

// A unit of removal: one query head, or (groups mode) every query head of one kv head.
struct Unit {
  int layer;
  std::vector<int> heads;
  double score;
};

std::string list_heads(const std::vector<HeadId>& heads) {
  std::string text;
  for (std::size_t i = 0; i < heads.size() && i < 8; ++i) text += (i ? ", " : "") + heads[i].str();
  if (heads.size() > 8) text += ", ...";
  return text;
}

class HeadPrunePass : public Pass {
 public:
  explicit HeadPrunePass(const ParamValues& params) : params_(params) {}

  PreservedAnalyses run(Model& model, PassContext& context) override {
    const auto origin = context.where.str();
    if (model.attention.gated)
      throw InputError(origin + ": head-prune cannot remove heads of a gated-attention model (each gate reads its "
                       "head's slice of the layer input); run head-prune before gated-attention");
    const auto request = importance_request(params_, "importance");
    auto scores = cached_head_importance(model, context, request);
    if (params_.get_bool("normalize") && request.method != ImportanceMethod::Random) normalize_per_layer(scores);

    auto guarded = protected_heads(model);
    const auto& protect = params_.get_heads("protect");
    for (const auto& head : resolve_heads(model, protect.roles, protect.heads, origin, "protect")) guarded.push_back(head);
    std::sort(guarded.begin(), guarded.end());
    guarded.erase(std::unique(guarded.begin(), guarded.end()), guarded.end());
    protect_heads(model, guarded);

    auto units = make_units(model, scores, guarded);
    std::vector<std::int64_t> kept(model.layers.size());
    std::int64_t total = 0;
    for (std::size_t i = 0; i < model.layers.size(); ++i) total += kept[i] = model.layers[i].query_heads;
    const auto min_heads = params_.get_int("min_heads");
    const auto parameters_before = model.parameter_count();

    std::vector<HeadId> removed;
    auto remove_unit = [&](const Unit& unit) {
      for (int head : unit.heads) removed.push_back({unit.layer, head});
      kept[unit.layer] -= static_cast<std::int64_t>(unit.heads.size());
    };
    auto allowed = [&](const Unit& unit) {
      return kept[unit.layer] - static_cast<std::int64_t>(unit.heads.size()) >= std::min(min_heads, model.layers[unit.layer].query_heads);
    };

    const auto budget = params_.get_int("budget");
    std::string target;
    if (params_.get_string("scope") == "per-layer" && budget == 0) {
      target = "keep " + std::to_string(params_.get_float("keep")) + " of each layer's heads";
      for (int layer = 0; layer < model.layer_count(); ++layer) {
        const auto heads = model.layers[layer].query_heads;
        const auto want = std::max(std::min(min_heads, heads),
                                   static_cast<std::int64_t>(std::llround(params_.get_float("keep") * static_cast<double>(heads))));
        for (const auto& unit : units)
          if (unit.layer == layer && kept[layer] > want && allowed(unit)) remove_unit(unit);
        if (kept[layer] > want)
          throw InputError(origin + ": head-prune cannot keep " + std::to_string(want) + " of layer " + std::to_string(layer) +
                           "'s " + std::to_string(heads) + " heads: " + conflict(guarded, min_heads));
      }
    } else if (budget > 0) {
      target = "at most " + std::to_string(budget) + " parameters";
      auto parameters = parameters_before;
      std::map<int, std::set<int>> gone;
      for (const auto& unit : units) {
        if (parameters <= budget) break;
        if (!allowed(unit)) continue;
        const auto before = layer_attention_parameters(model, unit.layer, gone[unit.layer]);
        for (int head : unit.heads) gone[unit.layer].insert(head);
        parameters += layer_attention_parameters(model, unit.layer, gone[unit.layer]) - before;
        remove_unit(unit);
      }
      if (parameters > budget)
        throw InputError(origin + ": head-prune cannot reach " + std::to_string(budget) + " parameters by removing heads (" +
                         std::to_string(parameters) + " at best): " + conflict(guarded, min_heads));
    } else {
      const auto want = params_.get_int("heads") > 0
                            ? params_.get_int("heads")
                            : static_cast<std::int64_t>(std::llround(params_.get_float("keep") * static_cast<double>(total)));
      target = "keep " + std::to_string(want) + " of " + std::to_string(total) + " heads";
      auto remaining = total;
      for (const auto& unit : units) {
        if (remaining <= want) break;
        if (!allowed(unit)) continue;
        remove_unit(unit);
        remaining -= static_cast<std::int64_t>(unit.heads.size());
      }
      if (remaining > want)
        throw InputError(origin + ": head-prune cannot " + target + ": " + conflict(guarded, min_heads) +
                         " leave at least " + std::to_string(remaining));
    }

    check_not_protected(model, removed, origin);
    std::sort(removed.begin(), removed.end());
    remove_heads(model, removed);

    auto removed_names = nlohmann::json::array();
    for (const auto& head : removed) removed_names.push_back(head.str());
    auto layers = nlohmann::json::array();
    for (const auto& layer : model.layers) layers.push_back({{"query_heads", layer.query_heads}, {"kv_heads", layer.kv_heads}});
    context.statistics = {{"importance", params_.get_string("importance")},
                          {"target", target},
                          {"heads_before", total},
                          {"heads_removed", removed.size()},
                          {"removed", removed_names},
                          {"protected", guarded.size()},
                          {"layers", layers},
                          {"parameters_before", parameters_before},
                          {"parameters_after", model.parameter_count()}};
    context.summary = {"removed " + std::to_string(removed.size()) + " of " + std::to_string(total) + " heads (" +
                           params_.get_string("importance") + ", " + target + "): " + list_heads(removed),
                       "parameters " + std::to_string(parameters_before) + " -> " + std::to_string(model.parameter_count())};
    return PreservedAnalyses::none();
  }

 private:
  // Removable units, least important first; protected heads are in none.
  std::vector<Unit> make_units(const Model& model, const HeadScores& scores, const std::vector<HeadId>& guarded) const {
    std::vector<Unit> units;
    const bool groups = params_.get_bool("groups");
    for (int layer = 0; layer < model.layer_count(); ++layer) {
      const auto& structure = model.layers[layer];
      std::map<std::int64_t, Unit> by_kv;
      for (int head = 0; head < structure.query_heads; ++head) {
        const auto key = groups ? structure.kv_head_of(head) : head;
        auto& unit = by_kv.try_emplace(key, Unit{layer, {}, 0.0}).first->second;
        unit.heads.push_back(head);
        unit.score += scores[layer][head];
      }
      for (auto& [key, unit] : by_kv) {
        bool guarded_unit = false;
        for (int head : unit.heads)
          guarded_unit = guarded_unit || std::find(guarded.begin(), guarded.end(), HeadId{layer, head}) != guarded.end();
        if (!guarded_unit) units.push_back(unit);
      }
    }
    std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) { return a.score < b.score; });
    return units;
  }

  static std::int64_t layer_attention_parameters(const Model& model, int layer, const std::set<int>& gone) {
    const auto& structure = model.layers[layer];
    std::set<std::int64_t> kv;
    std::int64_t query = 0;
    for (int head = 0; head < structure.query_heads; ++head)
      if (!gone.count(head)) {
        ++query;
        kv.insert(structure.kv_head_of(head));
      }
    return attention_parameters(model, query, static_cast<std::int64_t>(kv.size()));
  }

  std::string conflict(const std::vector<HeadId>& guarded, std::int64_t min_heads) const {
    std::string text = std::to_string(guarded.size()) + " protected heads";
    if (!guarded.empty()) text += " (" + list_heads(guarded) + ")";
    return text + " and min_heads " + std::to_string(min_heads) + " per layer";
  }

  ParamValues params_;
};

}  // namespace

PassInfo head_prune_pass_info() {
  PassInfo info;
  info.name = "head-prune";
  info.kind = PassKind::Transform;
  info.summary = "remove the least important attention heads for real: q/k/v rows and o columns are cut";
  info.params = {
      {"keep", ParamType::Float, 0.75, "fraction of heads to keep", {}, 0.0, 1.0},
      {"heads", ParamType::Int, std::int64_t{0}, "number of heads to keep instead of a fraction", {}, 0.0, {}},
      {"budget", ParamType::Int, std::int64_t{0}, "remove heads until the model has at most this many parameters", {}, 0.0, {}},
      {"scope", ParamType::String, std::string("global"), "rank heads across all layers, or keep the fraction in each layer", {"global", "per-layer"}, {}, {}},
      {"min_heads", ParamType::Int, std::int64_t{1}, "heads every layer keeps; 0 lets a layer lose its attention", {}, 0.0, {}},
      {"importance", ParamType::String, std::string("gradient"), "head scores to rank by", {"gradient", "ablation", "entropy", "magnitude", "random"}, {}, {}},
      {"normalize", ParamType::Bool, true, "normalize scores per layer (L2) before ranking", {}, {}, {}},
      {"groups", ParamType::Bool, false, "remove whole grouped-query groups (a kv head with all its query heads)", {}, {}, {}},
      {"protect", ParamType::HeadList, HeadList{}, "heads never removed: retrieval (the heads an earlier retrieval-heads pass found) and heads like 1.0, 1.3; protected heads from earlier passes are kept too", {"retrieval"}, {}, {}},
      {"data", ParamType::String, std::string(""), "data entry for the importance scores; default: calibration, then eval", {}, {}, {}},
      {"max_tokens", ParamType::Int, std::int64_t{8192}, "tokens of the data for the importance scores", {}, 1.0, {}},
      {"seed", ParamType::Int, std::int64_t{0}, "seed of the random baseline", {}, 0.0, {}},
  };
  // Gradients run backward through every layer at once; ablation and entropy stream layer by layer.
  info.whole_model_bytes = [](const ParamValues& params, const Model& model) {
    return params.get_string("importance") == "gradient" ? model.float_bytes() : std::int64_t{0};
  };
  info.check = [](const ParamValues& params, const Model& model, const std::string& where) {
    // Heads are only ever removed, so one named here must exist in the model as loaded.
    check_heads_exist(model, params.get_heads("protect").heads, where, "protect");
  };
  info.plan = [](PlannedModel& planned, const ParamValues& params, const std::string& where) {
    if (!planned.gated_attention.empty())
      throw InputError(where + ": head-prune: it cannot remove heads of a gated-attention model (gates from " +
                       planned.gated_attention + "; each gate reads its head's slice of the layer input); run "
                       "head-prune before gated-attention");
    for (const auto& role : params.get_heads("protect").roles)
      if (planned.head_roles.count(role) == 0)
        throw InputError(where + ": head-prune: protect: " + role + " needs a " + role + "-heads pass before this one");
  };
  info.exclusive_params = {{"keep", "heads", "budget"}};
  info.create = [](const ParamValues& params) { return std::make_unique<HeadPrunePass>(params); };
  return info;
}

}  // namespace lathe
