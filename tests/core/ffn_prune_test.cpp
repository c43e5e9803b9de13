// Structured FFN-neuron removal: a cut model computes exactly what the original computes with
// the same neurons' down-projection columns zeroed, in the executor and in ONNX Runtime; a layer
// that loses every neuron loses its MLP, its output bias folded into the stream before it; cut
// models round-trip through safetensors; ffn-prune meets its targets exactly, or refuses.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numeric>

#include "core/ffn_removal.h"
#include "core/head_annotations.h"
#include "core/head_removal.h"
#include "core/model_loader.h"
#include "executor/executor.h"
#include "onnx_runtime.h"
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
using NeuronsByLayer = std::map<int, std::vector<std::int64_t>>;

struct Cut {
  const char* name;
  NeuronsByLayer removed;
  std::vector<HeadId> removed_heads;
};

std::vector<std::int64_t> all_neurons(std::int64_t width) {
  std::vector<std::int64_t> neurons(width);
  std::iota(neurons.begin(), neurons.end(), 0);
  return neurons;
}

NeuronsByLayer kept_neurons(const Model& model, const NeuronsByLayer& removed) {
  NeuronsByLayer kept;
  for (const auto& [layer, neurons] : removed) {
    auto& list = kept[layer];
    for (std::int64_t neuron = 0; neuron < model.layers[layer].ffn_width; ++neuron)
      if (std::find(neurons.begin(), neurons.end(), neuron) == neurons.end()) list.push_back(neuron);
  }
  return kept;
}

// The original model with the removed neurons' down-projection columns (and the removed heads'
// o-projection columns) zeroed: what the cut must compute, in a form both the executor and
// ONNX can run. The MLP's norm, its up/gate rows and its output bias all stay.
Model gated_copy(const Model& model, const Cut& cut) {
  Model gated = model.clone();
  const auto d = model.config.head_dim;
  for (const auto& head : cut.removed_heads) {
    auto name = layer_name(head.layer, "attn.o.weight");
    auto o = gated.tensor(name).clone();
    o.narrow(1, head.head * d, d).zero_();
    gated.tensors[name] = o;
  }
  for (const auto& [layer, neurons] : cut.removed) {
    auto name = layer_name(layer, "mlp.down.weight");
    gated.tensors[name] = gated.tensor(name).index_fill(1, at::tensor(neurons, at::kLong), 0.0);
  }
  return gated;
}

Model cut_copy(const Model& model, const Cut& cut) {
  Model pruned = model.clone();
  if (!cut.removed_heads.empty()) remove_heads(pruned, cut.removed_heads);
  keep_ffn_neurons(pruned, kept_neurons(model, cut.removed));
  validate_model(pruned, cut.name);
  return pruned;
}

class FfnPrune : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }

  void expect_exact(const Model& original, const std::vector<Cut>& cuts, std::int64_t length) {
    testing::TemporaryFolder folder;
    at::NoGradGuard no_grad;
    auto ids = testing::random_ids(original.config.vocab, 2, length, 41);
    for (const auto& cut : cuts) {
      const auto pruned = cut_copy(original, cut);
      const auto gated = gated_copy(original, cut);
      for (const auto& [layer, neurons] : cut.removed)
        EXPECT_EQ(pruned.layers[layer].ffn_width, original.layers[layer].ffn_width - static_cast<std::int64_t>(neurons.size()))
            << cut.name;
      auto expected = Executor(gated).forward(ids);
      auto actual = Executor(pruned).forward(ids);
      EXPECT_LE((actual - expected).abs().max().item<double>(), 5e-5) << cut.name << " (executor, float)";
      // In float64, so that what the comparison sees is the computation and not float rounding
      // (which differs because the down projection's sum is shorter).
      auto expected_double = Executor(with_float64_values(gated)).forward(ids);
      auto actual_double = Executor(with_float64_values(pruned)).forward(ids);
      EXPECT_LE((actual_double - expected_double).abs().max().item<double>(), 1e-5) << cut.name << " (executor, double)";

      write_onnx(pruned, folder / "pruned.onnx");
      write_onnx(gated, folder / "gated.onnx");
      auto from_pruned = testing::run_in_onnx_runtime(folder / "pruned.onnx", ids, original.config.vocab, folder);
      auto from_gated = testing::run_in_onnx_runtime(folder / "gated.onnx", ids, original.config.vocab, folder);
      ASSERT_TRUE(from_pruned.defined() && from_gated.defined());
      EXPECT_LE((from_pruned - from_gated).abs().max().item<double>(), 1e-5) << cut.name << " (ONNX Runtime)";
      EXPECT_LE((from_pruned - expected).abs().max().item<double>(), 1e-4) << cut.name << " (ONNX Runtime vs executor)";
    }
  }
};

TEST_F(FfnPrune, Stories260KCutEqualsGated) {
  std::vector<std::int64_t> even;
  for (std::int64_t neuron = 0; neuron < 172; neuron += 2) even.push_back(neuron);
  expect_exact(load_model({shared_path("models/stories260K/hf")}),
               {{"a few neurons", {{0, {3, 17, 100}}, {3, {0, 171}}}, {}},
                {"half of a layer", {{2, even}}, {}},
                {"a whole MLP", {{4, all_neurons(172)}, {1, {5}}}, {}},
                {"a layer left with neither attention nor MLP",
                 {{1, all_neurons(172)}},
                 {{1, 0}, {1, 1}, {1, 2}, {1, 3}, {1, 4}, {1, 5}, {1, 6}, {1, 7}}}},
               40);
}

// GPT-2's MLP has biases: a removed MLP's output bias moves into the layer's attention output,
// else the MLP output before, else the position embeddings.
TEST_F(FfnPrune, MakemoreCutEqualsGatedWithBiasesFolded) {
  const auto model = load_model({shared_path("models/makemore-names-gpt/hf")});
  expect_exact(model,
               {{"a few neurons", {{0, {1, 2}}, {3, {255}}}, {}},
                {"a whole MLP, its bias into the layer's attention output", {{2, all_neurons(256)}}, {}},
                {"a whole MLP of a layer without attention, its bias into the MLP before",
                 {{3, all_neurons(256)}},
                 {{3, 0}, {3, 1}, {3, 2}, {3, 3}}},
                {"the first layer emptied, its biases into the positions",
                 {{0, all_neurons(256)}},
                 {{0, 0}, {0, 1}, {0, 2}, {0, 3}}}},
               16);
  auto emptied = cut_copy(model, {"first layer", {{0, all_neurons(256)}}, {{0, 0}, {0, 1}, {0, 2}, {0, 3}}});
  EXPECT_FALSE(emptied.has_layer_tensor(0, "mlp.down.bias"));
  EXPECT_FALSE(emptied.has_layer_tensor(0, "mlp_norm.weight"));
  EXPECT_EQ(emptied.layers[0].ffn_width, 0);
}

TEST_F(FfnPrune, ParametersFollowTheWidth) {
  for (const char* path : {"models/stories260K/hf", "models/makemore-names-gpt/hf"}) {
    const auto model = load_model({shared_path(path)});
    const auto width = model.layers[1].ffn_width;
    const auto three = cut_copy(model, {"three", {{1, {0, 1, 2}}}, {}});
    EXPECT_EQ(model.parameter_count() - three.parameter_count(), mlp_parameters(model, width) - mlp_parameters(model, width - 3)) << path;
    const auto none = cut_copy(model, {"none", {{1, all_neurons(width)}}, {}});
    EXPECT_EQ(model.parameter_count() - none.parameter_count(), mlp_parameters(model, width)) << path;
  }
  const auto stories = load_model({shared_path("models/stories260K/hf")});
  EXPECT_EQ(mlp_parameters(stories, 10), 3 * 10 * 64 + 64);  // gate, up, down; RMSNorm weight
  const auto gpt = load_model({shared_path("models/makemore-names-gpt/hf")});
  EXPECT_EQ(mlp_parameters(gpt, 10), 2 * 10 * 64 + 10 + 64 + 2 * 64);  // up, down, their biases; LayerNorm
  EXPECT_EQ(mlp_parameters(gpt, 0), 0);
}

TEST_F(FfnPrune, BadNeuronListsAreRefused) {
  auto model = load_model({shared_path("models/stories260K/hf")});
  EXPECT_THROW(keep_ffn_neurons(model, {{7, {0}}}), std::invalid_argument);
  EXPECT_THROW(keep_ffn_neurons(model, {{0, {0, 0}}}), std::invalid_argument);
  EXPECT_THROW(keep_ffn_neurons(model, {{0, {172}}}), std::invalid_argument);
  EXPECT_EQ(model.layers[0].ffn_width, 172);
  keep_ffn_neurons(model, {{0, {}}});
  EXPECT_THROW(keep_ffn_neurons(model, {{0, {}}}), std::invalid_argument);
}

TEST_F(FfnPrune, CutSafetensorsReloadWithTheSameStructureAndLogits) {
  testing::TemporaryFolder folder;
  at::NoGradGuard no_grad;
  for (const char* path : {"models/stories260K/hf", "models/makemore-names-gpt/hf"}) {
    const auto original = load_model({shared_path(path)});
    std::vector<std::int64_t> some;
    for (std::int64_t neuron = 0; neuron < original.layers[0].ffn_width; neuron += 3) some.push_back(neuron);
    const auto model = cut_copy(original, {"cut", {{0, some}, {2, all_neurons(original.layers[2].ffn_width)}}, {}});
    const auto out = folder / std::filesystem::path(path).parent_path().filename();
    write_safetensors_model(model, out);
    auto reloaded = load_model({out});
    EXPECT_EQ(reloaded.layers, model.layers) << path;
    EXPECT_EQ(reloaded.layers[2].ffn_width, 0) << path;
    EXPECT_EQ(reloaded.parameter_count(), model.parameter_count()) << path;
    auto ids = testing::random_ids(original.config.vocab, 2, 15, 5);
    EXPECT_TRUE(at::equal(Executor(reloaded).forward(ids), Executor(model).forward(ids))) << path;
  }
}

const std::string kStories = "model: " + shared_path("models/stories260K/hf").string() + "\ndata:\n  eval: {tokens: " +
                             shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
                             ", max_tokens: 1024}\npasses:\n";

struct PruneRun {
  nlohmann::json statistics;
  Model model;
};

PruneRun run_prune(const std::string& params) {
  PruneRun result;
  Progress quiet(ProgressStyle::None);
  auto report = run_recipe(parse_recipe(kStories + "  - ffn-prune: " + params + "\n", "prune.yaml"), RunOptions{}, quiet, &result.model).report;
  result.statistics = report["passes"][0]["statistics"];
  EXPECT_EQ(result.statistics["parameters_after"], result.model.parameter_count()) << params;
  return result;
}

std::vector<std::int64_t> widths(const Model& model) {
  std::vector<std::int64_t> widths;
  for (const auto& layer : model.layers) widths.push_back(layer.ffn_width);
  return widths;
}

std::int64_t neurons(const Model& model) {
  const auto w = widths(model);
  return std::accumulate(w.begin(), w.end(), std::int64_t{0});
}

TEST_F(FfnPrune, KeepIsMetExactlyOrByTheNearestWidthsAbove) {
  for (double keep : {0.75, 0.5, 0.25, 0.1}) {
    const auto want = std::llround(keep * 860);
    const auto global = run_prune("{keep: " + std::to_string(keep) + "}");
    EXPECT_EQ(neurons(global.model), want) << keep;
    EXPECT_EQ(global.statistics["neurons_removed"], 860 - want) << keep;

    const auto per_layer = run_prune("{keep: " + std::to_string(keep) + ", scope: per-layer}");
    EXPECT_EQ(widths(per_layer.model), std::vector<std::int64_t>(5, std::llround(keep * 172))) << keep;

    // Widths in multiples of 8, never below the target, and above it by less than one step per layer.
    const auto rounded = run_prune("{keep: " + std::to_string(keep) + ", multiple_of: 8}");
    for (auto width : widths(rounded.model)) EXPECT_EQ(width % 8, 0) << keep;
    EXPECT_GE(neurons(rounded.model), want) << keep;
    EXPECT_LT(neurons(rounded.model), want + 8 * 5) << keep;
  }
}

TEST_F(FfnPrune, TheMagnitudeCriterionCutsTheWeakestNeuronsOfALayer) {
  // Per layer, with the magnitude criterion, the kept neurons are exactly those of the largest
  // |W_down column| x |W_up row| (computed here from the checkpoint).
  const auto original = load_model({shared_path("models/stories260K/hf")});
  const auto pruned = run_prune("{keep: 0.5, scope: per-layer}").model;
  for (int layer = 0; layer < 5; ++layer) {
    auto score = original.layer_tensor(layer, "mlp.down.weight").to(at::kDouble).norm(2, {0}) *
                 original.layer_tensor(layer, "mlp.up.weight").to(at::kDouble).norm(2, {1});
    auto kept = std::get<0>(std::get<1>(score.topk(86)).sort());
    auto expected = original.layer_tensor(layer, "mlp.down.weight").index_select(1, kept);
    EXPECT_TRUE(at::equal(pruned.layer_tensor(layer, "mlp.down.weight"), expected)) << layer;
    EXPECT_TRUE(at::equal(pruned.layer_tensor(layer, "mlp.gate.weight"), original.layer_tensor(layer, "mlp.gate.weight").index_select(0, kept)))
        << layer;
  }
}

TEST_F(FfnPrune, ABudgetIsMetWithoutOvershootingByMoreThanOneStep) {
  const std::int64_t neuron = 3 * 64;  // gate row, up row, down column
  for (std::int64_t budget : {250000, 200000, 120000}) {
    const auto run = run_prune("{budget: " + std::to_string(budget) + "}");
    EXPECT_LE(run.model.parameter_count(), budget);
    EXPECT_GT(run.model.parameter_count(), budget - neuron);
    const auto rounded = run_prune("{budget: " + std::to_string(budget) + ", multiple_of: 16}");
    EXPECT_LE(rounded.model.parameter_count(), budget);
    EXPECT_GT(rounded.model.parameter_count(), budget - 16 * neuron);
    for (auto width : widths(rounded.model)) EXPECT_TRUE(width % 16 == 0 || width == 172) << budget;
  }
}

TEST_F(FfnPrune, MinWidthZeroLetsLayersLoseTheirMlp) {
  const auto original = load_model({shared_path("models/stories260K/hf")});
  const auto run = run_prune("{keep: 0, min_width: 0}");
  EXPECT_EQ(widths(run.model), std::vector<std::int64_t>(5, 0));
  EXPECT_EQ(run.model.parameter_count(), original.parameter_count() - 5 * mlp_parameters(original, 172));
  at::NoGradGuard no_grad;
  auto ids = testing::random_ids(512, 1, 9, 3);
  EXPECT_TRUE(Executor(run.model).forward(ids).isfinite().all().item<bool>());
  // min_width rounds up to multiple_of and holds every layer there (32 neurons everywhere is
  // 125632 parameters; one more step of 16 would be 128704).
  const auto floored = run_prune("{budget: 126000, min_width: 30, multiple_of: 16}");
  EXPECT_EQ(widths(floored.model), std::vector<std::int64_t>(5, 32));
}

TEST_F(FfnPrune, TheActivationCriterionReadsTheData) {
  const auto run = run_prune("{keep: 0.5, criterion: activation, max_tokens: 512}");
  EXPECT_EQ(run.statistics["data"], "eval");
  EXPECT_EQ(run.statistics["criterion"], "activation");
  EXPECT_EQ(neurons(run.model), 430);
  EXPECT_NE(widths(run.model), widths(run_prune("{keep: 0.5}").model)) << "activation ranked as magnitude does";
}

TEST_F(FfnPrune, AnImpossibleTargetIsBadInputNamingWhy) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{budget: 1000}", "cannot reach 1000 parameters by removing FFN neurons (95872 at best with min_width 1"},
      {"{keep: 0}", "cannot keep 0 of 860 FFN neurons: the layers keep at least 5 with min_width 1"},
      {"{keep: 0.1, min_width: 40}", "cannot keep 86 of 860 FFN neurons: the layers keep at least 200"},
      {"{keep: 0.001, scope: per-layer}", "cannot keep 0 of layer 0's 172 FFN neurons: it keeps at least 1"},
  };
  for (const auto& [params, expected] : cases) {
    try {
      run_prune(params);
      ADD_FAILURE() << params << " ran";
    } catch (const InputError& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find("prune.yaml:"), std::string::npos) << message;
      EXPECT_NE(message.find(expected), std::string::npos) << message;
    }
  }
}

// Pruned widths (80, 88, ...: not the checkpoint's) through int8: the exported graph computes
// what it specifies, in ONNX Runtime and in the executor.
TEST_F(FfnPrune, PrunedThenQuantizedOnnxComputesItsGraph) {
  testing::TemporaryFolder folder;
  const auto onnx = folder / "model.onnx";
  const auto text = "model: " + shared_path("models/stories260K/hf").string() + "\ndata:\n  calibration: {tokens: " +
                    shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
                    ", max_tokens: 2048}\npasses:\n  - head-prune: {keep: 0.75, importance: magnitude}\n"
                    "  - ffn-prune: {keep: 0.5, multiple_of: 8}\n  - quantize: {mode: w8a8}\noutputs:\n  - {format: onnx, path: " +
                    onnx.string() + "}\n";
  Progress quiet(ProgressStyle::None);
  Model quantized;
  run_recipe(parse_recipe(text, "prune.yaml"), RunOptions{}, quiet, &quantized);
  ASSERT_TRUE(quantized.quantization.active());
  EXPECT_EQ(neurons(quantized), 432);
  testing::expect_int8_onnx_computes_its_graph(onnx, quantized, testing::random_ids(512, 2, 24, 7), folder, "pruned int8");
}

}  // namespace
}  // namespace lathe
