// The executor's hooks that later passes build on: per-head gates, attention capture,
// activation observers (and replacement), the KV cache, and autograd through gates.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include "core/model_loader.h"
#include "executor/executor.h"
#include "support/errors.h"
#include "test_paths.h"

namespace lathe {
namespace {

using testing::shared_path;

class ExecutorHooks : public ::testing::Test {
 protected:
  void SetUp() override {
    at::set_num_threads(1);
    at::manual_seed(0);
  }
  Model stories_ = load_model({shared_path("models/stories260K/hf")});
  Model makemore_ = load_model({shared_path("models/makemore-names-gpt/hf")});
  at::Tensor ids(const Model& model, std::int64_t batch, std::int64_t length) {
    return at::randint(model.config.vocab, {batch, length}, at::kLong);
  }
};

TEST_F(ExecutorHooks, GatesOfOneChangeNothing) {
  for (const Model* model : {&stories_, &makemore_}) {
    Executor executor(*model);
    auto input = ids(*model, 2, 12);
    ForwardHooks hooks;
    for (const auto& layer : model->layers) hooks.head_gates.push_back(at::ones({layer.query_heads}));
    EXPECT_TRUE(at::allclose(executor.forward(input, &hooks), executor.forward(input), 0, 0)) << model->family.name;
  }
}

TEST_F(ExecutorHooks, ZeroGateEqualsCuttingTheHeadsOutputColumns) {
  Executor executor(stories_);
  auto input = ids(stories_, 2, 16);
  ForwardHooks hooks;
  hooks.head_gates.resize(stories_.layers.size());
  hooks.head_gates[2] = at::ones({8});
  hooks.head_gates[2][5] = 0;
  auto gated = executor.forward(input, &hooks);

  Model cut = stories_.clone();
  auto o = cut.layer_tensor(2, "attn.o.weight").clone();
  o.narrow(1, 5 * cut.config.head_dim, cut.config.head_dim).zero_();
  cut.tensors[layer_name(2, "attn.o.weight")] = o;
  EXPECT_LE((gated - Executor(cut).forward(input)).abs().max().item<float>(), 1e-6);
  EXPECT_GT((gated - executor.forward(input)).abs().max().item<float>(), 1e-4) << "the gate had no effect";
}

TEST_F(ExecutorHooks, AttentionProbabilitiesAreCausalDistributions) {
  Executor executor(stories_);
  std::vector<at::Tensor> captured(stories_.layers.size());
  ForwardHooks hooks;
  hooks.on_attention = [&](int layer, const at::Tensor& probabilities) { captured[layer] = probabilities.clone(); };
  executor.forward(ids(stories_, 2, 10), &hooks);
  for (const auto& probabilities : captured) {
    ASSERT_TRUE(probabilities.defined());
    EXPECT_EQ(probabilities.sizes(), at::IntArrayRef({2, 8, 10, 10}));
    EXPECT_TRUE(at::allclose(probabilities.sum(-1), at::ones({2, 8, 10}), 1e-5, 1e-5));
    EXPECT_EQ(probabilities.triu(1).abs().max().item<float>(), 0.0f) << "attends to the future";
  }
}

TEST_F(ExecutorHooks, ObserversSeeEverySiteAndCanReplaceActivations) {
  Executor executor(makemore_);
  std::map<std::string, int> seen;
  ForwardHooks observe;
  observe.on_activation = [&](int layer, ActivationSite site, const at::Tensor& activation) {
    ++seen[activation_site_name(site)];
    return at::Tensor();
  };
  auto input = ids(makemore_, 3, 9);
  auto plain = executor.forward(input, &observe);
  for (const char* site : {"attention_input", "attention_context", "attention_output", "mlp_input", "mlp_hidden",
                           "mlp_output"})
    EXPECT_EQ(seen[site], 4) << site;
  EXPECT_EQ(seen["final_hidden"], 1);

  ForwardHooks silence_mlp;
  silence_mlp.on_activation = [](int, ActivationSite site, const at::Tensor& activation) {
    return site == ActivationSite::MlpOutput ? at::zeros_like(activation) : at::Tensor();
  };
  EXPECT_GT((executor.forward(input, &silence_mlp) - plain).abs().max().item<float>(), 1e-3);
}

TEST_F(ExecutorHooks, KvCacheDecodingMatchesFullForward) {
  for (const Model* model : {&stories_, &makemore_}) {
    Executor executor(*model);
    auto input = ids(*model, 2, 14);
    auto full = executor.forward(input);
    KvCache cache;
    std::vector<at::Tensor> steps = {executor.forward(input.narrow(1, 0, 5), nullptr, &cache)};
    for (int t = 5; t < 14; ++t) steps.push_back(executor.forward(input.narrow(1, t, 1), nullptr, &cache));
    EXPECT_EQ(cache.length, 14);
    EXPECT_LE((at::cat(steps, 1) - full).abs().max().item<float>(), 1e-4) << model->family.name;
  }
}

TEST_F(ExecutorHooks, LongBatchesTakeTheChunkedAttentionPathToTheSameResult) {
  Executor executor(stories_);
  auto input = ids(stories_, 3, 300);  // large enough that attention runs in chunks
  auto batched = executor.forward(input);
  for (int row = 0; row < 3; ++row)
    EXPECT_LE((batched[row] - executor.forward(input.narrow(0, row, 1))[0]).abs().max().item<float>(), 1e-5);
  ForwardHooks capture;  // a capture hook takes the unchunked path
  capture.on_attention = [](int, const at::Tensor&) {};
  EXPECT_LE((executor.forward(input, &capture) - batched).abs().max().item<float>(), 1e-5);
}

TEST_F(ExecutorHooks, GradientsFlowToHeadGates) {
  Executor executor(stories_);
  auto input = ids(stories_, 2, 16);
  ForwardHooks hooks;
  for (const auto& layer : stories_.layers) hooks.head_gates.push_back(at::ones({layer.query_heads}).set_requires_grad(true));
  auto logits = executor.forward(input, &hooks);
  auto loss = at::cross_entropy_loss(logits.reshape({-1, stories_.config.vocab}).narrow(0, 0, 30),
                                     input.reshape({-1}).narrow(0, 1, 30));
  loss.backward();
  for (const auto& gate : hooks.head_gates) {
    ASSERT_TRUE(gate.grad().defined());
    EXPECT_GT(gate.grad().abs().sum().item<float>(), 0.0f);
  }
}

TEST_F(ExecutorHooks, PositionsPastTheModelsMaximumAreBadInput) {
  EXPECT_THROW(Executor(makemore_).forward(ids(makemore_, 1, 17)), InputError);
}

}  // namespace
}  // namespace lathe
