// Structured head removal: a pruned model computes exactly what the original computes with the
// same heads gated off, in the executor and in ONNX Runtime; it round-trips through
// safetensors; protected heads stay; grouped-query attention loses a kv head only with all of
// its query heads.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

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

// The original model with `removed` heads' output cut (their o-projection columns zeroed):
// the same computation as gating them to 0, in a form both the executor and ONNX can run.
Model gated_copy(const Model& model, const std::vector<HeadId>& removed) {
  Model gated = model.clone();
  const auto d = model.config.head_dim;
  for (const auto& head : removed) {
    auto name = layer_name(head.layer, "attn.o.weight");
    auto o = gated.tensor(name).clone();
    o.narrow(1, head.head * d, d).zero_();
    gated.tensors[name] = o;
  }
  return gated;
}

ForwardHooks gates_for(const Model& model, const std::vector<HeadId>& removed) {
  ForwardHooks hooks;
  for (const auto& layer : model.layers) hooks.head_gates.push_back(at::ones({layer.query_heads}));
  for (const auto& head : removed) hooks.head_gates[head.layer][head.head] = 0.0;
  return hooks;
}

struct Case {
  const char* name;
  std::vector<HeadId> removed;
};

class HeadPrune : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }

  void expect_exact(const Model& original, const std::vector<Case>& cases, std::int64_t length) {
    testing::TemporaryFolder folder;
    at::NoGradGuard no_grad;
    auto ids = testing::random_ids(original.config.vocab, 2, length, 99);
    for (const auto& c : cases) {
      Model pruned = original.clone();
      remove_heads(pruned, c.removed);
      validate_model(pruned, c.name);
      auto hooks = gates_for(original, c.removed);
      auto gated = Executor(original).forward(ids, &hooks);
      auto cut = Executor(pruned).forward(ids);
      EXPECT_LE((cut - gated).abs().max().item<double>(), 5e-5) << c.name << " (executor, float)";
      // In float64, so that what the comparison sees is the computation and not float rounding
      // (which differs because the o projection's sum is shorter).
      const auto original_double = with_float64_values(original), pruned_double = with_float64_values(pruned);
      for (auto& gate : hooks.head_gates) gate = gate.to(at::kDouble);
      auto gated_double = Executor(original_double).forward(ids, &hooks);
      auto cut_double = Executor(pruned_double).forward(ids);
      EXPECT_LE((cut_double - gated_double).abs().max().item<double>(), 1e-5) << c.name << " (executor, double)";

      write_onnx(pruned, folder / "pruned.onnx");
      write_onnx(gated_copy(original, c.removed), folder / "gated.onnx");
      auto from_pruned = testing::run_in_onnx_runtime(folder / "pruned.onnx", ids, original.config.vocab, folder);
      auto from_gated = testing::run_in_onnx_runtime(folder / "gated.onnx", ids, original.config.vocab, folder);
      ASSERT_TRUE(from_pruned.defined() && from_gated.defined());
      EXPECT_LE((from_pruned - from_gated).abs().max().item<double>(), 1e-5) << c.name << " (ONNX Runtime)";
      EXPECT_LE((from_pruned - gated).abs().max().item<double>(), 1e-4) << c.name << " (ONNX Runtime vs executor)";
    }
  }
};

TEST_F(HeadPrune, Stories260KPrunedEqualsGated) {
  expect_exact(load_model({shared_path("models/stories260K/hf")}),
               {{"one head", {{2, 5}}},
                {"a whole GQA group", {{0, 2}, {0, 3}}},
                {"groups of different sizes", {{1, 0}, {1, 3}, {1, 5}, {3, 7}}},
                {"a layer without attention", {{4, 0}, {4, 1}, {4, 2}, {4, 3}, {4, 4}, {4, 5}, {4, 6}, {4, 7}, {2, 1}}}},
               40);
}

TEST_F(HeadPrune, MakemorePrunedEqualsGated) {
  expect_exact(load_model({shared_path("models/makemore-names-gpt/hf")}),
               {{"two heads", {{0, 1}, {3, 2}}}, {"all but one head everywhere", {{0, 0}, {0, 1}, {0, 2}, {1, 1}, {1, 2}, {1, 3}, {2, 0}, {2, 1}, {2, 3}, {3, 0}, {3, 2}, {3, 3}}},
                {"a layer without attention", {{2, 0}, {2, 1}, {2, 2}, {2, 3}}}},
               16);
}

TEST_F(HeadPrune, GroupedQueryAttentionLosesKvHeadsOnlyWithAllReaders) {
  auto model = load_model({shared_path("models/stories260K/hf")});
  const auto before = model.parameter_count();
  remove_heads(model, {{1, 0}, {1, 2}, {1, 3}});  // kv head 1 (query heads 2, 3) goes; kv 0 keeps query head 1
  EXPECT_EQ(model.layers[1].query_heads, 5);
  EXPECT_EQ(model.layers[1].kv_heads, 3);
  EXPECT_EQ(model.layers[1].kv_of_query, (std::vector<std::int64_t>{0, 1, 1, 2, 2}));
  const auto d = model.config.head_dim, hidden = model.config.hidden;
  EXPECT_EQ(model.layer_tensor(1, "attn.q.weight").sizes(), at::IntArrayRef({5 * d, hidden}));
  EXPECT_EQ(model.layer_tensor(1, "attn.k.weight").sizes(), at::IntArrayRef({3 * d, hidden}));
  EXPECT_EQ(model.layer_tensor(1, "attn.o.weight").sizes(), at::IntArrayRef({hidden, 5 * d}));
  EXPECT_EQ(before - model.parameter_count(), 3 * 2 * d * hidden + 1 * 2 * d * hidden);
  EXPECT_EQ(attention_parameters(model, 5, 3), 2 * 5 * d * hidden + 2 * 3 * d * hidden + hidden);
}

TEST_F(HeadPrune, PrunedSafetensorsReloadWithTheSameStructureAndLogits) {
  testing::TemporaryFolder folder;
  auto model = load_model({shared_path("models/stories260K/hf")});
  remove_heads(model, {{0, 1}, {1, 0}, {1, 1}, {3, 4}, {4, 0}, {4, 1}, {4, 2}, {4, 3}, {4, 4}, {4, 5}, {4, 6}, {4, 7}});
  write_safetensors_model(model, folder / "pruned");
  auto reloaded = load_model({folder / "pruned"});
  EXPECT_EQ(reloaded.layers, model.layers);
  EXPECT_EQ(reloaded.parameter_count(), model.parameter_count());
  EXPECT_FALSE(reloaded.layers[4].has_attention());
  at::NoGradGuard no_grad;
  auto ids = testing::random_ids(512, 2, 33, 5);
  EXPECT_TRUE(at::equal(Executor(reloaded).forward(ids), Executor(model).forward(ids)));
}

nlohmann::json run_recipe_text(const std::string& text) {
  Progress quiet(ProgressStyle::None);
  return run_recipe(parse_recipe(text, "prune.yaml"), RunOptions{}, quiet).report;
}

const std::string kStories = "model: " + shared_path("models/stories260K/hf").string() + "\ndata:\n  eval: {tokens: " +
                             shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
                             ", max_tokens: 1024}\npasses:\n";

TEST_F(HeadPrune, ProtectedHeadsStayAtEveryTarget) {
  for (const char* keep : {"0.75", "0.5", "0.25", "0.15"}) {
    auto report = run_recipe_text(kStories + "  - head-prune: {keep: " + keep + ", importance: magnitude, protect: \"0.0, 2.3, 4.6\"}\n");
    const auto& stats = report["passes"][0]["statistics"];
    for (const auto& removed : stats["removed"])
      for (const char* guarded : {"0.0", "2.3", "4.6"}) EXPECT_NE(removed.get<std::string>(), guarded) << keep;
    EXPECT_EQ(stats["heads_before"].get<int>() - stats["heads_removed"].get<int>(),
              static_cast<int>(std::lround(std::stod(keep) * 40))) << keep;
  }
}

TEST_F(HeadPrune, AnImpossibleTargetIsBadInputNamingTheConflict) {
  try {
    run_recipe_text(kStories + "  - head-prune: {heads: 2, importance: magnitude, protect: \"0.0, 2.3, 4.6\"}\n");
    FAIL() << "kept 2 heads with 3 protected";
  } catch (const InputError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("prune.yaml:"), std::string::npos) << message;
    EXPECT_NE(message.find("3 protected heads (0.0, 2.3, 4.6)"), std::string::npos) << message;
  }
}

TEST_F(HeadPrune, ImportanceIsComputedOnceAndProtectedRetrievalHeadsSurvive) {
  auto report = run_recipe_text(
      "model: " + shared_path("models/tinystories-retrieval").string() + "\ndata:\n  eval: {tokens: " +
      shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
      ", seq_len: 128, max_tokens: 2048}\npasses:\n"
      "  - retrieval-heads: {mode: teacher-forced, needle_ids: 259-511, lengths: \"120\", tests_per_cell: 4, protect: retrieval}\n"
      "  - head-importance: {method: ablation, max_tokens: 2048}\n"
      "  - head-prune: {keep: 0.5, importance: ablation, max_tokens: 2048}\n");
  EXPECT_EQ(report["analyses"]["computed"], 1);
  EXPECT_EQ(report["analyses"]["reused"], 1);
  const auto& layers = report["result_model"]["layers"];
  EXPECT_EQ(layers[1]["query_heads"], 6) << "the retrieval heads of layer 1 were removed";
  EXPECT_EQ(report["passes"][2]["statistics"]["heads_removed"], 12);
}

}  // namespace
}  // namespace lathe

namespace lathe {
namespace {

TEST_F(HeadPrune, GroupsModeRemovesWholeKvGroups) {
  Model pruned;
  Progress quiet(ProgressStyle::None);
  auto report = run_recipe(parse_recipe(kStories + "  - head-prune: {keep: 0.5, importance: magnitude, groups: true}\n", "prune.yaml"),
                           RunOptions{}, quiet, &pruned)
                    .report;
  EXPECT_EQ(report["passes"][0]["statistics"]["heads_removed"], 20);
  std::int64_t kv_heads = 0;
  for (const auto& layer : pruned.layers) {
    EXPECT_TRUE(layer.regular_groups());
    EXPECT_EQ(layer.query_heads, 2 * layer.kv_heads);  // every group kept whole: two query heads per kv head
    kv_heads += layer.kv_heads;
  }
  EXPECT_EQ(kv_heads, 10);
}

}  // namespace
}  // namespace lathe
