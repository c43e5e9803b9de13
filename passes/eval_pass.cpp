#include "passes/eval_pass.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#include "core/model.h"
#include "datasets/data_sets.h"
#include "executor/evaluation.h"
#include "executor/executor.h"
#include "executor/needle_haystack.h"
#include "passes/layer_streaming.h"
#include "passes/needle_setup.h"
#include "passes/pass_context.h"
#include "support/progress.h"
#include "support/svg_heatmap.h"

namespace lathe {
namespace {

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
    auto metrics = evaluate(executor, batches, reference.get(), layer_streaming(context, "eval " + data_name, batches));
    context.progress.finish();

    nlohmann::json result = {
        {"data", data_name},
        {"tokens", metrics.tokens},
        {"parameters", model.parameter_count()},
        {"weight_bytes", model.stored_bytes()},
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
    if (params_.get_bool("niah")) result["niah"] = needle_in_a_haystack(executor, context);
    auto label = params_.get_string("label");
    if (label.empty()) label = data_name;
    for (int n = 2; context.metrics.contains(label); ++n) label = data_name + "#" + std::to_string(n);
    result["label"] = label;
    context.metrics[label] = result;
    context.statistics = result;
    return PreservedAnalyses::all();
  }

 private:
  // NIAH recall (greedy, ROUGE-1 recall of the needle) over the length x depth grid.
  nlohmann::json needle_in_a_haystack(const Executor& executor, PassContext& context) const {
    const auto options = needle_options(params_, executor.model(), context.where.str());
    std::string haystack;
    const auto tests = needle_tests(context, executor, params_.get_string("niah_data"), options, &haystack);
    const auto results =
        run_needle_tests(executor, tests, NeedleDecoding::Greedy, nullptr, false,
                         needle_run_options(context, executor.model(), "eval: " + std::to_string(tests.size()) + " needle tests"));
    context.progress.finish();
    const auto& lengths = options.context_lengths;
    const auto& depths = options.depths;
    std::vector<std::vector<double>> grid(lengths.size(), std::vector<double>(depths.size(), 0.0));
    std::vector<std::vector<int>> counts(lengths.size(), std::vector<int>(depths.size(), 0));
    double total = 0;
    for (std::size_t i = 0; i < tests.size(); ++i) {
      const auto row = std::find(lengths.begin(), lengths.end(), tests[i].context_length) - lengths.begin();
      const auto column = std::find(depths.begin(), depths.end(), tests[i].depth) - depths.begin();
      grid[row][column] += results.recall[i];
      ++counts[row][column];
      total += results.recall[i];
    }
    for (std::size_t r = 0; r < lengths.size(); ++r)
      for (std::size_t c = 0; c < depths.size(); ++c) grid[r][c] /= std::max(1, counts[r][c]);
    const double recall = tests.empty() ? 0.0 : total / static_cast<double>(tests.size());

    Heatmap heatmap;
    heatmap.title = "needle recall (" + params_.get_string("needle") + " needles)";
    heatmap.row_axis = "length";
    heatmap.column_axis = "depth";
    for (auto length : lengths) heatmap.row_labels.push_back(std::to_string(length));
    for (auto depth : depths) heatmap.column_labels.push_back(std::to_string(depth).substr(0, 4));
    heatmap.values = grid;
    const auto label = params_.get_string("label").empty() ? params_.get_string("data") : params_.get_string("label");
    context.write_artifact("niah_" + label + ".svg", heatmap_svg(heatmap));
    context.summary.push_back("needle recall " + std::to_string(recall).substr(0, 5) + " over " +
                              std::to_string(tests.size()) + " tests (haystack: " + haystack + ")");
    return {{"recall", recall}, {"tests", tests.size()}, {"lengths", lengths}, {"depths", depths},
            {"recall_by_length_and_depth", grid}, {"haystack", haystack}, {"needle", params_.get_string("needle")}};
  }

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
      {"niah", ParamType::Bool, false, "also measure needle-in-a-haystack recall over a grid of lengths and depths", {}, {}, {}},
      {"niah_data", ParamType::String, std::string(""), "data entry for NIAH haystacks; default: calibration, then eval, else sampled text", {}, {}, {}},
  };
  for (auto& spec : needle_param_specs()) info.params.push_back(std::move(spec));
  info.check = [](const ParamValues& params, const Model& model, const std::string& where) {
    if (params.get_bool("niah")) needle_options(params, model, where);
  };
  info.create = [](const ParamValues& params) { return std::make_unique<EvalPass>(params); };
  return info;
}

}  // namespace lathe
