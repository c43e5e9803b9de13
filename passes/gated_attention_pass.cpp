#include "passes/gated_attention_pass.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>

#include "core/model.h"
#include "passes/pass_context.h"
#include "support/errors.h"

namespace lathe {
namespace {

class GatedAttentionPass : public Pass {
 public:
  explicit GatedAttentionPass(const ParamValues& params) : params_(params) {}

  PreservedAnalyses run(Model& model, PassContext& context) override {
    const auto origin = context.where.str();
    if (model.quantization.active())
      throw InputError(origin + ": gated-attention changes activations the quantization was calibrated on; "
                       "run it before quantize");
    if (model.attention.gated) throw InputError(origin + ": the model has gated attention already");
    const auto hidden = model.config.hidden;
    for (int layer = 0; layer < model.layer_count(); ++layer) {
      const auto heads = model.layers[layer].query_heads;
      if (heads > 0 && hidden % heads != 0)
        throw InputError(origin + ": layer " + std::to_string(layer) + " has " + std::to_string(heads) +
                         " query heads, which do not split the hidden size " + std::to_string(hidden) +
                         " into equal slices for their gates");
    }

    const double init = params_.get_float("init");
    const auto bias_value = static_cast<float>(std::log(init / (1.0 - init)));
    // The gate's value at the start, as float computes it: the o projection is divided by
    // exactly this, so gate x o starts equal to o up to one rounding.
    const double start = at::sigmoid(at::scalar_tensor(bias_value, at::kFloat)).item<double>();
    std::int64_t gates = 0;
    for (int layer = 0; layer < model.layer_count(); ++layer) {
      const auto heads = model.layers[layer].query_heads;
      if (heads == 0) continue;
      model.tensors[layer_name(layer, "attn.gate.weight")] = at::zeros({heads, hidden / heads}, at::kFloat);
      model.tensors[layer_name(layer, "attn.gate.bias")] = at::full({heads}, bias_value, at::kFloat);
      const auto o_name = layer_name(layer, "attn.o.weight");
      model.tensors[o_name] = model.tensor(o_name) / start;
      gates += heads;
    }
    model.attention.gated = true;
    validate_model(model, origin);

    char line[160];
    std::snprintf(line, sizeof line, "%lld head gates sigmoid(<w_h, x_h> + b_h), starting at %.4g (b = %.4g, w = 0); "
                                     "o projections scaled by 1 / %.4g",
                  static_cast<long long>(gates), start, static_cast<double>(bias_value), start);
    context.summary.push_back(line);
    context.statistics = {{"gates", gates}, {"init", init}, {"bias", bias_value}};
    return PreservedAnalyses::none();
  }

 private:
  ParamValues params_;
};

}  // namespace

PassInfo gated_attention_pass_info() {
  PassInfo info;
  info.name = "gated-attention";
  info.kind = PassKind::Transform;
  info.summary = "multiply each head's output by a learned sigmoid gate of its slice of the layer input, starting "
                 "where the model was; fine-tune after it";
  info.params = {
      {"init", ParamType::Float, 0.25, "the gates' starting value sigmoid(b); the o projections are scaled by its inverse", {}, 0.01, 0.99},
  };
  info.plan = [](PlannedModel& planned, const ParamValues&, const std::string& where) {
    if (!planned.quantized.empty())
      throw InputError(where + ": gated-attention: it changes activations the quantization was calibrated on (quantization from " +
                       planned.quantized + "); run it before quantize");
    if (!planned.gated_attention.empty())
      throw InputError(where + ": gated-attention: the model has gated attention already (from " + planned.gated_attention + ")");
    planned.gated_attention = "gated-attention at " + where;
  };
  info.create = [](const ParamValues& params) { return std::make_unique<GatedAttentionPass>(params); };
  return info;
}

}  // namespace lathe
