#include "passes/eval_pass.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "core/model.h"
#include "executor/evaluation.h"
#include "executor/executor.h"
#include "passes/pass_context.h"
#include "pipeline/data_sets.h"
#include "support/progress.h"

namespace lathe {
namespace {

// What the weights take in memory (and, give or take headers, in a safetensors file).
std::int64_t weight_bytes(const Model& model) {
  std::int64_t bytes = 0;
  for (const auto& [name, tensor] : model.tensors) bytes += tensor.numel() * tensor.element_size();
  return bytes;
}

class EvalPass : public Pass {
 public:
  explicit EvalPass(const ParamValues& params) : params_(params) {}

  PreservedAnalyses run(Model& model, PassContext& context) override {
    const auto& data_name = params_.get_string("data");
    auto batches = context.data.batches(data_name, context.where, params_.get_int("batch_size"),
                                        params_.get_int("max_tokens"));
    // Until a transform runs, the model is the original: the comparison is exact without a
    // second forward.
    const bool compare = params_.get_bool("kl") && context.transforms_applied > 0;
    Executor executor(model);
    std::unique_ptr<Executor> reference;
    if (compare) reference = std::make_unique<Executor>(context.original);
    auto metrics = evaluate(executor, batches, reference.get(), [&](std::size_t done, std::size_t all) {
      context.progress.update("eval " + data_name + ": batch " + std::to_string(done) + "/" + std::to_string(all));
    });
    context.progress.finish();

    nlohmann::json result = {
        {"data", data_name},
        {"tokens", metrics.tokens},
        {"parameters", model.parameter_count()},
        {"weight_bytes", weight_bytes(model)},
        {"source_bytes_on_disk", context.original.source.bytes_on_disk},
    };
    if (params_.get_bool("perplexity")) {
      result["mean_loss"] = metrics.mean_loss;
      result["perplexity"] = metrics.perplexity;
    }
    if (params_.get_bool("kl")) {
      const double reference_loss = compare ? *metrics.reference_mean_loss : metrics.mean_loss;
      result["kl"] = compare ? *metrics.kl : 0.0;
      result["top1_agreement"] = compare ? *metrics.top1_agreement : 1.0;
      result["reference_mean_loss"] = reference_loss;
      result["reference_perplexity"] = std::exp(reference_loss);
      result["reference_parameters"] = context.original.parameter_count();
    }
    auto label = params_.get_string("label");
    if (label.empty()) label = data_name;
    for (int n = 2; context.metrics.contains(label); ++n) label = data_name + "#" + std::to_string(n);
    result["label"] = label;
    context.metrics[label] = result;
    context.statistics = result;
    return PreservedAnalyses::all();
  }

 private:
  ParamValues params_;
};

}  // namespace

PassInfo eval_pass_info() {
  PassInfo info;
  info.name = "eval";
  info.kind = PassKind::Evaluation;
  info.summary = "mean loss and perplexity on a data entry; KL and top-1 agreement against the unmodified model";
  info.params = {
      {"data", ParamType::String, std::string("eval"), "the data entry to evaluate on", {}, {}, {}},
      {"kl", ParamType::Bool, true, "KL divergence and top-1 agreement against the unmodified model", {}, {}, {}},
      {"perplexity", ParamType::Bool, true, "report mean loss and perplexity", {}, {}, {}},
      {"batch_size", ParamType::Int, std::int64_t{0}, "sequences per batch; 0: the data entry's", {}, 0.0, {}},
      {"max_tokens", ParamType::Int, std::int64_t{0}, "targets to evaluate; 0: the data entry's", {}, 0.0, {}},
      {"label", ParamType::String, std::string(""), "name of this evaluation in the report; default: the data entry", {}, {}, {}},
  };
  info.create = [](const ParamValues& params) { return std::make_unique<EvalPass>(params); };
  return info;
}

}  // namespace lathe
