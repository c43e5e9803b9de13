// Retrieval heads on the fixture trained to retrieve (../shared/models/tinystories-retrieval):
// the scores find the heads our independent probe found, removing them costs recall, and the
// scores survive both writers.

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <fstream>

#include "core/head_annotations.h"
#include "core/model_loader.h"
#include "pipeline/pipeline.h"
#include "pipeline/recipe.h"
#include "support/errors.h"
#include "support/progress.h"
#include "test_paths.h"

namespace lathe {
namespace {

using testing::shared_path;

std::string fixture_recipe(const std::string& retrieval_params, const std::string& extra = "") {
  return "model: " + shared_path("models/tinystories-retrieval").string() +
         "\ndata:\n  eval: {tokens: " + shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
         ", seq_len: 128}\npasses:\n  - retrieval-heads: {" + retrieval_params + "}\n" + extra;
}

nlohmann::json run(const std::string& recipe_text, const std::filesystem::path& artifacts = {}) {
  at::set_num_threads(1);
  Progress quiet(false);
  RunOptions options;
  options.artifacts_dir = artifacts;
  return run_recipe(parse_recipe(recipe_text, "test.yaml"), options, quiet).report;
}

const char* kProbe = "mode: teacher-forced, needle_ids: 259-511, lengths: \"120\", tests_per_cell: 12";

TEST(RetrievalHeads, FindsTheProbesHeadsOnTheFixture) {
  testing::TemporaryFolder folder;
  auto report = run(fixture_recipe(kProbe), folder.path());
  const auto& stats = report["passes"][0]["statistics"];
  EXPECT_EQ(stats["tests"], 60);
  EXPECT_EQ(stats["retrieval_heads"], nlohmann::json({"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"})) << stats["scores"].dump();
  for (int head = 0; head < 6; ++head) EXPECT_GT(stats["scores"][1][head].get<double>(), 0.3) << head;
  EXPECT_TRUE(std::filesystem::exists(folder / "retrieval_scores.csv"));
  EXPECT_TRUE(std::filesystem::exists(folder / "retrieval_heads.svg"));
}

TEST(RetrievalHeads, NoHeadScoresWhenTheNeedleIsLeftOut) {
  auto report = run(fixture_recipe(std::string(kProbe) + ", insert_needle: false"));
  const auto& stats = report["passes"][0]["statistics"];
  EXPECT_TRUE(stats["retrieval_heads"].empty()) << stats["scores"].dump();
  for (const auto& layer : stats["scores"])
    for (const auto& score : layer) EXPECT_LT(score.get<double>(), 0.1);
}

TEST(RetrievalHeads, RemovingThemCostsFarMoreRecallThanRemovingOthers) {
  auto report = run(fixture_recipe("mode: teacher-forced, needle_ids: 259-511, lengths: \"120\", tests_per_cell: 8, ablation: true"));
  const auto& removal = report["passes"][0]["statistics"]["removal"];
  ASSERT_EQ(removal["by_k"].size(), 4u) << removal.dump();
  const auto& four = removal["by_k"][2];
  ASSERT_EQ(four["k"], 4);
  EXPECT_EQ(four["random_recalls"].size(), 5u);
  EXPECT_GE(four["top_drop"].get<double>(), 2.0 * four["random_drop"].get<double>()) << removal.dump();
  EXPECT_GT(four["top_drop"].get<double>(), 0.2) << removal.dump();
}

TEST(RetrievalHeads, ScoresAndRolesSurviveBothWriters) {
  testing::TemporaryFolder folder;
  const auto onnx_path = folder / "model.onnx";
  const auto safetensors_path = folder / "model";
  run(fixture_recipe(std::string(kProbe) + ", protect: retrieval",
                     "outputs:\n  - {format: onnx, path: " + onnx_path.string() + "}\n  - {format: safetensors, path: " +
                         safetensors_path.string() + "}\n"));
  auto reloaded = load_model({safetensors_path});
  ASSERT_EQ(heads_with_role(reloaded, "retrieval").size(), 6u);
  EXPECT_EQ(protected_heads(reloaded), heads_with_role(reloaded, "retrieval"));
  const auto scores = head_scores(reloaded, "retrieval");
  ASSERT_EQ(scores.size(), 4u);

  onnx::ModelProto proto;
  std::ifstream in(onnx_path, std::ios::binary);
  ASSERT_TRUE(proto.ParseFromIstream(&in));
  nlohmann::json from_onnx;
  for (const auto& entry : proto.metadata_props())
    if (entry.key() == "lathe") from_onnx = nlohmann::json::parse(entry.value());
  EXPECT_EQ(from_onnx, reloaded.annotations);
  EXPECT_EQ(from_onnx["heads"]["scores"]["retrieval"].get<std::vector<std::vector<double>>>(), scores);
}

TEST(RetrievalHeads, NiahEvaluationFillsTheGrid) {
  auto report = run("model: " + shared_path("models/tinystories-retrieval").string() + "\ndata:\n  eval: {tokens: " +
                    shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
                    ", seq_len: 128, max_tokens: 512}\npasses:\n  - eval: {niah: true, needle_ids: 259-511, tests_per_cell: 2}\n");
  const auto& niah = report["metrics"]["eval"]["niah"];
  EXPECT_EQ(niah["recall_by_length_and_depth"].size(), 3u);
  EXPECT_EQ(niah["recall_by_length_and_depth"][0].size(), 5u);
  EXPECT_EQ(niah["tests"], 30);
  EXPECT_GT(niah["recall"].get<double>(), 0.3);
}

TEST(HeadProtection, ProtectedHeadsCannotBeRemoved) {
  auto model = load_model({shared_path("models/stories260K/hf")});
  protect_heads(model, parse_protect(model, "1.0, 4.7", "r.yaml:3:5"));
  EXPECT_NO_THROW(check_not_protected(model, {{1, 1}, {4, 6}}, "r.yaml:9:5"));
  try {
    check_not_protected(model, {{2, 2}, {4, 7}}, "r.yaml:9:5");
    FAIL() << "removed a protected head";
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find("r.yaml:9:5: head 4.7 is protected"), std::string::npos) << error.what();
  }
  EXPECT_THROW(parse_protect(model, "5.0", "r.yaml:3:5"), InputError);   // no layer 5
  EXPECT_THROW(parse_protect(model, "1.8", "r.yaml:3:5"), InputError);   // no head 8
  EXPECT_THROW(parse_protect(model, "retrieval", "r.yaml:3:5"), InputError);  // nothing scored yet
}

}  // namespace
}  // namespace lathe
