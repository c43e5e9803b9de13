#include "passes/head_importance_pass.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "core/head_annotations.h"
#include "core/model.h"
#include "datasets/data_sets.h"
#include "executor/executor.h"
#include "passes/pass_context.h"
#include "support/errors.h"
#include "support/number_text.h"
#include "support/progress.h"
#include "support/svg_heatmap.h"

namespace lathe {
namespace {

std::string data_entry(const PassContext& context, const std::string& requested) {
  return context.data.require_calibration_entry(requested, context.where, "head importance");
}

class HeadImportancePass : public Pass {
 public:
  explicit HeadImportancePass(const ParamValues& params) : params_(params) {}

  PreservedAnalyses run(Model& model, PassContext& context) override {
    const auto request = importance_request(params_, "method");
    auto scores = cached_head_importance(model, context, request);
    if (params_.get_bool("normalize")) normalize_per_layer(scores);
    set_head_scores(model, "importance", scores);

    struct Ranked {
      HeadId id;
      double score;
    };
    std::vector<Ranked> ranking;
    for (int layer = 0; layer < static_cast<int>(scores.size()); ++layer)
      for (int head = 0; head < static_cast<int>(scores[layer].size()); ++head) ranking.push_back({{layer, head}, scores[layer][head]});
    std::stable_sort(ranking.begin(), ranking.end(), [](const auto& a, const auto& b) { return a.score < b.score; });
    const auto count = std::min<std::size_t>(5, ranking.size());
    std::string least = "least important:", most = "most important:";
    for (std::size_t i = 0; i < count; ++i) {
      least += " " + ranking[i].id.str() + "=" + number_text(ranking[i].score);
      most += " " + ranking[ranking.size() - 1 - i].id.str() + "=" + number_text(ranking[ranking.size() - 1 - i].score);
    }
    context.summary = {params_.get_string("method") + (params_.get_bool("normalize") ? ", normalized per layer" : ""),
                       least, most};
    context.statistics = {{"method", params_.get_string("method")},
                          {"normalized", params_.get_bool("normalize")},
                          {"data", data_entry(context, request.data)},
                          {"scores", scores}};

    std::ostringstream csv;
    csv << "layer,head,importance\n";
    double high = 0;
    for (int layer = 0; layer < static_cast<int>(scores.size()); ++layer) {
      for (int head = 0; head < static_cast<int>(scores[layer].size()); ++head) {
        csv << layer << "," << head << "," << scores[layer][head] << "\n";
        high = std::max(high, scores[layer][head]);
      }
    }
    auto heatmap = head_heatmap("head importance (" + params_.get_string("method") + ")", scores);
    heatmap.high = high > 0 ? high : 1.0;
    context.write_artifact("head_importance.csv", csv.str());
    context.write_artifact("head_importance.svg", heatmap_svg(heatmap));
    return PreservedAnalyses::all();
  }

 private:
  ParamValues params_;
};

}  // namespace

ImportanceRequest importance_request(const ParamValues& params, const std::string& method_param) {
  ImportanceRequest request;
  request.method = parse_importance_method(params.get_string(method_param));
  request.data = params.get_string("data");
  request.max_tokens = params.get_int("max_tokens");
  request.seed = static_cast<std::uint64_t>(params.get_int("seed"));
  return request;
}

const HeadScores& cached_head_importance(const Model& model, PassContext& context, const ImportanceRequest& request) {
  const auto data = data_entry(context, request.data);
  const auto key = std::string("head-importance(") + importance_method_name(request.method) + "," + data + "," +
                   std::to_string(request.max_tokens) + "," + std::to_string(request.seed) + ")";
  return context.analyses.get<HeadScores>(key, [&] {
    Executor executor(model);
    std::vector<EvalBatch> batches;
    if (request.method != ImportanceMethod::Magnitude && request.method != ImportanceMethod::Random)
      batches = context.data.batches(data, context.where, 0, request.max_tokens);
    auto scores = head_importance(executor, batches, request.method, request.seed,
                                  [&](const std::string& line) { context.progress.update("head importance, " + line); });
    context.progress.finish();
    return scores;
  });
}

PassInfo head_importance_pass_info() {
  PassInfo info;
  info.name = "head-importance";
  info.kind = PassKind::Analysis;
  info.summary = "score every attention head: gradient of a gate on its output, loss increase without it, or attention entropy";
  info.params = {
      {"method", ParamType::String, std::string("gradient"), "gradient (Michel et al.), ablation, or entropy", {"gradient", "ablation", "entropy"}, {}, {}},
      {"data", ParamType::String, std::string(""), "data entry; default: calibration, then eval", {}, {}, {}},
      {"max_tokens", ParamType::Int, std::int64_t{8192}, "tokens of the data to use", {}, 1.0, {}},
      {"normalize", ParamType::Bool, true, "divide each layer's scores by their L2 norm", {}, {}, {}},
      {"seed", ParamType::Int, std::int64_t{0}, "seed (kept for reproducible caching keys)", {}, 0.0, {}},
  };
  // Gradients run backward through every layer at once; ablation and entropy stream layer by layer.
  info.whole_model_bytes = [](const ParamValues& params, const Model& model) {
    return params.get_string("method") == "gradient" ? model.float_bytes() : std::int64_t{0};
  };
  info.create = [](const ParamValues& params) { return std::make_unique<HeadImportancePass>(params); };
  return info;
}

}  // namespace lathe
