#include "passes/smooth_pass.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/tensor_spill.h"
#include "datasets/data_sets.h"
#include "executor/outlier_stats.h"
#include "passes/outlier_stats_pass.h"
#include "passes/pass_context.h"
#include "support/allocator.h"
#include "support/errors.h"
#include "support/number_text.h"
#include "support/progress.h"

namespace lathe {
namespace {

constexpr double kMinScale = 1e-5, kMaxScale = 1e5;

// A normalized input of a block and the linear maps that read it.
struct SmoothedInput {
  ActivationSite site;
  const char* label;
  std::string norm;                  // canonical prefix of the norm producing it
  std::vector<std::string> readers;  // canonical weight names reading it
  std::string gate;                  // gated attention: the head gates' weight, which reads it too
};

std::vector<SmoothedInput> smoothed_inputs(const Model& model, int layer) {
  std::vector<SmoothedInput> inputs;
  const auto& structure = model.layers[layer];
  if (structure.has_attention())
    inputs.push_back({ActivationSite::AttentionInput, "attention input", layer_name(layer, "attn_norm"),
                      {layer_name(layer, "attn.q.weight"), layer_name(layer, "attn.k.weight"),
                       layer_name(layer, "attn.v.weight")},
                      model.attention.gated ? layer_name(layer, "attn.gate.weight") : std::string()});
  if (structure.ffn_width > 0) {
    SmoothedInput mlp{ActivationSite::MlpInput, "MLP input", layer_name(layer, "mlp_norm"), {}, {}};
    if (model.family.block.mlp == MlpKind::GatedSiLU) mlp.readers.push_back(layer_name(layer, "mlp.gate.weight"));
    mlp.readers.push_back(layer_name(layer, "mlp.up.weight"));
    inputs.push_back(mlp);
  }
  return inputs;
}

// s_j = a_j^alpha / w_j^(1 - alpha), clamped to [1e-5, 1e5]; 1 where either maximum is zero or
// not finite (a dead channel carries no scale to move). `power_of_two` rounds each scale to the
// nearest power of two (in the log), with which float multiplication and division by it are
// exact and the smoothed model computes bit for bit what the original computes.
std::vector<double> smoothing_scales(const std::vector<double>& activation_max, const std::vector<double>& weight_max,
                                     double alpha, bool power_of_two) {
  std::vector<double> scales(activation_max.size(), 1.0);
  for (std::size_t j = 0; j < scales.size(); ++j) {
    const double a = activation_max[j], w = weight_max[j];
    if (!(a > 0) || !(w > 0) || !std::isfinite(a) || !std::isfinite(w)) continue;
    const double s = std::pow(a, alpha) / std::pow(w, 1.0 - alpha);
    double scale = std::isfinite(s) ? std::clamp(s, kMinScale, kMaxScale) : (s > 0 ? kMaxScale : 1.0);
    if (power_of_two) {
      const int lowest = static_cast<int>(std::ceil(std::log2(kMinScale)));
      const int highest = static_cast<int>(std::floor(std::log2(kMaxScale)));
      scale = std::ldexp(1.0, std::clamp(static_cast<int>(std::lround(std::log2(scale))), lowest, highest));
    }
    scales[j] = scale;
  }
  return scales;
}

double largest(const std::vector<double>& values) {
  return values.empty() ? 0.0 : *std::max_element(values.begin(), values.end());
}

double mean(const std::vector<double>& values) {
  double sum = 0;
  for (double value : values) sum += value;
  return values.empty() ? 0.0 : sum / static_cast<double>(values.size());
}

// The largest channel maximum over the mean of the channel maxima: how much one channel
// dominates the range a per-tensor quantizer has to cover.
double peak_to_mean(const std::vector<double>& values) {
  const double average = mean(values);
  return average > 0 ? largest(values) / average : 0.0;
}

// The float32 values of the linear maps reading an input, converted once for measuring and scaling.
std::vector<at::Tensor> reader_weights(const Model& model, const SmoothedInput& input) {
  std::vector<at::Tensor> weights;
  for (const auto& name : input.readers) weights.push_back(model.tensor(name));
  return weights;
}

// max |W_ij| over the rows i of every reader, per input channel j.
std::vector<double> weight_column_max(const std::vector<at::Tensor>& readers) {
  at::Tensor maxima;
  for (const auto& weight : readers) {
    auto column_max = weight.detach().abs().amax(0).to(at::kDouble);
    maxima = maxima.defined() ? at::maximum(maxima, column_max) : column_max;
  }
  maxima = maxima.contiguous();
  return std::vector<double>(maxima.data_ptr<double>(), maxima.data_ptr<double>() + maxima.numel());
}

// Scales the readers' columns by `scales` and divides the norm's weight and bias by them, in new
// float32 tensors: loaded ones may be read-only memory maps. Readers that came memory-mapped go
// to `spill`, so the smoothed weights of a model larger than memory are not all resident.
void apply_scales(Model& model, const SmoothedInput& input, const std::vector<at::Tensor>& readers,
                  const std::vector<double>& scales, TensorSpill& spill) {
  const auto as_tensor = [&](const at::Tensor& like) { return at::tensor(scales, at::kDouble).to(like.scalar_type()); };
  for (std::size_t i = 0; i < readers.size(); ++i)
    spill.replace(model, input.readers[i], readers[i] * as_tensor(readers[i]).unsqueeze(0));
  if (!input.gate.empty()) {  // [Hq, hidden / Hq]: head h reads channels h * width .. (h + 1) * width
    const auto& gate = model.tensor(input.gate);
    model.tensors[input.gate] = (gate.reshape({-1}) * as_tensor(gate)).reshape(gate.sizes());
  }
  for (const char* part : {".weight", ".bias"}) {
    const auto name = input.norm + part;
    if (!model.has(name)) continue;
    const auto& tensor = model.tensor(name);
    model.tensors[name] = tensor / as_tensor(tensor);
  }
}

// What smoothing one input did, per channel: the scales and the ranges before and after.
struct InputChange {
  std::vector<double> scales;
  std::vector<double> activation_before, activation_after;
  std::vector<double> weight_before, weight_after;

  nlohmann::json to_json() const {
    return {{"max_scale", largest(scales)},
            {"min_scale", *std::min_element(scales.begin(), scales.end())},
            {"activation_max_before", largest(activation_before)},
            {"activation_max_after", largest(activation_after)},
            {"channel_peak_to_mean_before", peak_to_mean(activation_before)},
            {"channel_peak_to_mean_after", peak_to_mean(activation_after)},
            {"weight_max_before", largest(weight_before)},
            {"weight_max_after", largest(weight_after)}};
  }
};

InputChange smooth_input(Model& model, const SmoothedInput& input, const ActivationStatistics& statistics, double alpha,
                         bool power_of_two, TensorSpill& spill) {
  InputChange change;
  change.activation_before = statistics.channel_abs_max();
  const auto readers = reader_weights(model, input);
  change.weight_before = weight_column_max(readers);
  if (change.weight_before.size() != change.activation_before.size())
    throw std::logic_error("smooth: " + input.norm + " feeds " + std::to_string(change.weight_before.size()) +
                           " weight columns but " + std::to_string(change.activation_before.size()) +
                           " channels were observed");
  change.scales = smoothing_scales(change.activation_before, change.weight_before, alpha, power_of_two);
  apply_scales(model, input, readers, change.scales, spill);
  // The smoothed activation is X_j / s_j exactly, so its range follows from the measured one.
  for (std::size_t j = 0; j < change.scales.size(); ++j) {
    change.activation_after.push_back(change.activation_before[j] / change.scales[j]);
    change.weight_after.push_back(change.weight_before[j] * change.scales[j]);
  }
  return change;
}

class SmoothPass : public Pass {
 public:
  explicit SmoothPass(const ParamValues& params) : params_(params) {}

  PreservedAnalyses run(Model& model, PassContext& context) override {
    if (model.quantization.active())
      throw InputError(context.where.str() + ": smooth: the model is quantized; run smooth before quantize");
    if (!model.family.block.pre_norm)
      throw InputError(context.where.str() + ": smooth needs pre-norm blocks (family " + model.family.name + ")");
    const double alpha = params_.get_float("alpha");
    const bool power_of_two = params_.get_bool("power_of_two");
    const auto data = context.data.require_calibration_entry(params_.get_string("data"), context.where, "smooth");
    const auto& statistics = cached_activation_statistics(model, context, data, params_.get_int("max_tokens"));

    struct SiteTotals {
      std::string label;
      std::vector<double> max_before, max_after, ratio_before, ratio_after;
    };
    std::map<ActivationSite, SiteTotals> totals;
    std::vector<double> all_scales;
    std::int64_t tokens = 0;
    auto layers_json = nlohmann::json::array();
    TensorSpill spill;
    for (int layer = 0; layer < model.layer_count(); ++layer) {
      nlohmann::json entry = {{"layer", layer}};
      for (const auto& input : smoothed_inputs(model, layer)) {
        auto found = statistics[layer].find(input.site);
        if (found == statistics[layer].end() || found->second.tokens() == 0) continue;
        tokens = std::max(tokens, found->second.tokens());
        const auto change = smooth_input(model, input, found->second, alpha, power_of_two, spill);
        all_scales.insert(all_scales.end(), change.scales.begin(), change.scales.end());
        auto& total = totals[input.site];
        total.label = input.label;
        total.max_before.push_back(largest(change.activation_before));
        total.max_after.push_back(largest(change.activation_after));
        total.ratio_before.push_back(peak_to_mean(change.activation_before));
        total.ratio_after.push_back(peak_to_mean(change.activation_after));
        entry[activation_site_name(input.site)] = change.to_json();
      }
      layers_json.push_back(entry);
      return_freed_memory();
      context.progress.heartbeat("smooth: layer " + std::to_string(layer + 1) + "/" + std::to_string(model.layer_count()));
    }
    context.progress.finish();

    const double lowest = all_scales.empty() ? 1.0 : *std::min_element(all_scales.begin(), all_scales.end());
    const double highest = all_scales.empty() ? 1.0 : largest(all_scales);
    context.summary.push_back("alpha " + number_text(alpha) + (power_of_two ? ", power-of-two scales" : "") + ", " +
                              std::to_string(tokens) + " tokens of " + data + "; scales " + number_text(lowest) + " .. " +
                              number_text(highest));
    for (const auto& [site, total] : totals)
      context.summary.push_back(total.label + ": max |x| " + number_text(mean(total.max_before)) + " -> " +
                                number_text(mean(total.max_after)) + ", channel peak/mean " +
                                number_text(mean(total.ratio_before)) + " -> " + number_text(mean(total.ratio_after)) +
                                " (mean over layers)");
    context.statistics = {{"alpha", alpha},       {"power_of_two", power_of_two}, {"data", data},
                          {"tokens", tokens},     {"min_scale", lowest},          {"max_scale", highest},
                          {"layers", layers_json}};
    return PreservedAnalyses::none();
  }

 private:
  ParamValues params_;
};

}  // namespace

PassInfo smooth_pass_info() {
  PassInfo info;
  info.name = "smooth";
  info.kind = PassKind::Transform;
  info.summary =
      "SmoothQuant-style scale migration: divide each norm's output channel by s_j and multiply the weights reading it, "
      "s_j = max|X_j|^alpha / max|W_j|^(1-alpha)";
  info.params = {
      {"alpha", ParamType::Float, 0.5, "migration strength: 0 keeps activations, 1 moves all their range into weights", {}, 0.0, 1.0},
      {"data", ParamType::String, std::string(""), "data entry; default: calibration, then eval", {}, {}, {}},
      {"max_tokens", ParamType::Int, std::int64_t{8192}, "tokens of the data to use", {}, 1.0, {}},
      {"power_of_two", ParamType::Bool, false, "round each scale to a power of two, so the migration is exact in float (at some cost in how much scale moves)", {}, {}, {}},
  };
  info.check = [](const ParamValues&, const Model& model, const std::string& where) {
    if (!model.family.block.pre_norm)
      throw InputError(where + " needs pre-norm blocks (family " + model.family.name + ")");
  };
  info.plan = [](PlannedModel& planned, const ParamValues&, const std::string& where) {
    if (!planned.quantized.empty())
      throw InputError(where + ": smooth: it moves scale between weights and activations the quantization measured "
                       "(quantization from " + planned.quantized + "); run it before quantize");
  };
  info.create = [](const ParamValues& params) { return std::make_unique<SmoothPass>(params); };
  return info;
}

}  // namespace lathe
