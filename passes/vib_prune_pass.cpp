#include "passes/vib_prune_pass.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/head_annotations.h"
#include "core/model.h"
#include "datasets/data_sets.h"
#include "executor/vib_training.h"
#include "passes/pass_context.h"
#include "passes/vib_cut.h"
#include "passes/vib_selection.h"
#include "support/errors.h"
#include "support/number_text.h"
#include "support/progress.h"
#include "support/svg_heatmap.h"

namespace lathe {
namespace {

std::int64_t count_true(const std::vector<bool>& flags) {
  return static_cast<std::int64_t>(std::count(flags.begin(), flags.end(), true));
}

// Kept share of each structure per layer: heads, kv heads, FFN neurons, attention, MLP.
std::string kept_units_svg(const Model& before, const VibKeep& keep, std::int64_t hidden_kept) {
  Heatmap heatmap;
  heatmap.title = "vib-prune: kept share per layer and structure (hidden " + std::to_string(hidden_kept) + " of " +
                  std::to_string(before.config.hidden) + ")";
  heatmap.row_axis = "layer";
  heatmap.column_axis = "structure";
  heatmap.column_labels = {"heads", "kv heads", "ffn", "attention", "mlp"};
  auto share = [](const std::vector<bool>& flags) {
    return flags.empty() ? std::nan("") : static_cast<double>(count_true(flags)) / static_cast<double>(flags.size());
  };
  for (int l = 0; l < before.layer_count(); ++l) {
    const auto& kept = keep.layers[l];
    const auto& structure = before.layers[l];
    heatmap.row_labels.push_back(std::to_string(l));
    heatmap.values.push_back({share(kept.heads), share(kept.groups), share(kept.ffn),
                              structure.has_attention() ? double(kept.attention) : std::nan(""),
                              structure.ffn_width > 0 ? double(kept.mlp) : std::nan("")});
  }
  return heatmap_svg(heatmap);
}

class VibPrunePass : public Pass {
 public:
  explicit VibPrunePass(const ParamValues& params) : params_(params) {}

  PreservedAnalyses run(Model& model, PassContext& context) override {
    const auto origin = context.where.str();
    if (model.quantization.active())
      throw InputError(origin + ": vib-prune: the model is quantized; prune before quantize (rounding has no gradient)");
    if (model.attention.gated)
      throw InputError(origin + ": vib-prune cannot cut a gated-attention model (each gate reads a hidden / Hq wide "
                       "slice of the layer input); run vib-prune before gated-attention");

    auto guarded = protected_heads(model);
    const auto& protect = params_.get_heads("protect");
    for (const auto& head : resolve_heads(model, protect.roles, protect.heads, origin, "protect")) guarded.push_back(head);
    std::sort(guarded.begin(), guarded.end());
    guarded.erase(std::unique(guarded.begin(), guarded.end()), guarded.end());

    SelectionRules rules;
    rules.include_embeddings = params_.get_bool("include_embeddings");
    rules.multiple_of = params_.get_int("multiple_of");
    rules.protected_heads = guarded;
    const auto counted_before = rules.include_embeddings ? model.parameter_count() : model.decoder_parameter_count();
    const auto budget = params_.get_int("budget");
    rules.target = budget > 0 ? budget
                              : static_cast<std::int64_t>(std::llround(params_.get_float("keep") * static_cast<double>(counted_before)));
    const std::string counted = rules.include_embeddings ? "parameters" : "decoder parameters";
    // Whether the target can be met depends on the structure alone: refused before training.
    if (const auto fewest = fewest_counted_parameters(model, rules); fewest > rules.target) {
      std::string why = "hidden size at least " + std::to_string(std::min(rules.multiple_of, model.config.hidden));
      if (!guarded.empty()) {
        why += ", protected heads ";
        for (std::size_t i = 0; i < guarded.size() && i < 8; ++i) why += (i ? ", " : "") + guarded[i].str();
        if (guarded.size() > 8) why += ", ...";
        why += " with their kv heads and attention blocks";
      }
      throw InputError(origin + ": vib-prune cannot keep " + std::to_string(rules.target) + " of " +
                       std::to_string(counted_before) + " " + counted + ": " + std::to_string(fewest) + " at best (" + why + ")");
    }
    protect_heads(model, guarded);

    const auto data = context.data.require_calibration_entry(params_.get_string("data"), context.where, "vib-prune");
    auto batches = context.data.batches(data, context.where, params_.get_int("batch_size"), params_.get_int("max_tokens"));
    const auto fraction = params_.get_float("fraction");
    batches.resize(std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(batches.size())))));
    if (batches.empty() || batches.front().inputs.numel() == 0)
      throw InputError(origin + ": data entry " + data + " gives no tokens to train masks on");

    const double kept_fraction = static_cast<double>(rules.target) / static_cast<double>(counted_before);
    VibTrainingOptions options;
    options.steps = params_.get_int("steps") > 0 ? params_.get_int("steps") : static_cast<std::int64_t>(batches.size());
    options.warmup = params_.get_int("warmup") > 0 ? params_.get_int("warmup") : std::max<std::int64_t>(1, options.steps / 5);
    options.target_fraction = kept_fraction;
    options.include_embeddings = rules.include_embeddings;
    options.kl_factor = params_.get_float("kl_factor");
    // TVA-Prune's defaults: heads weigh more, and masks move faster, for high sparsity.
    options.multipliers.heads = params_.get_float("kl_heads") > 0 ? params_.get_float("kl_heads") : (kept_fraction < 0.4 ? 512 : 256);
    options.multipliers.ffn = params_.get_float("kl_ffn");
    options.multipliers.hidden = params_.get_float("kl_hidden");
    options.mask_learning_rate = params_.get_float("mask_lr") > 0 ? params_.get_float("mask_lr") : (kept_fraction < 0.5 ? 0.1 : 0.05);
    options.lagrangian_learning_rate = params_.get_float("lagrangian_lr");
    options.train_weights = params_.get_string("train") == "masks+weights";
    options.weight_learning_rate = params_.get_float("weight_lr");
    options.seed = static_cast<std::uint64_t>(params_.get_int("seed"));

    const Model before = model.clone();
    const auto parameters_before = model.parameter_count();
    auto masks = make_vib_masks(model, guarded, options.seed);
    std::vector<VibStep> history;
    try {
      history = train_vib_masks(model, masks, batches, options, [&](const VibStep& step) {
        context.progress.update("vib-prune: step " + std::to_string(step.step) + "/" + std::to_string(options.steps) +
                                "  loss " + number_text(step.task_loss) + "  KL " + number_text(step.kl) + "  size " +
                                number_text(step.expected_fraction) + " (target " + number_text(step.target_fraction) +
                                ")  l1 " + number_text(step.lambda1) + "  l2 " + number_text(step.lambda2));
      });
    } catch (const InputError& error) {
      throw InputError(origin + ": " + error.what());
    }
    context.progress.finish();

    const auto scores = log_alphas(masks);
    std::int64_t masks_keep = 0, units = 0;
    auto tally = [&](const std::vector<double>& values) {
      for (double value : values) masks_keep += value < 0, ++units;
    };
    tally(scores.hidden);
    for (const auto& layer : scores.layers) tally(layer.heads), tally(layer.groups), tally(layer.ffn);
    const auto keep = select_units(model, scores, rules, origin);
    const auto expected_after = counted_parameters(model, keep, rules.include_embeddings);
    cut_to_selection(model, masks, keep);
    const auto counted_after = rules.include_embeddings ? model.parameter_count() : model.decoder_parameter_count();
    if (counted_after != expected_after)
      throw std::logic_error("vib-prune counted " + std::to_string(expected_after) + " parameters for its selection but the "
                             "cut model holds " + std::to_string(counted_after));

    record(context, before, model, keep, history, options, rules, data, counted_before, counted_after, parameters_before,
           masks_keep, units);
    return PreservedAnalyses::none();
  }

 private:
  void record(PassContext& context, const Model& before, const Model& after, const VibKeep& keep,
              const std::vector<VibStep>& history, const VibTrainingOptions& options, const SelectionRules& rules,
              const std::string& data, std::int64_t counted_before, std::int64_t counted_after,
              std::int64_t parameters_before, std::int64_t masks_keep, std::int64_t units) const {
    auto steps = nlohmann::json::array();
    for (const auto& step : history)
      steps.push_back({{"step", step.step},
                       {"task_loss", step.task_loss},
                       {"kl", step.kl},
                       {"expected_fraction", step.expected_fraction},
                       {"target_fraction", step.target_fraction},
                       {"lambda1", step.lambda1},
                       {"lambda2", step.lambda2}});
    auto layers = nlohmann::json::array();
    std::string widths;
    for (int l = 0; l < before.layer_count(); ++l) {
      const auto& was = before.layers[l];
      const auto& now = after.layers[l];
      layers.push_back({{"query_heads_before", was.query_heads},
                        {"query_heads", now.query_heads},
                        {"kv_heads_before", was.kv_heads},
                        {"kv_heads", now.kv_heads},
                        {"ffn_width_before", was.ffn_width},
                        {"ffn_width", now.ffn_width},
                        {"attention", now.has_attention()},
                        {"mlp", now.ffn_width > 0}});
      widths += (l ? " " : "") + std::to_string(now.query_heads) + "/" + std::to_string(now.ffn_width);
    }
    const std::string counted = rules.include_embeddings ? "parameters" : "decoder parameters";
    const auto& mode = params_.get_string("train");
    context.statistics = {{"train", mode},
                          {"data", data},
                          {"steps", options.steps},
                          {"warmup", options.warmup},
                          {"kl_factor", options.kl_factor},
                          {"kl_multipliers", {{"heads", options.multipliers.heads}, {"ffn", options.multipliers.ffn}, {"hidden", options.multipliers.hidden}}},
                          {"mask_lr", options.mask_learning_rate},
                          {"lagrangian_lr", options.lagrangian_learning_rate},
                          {"counted", counted},
                          {"include_embeddings", rules.include_embeddings},
                          {"multiple_of", rules.multiple_of},
                          {"target", rules.target},
                          {"counted_before", counted_before},
                          {"counted_after", counted_after},
                          {"units_kept_by_masks", masks_keep},
                          {"units", units},
                          {"hidden_before", before.config.hidden},
                          {"hidden", after.config.hidden},
                          {"layers", layers},
                          {"protected", rules.protected_heads.size()},
                          {"parameters_before", parameters_before},
                          {"parameters_after", after.parameter_count()},
                          {"history", steps}};
    if (const auto svg = context.write_artifact("vib_prune.svg", kept_units_svg(before, keep, after.config.hidden)); !svg.empty())
      context.statistics["picture"] = svg.filename().string();
    std::ostringstream target;
    target << counted_after << " of " << counted_before << " " << counted << " kept (target " << rules.target << ")";
    context.summary = {"trained masks (" + mode + ") for " + std::to_string(options.steps) + " steps on " + data + ": " +
                           std::to_string(masks_keep) + " of " + std::to_string(units) + " units have log alpha < 0",
                       target.str() + "; hidden " + std::to_string(before.config.hidden) + " -> " +
                           std::to_string(after.config.hidden) + "; heads/FFN width per layer: " + widths,
                       "parameters " + std::to_string(parameters_before) + " -> " + std::to_string(after.parameter_count())};
    if (history.empty()) return;
    context.summary.push_back("task loss " + number_text(history.front().task_loss) + " -> " +
                              number_text(history.back().task_loss) + ", expected size " +
                              number_text(history.front().expected_fraction) + " -> " +
                              number_text(history.back().expected_fraction) + " (first and last step)");
    // The cut then rests on the log-alpha order of masks that never felt the constraint.
    const double reached = history.back().expected_fraction, wanted = history.back().target_fraction;
    if (reached > wanted + kFarFromTarget) {
      context.summary.push_back("warning: the masks ended at expected size " + number_text(reached) + ", far above the target " +
                                number_text(wanted) + "; more steps or a larger kl_factor let them train to it");
      context.statistics["warning"] = context.summary.back();
    }
  }

  static constexpr double kFarFromTarget = 0.05;

  ParamValues params_;
};

}  // namespace

PassInfo vib_prune_pass_info() {
  PassInfo info;
  info.name = "vib-prune";
  info.kind = PassKind::Transform;
  info.summary = "learn VIB masks over heads, FFN neurons, hidden dimensions and blocks under a size target, then cut "
                 "the masked units for real (VTrans)";
  info.params = {
      {"keep", ParamType::Float, 0.5, "fraction of the counted parameters to keep (the decoder layers'; with include_embeddings the whole model's)", {}, 0.0, 1.0},
      {"budget", ParamType::Int, std::int64_t{0}, "keep at most this many counted parameters instead of a fraction", {}, 0.0, {}},
      {"include_embeddings", ParamType::Bool, false, "count the embeddings, final norm and output head too", {}, {}, {}},
      {"multiple_of", ParamType::Int, std::int64_t{1}, "kept hidden and FFN widths are multiples of this (8, 64, 128 suit fast kernels)", {}, 1.0, {}},
      {"train", ParamType::String, std::string("masks"), "masks: weights frozen, next-token loss (Faster-VTrans); masks+weights: weights fine-tuned too, distilling from the unpruned model (VTrans)", {"masks", "masks+weights"}, {}, {}},
      {"steps", ParamType::Int, std::int64_t{0}, "optimizer steps, one batch each; 0: one pass over the data", {}, 0.0, {}},
      {"warmup", ParamType::Int, std::int64_t{0}, "steps over which the target falls linearly from the full size; 0: a fifth of the steps", {}, 0.0, {}},
      {"data", ParamType::String, std::string(""), "training data entry; default: calibration, then eval", {}, {}, {}},
      {"batch_size", ParamType::Int, std::int64_t{0}, "sequences per step; 0: the data entry's batch size", {}, 0.0, {}},
      {"max_tokens", ParamType::Int, std::int64_t{0}, "tokens of the data to train on; 0: all", {}, 0.0, {}},
      {"fraction", ParamType::Float, 1.0, "share of the data's batches to train on (Fast-VTrans)", {}, 0.0, 1.0},
      {"kl_factor", ParamType::Float, 1e-6, "weight of the masks' KL terms", {}, 0.0, {}},
      {"kl_heads", ParamType::Float, 0.0, "KL multiplier of head, kv-group and attention-block masks; 0: 256, or 512 below 0.4 kept", {}, 0.0, {}},
      {"kl_ffn", ParamType::Float, 1.0, "KL multiplier of FFN-neuron and MLP-block masks", {}, 0.0, {}},
      {"kl_hidden", ParamType::Float, 30.0, "KL multiplier of the hidden-dimension mask", {}, 0.0, {}},
      {"mask_lr", ParamType::Float, 0.0, "AdamW learning rate of the masks; 0: 0.05, or 0.1 below 0.5 kept", {}, 0.0, 10.0},
      {"lagrangian_lr", ParamType::Float, 0.1, "gradient-ascent rate of the size constraint's multipliers", {}, 0.0, 100.0},
      {"weight_lr", ParamType::Float, 1e-4, "AdamW learning rate of the weights with train: masks+weights", {}, 0.0, 1.0},
      {"protect", ParamType::HeadList, HeadList{}, "heads never removed: retrieval (the heads an earlier retrieval-heads pass found) and heads like 1.0, 1.3; protected heads from earlier passes are kept too", {"retrieval"}, {}, {}},
      {"seed", ParamType::Int, std::int64_t{0}, "seed of the masks' initial values and noise", {}, 0.0, {}},
  };
  // Training runs backward through every layer at once; the weights train too with masks+weights,
  // beside the teacher and the optimizer's moments.
  info.whole_model_bytes = [](const ParamValues& params, const Model& model) {
    return params.get_string("train") == "masks+weights" ? 4 * model.float_bytes() : model.float_bytes();
  };
  info.check = [](const ParamValues& params, const Model& model, const std::string& where) {
    check_heads_exist(model, params.get_heads("protect").heads, where, "protect");
  };
  info.plan = [](PlannedModel& planned, const ParamValues& params, const std::string& where) {
    if (!planned.quantized.empty())
      throw InputError(where + ": vib-prune: the model is quantized by " + planned.quantized + "; run vib-prune before quantize");
    if (!planned.gated_attention.empty())
      throw InputError(where + ": vib-prune: it cannot cut a gated-attention model (gates from " + planned.gated_attention +
                       "; each gate reads a slice of the layer input); run vib-prune before gated-attention");
    for (const auto& role : params.get_heads("protect").roles)
      if (planned.head_roles.count(role) == 0)
        throw InputError(where + ": vib-prune: protect: " + role + " needs a " + role + "-heads pass before this one");
  };
  info.exclusive_params = {{"keep", "budget"}};
  info.create = [](const ParamValues& params) { return std::make_unique<VibPrunePass>(params); };
  return info;
}

}  // namespace lathe
