#include "passes/quantize_pass.h"

#include <algorithm>
#include <map>

#include <ATen/ATen.h>

#include "core/model.h"
#include "core/tensor_spill.h"
#include "datasets/data_sets.h"
#include "executor/calibration.h"
#include "executor/executor.h"
#include "passes/layer_streaming.h"
#include "passes/pass_context.h"
#include "support/allocator.h"
#include "support/errors.h"
#include "support/progress.h"

namespace lathe {
namespace {

// * matches any run of characters, ? any one. Backtracks only to the last *, so the time is
// linear in the pattern times the name, whatever the pattern.
bool glob_match(const std::string& pattern, const std::string& text) {
  std::size_t p = 0, t = 0, star = std::string::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (star != std::string::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// The linear layers of the model: each weight, the activation site it reads, and the name
// exclude patterns match (the weight's own, or lm_head.weight for a tied output head).
struct Linear {
  std::string weight;
  std::string site;
  std::string name = weight;
};

std::vector<Linear> linear_layers(const Model& model) {
  std::vector<Linear> linears;
  for (int layer = 0; layer < model.layer_count(); ++layer) {
    if (model.layers[layer].has_attention()) {
      for (const char* name : {"attn.q.weight", "attn.k.weight", "attn.v.weight"})
        linears.push_back({layer_name(layer, name), site_key(layer, ActivationSite::AttentionInput)});
      linears.push_back({layer_name(layer, "attn.o.weight"), site_key(layer, ActivationSite::AttentionContext)});
    }
    if (model.layers[layer].ffn_width > 0) {
      for (const char* name : {"mlp.gate.weight", "mlp.up.weight"})
        if (model.has_layer_tensor(layer, std::string(name)))
          linears.push_back({layer_name(layer, name), site_key(layer, ActivationSite::MlpInput)});
      linears.push_back({layer_name(layer, "mlp.down.weight"), site_key(layer, ActivationSite::MlpHidden)});
    }
  }
  if (model.config.tied_embeddings)
    linears.push_back({"embed.weight", site_key(-1, ActivationSite::FinalHidden), "lm_head.weight"});
  else
    linears.push_back({"lm_head.weight", site_key(-1, ActivationSite::FinalHidden)});
  return linears;
}

class QuantizePass : public Pass {
 public:
  explicit QuantizePass(const ParamValues& params) : params_(params) {}

  PreservedAnalyses run(Model& model, PassContext& context) override {
    const auto origin = context.where.str();
    if (model.quantization.active()) throw InputError(origin + ": the model is quantized already");
    const auto& mode_name = params_.get_string("mode");
    const auto mode = mode_name == "w8" ? ModelQuantization::Mode::WeightOnly
                      : mode_name == "dynamic" ? ModelQuantization::Mode::Dynamic
                                               : ModelQuantization::Mode::Static;
    const auto& patterns = params_.get_patterns("exclude");
    std::vector<std::string> warnings;
    auto linears = linear_layers(model);
    std::map<std::string, bool> pattern_used;
    std::vector<Linear> quantized;
    std::vector<std::string> excluded;
    for (const auto& linear : linears) {
      bool skip = false;
      for (const auto& pattern : patterns)
        if (glob_match(pattern, linear.name) || glob_match(pattern, linear.weight))
          skip = pattern_used[pattern] = true;
      if (skip)
        excluded.push_back(linear.weight);
      else
        quantized.push_back(linear);
    }
    for (const auto& pattern : patterns)
      if (!pattern_used[pattern]) warnings.push_back("exclude pattern \"" + pattern + "\" matches no quantizable weight");
    if (mode == ModelQuantization::Mode::WeightOnly)
      warnings.push_back("ONNX Runtime's extended and all graph optimizations turn this weight-only graph's "
                         "DequantizeLinear + MatMul pairs into MatMulNBits kernels that do not compute the float "
                         "activations eval measures (seen: 1.2 % off per MatMul); load the ONNX file with graph "
                         "optimization level basic");
    if (model.config.tied_embeddings &&
        std::any_of(quantized.begin(), quantized.end(), [](const Linear& linear) { return linear.weight == "embed.weight"; }))
      warnings.push_back("the output head is tied to the embedding: the embedding table is quantized with it");

    // A site is quantized when every linear reading it is.
    std::set<std::string> sites;
    for (const auto& linear : quantized) sites.insert(linear.site);
    for (const auto& name : excluded)
      for (const auto& linear : linears)
        if (linear.weight == name) sites.erase(linear.site);

    std::map<std::string, ActivationRange> ranges;
    if (mode == ModelQuantization::Mode::Static) {
      RangeOptions options;
      options.method = parse_range_method(params_.get_string("range"));
      options.percentile = params_.get_float("percentile");
      options.symmetric = params_.get_string("activations") == "symmetric";
      auto batches = context.data.batches(data_entry(context), context.where, 0, params_.get_int("max_tokens"));
      ranges = calibrate_ranges(Executor(model), batches, sites, options,
                                layer_streaming(context, "quantize: calibrating " + std::to_string(sites.size()) + " sites", batches));
      context.progress.finish();
    }

    ModelQuantization quantization;
    quantization.mode = mode;
    if (!parse_target_cpu(params_.get_string("target_cpu"), quantization.target_cpu))
      throw InputError(origin + ": target_cpu: unknown CPU \"" + params_.get_string("target_cpu") + "\"");
    quantization.weight_limit = weight_limit_for(quantization.target_cpu);
    const bool mse = params_.get_string("weights") == "mse";
    double worst_weight_error = 0;
    // The IR keeps the int8 values and their scales: a quarter of the float32 weights' memory.
    // Weights that came memory-mapped from the checkpoint stay file-backed as int8 too (in a
    // temporary file), so a model larger than memory is never resident all at once.
    TensorSpill spill;
    for (std::size_t i = 0; i < quantized.size(); ++i) {
      const auto& name = quantized[i].weight;
      const auto& stored = model.stored(name);
      model.populate_pages(name);
      auto weight = quantize_weight([&](std::int64_t first, const at::Tensor& out) { model.rows_into(name, first, out); },
                                    stored.size(0), stored.size(1), quantization.weight_limit,
                                    mse ? mse_weight_scales(model.tensor(name), quantization.weight_limit) : at::Tensor());
      worst_weight_error = std::max(worst_weight_error, weight.max_error);
      spill.replace(model, name, weight.values);
      quantization.weight_scales[name] = weight.scales;
      return_freed_memory();
      context.progress.heartbeat("quantize: weight " + std::to_string(i + 1) + "/" + std::to_string(quantized.size()));
    }
    context.progress.finish();
    auto activations = nlohmann::json::object();
    if (mode == ModelQuantization::Mode::Static) {
      const bool symmetric = params_.get_string("activations") == "symmetric";
      for (const auto& [site, range] : ranges) {
        quantization.activations[site] = activation_parameters(range.low, range.high, symmetric);
        activations[site] = {{"low", range.low}, {"high", range.high}, {"scale", quantization.activations[site].scale},
                             {"zero_point", quantization.activations[site].zero_point}};
      }
    } else if (mode == ModelQuantization::Mode::Dynamic) {
      quantization.dynamic_sites = sites;
    }
    model.quantization = quantization;

    context.statistics = {{"mode", mode_name},
                          {"weights", params_.get_string("weights")},
                          {"target_cpu", target_cpu_name(quantization.target_cpu)},
                          {"weight_limit", quantization.weight_limit},
                          {"quantized_weights", quantized.size()},
                          {"float_weights", excluded},
                          {"activation_sites", mode == ModelQuantization::Mode::WeightOnly ? 0 : sites.size()},
                          {"activations", activations},
                          {"max_weight_error", worst_weight_error},
                          {"warnings", warnings}};
    context.summary.push_back(mode_name + ": " + std::to_string(quantized.size()) + " int8 weights (" +
                              params_.get_string("weights") + ", |q| <= " + std::to_string(quantization.weight_limit) +
                              " for " + target_cpu_name(quantization.target_cpu) + " CPUs), " +
                              (mode == ModelQuantization::Mode::WeightOnly ? std::string("float activations")
                               : mode == ModelQuantization::Mode::Dynamic
                                   ? std::to_string(sites.size()) + " activation sites quantized at run time"
                                   : std::to_string(sites.size()) + " activation sites calibrated (" +
                                         params_.get_string("range") + ")") +
                              ", " + std::to_string(excluded.size()) + " kept float");
    for (const auto& warning : warnings) context.summary.push_back("warning: " + warning);
    return PreservedAnalyses::none();
  }

 private:
  std::string data_entry(const PassContext& context) const {
    return context.data.require_calibration_entry(params_.get_string("data"), context.where, "static quantization");
  }

  ParamValues params_;
};

}  // namespace

PassInfo quantize_pass_info() {
  PassInfo info;
  info.name = "quantize";
  info.kind = PassKind::Transform;
  info.summary = "int8 weights per output channel and int8 activations (static or dynamic), fake-quantized for eval";
  info.params = {
      {"mode", ParamType::String, std::string("w8a8"), "w8a8: static int8 activations; w8: weights only; dynamic: activations quantized at run time", {"w8a8", "w8", "dynamic"}, {}, {}},
      {"weights", ParamType::String, std::string("minmax"), "per-channel weight scales: max|w|/127, or the clip with the least squared error", {"minmax", "mse"}, {}, {}},
      {"activations", ParamType::String, std::string("asymmetric"), "static activation ranges: with a zero point, or symmetric", {"asymmetric", "symmetric"}, {}, {}},
      {"range", ParamType::String, std::string("minmax"), "activation range estimator", {"minmax", "moving-average", "percentile", "mse"}, {}, {}},
      {"percentile", ParamType::Float, 99.99, "percentile for range: percentile", {}, 50.0, 100.0},
      {"target_cpu", ParamType::String, std::string("any"), "x86 CPUs the int8 model must be exact on: any and avx2 keep weights in 7 bits (ONNX Runtime's AVX2 kernels saturate 16-bit pair sums of full-range weights); vnni uses all 8", {"any", "avx2", "vnni"}, {}, {}},
      {"exclude", ParamType::PatternList, std::vector<std::string>{"lm_head.weight"}, "weights kept float: tensor names with * and ? (the output head by default)", {}, {}, {}},
      {"data", ParamType::String, std::string(""), "calibration data entry; default: calibration, then eval", {}, {}, {}},
      {"max_tokens", ParamType::Int, std::int64_t{8192}, "calibration tokens", {}, 1.0, {}},
  };
  info.plan = [](PlannedModel& planned, const ParamValues&, const std::string& where) {
    if (!planned.quantized.empty()) throw InputError(where + ": quantize: the model is quantized already (by " + planned.quantized + ")");
    planned.quantized = "quantize at " + where;
  };
  info.create = [](const ParamValues& params) { return std::make_unique<QuantizePass>(params); };
  return info;
}

}  // namespace lathe
