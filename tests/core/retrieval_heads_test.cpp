// Retrieval heads on the fixture trained to retrieve (../shared/models/tinystories-retrieval):
// the scores find the heads our independent probe found, removing them costs recall, and the
// scores survive both writers.

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <fstream>

#include "core/head_annotations.h"
#include "core/model_loader.h"
#include "executor/executor.h"
#include "executor/needle_haystack.h"
#include "formats/dataset.h"
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
  Progress quiet(ProgressStyle::None);
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

// The needle runner one layer at a time (converted weights dropped after every pass over a
// layer, the tests' caches in waves of one batch) computes what it computes with the weights
// kept; both agree with full forwards of the growing sequence without a cache.
TEST(NeedleRunner, LayerAtATimeWavesEqualTheKeptWeightsAndFullForwards) {
  at::set_num_threads(1);
  auto model = load_model({shared_path("models/tinystories-retrieval")});
  for (auto& [name, tensor] : model.tensors)  // float16 weights: the executor converts them
    if (tensor.dim() == 2) tensor = tensor.to(at::kHalf);
  const auto tokens = read_token_file(shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin"),
                                      TokenFileType::U16, 512);
  std::vector<std::int32_t> haystack;
  for (auto id : tokens)
    if (id != model.config.bos_id) haystack.push_back(id);
  NeedleOptions options;
  options.needle_ids = std::make_pair(259, 511);
  options.context_lengths = {40, 120};
  options.tests_per_cell = 2;
  const auto tests = make_needle_tests(haystack, model.config.bos_id, model.config.max_positions, options, "test");
  const Executor kept(model), released(model);
  NeedleRunOptions one_layer_at_a_time;
  one_layer_at_a_time.release_layers = true;
  one_layer_at_a_time.state_budget = 1;  // every batch a wave of its own
  std::int64_t passes = 0, last_done = 0;
  one_layer_at_a_time.on_layer_pass = [&](std::int64_t done, std::int64_t all) {
    EXPECT_EQ(done, last_done + 1);
    last_done = done;
    passes = all;
  };
  for (auto decoding : {NeedleDecoding::Greedy, NeedleDecoding::TeacherForced}) {
    const auto a = run_needle_tests(kept, tests, decoding, nullptr, true);
    last_done = 0;
    const auto b = run_needle_tests(released, tests, decoding, nullptr, true, one_layer_at_a_time);
    const auto c = run_needle_tests_without_cache(kept, tests, decoding, nullptr, true);
    // Two waves (one per prompt length); greedy: the prompt and one step per needle token,
    // teacher-forced: the prompt and one step over the whole continuation.
    const std::int64_t continuation = options.needle_length - options.cue_length;
    EXPECT_EQ(passes, decoding == NeedleDecoding::Greedy ? 2 * (1 + continuation) : 4);
    EXPECT_EQ(last_done, passes);
    EXPECT_EQ(a.recall, b.recall);
    EXPECT_TRUE(at::equal(a.copies, b.copies));
    EXPECT_EQ(a.recall, c.recall);
    EXPECT_TRUE(at::equal(a.copies, c.copies)) << (a.copies - c.copies).abs().sum().item<std::int64_t>();
    EXPECT_GT(a.copies.sum().item<std::int64_t>(), 0);
  }
}

TEST(NeedleRunner, SamplingAHaystackFromAModelAboveTheMemoryLimitIsRefused) {
  Progress quiet(ProgressStyle::None);
  RunOptions tight;
  tight.memory_limit = 1 << 20;  // the fixture's float32 weights: several MB
  const auto recipe = parse_recipe("model: " + shared_path("models/tinystories-retrieval").string() +
                                       "\npasses:\n  - retrieval-heads: {lengths: \"40\"}\n",
                                   "r.yaml");
  try {
    run_recipe(recipe, tight, quiet);
    FAIL() << "expected sampling to be refused";
  } catch (const InputError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("r.yaml:3:5: sampling a haystack from the model holds its float32 weights"), std::string::npos)
        << message;
    EXPECT_NE(message.find("name a data entry"), std::string::npos) << message;
  }
}

TEST(HeadProtection, ProtectedHeadsCannotBeRemoved) {
  auto model = load_model({shared_path("models/stories260K/hf")});
  protect_heads(model, resolve_heads(model, {}, {{1, 0}, {4, 7}}, "r.yaml:3:5", "protect"));
  EXPECT_NO_THROW(check_not_protected(model, {{1, 1}, {4, 6}}, "r.yaml:9:5"));
  try {
    check_not_protected(model, {{2, 2}, {4, 7}}, "r.yaml:9:5");
    FAIL() << "removed a protected head";
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find("r.yaml:9:5: head 4.7 is protected"), std::string::npos) << error.what();
  }
  EXPECT_THROW(resolve_heads(model, {}, {{5, 0}}, "r.yaml:3:5", "protect"), InputError);  // no layer 5
  EXPECT_THROW(resolve_heads(model, {}, {{1, 8}}, "r.yaml:3:5", "protect"), InputError);  // no head 8
  EXPECT_THROW(resolve_heads(model, {"retrieval"}, {}, "r.yaml:3:5", "protect"), InputError);  // nothing scored yet
}

}  // namespace
}  // namespace lathe
