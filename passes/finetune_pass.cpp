#include "passes/finetune_pass.h"

#include <cmath>
#include <cstdio>

#include "core/model.h"
#include "datasets/data_sets.h"
#include "executor/distillation.h"
#include "passes/pass_context.h"
#include "support/errors.h"
#include "support/number_text.h"
#include "support/progress.h"

namespace lathe {
namespace {

// The tensors `train` names: the head gates; the attention blocks (their norms, projections
// and gates); or every tensor.
std::vector<std::string> trainable_tensors(const Model& model, const std::string& train, const std::string& origin) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : model.tensors) {
    const bool gate = name.find(".attn.gate.") != std::string::npos;
    const bool attention = name.find(".attn.") != std::string::npos || name.find(".attn_norm.") != std::string::npos;
    if (train == "all" || (train == "attention" && attention) || (train == "gates" && gate)) names.push_back(name);
  }
  if (names.empty())
    throw InputError(origin + ": train: " + train + " selects no tensor" +
                     (train == "gates" ? " (the model has no head gates: run gated-attention first)" : ""));
  return names;
}

class FinetunePass : public Pass {
 public:
  explicit FinetunePass(const ParamValues& params) : params_(params) {}

  PreservedAnalyses run(Model& model, PassContext& context) override {
    const auto origin = context.where.str();
    if (model.quantization.active())
      throw InputError(origin + ": the model is quantized; fine-tune before quantize (rounding has no gradient)");
    auto train = params_.get_string("train");
    if (train == "auto") train = model.attention.gated ? "gates" : "attention";

    DistillationOptions options;
    options.steps = params_.get_int("steps");
    options.learning_rate = params_.get_float("learning_rate");
    options.weight_decay = params_.get_float("weight_decay");
    options.trainable = trainable_tensors(model, train, origin);
    std::int64_t parameters = 0;
    for (const auto& name : options.trainable) parameters += model.tensor(name).numel();

    const auto data = context.data.require_calibration_entry(params_.get_string("data"), context.where, "finetune");
    const auto batches =
        context.data.batches(data, context.where, params_.get_int("batch_size"), params_.get_int("max_tokens"));
    if (batches.empty()) throw InputError(origin + ": data entry " + data + " gives no tokens to train on");

    DistillationResult result;
    try {
      result = distill(model, context.original, batches, options, [&](const DistillationStep& step) {
        context.progress.update("finetune: step " + std::to_string(step.step) + "/" + std::to_string(options.steps) +
                                "  loss " + number_text(step.loss) + "  attention output max |x| " +
                                number_text(step.max_inf_norm) + "  kurtosis " + number_text(step.mean_kurtosis));
      });
    } catch (const InputError& error) {
      throw InputError(origin + ": " + error.what());
    }
    context.progress.finish();
    const auto& history = result.steps;
    const double before = result.loss_before, after = result.loss_after;

    auto steps = nlohmann::json::array();
    for (const auto& step : history)
      steps.push_back({{"step", step.step},
                       {"loss", step.loss},
                       {"max_inf_norm", step.max_inf_norm},
                       {"mean_kurtosis", std::isfinite(step.mean_kurtosis) ? nlohmann::json(step.mean_kurtosis) : nlohmann::json()}});
    context.statistics = {{"train", train},
                          {"trained_tensors", options.trainable.size()},
                          {"trained_parameters", parameters},
                          {"steps", options.steps},
                          {"learning_rate", options.learning_rate},
                          {"weight_decay", options.weight_decay},
                          {"data", data},
                          {"distillation_loss_before", before},
                          {"distillation_loss_after", after},
                          {"history", steps}};
    context.summary.push_back("trained " + train + " (" + std::to_string(options.trainable.size()) + " tensors, " +
                              std::to_string(parameters) + " parameters), " + std::to_string(options.steps) +
                              " AdamW steps on " + data + ", distilling from the loaded model");
    context.summary.push_back("KL to the loaded model: " + number_text(before) + " -> " + number_text(after));
    if (!history.empty())
      context.summary.push_back("attention output: max |x| " + number_text(history.front().max_inf_norm) + " -> " +
                                number_text(history.back().max_inf_norm) + ", mean kurtosis " +
                                number_text(history.front().mean_kurtosis) + " -> " + number_text(history.back().mean_kurtosis) +
                                " (first and last step)");
    return PreservedAnalyses::none();
  }

 private:
  ParamValues params_;
};

}  // namespace

PassInfo finetune_pass_info() {
  PassInfo info;
  info.name = "finetune";
  info.kind = PassKind::Transform;
  info.summary = "fine-tune by distilling from the loaded model's logits (AdamW), e.g. after clipped-softmax or "
                 "gated-attention";
  info.params = {
      {"steps", ParamType::Int, std::int64_t{100}, "optimizer steps, one batch each", {}, 1.0, {}},
      {"learning_rate", ParamType::Float, 1e-3, "AdamW's learning rate at the first step; it decays linearly to 0", {}, 0.0, 1.0},
      {"weight_decay", ParamType::Float, 0.0, "AdamW's decoupled weight decay, on matrices", {}, 0.0, 1.0},
      {"train", ParamType::String, std::string("auto"), "what trains: the head gates, the attention blocks, or all tensors; auto: gates when the model has them, else attention", {"auto", "gates", "attention", "all"}, {}, {}},
      {"data", ParamType::String, std::string(""), "training data entry; default: calibration, then eval", {}, {}, {}},
      {"batch_size", ParamType::Int, std::int64_t{0}, "sequences per step; 0: the data entry's batch size", {}, 0.0, {}},
      {"max_tokens", ParamType::Int, std::int64_t{8192}, "tokens of the data to train on", {}, 1.0, {}},
  };
  // The student being trained and the teacher, both in float32.
  info.whole_model_bytes = [](const ParamValues&, const Model& model) { return 2 * model.float_bytes(); };
  info.plan = [](PlannedModel& planned, const ParamValues&, const std::string& where) {
    if (!planned.quantized.empty())
      throw InputError(where + ": finetune: the model is quantized (by " + planned.quantized +
                       "); fine-tune before quantize (rounding has no gradient)");
  };
  info.create = [](const ParamValues& params) { return std::make_unique<FinetunePass>(params); };
  return info;
}

}  // namespace lathe
