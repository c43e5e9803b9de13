// Outlier statistics (kurtosis and infinity norm per sample, channels beyond k standard
// deviations) on hand-made activations with known answers and on stories260K; the smooth
// transform computes the same logits as the original model (Llama with RMSNorm, GPT-2 with
// LayerNorm and biases) while flattening the channel ranges of the normalized inputs.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/model_loader.h"
#include "datasets/data_sets.h"
#include "executor/executor.h"
#include "executor/outlier_stats.h"
#include "onnx_runtime.h"
#include "passes/analysis_manager.h"
#include "passes/pass_context.h"
#include "passes/pass_registry.h"
#include "pipeline/pipeline.h"
#include "pipeline/recipe.h"
#include "support/errors.h"
#include "support/progress.h"
#include "test_paths.h"

namespace lathe {
namespace {

using testing::shared_path;

// Two samples of 3 positions x 2 channels; the last position of each is padding (with a NaN).
//   sample 0: 1 -1 1 -1           mean 0, m2 1, m4 1          kurtosis 1,   inf-norm 1
//   sample 1: 0  0 0  4           mean 1, m2 3, m4 21         kurtosis 7/3, inf-norm 4
at::Tensor hand_made_activation() {
  const double nan = std::nan("");
  return at::tensor({1.0, -1.0, 1.0, -1.0, 100.0, nan, 0.0, 0.0, 0.0, 4.0, -50.0, 7.0}, at::kFloat).view({2, 3, 2});
}
at::Tensor hand_made_mask() { return at::tensor({1, 1, 0, 1, 1, 0}, at::kInt).view({2, 3}).to(at::kBool); }

TEST(OutlierStats, KurtosisAndInfNormOfAHandMadeActivation) {
  const auto metrics = sample_metrics(hand_made_activation(), hand_made_mask());
  ASSERT_EQ(metrics.inf_norms.size(), 2u);
  EXPECT_DOUBLE_EQ(metrics.inf_norms[0], 1.0);
  EXPECT_DOUBLE_EQ(metrics.inf_norms[1], 4.0);
  EXPECT_NEAR(metrics.kurtosis[0], 1.0, 1e-12);
  EXPECT_NEAR(metrics.kurtosis[1], 7.0 / 3.0, 1e-12);

  ActivationStatistics statistics;
  statistics.add(hand_made_activation(), hand_made_mask());
  EXPECT_EQ(statistics.samples(), 2);
  EXPECT_EQ(statistics.tokens(), 4);
  EXPECT_DOUBLE_EQ(statistics.mean_inf_norm(), 2.5);
  EXPECT_DOUBLE_EQ(statistics.max_inf_norm(), 4.0);
  EXPECT_NEAR(statistics.mean_kurtosis(), (1.0 + 7.0 / 3.0) / 2, 1e-12);
  EXPECT_NEAR(statistics.max_kurtosis(), 7.0 / 3.0, 1e-12);
  // All eight valid values: mean 0.5, variance 20/8 - 0.25 = 2.25.
  EXPECT_DOUBLE_EQ(statistics.mean(), 0.5);
  EXPECT_NEAR(statistics.standard_deviation(), 1.5, 1e-12);
  EXPECT_EQ(statistics.channel_min(), (std::vector<double>{0.0, -1.0}));
  EXPECT_EQ(statistics.channel_max(), (std::vector<double>{1.0, 4.0}));
  EXPECT_EQ(statistics.channel_abs_max(), (std::vector<double>{1.0, 4.0}));
  // Channel 1 reaches 4, 3.5 from the mean: beyond 2 std (3.0), not beyond 6 (9.0). The padding's
  // 100 and NaN never count.
  EXPECT_EQ(statistics.outlier_channels(2.0), (std::vector<std::int64_t>{1}));
  EXPECT_TRUE(statistics.outlier_channels(6.0).empty());
}

TEST(OutlierStats, BatchByBatchEqualsAllAtOnceAndConstantSamplesHaveNoKurtosis) {
  ActivationStatistics whole, pieces;
  whole.add(hand_made_activation(), hand_made_mask());
  pieces.add(hand_made_activation().narrow(0, 0, 1), hand_made_mask().narrow(0, 0, 1));
  pieces.add(hand_made_activation().narrow(0, 1, 1), hand_made_mask().narrow(0, 1, 1));
  EXPECT_NEAR(pieces.mean(), whole.mean(), 1e-12);
  EXPECT_NEAR(pieces.standard_deviation(), whole.standard_deviation(), 1e-12);
  EXPECT_EQ(pieces.channel_min(), whole.channel_min());
  EXPECT_EQ(pieces.channel_max(), whole.channel_max());
  EXPECT_DOUBLE_EQ(pieces.mean_kurtosis(), whole.mean_kurtosis());

  // A constant sample has no kurtosis and does not enter the mean; an all-padding one is no sample.
  auto constant = at::full({3, 4, 5}, 2.0);
  auto mask = at::ones({3, 4}, at::kBool);
  mask[2].fill_(false);
  constant[1][0][0] = -2.0;  // sample 1: one value apart
  const auto metrics = sample_metrics(constant, mask);
  ASSERT_EQ(metrics.kurtosis.size(), 2u);
  EXPECT_TRUE(std::isnan(metrics.kurtosis[0]));
  // One value in 20 apart: a two-point distribution with p = 1/20, kurtosis (1 - 3pq) / pq.
  const double pq = 0.05 * 0.95;
  EXPECT_NEAR(metrics.kurtosis[1], (1 - 3 * pq) / pq, 1e-9);
  ActivationStatistics statistics;
  statistics.add(constant, mask);
  EXPECT_EQ(statistics.samples(), 2);
  EXPECT_DOUBLE_EQ(statistics.mean_kurtosis(), metrics.kurtosis[1]);
}

TEST(OutlierStats, GaussianActivationsHaveKurtosisThree) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(7);
  auto activation = at::randn({4, 256, 64}, generator);
  ActivationStatistics statistics;
  statistics.add(activation, at::Tensor());
  EXPECT_NEAR(statistics.mean_kurtosis(), 3.0, 0.1);
  EXPECT_NEAR(statistics.standard_deviation(), 1.0, 0.02);
  EXPECT_TRUE(statistics.outlier_channels(6.0).empty());
}

const std::string kStoriesData = "data:\n  eval: {tokens: " +
                                 shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
                                 ", max_tokens: 2048}\n";
const std::string kStories = "model: " + shared_path("models/stories260K/hf").string() + "\n" + kStoriesData;
const std::string kMakemore = "model: " + shared_path("models/makemore-names-gpt/hf").string() + "\ndata:\n  eval: {text: " +
                              shared_path("data/makemore-names/test.txt").string() + ", split: lines}\n";

RunResult run_text(const std::string& text, const std::filesystem::path& artifacts = {}) {
  Progress quiet(ProgressStyle::None);
  RunOptions options;
  options.artifacts_dir = artifacts;
  return run_recipe(parse_recipe(text, "outliers.yaml"), options, quiet);
}

TEST(OutlierStats, Stories260KHasFiniteMetricsForEveryLayerAndSite) {
  at::set_num_threads(1);
  testing::TemporaryFolder folder;
  const auto result = run_text(kStories + "passes:\n  - outlier-stats: {max_tokens: 2048}\n", folder.path());
  ASSERT_EQ(result.exit_code, 0);
  const auto& pass = result.report["passes"][0];
  EXPECT_EQ(pass["kind"], "analysis");
  const auto& stats = pass["statistics"];
  ASSERT_EQ(stats["layers"].size(), 5u);
  for (const auto& layer : stats["layers"])
    for (const char* site : {"attention_output", "mlp_output"}) {
      const auto& entry = layer[site];
      ASSERT_TRUE(entry.is_object()) << layer["layer"] << " " << site;
      for (const char* metric : {"mean_inf_norm", "max_inf_norm", "mean_kurtosis", "max_kurtosis", "std"}) {
        ASSERT_TRUE(entry[metric].is_number()) << layer["layer"] << " " << site << " " << metric;
        EXPECT_TRUE(std::isfinite(entry[metric].get<double>()));
      }
      EXPECT_GT(entry["mean_inf_norm"].get<double>(), 0.0);
      EXPECT_GE(entry["mean_kurtosis"].get<double>(), 1.0);  // Pearson kurtosis is never below 1
      EXPECT_EQ(entry["outlier_channel_count"].get<std::size_t>(), entry["outlier_channels"].size());
      EXPECT_EQ(entry["samples"], 4);  // 2048 tokens in windows of 512
    }
  for (const char* site : {"attention_output", "mlp_output"}) {
    const auto& over = stats["over_layers"][site];
    EXPECT_LE(over["mean_kurtosis"].get<double>(), over["max_kurtosis"].get<double>());
    EXPECT_GE(over["worst_kurtosis_layer"].get<int>(), 0);
  }
  EXPECT_GE(pass["summary"].size(), 3u);
  const auto csv = testing::read_text(folder / "outlier_stats.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 11);
  EXPECT_NE(testing::read_text(folder / "outlier_stats.svg").find("</svg>"), std::string::npos);
}

// The smooth pass run directly on `original` with the recipe's data.
Model smoothed(const Model& original, const std::string& recipe_text, nlohmann::json* statistics = nullptr) {
  const auto recipe = parse_recipe(recipe_text, "smooth.yaml");
  DataSets data(recipe.data, original);
  AnalysisManager analyses;
  Progress quiet(ProgressStyle::None);
  PassContext context(original, data, analyses, quiet);
  context.where = recipe.passes.at(0).where;
  Model model = original.clone();
  const auto preserved = find_pass("smooth")->create(recipe.passes.at(0).params)->run(model, context);
  EXPECT_FALSE(preserved.preserves_all());
  if (statistics != nullptr) *statistics = context.statistics;
  return model;
}

// Copies of every tensor, to see that no pass wrote into the loaded ones.
std::map<std::string, at::Tensor> snapshot(const Model& model) {
  std::map<std::string, at::Tensor> copies;
  for (const auto& [name, tensor] : model.tensors) copies[name] = tensor.clone();
  return copies;
}

bool unchanged(const Model& model, const std::map<std::string, at::Tensor>& copies) {
  for (const auto& [name, tensor] : model.tensors)
    if (!at::equal(tensor, copies.at(name))) return false;
  return true;
}

double max_difference(const Model& a, const Model& b, const at::Tensor& ids) {
  return (Executor(a).forward(ids).to(at::kDouble) - Executor(b).forward(ids).to(at::kDouble)).abs().max().item<double>();
}

// Smoothing changes no logit beyond rounding. The float forward itself carries rounding of
// about 2e-5 on stories260K's logits (float against double arithmetic), so the transform's own
// error is measured with the smoothed float weights run in double; with power-of-two scales
// the float model computes bit for bit what the original computes.
void expect_same_logits(const std::string& recipe_text, const char* label) {
  at::set_num_threads(1);
  at::NoGradGuard no_grad;
  const auto recipe = parse_recipe(recipe_text + "passes:\n  - smooth: {max_tokens: 2048}\n", "smooth.yaml");
  const Model original = load_model(model_location(recipe.model));
  const auto before = snapshot(original);
  nlohmann::json statistics, statistics_pow2;
  const Model model = smoothed(original, recipe_text + "passes:\n  - smooth: {max_tokens: 2048}\n", &statistics);
  const Model model_pow2 =
      smoothed(original, recipe_text + "passes:\n  - smooth: {max_tokens: 2048, power_of_two: true}\n", &statistics_pow2);
  EXPECT_TRUE(unchanged(original, before)) << label << ": the loaded tensors were written into";
  EXPECT_GT(statistics["max_scale"].get<double>(), 1.2 * statistics["min_scale"].get<double>())
      << label << ": the scales migrate nothing";
  const Model original_double = with_float64_values(original), model_double = with_float64_values(model);
  for (std::uint64_t seed : {1, 2}) {
    const auto ids = testing::random_ids(original.config.vocab, 3, std::min<std::int64_t>(original.config.max_positions, 128), seed);
    const double floor = max_difference(original, original_double, ids);
    const double transform = max_difference(model_double, original_double, ids);
    const double in_float = max_difference(model, original, ids);
    const double pow2 = max_difference(model_pow2, original, ids);
    EXPECT_LE(transform, 1e-5) << label << " seed " << seed << " (smoothed weights, double arithmetic)";
    EXPECT_LE(in_float, 5e-5) << label << " seed " << seed << " (float)";
    EXPECT_LE(pow2, 1e-5) << label << " seed " << seed << " (float, power-of-two scales)";
    EXPECT_EQ(pow2, 0.0) << label << " seed " << seed << " (power-of-two scales are exact)";
    std::printf(
        "[ smooth   ] %s seed %d: max |logit difference| float %.3g, smoothed weights in double %.3g, power-of-two "
        "scales %.3g; float forward vs double %.3g; scales %.4g .. %.4g\n",
        label, static_cast<int>(seed), in_float, transform, pow2, floor, statistics["min_scale"].get<double>(),
        statistics["max_scale"].get<double>());
  }
}

TEST(Smooth, Stories260KLogitsStayTheSame) { expect_same_logits(kStories, "stories260K"); }

TEST(Smooth, MakemoreWithLayerNormBiasLogitsStayTheSame) { expect_same_logits(kMakemore, "makemore-names-gpt"); }

// max over channels of max|X_j| divided by the mean of those maxima, per layer.
std::vector<double> channel_peak_to_mean(const Model& model, const std::vector<EvalBatch>& batches, ActivationSite site) {
  const auto statistics = gather_activation_statistics(Executor(model), batches, {site});
  std::vector<double> ratios;
  for (const auto& layer : statistics) {
    auto maxima = layer.at(site).channel_abs_max();
    double sum = 0, peak = 0;
    for (double value : maxima) {
      sum += value;
      peak = std::max(peak, value);
    }
    ratios.push_back(peak * maxima.size() / sum);
  }
  return ratios;
}

TEST(Smooth, MigratesScaleOutOfTheAttentionInput) {
  at::set_num_threads(1);
  for (const auto* text : {&kStories, &kMakemore}) {
    const auto recipe_text = *text + "passes:\n  - smooth: {max_tokens: 2048}\n";
    const auto recipe = parse_recipe(recipe_text, "smooth.yaml");
    const Model original = load_model(model_location(recipe.model));
    nlohmann::json statistics;
    const Model model = smoothed(original, recipe_text, &statistics);
    DataSets data(recipe.data, original);
    const auto batches = data.batches("eval", {}, 0, 2048);
    const auto before = channel_peak_to_mean(original, batches, ActivationSite::AttentionInput);
    const auto after = channel_peak_to_mean(model, batches, ActivationSite::AttentionInput);
    double mean_before = 0, mean_after = 0;
    for (std::size_t layer = 0; layer < before.size(); ++layer) {
      mean_before += before[layer] / before.size();
      mean_after += after[layer] / after.size();
      // The pass predicts the smoothed ranges from the statistics it measured.
      const auto& entry = statistics["layers"][layer]["attention_input"];
      EXPECT_NEAR(entry["channel_peak_to_mean_before"].get<double>(), before[layer], 1e-6 * before[layer]);
      EXPECT_NEAR(entry["channel_peak_to_mean_after"].get<double>(), after[layer], 1e-4 * after[layer]);
    }
    EXPECT_LT(mean_after, 0.95 * mean_before) << recipe.model.path;
    std::printf("[ smooth   ] %s: attention input channel peak/mean %.3f -> %.3f (mean over layers)\n",
                recipe.model.path.string().c_str(), mean_before, mean_after);
  }
}

TEST(Smooth, ThroughThePipelineKeepsTheModelAndSharesTheStatistics) {
  at::set_num_threads(1);
  const auto result = run_text(kStories +
                               "passes:\n  - outlier-stats: {max_tokens: 2048}\n  - smooth: {max_tokens: 2048}\n"
                               "  - outlier-stats: {max_tokens: 2048}\n  - eval: {kl: true}\n");
  ASSERT_EQ(result.exit_code, 0);
  const auto& report = result.report;
  EXPECT_EQ(report["passes"][1]["kind"], "transform");
  EXPECT_EQ(report["analyses"]["computed"], 2);  // smooth reused the first; the second came after the change
  EXPECT_EQ(report["analyses"]["reused"], 1);
  const auto& metrics = report["metrics"].begin().value();
  EXPECT_LT(metrics["kl"].get<double>(), 1e-9);
  EXPECT_DOUBLE_EQ(metrics["top1_agreement"].get<double>(), 1.0);
  // The outputs of the sublayers are what they were: smoothing moves scale inside them.
  const auto& first = report["passes"][0]["statistics"]["layers"], &second = report["passes"][2]["statistics"]["layers"];
  for (std::size_t layer = 0; layer < 5; ++layer)
    EXPECT_NEAR(second[layer]["attention_output"]["mean_kurtosis"].get<double>(),
                first[layer]["attention_output"]["mean_kurtosis"].get<double>(),
                1e-3 * first[layer]["attention_output"]["mean_kurtosis"].get<double>());
}

TEST(Smooth, AlphaIsCheckedAgainstItsBounds) {
  EXPECT_THROW(parse_recipe(kStories + "passes:\n  - smooth: {alpha: 1.5}\n", "smooth.yaml"), InputError);
}

}  // namespace
}  // namespace lathe

