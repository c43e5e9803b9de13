#include "passes/ffn_prune_pass.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <sstream>

#include "core/ffn_removal.h"
#include "core/model.h"
#include "datasets/data_sets.h"
#include "executor/executor.h"
#include "executor/outlier_stats.h"
#include "passes/layer_streaming.h"
#include "passes/pass_context.h"
#include "support/errors.h"
#include "support/progress.h"

namespace lathe {
namespace {

// A unit of removal: the lowest-scoring neurons of one layer that are still there, as many as
// bring the layer's width to the next lower multiple of `multiple_of`.
struct Unit {
  int layer;
  std::vector<std::int64_t> neurons;
  double score;  // mean over its neurons
};

// Per layer and neuron: |W_down column| x |W_up row|, or the largest |activation| the down
// projection reads over the calibration tokens x |W_down column|.
std::vector<std::vector<double>> neuron_scores(const Model& model, PassContext& context, const std::string& criterion,
                                               const std::string& data, std::int64_t max_tokens) {
  std::vector<LayerActivationStatistics> statistics;
  if (criterion == "activation") {
    Executor executor(model);
    const auto batches = context.data.batches(data, context.where, 0, max_tokens);
    statistics = gather_activation_statistics(executor, batches, {ActivationSite::MlpHidden},
                                              layer_streaming(context, "ffn activations", batches));
    context.progress.finish();
  }
  std::vector<std::vector<double>> scores(model.layers.size());
  for (int layer = 0; layer < model.layer_count(); ++layer) {
    if (model.layers[layer].ffn_width == 0) continue;
    const auto down = model.layer_tensor(layer, "mlp.down.weight").to(at::kDouble).norm(2, {0});
    at::Tensor other;
    if (criterion == "magnitude") {
      other = model.layer_tensor(layer, "mlp.up.weight").to(at::kDouble).norm(2, {1});
    } else {
      const auto found = statistics[layer].find(ActivationSite::MlpHidden);
      if (found == statistics[layer].end() || found->second.tokens() == 0)
        throw InputError(context.where.str() + ": ffn-prune: no activations of layer " + std::to_string(layer) +
                         "'s MLP were observed in " + data);
      other = at::tensor(found->second.channel_abs_max(), at::kDouble);
    }
    const auto product = (down * other).contiguous();
    scores[layer].assign(product.data_ptr<double>(), product.data_ptr<double>() + product.numel());
  }
  return scores;
}

class FfnPrunePass : public Pass {
 public:
  explicit FfnPrunePass(const ParamValues& params) : params_(params) {}

  PreservedAnalyses run(Model& model, PassContext& context) override {
    const auto origin = context.where.str();
    const auto& criterion = params_.get_string("criterion");
    std::string data;
    if (criterion == "activation")
      data = context.data.require_calibration_entry(params_.get_string("data"), context.where, "ffn-prune criterion: activation");
    const auto multiple = params_.get_int("multiple_of");
    const auto min_width = params_.get_int("min_width");
    const auto layer_count = model.layers.size();
    std::vector<std::int64_t> width(layer_count), floor(layer_count);
    std::int64_t total = 0, floor_total = 0;
    for (std::size_t i = 0; i < layer_count; ++i) {
      total += width[i] = model.layers[i].ffn_width;
      floor_total += floor[i] = std::min(width[i], (min_width + multiple - 1) / multiple * multiple);
    }
    const auto parameters_before = model.parameter_count();
    const auto budget = params_.get_int("budget");
    const double keep = params_.get_float("keep");
    const bool per_layer = params_.get_string("scope") == "per-layer";
    auto want_of = [&](std::int64_t neurons) { return static_cast<std::int64_t>(std::llround(keep * static_cast<double>(neurons))); };
    std::vector<std::int64_t> want_in(layer_count, 0);
    for (std::size_t i = 0; i < layer_count; ++i) want_in[i] = want_of(width[i]);
    const auto want = want_of(total);
    std::string target;
    // Whether the target can be met depends on the widths alone: refused before any scoring.
    const auto floors = " with min_width " + std::to_string(min_width) + " and multiple_of " + std::to_string(multiple);
    if (budget > 0) {
      target = "at most " + std::to_string(budget) + " parameters";
      auto best = parameters_before;
      for (std::size_t i = 0; i < layer_count; ++i) best += mlp_parameters(model, floor[i]) - mlp_parameters(model, width[i]);
      if (best > budget)
        throw InputError(origin + ": ffn-prune cannot reach " + std::to_string(budget) + " parameters by removing FFN neurons (" +
                         std::to_string(best) + " at best" + floors + ")");
    } else if (per_layer) {
      std::ostringstream fraction;
      fraction << keep;
      target = "keep " + fraction.str() + " of each layer's FFN neurons";
      for (std::size_t i = 0; i < layer_count; ++i)
        if (floor[i] > want_in[i])
          throw InputError(origin + ": ffn-prune cannot keep " + std::to_string(want_in[i]) + " of layer " + std::to_string(i) +
                           "'s " + std::to_string(width[i]) + " FFN neurons: it keeps at least " + std::to_string(floor[i]) + floors);
    } else {
      target = "keep " + std::to_string(want) + " of " + std::to_string(total) + " FFN neurons";
      if (floor_total > want)
        throw InputError(origin + ": ffn-prune cannot " + target + ": the layers keep at least " + std::to_string(floor_total) + floors);
    }

    auto scores = neuron_scores(model, context, criterion, data, params_.get_int("max_tokens"));
    if (params_.get_bool("normalize") && !per_layer)
      for (auto& layer : scores) {
        const double mean = layer.empty() ? 0.0 : std::accumulate(layer.begin(), layer.end(), 0.0) / static_cast<double>(layer.size());
        if (mean > 0)
          for (auto& score : layer) score /= mean;
      }
    const auto units = make_units(scores, width, multiple);

    std::vector<std::vector<bool>> removed(layer_count);
    for (std::size_t i = 0; i < layer_count; ++i) removed[i].assign(width[i], false);
    auto kept = width;
    // Units of a layer come lowest first and must go in that order: once one is passed over
    // (it would go below the layer's floor or the target), the layer's later units are too.
    std::vector<bool> closed(layer_count, false);
    auto parameters = parameters_before;
    auto remaining = total;
    for (const auto& unit : units) {
      const auto size = static_cast<std::int64_t>(unit.neurons.size());
      if (budget > 0 ? parameters <= budget : !per_layer && remaining <= want) break;
      if (closed[unit.layer]) continue;
      const auto after = kept[unit.layer] - size;
      // Never below the floor, nor below a keep target: with multiple_of, the nearest width above it.
      if (after < floor[unit.layer] || (budget == 0 && (per_layer ? after < want_in[unit.layer] : remaining - size < want))) {
        closed[unit.layer] = true;
        continue;
      }
      parameters += mlp_parameters(model, after) - mlp_parameters(model, kept[unit.layer]);
      for (auto neuron : unit.neurons) removed[unit.layer][neuron] = true;
      kept[unit.layer] = after;
      remaining -= size;
    }

    std::map<int, std::vector<std::int64_t>> keep_lists;
    std::int64_t removed_count = 0;
    for (int layer = 0; layer < model.layer_count(); ++layer) {
      if (width[layer] == 0) continue;
      auto& list = keep_lists[layer];
      for (std::int64_t neuron = 0; neuron < width[layer]; ++neuron)
        if (!removed[layer][neuron]) list.push_back(neuron);
      removed_count += width[layer] - static_cast<std::int64_t>(list.size());
    }
    keep_ffn_neurons(model, keep_lists);

    auto layers = nlohmann::json::array();
    for (int layer = 0; layer < model.layer_count(); ++layer)
      layers.push_back({{"ffn_width_before", width[layer]}, {"ffn_width", model.layers[layer].ffn_width}});
    context.statistics = {{"criterion", criterion},
                          {"target", target},
                          {"multiple_of", multiple},
                          {"neurons_before", total},
                          {"neurons_removed", removed_count},
                          {"layers", layers},
                          {"parameters_before", parameters_before},
                          {"parameters_after", model.parameter_count()}};
    if (!data.empty()) context.statistics["data"] = data;
    std::string widths;
    for (int layer = 0; layer < model.layer_count(); ++layer)
      widths += (layer ? " " : "") + std::to_string(model.layers[layer].ffn_width);
    context.summary = {"removed " + std::to_string(removed_count) + " of " + std::to_string(total) + " FFN neurons (" +
                           criterion + ", " + target + "); widths per layer: " + widths,
                       "parameters " + std::to_string(parameters_before) + " -> " + std::to_string(model.parameter_count())};
    return PreservedAnalyses::none();
  }

 private:
  // Removable units, least important first; within a layer, in the order they must go.
  static std::vector<Unit> make_units(const std::vector<std::vector<double>>& scores, const std::vector<std::int64_t>& width,
                                      std::int64_t multiple) {
    std::vector<Unit> units;
    for (int layer = 0; layer < static_cast<int>(scores.size()); ++layer) {
      std::vector<std::int64_t> order(width[layer]);
      std::iota(order.begin(), order.end(), 0);
      const auto& s = scores[layer];
      std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return s[a] < s[b]; });
      std::int64_t first = 0;
      while (first < width[layer]) {
        const auto left = width[layer] - first;
        const auto size = left % multiple != 0 ? left % multiple : multiple;
        Unit unit{layer, {order.begin() + first, order.begin() + first + size}, 0.0};
        for (auto neuron : unit.neurons) unit.score += s[neuron];
        unit.score /= static_cast<double>(size);
        units.push_back(std::move(unit));
        first += size;
      }
    }
    // Stable: a layer's units keep their order where their scores tie.
    std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) { return a.score < b.score; });
    return units;
  }

  ParamValues params_;
};

}  // namespace

PassInfo ffn_prune_pass_info() {
  PassInfo info;
  info.name = "ffn-prune";
  info.kind = PassKind::Transform;
  info.summary = "remove the least important FFN neurons for real: gate/up rows and down columns are cut";
  info.params = {
      {"keep", ParamType::Float, 0.75, "fraction of FFN neurons to keep", {}, 0.0, 1.0},
      {"budget", ParamType::Int, std::int64_t{0}, "remove neurons until the model has at most this many parameters", {}, 0.0, {}},
      {"scope", ParamType::String, std::string("global"), "rank neurons across all layers, or keep the fraction in each layer", {"global", "per-layer"}, {}, {}},
      {"criterion", ParamType::String, std::string("magnitude"), "neuron scores: |W_down column| x |W_up row|, or the largest |activation| the down projection reads on calibration data x |W_down column|", {"magnitude", "activation"}, {}, {}},
      {"normalize", ParamType::Bool, true, "divide scores by their layer's mean before ranking across layers", {}, {}, {}},
      {"multiple_of", ParamType::Int, std::int64_t{1}, "kept widths are multiples of this (8, 64, 128 suit fast kernels); a layer narrower than it keeps its width", {}, 1.0, {}},
      {"min_width", ParamType::Int, std::int64_t{1}, "neurons every layer keeps (rounded up to multiple_of); 0 lets a layer lose its MLP", {}, 0.0, {}},
      {"data", ParamType::String, std::string(""), "data entry for criterion activation; default: calibration, then eval", {}, {}, {}},
      {"max_tokens", ParamType::Int, std::int64_t{8192}, "tokens of the data for criterion activation", {}, 1.0, {}},
  };
  info.plan = [](PlannedModel& planned, const ParamValues&, const std::string& where) {
    if (!planned.quantized.empty())
      throw InputError(where + ": ffn-prune: the model is quantized by " + planned.quantized +
                       "; run ffn-prune before quantize");
  };
  info.exclusive_params = {{"keep", "budget"}};
  info.create = [](const ParamValues& params) { return std::make_unique<FfnPrunePass>(params); };
  return info;
}

}  // namespace lathe
