// VIB-mask pruning: a model cut to a selection computes what the deterministically masked model
// computes (executor in float64, ONNX Runtime), with every structure cut at once, on a GQA
// Llama and on GPT-2 (biases, LayerNorm, learned positions, tied head); cut models round-trip
// through safetensors; vib-prune meets its size target as closely as its units allow, keeps
// protected heads and refuses a target it cannot meet; the masks train toward the target and,
// with weights frozen, change no weight.

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/head_annotations.h"
#include "core/model_loader.h"
#include "datasets/data_sets.h"
#include "executor/executor.h"
#include "executor/vib_training.h"
#include "onnx_runtime.h"
#include "passes/vib_cut.h"
#include "passes/vib_selection.h"
#include "pipeline/pipeline.h"
#include "pipeline/recipe.h"
#include "support/errors.h"
#include "support/progress.h"
#include "test_paths.h"
#include "writers/onnx_writer.h"
#include "writers/safetensors_model_writer.h"

namespace lathe {
namespace {

using testing::shared_path;

// Masks whose mu are spread over [0.5, 1.5], so that folding them in is tested, not assumed.
VibMasks spread_masks(const Model& model, std::uint64_t seed) {
  auto masks = make_vib_masks(model, {}, seed);
  at::NoGradGuard no_grad;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed + 1);
  for (auto& parameter : masks.parameters())
    if (parameter.mean().item<double>() > 0) parameter.uniform_(0.5, 1.5, generator);
  return masks;
}

// Everything kept.
VibKeep keep_all(const Model& model) {
  VibKeep keep;
  keep.hidden.assign(model.config.hidden, true);
  for (const auto& layer : model.layers)
    keep.layers.push_back({std::vector<bool>(layer.query_heads, true), std::vector<bool>(layer.kv_heads, true),
                           std::vector<bool>(layer.ffn_width, true), layer.has_attention(), layer.ffn_width > 0});
  return keep;
}

// Drops every `step`-th unit starting at `first`.
void drop_every(std::vector<bool>& flags, std::size_t first, std::size_t step) {
  for (std::size_t i = first; i < flags.size(); i += step) flags[i] = false;
}

// Heads, a kv group (or, without GQA, all heads of one layer), FFN neurons, one attention block,
// one MLP block and hidden dimensions, all at once.
VibKeep cut_everything(const Model& model) {
  auto keep = keep_all(model);
  drop_every(keep.hidden, 1, 5);
  drop_every(keep.layers[0].heads, 1, 3);
  drop_every(keep.layers[0].ffn, 0, 4);
  drop_every(keep.layers[1].ffn, 2, 3);
  auto& grouped = keep.layers[2];
  // A removed kv head takes its query heads with it.
  grouped.groups[0] = false;
  for (std::int64_t h = 0; h < model.layers[2].query_heads; ++h)
    if (model.layers[2].kv_head_of(h) == 0) grouped.heads[h] = false;
  keep.layers[1].attention = false;
  std::fill(keep.layers[1].heads.begin(), keep.layers[1].heads.end(), false);
  std::fill(keep.layers[1].groups.begin(), keep.layers[1].groups.end(), false);
  keep.layers[3].mlp = false;
  std::fill(keep.layers[3].ffn.begin(), keep.layers[3].ffn.end(), false);
  return keep;
}

double relative_difference(const at::Tensor& actual, const at::Tensor& expected) {
  return (actual - expected).abs().max().item<double>() / expected.abs().max().item<double>();
}

class VibPrune : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }

  void expect_cut_equals_masked(const char* path) {
    testing::TemporaryFolder folder;
    at::NoGradGuard no_grad;
    const auto original = load_model({shared_path(path)});
    const auto masks = spread_masks(original, 3);
    const auto keep = cut_everything(original);
    const auto ids = testing::random_ids(original.config.vocab, 2, std::min<std::int64_t>(24, original.config.max_positions), 17);

    const auto hooks = vib_deterministic_hooks(original, masks, keep);
    const auto reference = with_float64_values(original);
    const auto masked = Executor(reference).forward(ids, &hooks);
    auto cut_double = with_float64_values(original);
    cut_to_selection(cut_double, masks, keep);
    const auto from_cut = Executor(cut_double).forward(ids);
    EXPECT_LE(relative_difference(from_cut, masked), 1e-5) << path << " (executor, float64)";

    Model cut = original.clone();
    cut_to_selection(cut, masks, keep);
    validate_model(cut, path);
    EXPECT_EQ(cut.config.hidden, std::count(keep.hidden.begin(), keep.hidden.end(), true)) << path;
    EXPECT_FALSE(cut.layers[1].has_attention()) << path;
    EXPECT_EQ(cut.layers[3].ffn_width, 0) << path;
    EXPECT_EQ(cut.layers[2].kv_heads, original.layers[2].kv_heads - 1) << path;
    EXPECT_EQ(cut.decoder_parameter_count(), counted_parameters(original, keep, false)) << path;
    EXPECT_EQ(cut.parameter_count(), counted_parameters(original, keep, true)) << path;
    const auto from_float = Executor(cut).forward(ids);
    EXPECT_LE(relative_difference(from_float, masked.to(at::kFloat)), 1e-4) << path << " (executor, float32)";

    write_onnx(cut, folder / "cut.onnx");
    const auto from_onnx = testing::run_in_onnx_runtime(folder / "cut.onnx", ids, original.config.vocab, folder);
    ASSERT_TRUE(from_onnx.defined());
    EXPECT_LE(relative_difference(from_onnx, from_float), 1e-5) << path << " (ONNX Runtime vs executor)";

    write_safetensors_model(cut, folder / "cut");
    const auto reloaded = load_model({folder / "cut"});
    EXPECT_EQ(reloaded.layers, cut.layers) << path;
    EXPECT_EQ(reloaded.config.hidden, cut.config.hidden) << path;
    EXPECT_EQ(reloaded.config.head_dim, cut.config.head_dim) << path;
    EXPECT_EQ(reloaded.parameter_count(), cut.parameter_count()) << path;
    EXPECT_TRUE(at::equal(Executor(reloaded).forward(ids), from_float)) << path << " (safetensors round trip)";
  }
};

TEST_F(VibPrune, Stories260KCutEqualsTheMaskedModel) { expect_cut_equals_masked("models/stories260K/hf"); }

TEST_F(VibPrune, MakemoreCutEqualsTheMaskedModel) { expect_cut_equals_masked("models/makemore-names-gpt/hf"); }

TEST_F(VibPrune, TheMaskedModelWithEverythingKeptAtOneIsTheModel) {
  at::NoGradGuard no_grad;
  for (const char* path : {"models/stories260K/hf", "models/makemore-names-gpt/hf"}) {
    const auto model = with_float64_values(load_model({shared_path(path)}));
    auto masks = make_vib_masks(model, {}, 0);
    for (auto& parameter : masks.parameters())
      if (parameter.mean().item<double>() > 0) parameter.fill_(1.0);
    const auto hooks = vib_deterministic_hooks(model, masks, keep_all(model));
    const auto ids = testing::random_ids(model.config.vocab, 2, 16, 4);
    EXPECT_LE(relative_difference(Executor(model).forward(ids, &hooks), Executor(model).forward(ids)), 1e-12) << path;
  }
}

const std::string kData = shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string();

struct PruneRun {
  nlohmann::json statistics;
  Model model;
};

PruneRun run_vib(const std::string& params, const std::string& before = "", const std::string& outputs = "") {
  const auto text = "model: " + shared_path("models/stories260K/hf").string() + "\ndata:\n  calibration: {tokens: " + kData +
                    ", seq_len: 64, batch_size: 2, max_tokens: 2048}\npasses:\n" + before + "  - vib-prune: " + params +
                    "\n" + outputs;
  PruneRun result;
  Progress quiet(ProgressStyle::None);
  const auto report = run_recipe(parse_recipe(text, "vib.yaml"), RunOptions{}, quiet, &result.model).report;
  const auto& passes = report["passes"];
  result.statistics = passes[passes.size() - 1]["statistics"];
  EXPECT_EQ(result.statistics["parameters_after"], result.model.parameter_count()) << params;
  EXPECT_EQ(result.statistics["counted_after"], result.statistics["include_embeddings"].get<bool>()
                                                   ? result.model.parameter_count()
                                                   : result.model.decoder_parameter_count())
      << params;
  return result;
}

// The cheapest unit at the cut model's hidden size: one FFN neuron (gate, up, down) or, when
// that is dearer, one hidden dimension of what is left.
std::int64_t smallest_unit(const Model& model) { return 3 * model.config.hidden; }

TEST_F(VibPrune, TheTargetIsMetAsCloselyAsTheUnitsAllow) {
  const auto original = load_model({shared_path("models/stories260K/hf")});
  const auto decoder = original.decoder_parameter_count();
  for (double keep : {0.7, 0.5, 0.3}) {
    const auto target = std::llround(keep * static_cast<double>(decoder));
    const auto run = run_vib("{keep: " + std::to_string(keep) + ", steps: 10}");
    EXPECT_EQ(run.statistics["target"], target);
    EXPECT_LE(run.model.decoder_parameter_count(), target) << keep;
    EXPECT_GT(run.model.decoder_parameter_count(), target - smallest_unit(run.model)) << keep;
  }
  const auto budget = run_vib("{budget: 150000, steps: 10}");
  EXPECT_LE(budget.model.decoder_parameter_count(), 150000);
  EXPECT_GT(budget.model.decoder_parameter_count(), 150000 - smallest_unit(budget.model));

  // Widths in multiples of 8 (stories260K's FFN of 172 may stay whole).
  const auto rounded = run_vib("{keep: 0.5, multiple_of: 8, steps: 10}");
  EXPECT_EQ(rounded.model.config.hidden % 8, 0);
  for (const auto& layer : rounded.model.layers) EXPECT_TRUE(layer.ffn_width % 8 == 0 || layer.ffn_width == 172);
  EXPECT_LE(rounded.model.decoder_parameter_count(), std::llround(0.5 * static_cast<double>(decoder)));

  // Counting the embeddings too.
  const auto whole = run_vib("{keep: 0.6, include_embeddings: true, steps: 10}");
  EXPECT_LE(whole.model.parameter_count(), std::llround(0.6 * static_cast<double>(original.parameter_count())));
  EXPECT_EQ(whole.statistics["counted_after"], whole.model.parameter_count());
}

TEST_F(VibPrune, TheWrittenModelHoldsWhatTheReportCounts) {
  testing::TemporaryFolder folder;
  const auto run = run_vib("{keep: 0.5, steps: 10}", "", "outputs:\n  - {format: safetensors, path: " + (folder / "out").string() + "}\n");
  const auto written = load_model({folder / "out"});
  EXPECT_EQ(written.parameter_count(), run.statistics["parameters_after"]);
  EXPECT_EQ(written.decoder_parameter_count(), run.statistics["counted_after"]);
  EXPECT_EQ(written.config.hidden, run.statistics["hidden"]);
}

TEST_F(VibPrune, ProtectedHeadsSurvive) {
  const auto run = run_vib("{keep: 0.3, steps: 10, protect: [0.1, 2.3, 4.6]}");
  const auto kept = protected_heads(run.model);
  ASSERT_EQ(kept.size(), 3u);
  for (int layer : {0, 2, 4}) EXPECT_TRUE(run.model.layers[layer].has_attention()) << layer;
  // Their origins are the heads named.
  const auto& origin = run.model.annotations["heads"]["origin"];
  for (const auto& head : kept) {
    const auto original_head = origin[head.layer].is_array() ? origin[head.layer][head.head].get<int>() : head.head;
    EXPECT_TRUE((head.layer == 0 && original_head == 1) || (head.layer == 2 && original_head == 3) ||
                (head.layer == 4 && original_head == 6))
        << head.str();
  }
}

TEST_F(VibPrune, AnImpossibleTargetIsBadInputNamingWhy) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      // The embeddings of at least 64 dimensions alone hold 32832 parameters.
      {"{budget: 10000, include_embeddings: true, multiple_of: 64, steps: 10}",
       "vib-prune cannot keep 10000 of 260032 parameters: 32832 at best (hidden size at least 64)"},
      // One head of 8 dimensions, its kv head and its norm, in 8 dimensions: 264 parameters.
      {"{keep: 0.001, multiple_of: 8, steps: 10, protect: [1.2]}",
       "cannot keep 227 of 227200 decoder parameters: 264 at best (hidden size at least 8, protected heads 1.2 with their kv heads and attention blocks)"},
  };
  for (const auto& [params, expected] : cases) {
    try {
      run_vib(params);
      ADD_FAILURE() << params << " ran";
    } catch (const InputError& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find("vib.yaml:"), std::string::npos) << message;
      EXPECT_NE(message.find(expected), std::string::npos) << message;
    }
  }
}

std::vector<EvalBatch> training_batches(std::int64_t tokens) {
  const auto text = "model: " + shared_path("models/stories260K/hf").string() + "\ndata:\n  calibration: {tokens: " + kData +
                    ", seq_len: 64, batch_size: 4, max_tokens: " + std::to_string(tokens) + "}\npasses:\n  - eval: {}\n";
  const auto recipe = parse_recipe(text, "data.yaml");
  DataSets data(recipe.data, load_model({shared_path("models/stories260K/hf")}));
  return data.batches("calibration", {});
}

TEST_F(VibPrune, TheMasksTrainTowardTheTargetWithTheWeightsFrozen) {
  auto model = load_model({shared_path("models/stories260K/hf")});
  const auto original = model.clone();
  auto masks = make_vib_masks(model, {}, 0);
  VibTrainingOptions options;
  options.steps = 240;
  options.warmup = 40;
  options.target_fraction = 0.5;
  options.kl_factor = 5e-4;
  const auto history = train_vib_masks(model, masks, training_batches(16384), options);
  ASSERT_EQ(history.size(), 240u);
  double smallest = 1, largest_lambda = 0;
  for (const auto& step : history) {
    EXPECT_TRUE(std::isfinite(step.task_loss)) << step.step;
    smallest = std::min(smallest, step.expected_fraction);
    largest_lambda = std::max(largest_lambda, step.lambda1);
  }
  EXPECT_DOUBLE_EQ(history.front().expected_fraction, 1.0);
  EXPECT_LE(smallest, 0.5 + 0.02) << "the expected size never reached the target";
  EXPECT_GT(largest_lambda, 0) << "the size constraint never pushed";
  // The masks moved; no weight did (the tensors are the checkpoint's own).
  EXPECT_GT((masks.hidden.mu().detach() - 1).abs().max().item<double>(), 0.1);
  for (const auto& [name, tensor] : original.tensors) EXPECT_TRUE(model.stored(name).is_same(tensor)) << name;
}

TEST_F(VibPrune, WithMasksAndWeightsTheWeightsTrainToo) {
  auto model = load_model({shared_path("models/stories260K/hf")});
  const auto original = model.clone();
  auto masks = make_vib_masks(model, {}, 0);
  VibTrainingOptions options;
  options.steps = 3;
  options.train_weights = true;
  const auto history = train_vib_masks(model, masks, training_batches(1024), options);
  // Distilling from itself: the first step's loss is the masks' noise alone, near 0.
  EXPECT_LT(history.front().task_loss, 0.05);
  EXPECT_FALSE(at::equal(model.tensor("layers.0.mlp.up.weight"), original.tensor("layers.0.mlp.up.weight")));
  EXPECT_FALSE(model.tensor("layers.0.mlp.up.weight").requires_grad());
}

}  // namespace
}  // namespace lathe
