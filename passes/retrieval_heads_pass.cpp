#include "passes/retrieval_heads_pass.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <sstream>

#include "core/head_annotations.h"
#include "core/model.h"
#include "executor/executor.h"
#include "executor/needle_haystack.h"
#include "passes/needle_setup.h"
#include "passes/pass_context.h"
#include "support/number_text.h"
#include "support/progress.h"
#include "support/svg_heatmap.h"

namespace lathe {
namespace {

double mean(const std::vector<double>& values) {
  return values.empty() ? 0.0 : std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

struct ScoredHead {
  HeadId id;
  double score;
};

class RetrievalHeadsPass : public Pass {
 public:
  explicit RetrievalHeadsPass(const ParamValues& params) : params_(params) {}

  PreservedAnalyses run(Model& model, PassContext& context) override {
    const auto origin = context.where.str();
    auto options = needle_options(params_, model, origin);
    options.insert_needle = params_.get_bool("insert_needle");
    const auto decoding =
        params_.get_string("mode") == "teacher-forced" ? NeedleDecoding::TeacherForced : NeedleDecoding::Greedy;
    Executor executor(model);
    std::string haystack_source;
    const auto tests = needle_tests(context, executor, params_.get_string("data"), options, &haystack_source);
    const auto results =
        run_needle_tests(executor, tests, decoding, nullptr, /*score_heads=*/true,
                         needle_run_options(context, model, "retrieval-heads: " + std::to_string(tests.size()) + " needle tests"));
    context.progress.finish();

    // Score of a head in one test: needle tokens it copied / needle length; the mean over the
    // tests that count (greedy: those the model answered, recall > 0.5; teacher-forced: all).
    std::vector<std::size_t> counted;
    for (std::size_t i = 0; i < tests.size(); ++i)
      if (decoding == NeedleDecoding::TeacherForced || results.recall[i] > 0.5) counted.push_back(i);
    std::vector<std::vector<double>> scores(model.layers.size());
    std::vector<ScoredHead> ranking;
    for (int layer = 0; layer < model.layer_count(); ++layer) {
      scores[layer].assign(model.layers[layer].query_heads, 0.0);
      for (int head = 0; head < model.layers[layer].query_heads; ++head) {
        double sum = 0;
        for (auto i : counted)
          sum += results.copies[i][layer][head].item<double>() / static_cast<double>(tests[i].needle.size());
        scores[layer][head] = counted.empty() ? 0.0 : sum / static_cast<double>(counted.size());
        ranking.push_back({{layer, head}, scores[layer][head]});
      }
    }
    std::stable_sort(ranking.begin(), ranking.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
    const auto threshold = params_.get_float("threshold");
    const auto top_k = static_cast<std::size_t>(params_.get_int("top_k"));
    std::vector<HeadId> retrieval;
    for (std::size_t i = 0; i < ranking.size(); ++i)
      if (ranking[i].score >= threshold || i < top_k) retrieval.push_back(ranking[i].id);

    std::sort(retrieval.begin(), retrieval.end());
    set_head_scores(model, "retrieval", scores);
    set_head_role(model, "retrieval", retrieval);
    const auto& protect = params_.get_heads("protect");
    if (!protect.empty()) protect_heads(model, resolve_heads(model, protect.roles, protect.heads, origin, "protect"));

    const auto zero_heads = std::count_if(ranking.begin(), ranking.end(), [](const auto& h) { return h.score == 0.0; });
    auto& stats = context.statistics;
    stats["mode"] = params_.get_string("mode");
    stats["haystack"] = haystack_source;
    stats["needle"] = params_.get_string("needle");
    stats["needle_in_haystack"] = options.insert_needle;
    stats["tests"] = tests.size();
    stats["tests_counted"] = counted.size();
    stats["needle_recall"] = mean(results.recall);
    stats["threshold"] = threshold;
    stats["scores"] = scores;
    stats["retrieval_heads"] = nlohmann::json::array();
    for (const auto& head : retrieval) stats["retrieval_heads"].push_back(head.str());
    stats["share_above_threshold"] = static_cast<double>(retrieval.size()) / static_cast<double>(ranking.size());
    stats["share_zero"] = static_cast<double>(zero_heads) / static_cast<double>(ranking.size());
    stats["protected"] = nlohmann::json::array();
    for (const auto& head : protected_heads(model)) stats["protected"].push_back(head.str());

    context.summary.push_back(std::to_string(retrieval.size()) + " of " + std::to_string(ranking.size()) +
                              " heads score >= " + number_text(threshold, "%.2f") + " (" + stats["mode"].get<std::string>() +
                              ", " + std::to_string(counted.size()) + "/" + std::to_string(tests.size()) +
                              " tests counted, needle recall " + number_text(mean(results.recall), "%.3f") + ")");
    std::string top = "top heads:";
    for (std::size_t i = 0; i < std::min<std::size_t>(8, ranking.size()); ++i)
      top += " " + ranking[i].id.str() + "=" + number_text(ranking[i].score, "%.3f");
    context.summary.push_back(top);

    write_tables(model, scores, retrieval, context);
    if (params_.get_bool("ablation")) measure_removal(executor, model, tests, decoding, ranking, retrieval, context);
    return PreservedAnalyses::all();
  }

 private:
  void write_tables(const Model& model, const std::vector<std::vector<double>>& scores,
                    const std::vector<HeadId>& retrieval, PassContext& context) const {
    std::ostringstream csv;
    csv << "layer,head,retrieval_score,retrieval_head\n";
    for (int layer = 0; layer < model.layer_count(); ++layer) {
      for (int head = 0; head < static_cast<int>(scores[layer].size()); ++head) {
        const bool marked = std::find(retrieval.begin(), retrieval.end(), HeadId{layer, head}) != retrieval.end();
        csv << layer << "," << head << "," << number_text(scores[layer][head], "%.6f") << "," << (marked ? 1 : 0) << "\n";
      }
    }
    context.write_artifact("retrieval_scores.csv", csv.str());
    context.write_artifact("retrieval_heads.svg",
                           heatmap_svg(head_heatmap("retrieval scores (" + params_.get_string("mode") + ")", scores)));
  }

  // NIAH recall with the top-k retrieval heads removed, against k random heads that are not
  // retrieval heads (mean over seeds). Removal cuts the head's output (gate 0). Recall is
  // measured the way the scores were: greedy (ROUGE-1 recall of the continuation) or
  // teacher-forced (share of needle tokens predicted).
  void measure_removal(const Executor& executor, const Model& model, const std::vector<NeedleTest>& tests,
                       NeedleDecoding decoding, const std::vector<ScoredHead>& ranking,
                       const std::vector<HeadId>& retrieval, PassContext& context) const {
    auto run_options = needle_run_options(context, model, "retrieval-heads: removal");
    run_options.on_layer_pass = nullptr;  // the lines below say which removal runs
    auto recall_without = [&](const std::vector<HeadId>& removed) {
      ForwardHooks hooks;
      for (const auto& layer : model.layers) hooks.head_gates.push_back(at::ones({layer.query_heads}));
      for (const auto& head : removed) hooks.head_gates[head.layer][head.head] = 0.0;
      return mean(run_needle_tests(executor, tests, decoding, &hooks, false, run_options).recall);
    };
    const double baseline = recall_without({});
    std::vector<HeadId> others;
    for (const auto& head : ranking)
      if (std::find(retrieval.begin(), retrieval.end(), head.id) == retrieval.end()) others.push_back(head.id);
    const auto seeds = params_.get_int("ablation_seeds");
    auto table = nlohmann::json::array();
    std::string line = "removal (NIAH recall " + number_text(baseline, "%.3f") + "):";
    for (std::size_t k : {1u, 2u, 4u, 8u}) {
      if (k > ranking.size()) break;
      std::vector<HeadId> top;
      for (std::size_t i = 0; i < k; ++i) top.push_back(ranking[i].id);
      context.progress.heartbeat("retrieval-heads: removing the top " + std::to_string(k));
      const double top_recall = recall_without(top);
      std::vector<double> random_recalls;
      if (others.size() >= k)
        for (std::int64_t seed = 0; seed < seeds; ++seed) {
          auto pool = others;
          std::mt19937_64 random(static_cast<std::uint64_t>(params_.get_int("seed") * 1000 + seed));
          std::shuffle(pool.begin(), pool.end(), random);
          pool.resize(k);
          random_recalls.push_back(recall_without(pool));
        }
      nlohmann::json row = {{"k", k}, {"top_recall", top_recall}, {"top_drop", baseline - top_recall}};
      if (!random_recalls.empty()) {
        row["random_recalls"] = random_recalls;
        row["random_recall"] = mean(random_recalls);
        row["random_drop"] = baseline - mean(random_recalls);
      }
      line += " top-" + std::to_string(k) + " " + number_text(top_recall, "%.3f") +
              (random_recalls.empty() ? "" : " vs random " + number_text(mean(random_recalls), "%.3f"));
      table.push_back(row);
    }
    context.progress.finish();
    context.statistics["removal"] = {{"recall", params_.get_string("mode")},
                                     {"baseline_recall", baseline},
                                     {"seeds", seeds},
                                     {"by_k", table}};
    context.summary.push_back(line);
  }

  ParamValues params_;
};

}  // namespace

PassInfo retrieval_heads_pass_info() {
  PassInfo info;
  info.name = "retrieval-heads";
  info.kind = PassKind::Analysis;
  info.summary = "score heads by the copy-paste rule on needle-in-a-haystack tests and mark the retrieval heads";
  info.params = {
      {"data", ParamType::String, std::string(""), "data entry for haystacks; default: calibration, then eval, else text the model samples", {}, {}, {}},
      {"mode", ParamType::String, std::string("greedy"), "greedy: count the tests the model answers (recall > 0.5); teacher-forced: feed the needle, count every test", {"greedy", "teacher-forced"}, {}, {}},
      {"threshold", ParamType::Float, 0.1, "heads with a mean score at least this are retrieval heads", {}, 0.0, 1.0},
      {"top_k", ParamType::Int, std::int64_t{0}, "also mark the k best heads as retrieval heads", {}, 0.0, {}},
      {"insert_needle", ParamType::Bool, true, "false: a control run with the needle left out of the haystack", {}, {}, {}},
      {"protect", ParamType::HeadList, HeadList{}, "heads no later transform removes: retrieval (the heads this pass finds) and heads like 1.0, 1.3", {"retrieval"}, {}, {}},
      {"ablation", ParamType::Bool, false, "measure NIAH recall with the top 1, 2, 4, 8 heads removed vs random non-retrieval heads", {}, {}, {}},
      {"ablation_seeds", ParamType::Int, std::int64_t{5}, "random removals to average per k", {}, 1.0, 100.0},
  };
  for (auto& spec : needle_param_specs()) info.params.push_back(std::move(spec));
  info.check = [](const ParamValues& params, const Model& model, const std::string& where) {
    needle_options(params, model, where);
    check_heads_exist(model, params.get_heads("protect").heads, where, "protect");
  };
  info.plan = [](PlannedModel& planned, const ParamValues&, const std::string& where) {
    planned.head_roles["retrieval"] = "retrieval-heads at " + where;
  };
  info.create = [](const ParamValues& params) { return std::make_unique<RetrievalHeadsPass>(params); };
  return info;
}

}  // namespace lathe
