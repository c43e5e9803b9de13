// Clipped softmax and gated attention (Bondarenko et al., 2023) and the finetune pass: gate
// initialization leaves logits unchanged; ONNX Runtime computes what the executor computes with
// either change (float and W8A8); the safetensors writer and loader carry both; fine-tuning by
// distillation lowers the KL to the loaded model and trains only what it is told to; smooth
// keeps a gated model exact; heads of a gated model are not removed.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

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

struct Checkpoint {
  std::string model;
  std::string data;
};

Checkpoint stories() {
  return {testing::shared_path("models/stories260K/hf").string(),
          "{tokens: " + testing::shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
              ", seq_len: 128, batch_size: 4, max_tokens: 2048}"};
}

Checkpoint makemore() {
  return {testing::shared_path("models/makemore-names-gpt/hf").string(),
          "{text: " + testing::shared_path("data/makemore-names/names.txt").string() +
              ", split: lines, eos: true, pack: false, batch_size: 16, max_tokens: 2048}"};
}

// Runs `passes` (YAML list items) on the checkpoint and returns the model they leave.
Model run_passes(const Checkpoint& checkpoint, const std::string& passes, nlohmann::json* report = nullptr) {
  const auto text = "model: " + checkpoint.model + "\ndata:\n  calibration: " + checkpoint.data + "\npasses:\n" + passes;
  Progress quiet(ProgressStyle::None);
  Model model;
  auto result = run_recipe(parse_recipe(text, "variant.yaml"), RunOptions{}, quiet, &model);
  if (report != nullptr) *report = result.report;
  return model;
}

at::Tensor logits(const Model& model, const at::Tensor& ids) {
  at::NoGradGuard no_grad;
  return Executor(model).forward(ids);
}

double max_difference(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

// Gates that differ per head and position, so a wrong slice or head order shows.
void randomize_gates(Model& model, std::uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (int layer = 0; layer < model.layer_count(); ++layer) {
    const auto& weight = model.layer_tensor(layer, "attn.gate.weight");
    const auto& bias = model.layer_tensor(layer, "attn.gate.bias");
    model.tensors[layer_name(layer, "attn.gate.weight")] = at::randn(weight.sizes(), generator);
    model.tensors[layer_name(layer, "attn.gate.bias")] = at::randn(bias.sizes(), generator);
  }
}

class AttentionVariants : public ::testing::TestWithParam<Checkpoint (*)()> {
 protected:
  void SetUp() override { at::set_num_threads(1); }
};

TEST_P(AttentionVariants, GateInitializationLeavesLogitsUnchanged) {
  const auto checkpoint = GetParam()();
  const auto original = load_model(ModelLocation{checkpoint.model});
  const auto gated = run_passes(checkpoint, "  - gated-attention: {init: 0.25}\n");
  ASSERT_TRUE(gated.attention.gated);
  const auto ids = testing::random_ids(original.config.vocab, 2, std::min<std::int64_t>(48, original.config.max_positions), 3);
  const auto before = logits(original, ids), after = logits(gated, ids);
  EXPECT_LE(max_difference(before, after), 1e-5);
  EXPECT_GT(gated.parameter_count(), original.parameter_count());
}

TEST_P(AttentionVariants, OnnxRuntimeMatchesTheExecutorWithGatesAndClippedSoftmax) {
  const auto checkpoint = GetParam()();
  auto model = run_passes(checkpoint, "  - gated-attention: {}\n  - clipped-softmax: {alpha: 4, length: 64}\n");
  randomize_gates(model, 11);
  testing::TemporaryFolder folder;
  write_onnx(model, folder / "variant.onnx");
  testing::expect_pass_onnx_checker({folder / "variant.onnx"}, folder);
  const auto longest = std::min<std::int64_t>(40, model.config.max_positions);
  for (std::int64_t length : {std::int64_t{1}, longest}) {
    const auto ids = testing::random_ids(model.config.vocab, 2, length, 5);
    const auto expected = logits(model, ids);
    const auto from_onnx = testing::run_in_onnx_runtime(folder / "variant.onnx", ids, model.config.vocab, folder);
    ASSERT_TRUE(from_onnx.defined());
    // Float rounding only: the float export tests' tolerance.
    EXPECT_LE(max_difference(from_onnx, expected), 1e-4) << "length " << length;
  }
  // Both changes matter: without them the logits differ.
  auto plain = model.clone();
  plain.attention = {};
  const auto ids = testing::random_ids(model.config.vocab, 1, longest, 6);
  EXPECT_GT(max_difference(logits(plain, ids), logits(model, ids)), 1e-2);
}

TEST_P(AttentionVariants, SafetensorsCarryGatesAndClippedSoftmax) {
  const auto checkpoint = GetParam()();
  auto model = run_passes(checkpoint, "  - gated-attention: {}\n  - clipped-softmax: {gamma: -0.03, zeta: 1.01}\n");
  randomize_gates(model, 12);
  testing::TemporaryFolder folder;
  write_safetensors_model(model, folder / "variant");
  const auto loaded = load_model(ModelLocation{folder / "variant"});
  ASSERT_TRUE(loaded.attention.gated);
  ASSERT_TRUE(loaded.attention.clipped_softmax.has_value());
  EXPECT_EQ(*loaded.attention.clipped_softmax, *model.attention.clipped_softmax);
  EXPECT_TRUE(at::equal(loaded.layer_tensor(0, "attn.gate.weight"), model.layer_tensor(0, "attn.gate.weight")));
  const auto ids = testing::random_ids(model.config.vocab, 2, std::min<std::int64_t>(24, model.config.max_positions), 8);
  EXPECT_TRUE(at::equal(logits(loaded, ids), logits(model, ids)));
}

TEST_P(AttentionVariants, QuantizedGatedModelMatchesInOnnxRuntime) {
  const auto checkpoint = GetParam()();
  auto model = run_passes(checkpoint, "  - gated-attention: {}\n  - clipped-softmax: {alpha: 2, length: 64}\n"
                                      "  - finetune: {steps: 3, train: attention}\n  - quantize: {mode: w8a8}\n");
  ASSERT_TRUE(model.quantization.active());
  testing::TemporaryFolder folder;
  write_onnx(model, folder / "int8.onnx");
  const auto ids = testing::random_ids(model.config.vocab, 2, std::min<std::int64_t>(32, model.config.max_positions), 9);
  const auto from_onnx = testing::run_in_onnx_runtime(folder / "int8.onnx", ids, model.config.vocab, folder);
  ASSERT_TRUE(from_onnx.defined());
  testing::expect_int8_logits_agree(from_onnx, model, ids, logits(model, ids).abs().max().item<double>(), "gated int8");
  testing::expect_int8_onnx_computes_its_graph(folder / "int8.onnx", model, ids, folder, "gated int8");
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, AttentionVariants, ::testing::Values(&stories, &makemore),
                         [](const auto& info) { return info.index == 0 ? "stories260K" : "makemore"; });

TEST(Finetune, DistillationRecoversFromTheClippedSoftmaxAndTrainsOnlyTheAttention) {
  at::set_num_threads(1);
  nlohmann::json report;
  const auto original = load_model(ModelLocation{stories().model});
  const auto tuned = run_passes(stories(), "  - clipped-softmax: {alpha: 8, length: 64}\n"
                                           "  - finetune: {steps: 30, learning_rate: 0.003, train: attention}\n", &report);
  const auto& statistics = report["passes"][1]["statistics"];
  const double before = statistics["distillation_loss_before"].get<double>();
  const double after = statistics["distillation_loss_after"].get<double>();
  EXPECT_GT(before, 1e-3) << "the clipped softmax should change the model";
  EXPECT_LT(after, 0.7 * before);
  EXPECT_EQ(statistics["history"].size(), 30u);
  for (const auto& [name, tensor] : tuned.tensors) {
    const bool attention = name.find(".attn.") != std::string::npos || name.find(".attn_norm.") != std::string::npos;
    const bool same = at::equal(tensor, original.tensor(name));
    EXPECT_NE(same, attention) << name;
    EXPECT_FALSE(tensor.requires_grad()) << name;
  }
}

TEST(Finetune, GatesOnlyTrainsTheGatesAndNeedsThem) {
  at::set_num_threads(1);
  const auto gated = run_passes(stories(), "  - gated-attention: {}\n");
  const auto tuned = run_passes(stories(), "  - gated-attention: {}\n  - finetune: {steps: 5, train: gates}\n");
  for (const auto& [name, tensor] : tuned.tensors)
    EXPECT_EQ(at::equal(tensor, gated.tensor(name)), name.find(".attn.gate.") == std::string::npos) << name;
  EXPECT_THROW(run_passes(stories(), "  - finetune: {steps: 5, train: gates}\n"), InputError);
  EXPECT_THROW(run_passes(stories(), "  - quantize: {}\n  - finetune: {steps: 5}\n"), InputError);
}

TEST(GatedAttention, SmoothStaysExactAndHeadRemovalIsRefused) {
  at::set_num_threads(1);
  auto gated = run_passes(stories(), "  - gated-attention: {}\n");
  randomize_gates(gated, 13);
  testing::TemporaryFolder folder;
  write_safetensors_model(gated, folder / "gated");
  const Checkpoint saved{(folder / "gated").string(), stories().data};
  const auto smoothed = run_passes(saved, "  - smooth: {power_of_two: true}\n");
  const auto ids = testing::random_ids(gated.config.vocab, 2, 32, 10);
  EXPECT_TRUE(at::equal(logits(smoothed, ids), logits(gated, ids)));
  EXPECT_FALSE(at::equal(smoothed.layer_tensor(0, "attn.gate.weight"), gated.layer_tensor(0, "attn.gate.weight")));

  EXPECT_THROW(run_passes(saved, "  - head-prune: {keep: 0.5, importance: magnitude}\n"), InputError);
  EXPECT_THROW(remove_heads(gated, {HeadId{0, 1}}), std::invalid_argument);
}

TEST(ClippedSoftmax, ParametersAreChecked) {
  EXPECT_THROW(run_passes(stories(), "  - clipped-softmax: {alpha: 0}\n"), InputError);
  EXPECT_THROW(parse_recipe("model: " + stories().model + "\npasses:\n  - clipped-softmax: {zeta: 0.5}\n", "c.yaml"),
               InputError);
  const auto model = run_passes(stories(), "  - clipped-softmax: {alpha: 4, length: 256}\n");
  ASSERT_TRUE(model.attention.clipped_softmax.has_value());
  EXPECT_DOUBLE_EQ(model.attention.clipped_softmax->gamma, -4.0 / 256);
}

}  // namespace
}  // namespace lathe
