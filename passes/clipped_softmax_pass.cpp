#include "passes/clipped_softmax_pass.h"

#include <cstdio>

#include "core/model.h"
#include "passes/pass_context.h"
#include "support/errors.h"
#include "support/number_text.h"

namespace lathe {
namespace {

class ClippedSoftmaxPass : public Pass {
 public:
  explicit ClippedSoftmaxPass(const ParamValues& params) : params_(params) {}

  PreservedAnalyses run(Model& model, PassContext& context) override {
    const auto origin = context.where.str();
    if (model.quantization.active())
      throw InputError(origin + ": clipped-softmax changes activations the quantization was calibrated on; "
                       "run it before quantize");
    if (model.attention.clipped_softmax) throw InputError(origin + ": the model has a clipped softmax already");
    const double alpha = params_.get_float("alpha");
    const auto length = params_.get_int("length") > 0 ? params_.get_int("length") : model.config.max_positions;
    const double given_gamma = params_.get_float("gamma");
    AttentionVariant::ClippedSoftmax clipped;
    clipped.gamma = given_gamma < 0 ? given_gamma : -alpha / static_cast<double>(length);
    clipped.zeta = params_.get_float("zeta");
    if (clipped.gamma == 0 && clipped.zeta == 1)
      throw InputError(origin + ": gamma 0 and zeta 1 leave the softmax as it is; give alpha > 0 or gamma < 0");
    model.attention.clipped_softmax = clipped;

    context.statistics = {{"gamma", clipped.gamma}, {"zeta", clipped.zeta}};
    if (given_gamma >= 0) {
      context.statistics["alpha"] = alpha;
      context.statistics["length"] = length;
    }
    context.summary.push_back("softmax -> clip((zeta - gamma) softmax + gamma, 0, 1), gamma " + number_text(clipped.gamma) +
                              (given_gamma < 0 ? std::string()
                                               : " (-" + number_text(alpha) + " / " + std::to_string(length) + ")") +
                              ", zeta " + number_text(clipped.zeta) + "; probabilities below " +
                              number_text(-clipped.gamma / (clipped.zeta - clipped.gamma)) + " become 0");
    return PreservedAnalyses::none();
  }

 private:
  ParamValues params_;
};

}  // namespace

PassInfo clipped_softmax_pass_info() {
  PassInfo info;
  info.name = "clipped-softmax";
  info.kind = PassKind::Transform;
  info.summary = "replace the attention softmax by clip((zeta - gamma) softmax(x) + gamma, 0, 1); fine-tune after it";
  info.params = {
      {"alpha", ParamType::Float, 4.0, "gamma = -alpha / length when gamma is not given (the paper uses alpha 2 to 4)", {}, 0.0, 1000.0},
      {"length", ParamType::Int, std::int64_t{0}, "T in gamma = -alpha / T; 0: the model's maximum positions", {}, 0.0, {}},
      {"gamma", ParamType::Float, 0.0, "the lower stretch, < 0; 0: from alpha and length", {}, -1.0, 0.0},
      {"zeta", ParamType::Float, 1.0, "the upper stretch, >= 1", {}, 1.0, 100.0},
  };
  info.plan = [](PlannedModel& planned, const ParamValues&, const std::string& where) {
    if (!planned.quantized.empty())
      throw InputError(where + ": clipped-softmax: it changes activations the quantization was calibrated on "
                       "(quantization from " + planned.quantized + "); run it before quantize");
    if (!planned.clipped_softmax.empty())
      throw InputError(where + ": clipped-softmax: the model has a clipped softmax already (from " +
                       planned.clipped_softmax + ")");
    planned.clipped_softmax = "clipped-softmax at " + where;
  };
  info.create = [](const ParamValues& params) { return std::make_unique<ClippedSoftmaxPass>(params); };
  return info;
}

}  // namespace lathe
