// The executor against the reference numbers in ../shared/models/README.md and
// ../shared/data/README.md, measured there by independent PyTorch forwards.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/model_loader.h"
#include "executor/evaluation.h"
#include "executor/executor.h"
#include "formats/dataset.h"
#include "formats/tokenizer.h"
#include "test_paths.h"

namespace lathe {
namespace {

using testing::shared_path;

class ReferenceNumbers : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }  // golden values: pin the reduction order
};

std::vector<std::vector<std::int32_t>> makemore_test_names(const Model& model) {
  auto tokenizer = load_tokenizer(shared_path("models/makemore-names-gpt/hf/vocab.json"));
  TextEncoding encoding{TextSplit::Lines, model.config.bos_id, model.config.eos_id};
  return encode_text_file(shared_path("data/makemore-names/test.txt"), *tokenizer, encoding);
}

TEST_F(ReferenceNumbers, Stories260KLossOnTinyStoriesTokens) {
  auto model = load_model({shared_path("models/stories260K/hf")});
  auto tokens = read_token_file(shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin"),
                                TokenFileType::U16, model.config.vocab);
  auto batches = make_eval_batches({tokens}, /*pack=*/true, {/*window=*/512, /*batch_size=*/8});
  auto metrics = evaluate(Executor(model), batches);
  EXPECT_EQ(metrics.tokens, 124999);
  EXPECT_NEAR(metrics.mean_loss, 1.5118, 5e-4);
}

TEST_F(ReferenceNumbers, Stories260KGreedyDecodingFromBos) {
  std::ifstream in(shared_path("models/stories260K/reference/greedy_from_bos.json"));
  auto reference = nlohmann::json::parse(in);
  auto expected = reference["generated_ids"].get<std::vector<std::int64_t>>();
  ASSERT_EQ(expected.size(), 256u);
  auto model = load_model({shared_path("models/stories260K/hf")});
  auto produced = Executor(model).greedy_decode(reference["prompt_ids"].get<std::vector<std::int64_t>>(), 256);
  EXPECT_EQ(produced, expected);
}

TEST_F(ReferenceNumbers, MakemoreLossFromSafetensors) {
  auto model = load_model({shared_path("models/makemore-names-gpt/hf")});
  auto batches = make_eval_batches(makemore_test_names(model), /*pack=*/false, {16, 64});
  EXPECT_NEAR(evaluate(Executor(model), batches).mean_loss, 1.9711, 5e-4);
}

TEST_F(ReferenceNumbers, MakemoreLossFromPyTorchStateDict) {
  auto model = load_model({shared_path("models/makemore-names-gpt/original/model.pt"),
                           shared_path("models/makemore-names-gpt/hf/config.json")});
  EXPECT_EQ(model.source.format, "pytorch");
  auto batches = make_eval_batches(makemore_test_names(model), /*pack=*/false, {16, 64});
  EXPECT_NEAR(evaluate(Executor(model), batches).mean_loss, 1.9711, 5e-4);
}

TEST_F(ReferenceNumbers, BothMakemoreCheckpointsHoldTheSameWeights) {
  auto from_safetensors = load_model({shared_path("models/makemore-names-gpt/hf")});
  auto from_pytorch = load_model({shared_path("models/makemore-names-gpt/original/model.pt"),
                                  shared_path("models/makemore-names-gpt/hf/config.json")});
  ASSERT_EQ(from_safetensors.tensors.size(), from_pytorch.tensors.size());
  for (const auto& [name, tensor] : from_safetensors.tensors)
    EXPECT_TRUE(at::equal(tensor, from_pytorch.tensor(name))) << name;
}

}  // namespace
}  // namespace lathe
