// Layer-streamed execution computes what the whole-model forward computes, with the hidden
// states in memory or in a temporary file; weights held as float16, bfloat16 or int8 give the
// values of their dtype; sharded safetensors outputs in a chosen dtype read back identically.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <onnx/onnx_pb.h>

#include "core/model_loader.h"
#include "datasets/data_sets.h"
#include "executor/calibration.h"
#include "executor/evaluation.h"
#include "executor/executor.h"
#include "executor/head_importance.h"
#include "executor/streamed_forward.h"
#include "formats/safetensors.h"
#include "onnx_runtime.h"
#include "pipeline/pipeline.h"
#include "pipeline/recipe.h"
#include "support/errors.h"
#include "support/progress.h"
#include "test_paths.h"
#include "writers/safetensors_model_writer.h"

namespace lathe {
namespace {

namespace fs = std::filesystem;
using testing::shared_path;

const char* kStories = "models/stories260K/hf";
const char* kMakemore = "models/makemore-names-gpt/hf";

std::vector<at::Tensor> some_inputs(const Model& model, std::uint64_t seed) {
  std::vector<at::Tensor> inputs;
  const auto longest = std::min<std::int64_t>(48, model.config.max_positions);
  for (std::int64_t length : {longest, longest, longest / 3 + 1})
    inputs.push_back(testing::random_ids(model.config.vocab, 2, length, seed++));
  return inputs;
}

// Logits of every batch, streamed, next to each batch's own Executor::forward.
void expect_streamed_equals_forward(const Model& model, const StreamingOptions& options, const std::string& what) {
  at::NoGradGuard no_grad;
  const auto inputs = some_inputs(model, 5);
  const Executor whole(model), streamed(model);
  std::size_t seen = 0;
  streamed_forward({{&streamed, nullptr}}, inputs, [&](std::size_t batch, const std::vector<at::Tensor>& logits) {
    EXPECT_EQ(batch, seen++);
    EXPECT_TRUE(at::equal(logits[0], whole.forward(inputs[batch]))) << what << ", batch " << batch;
  }, options);
  EXPECT_EQ(seen, inputs.size()) << what;
}

TEST(Streaming, LogitsEqualTheWholeModelForwardInMemoryAndSpilled) {
  at::set_num_threads(1);
  for (const char* name : {kStories, kMakemore}) {
    const auto model = load_model({shared_path(name)});
    expect_streamed_equals_forward(model, {}, std::string(name) + " in memory");
    StreamingOptions spilled;
    spilled.hidden_state_budget = 1;  // every hidden state to the temporary file
    expect_streamed_equals_forward(model, spilled, std::string(name) + " spilled");
  }
}

TEST(Streaming, HiddenStatesGoToDiskAboveTheBudgetAndComeBackExactly) {
  testing::TemporaryFolder folder;
  HiddenStates states(3, /*on_disk=*/true, folder.path());
  EXPECT_TRUE(states.on_disk());
  std::vector<at::Tensor> put;
  for (int b = 0; b < 3; ++b) {
    put.push_back(at::randn({2, 5 + b, 7}));
    states.put(b, put.back());
  }
  states.put(1, put[1] * 2);  // the same slot is overwritten in place
  EXPECT_TRUE(at::equal(states.get(0), put[0]));
  EXPECT_TRUE(at::equal(states.get(1), put[1] * 2));
  EXPECT_TRUE(at::equal(states.get(2), put[2]));
  EXPECT_TRUE(fs::is_empty(folder.path())) << "the spill file is unlinked at once";
}

TEST(Streaming, EvaluationWithAReferenceEqualsPerBatchForwards) {
  at::set_num_threads(1);
  const auto model = load_model({shared_path(kStories)});
  auto other = model.clone();
  other.tensors["layers.0.attn.q.weight"] = model.tensor("layers.0.attn.q.weight") * 1.01;
  const auto inputs = some_inputs(model, 9);
  std::vector<EvalBatch> batches;
  for (const auto& ids : inputs) {
    auto targets = at::roll(ids, -1, 1);
    batches.push_back({ids, targets, at::ones(ids.sizes(), at::kBool)});
  }
  const Executor executor(other), reference(model);
  StreamingOptions spilled;
  spilled.hidden_state_budget = 1;
  const auto streamed = evaluate(executor, batches, &reference, spilled);
  // The same metrics, one whole forward per batch.
  at::NoGradGuard no_grad;
  double loss = 0, kl = 0;
  std::int64_t tokens = 0, agree = 0;
  for (const auto& batch : batches) {
    auto log_probs = at::log_softmax(executor.forward(batch.inputs), -1).to(at::kDouble);
    auto reference_log_probs = at::log_softmax(reference.forward(batch.inputs), -1).to(at::kDouble);
    loss -= log_probs.gather(-1, batch.targets.unsqueeze(-1)).sum().item<double>();
    kl += (reference_log_probs.exp() * (reference_log_probs - log_probs)).sum().item<double>();
    agree += log_probs.argmax(-1).eq(reference_log_probs.argmax(-1)).sum().item<std::int64_t>();
    tokens += batch.inputs.numel();
  }
  EXPECT_EQ(streamed.tokens, tokens);
  EXPECT_NEAR(streamed.mean_loss, loss / tokens, 1e-6);
  EXPECT_NEAR(*streamed.kl, kl / tokens, 1e-6);
  EXPECT_GT(*streamed.kl, 0.0);
  EXPECT_DOUBLE_EQ(*streamed.top1_agreement, static_cast<double>(agree) / tokens);
}

TEST(Streaming, CalibrationRangesDoNotDependOnWhereHiddenStatesLive) {
  at::set_num_threads(1);
  const auto model = load_model({shared_path(kStories)});
  std::vector<EvalBatch> batches;
  for (const auto& ids : some_inputs(model, 3)) batches.push_back({ids, ids, at::ones(ids.sizes(), at::kBool)});
  std::set<std::string> sites = {"layers.0.attention_input", "layers.3.mlp_hidden", "final_hidden"};
  for (auto method : {RangeMethod::MinMax, RangeMethod::Percentile}) {
    RangeOptions options;
    options.method = method;
    StreamingOptions spilled;
    spilled.hidden_state_budget = 1;
    const Executor executor(model);
    const auto in_memory = calibrate_ranges(executor, batches, sites, options);
    const auto on_disk = calibrate_ranges(executor, batches, sites, options, spilled);
    ASSERT_EQ(in_memory.size(), sites.size());
    for (const auto& [site, range] : in_memory) {
      EXPECT_EQ(range.low, on_disk.at(site).low) << site;
      EXPECT_EQ(range.high, on_disk.at(site).high) << site;
    }
    if (method != RangeMethod::MinMax) continue;
    // Min-max against one whole forward per batch, observed directly.
    at::NoGradGuard no_grad;
    std::map<std::string, std::pair<double, double>> seen;
    ForwardHooks hooks;
    hooks.on_activation = [&](int layer, ActivationSite site, const at::Tensor& activation) {
      const auto key = site_key(layer, site);
      if (!sites.count(key)) return at::Tensor();
      auto [entry, fresh] = seen.try_emplace(key, activation.min().item<double>(), activation.max().item<double>());
      entry->second = {std::min(entry->second.first, activation.min().item<double>()),
                       std::max(entry->second.second, activation.max().item<double>())};
      return at::Tensor();
    };
    for (const auto& batch : batches) executor.forward(batch.inputs, &hooks);
    for (const auto& [site, range] : in_memory) {
      EXPECT_EQ(range.low, seen.at(site).first) << site;
      EXPECT_EQ(range.high, seen.at(site).second) << site;
    }
  }
}

TEST(Streaming, AblationScoresEqualFullForwardsWithOneHeadOff) {
  at::set_num_threads(1);
  const auto model = load_model({shared_path(kStories)});
  std::vector<EvalBatch> batches;
  for (const auto& ids : some_inputs(model, 11)) batches.push_back({ids, at::roll(ids, -1, 1), at::ones(ids.sizes(), at::kBool)});
  const Executor executor(model);
  const auto scores = head_importance(executor, batches, ImportanceMethod::Ablation, 0);
  // The definition: the mean loss of whole forwards with the head's gate at 0, minus without.
  at::NoGradGuard no_grad;
  auto mean_loss = [&](const ForwardHooks* hooks) {
    double total = 0, tokens = 0;
    for (const auto& batch : batches) {
      auto logits = executor.forward(batch.inputs, hooks);
      // As head_importance.cpp reduces it: masked per-token losses, summed, over the count.
      auto token_loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), batch.targets.reshape({-1}),
                                               /*weight=*/{}, at::Reduction::None);
      auto mask = batch.mask.reshape({-1}).to(at::kFloat);
      total += ((token_loss * mask).sum() / mask.sum()).item<double>() * static_cast<double>(batch.inputs.numel());
      tokens += static_cast<double>(batch.inputs.numel());
    }
    return total / tokens;
  };
  const double baseline = mean_loss(nullptr);
  for (int layer = 0; layer < model.layer_count(); ++layer)
    for (std::int64_t h = 0; h < model.layers[layer].query_heads; h += 3) {
      ForwardHooks hooks;
      for (const auto& structure : model.layers) hooks.head_gates.push_back(at::ones({structure.query_heads}));
      hooks.head_gates[layer][h] = 0.0;
      EXPECT_DOUBLE_EQ(scores[layer][h], mean_loss(&hooks) - baseline) << "head " << layer << "." << h;
    }
}

// The stored tensors of a checkpoint folder, by name (views into the open checkpoint).
std::map<std::string, TensorView> views_of(const SafetensorsCheckpoint& checkpoint) {
  std::map<std::string, TensorView> views;
  for (const auto* view : checkpoint.tensors()) views[view->name] = *view;
  return views;
}

TEST(Streaming, HalfPrecisionCheckpointsRoundTripInTheirDtype) {
  at::set_num_threads(1);
  testing::TemporaryFolder folder;
  for (const char* source : {kStories, kMakemore}) {  // Llama, and GPT-2 (fused QKV, Conv1D layout)
    const auto original = load_model({shared_path(source)});
    for (const auto& [dtype, type, name] : {std::tuple{"float16", at::kHalf, DType::F16}, std::tuple{"bfloat16", at::kBFloat16, DType::BF16}}) {
      const auto first = folder / (std::string(dtype) + "_a_" + fs::path(source).parent_path().filename().string());
      write_safetensors_model(original, first, {}, {dtype, 2'000'000'000});
      const auto loaded = load_model({first});
      for (const auto& [tensor_name, tensor] : loaded.tensors) {
        EXPECT_EQ(tensor.scalar_type(), type) << dtype << " " << tensor_name;
        // Held as written; read as the float32 values of the half-precision numbers.
        EXPECT_TRUE(at::equal(loaded.tensor(tensor_name), original.tensor(tensor_name).to(type).to(at::kFloat))) << tensor_name;
      }
      EXPECT_EQ(nlohmann::json::parse(testing::read_text(first / "config.json"))["torch_dtype"], dtype);
      // Written again with dtype source: the same dtype, the same bytes.
      const auto second = folder / (std::string(dtype) + "_b_" + fs::path(source).parent_path().filename().string());
      write_safetensors_model(loaded, second);
      const auto a = SafetensorsCheckpoint::open(first), b = SafetensorsCheckpoint::open(second);
      const auto views_a = views_of(a), views_b = views_of(b);
      ASSERT_EQ(views_a.size(), views_b.size());
      for (const auto& [tensor_name, view] : views_a) {
        const auto& other = views_b.at(tensor_name);
        EXPECT_EQ(view.dtype, name) << tensor_name;
        EXPECT_EQ(other.dtype, name) << tensor_name;
        EXPECT_TRUE(std::equal(view.bytes.begin(), view.bytes.end(), other.bytes.begin(), other.bytes.end())) << tensor_name;
      }
      // A forward straight from the half-precision weights equals one from their float32 copy.
      auto widened = loaded.clone();
      for (auto& [tensor_name, tensor] : widened.tensors) tensor = tensor.to(at::kFloat);
      const auto ids = testing::random_ids(loaded.config.vocab, 2, 16, 1);
      at::NoGradGuard no_grad;
      EXPECT_TRUE(at::equal(Executor(loaded).forward(ids), Executor(widened).forward(ids))) << dtype;
    }
  }
}

TEST(Streaming, ShardedOutputsReadBackIdentically) {
  at::set_num_threads(1);
  testing::TemporaryFolder folder;
  const auto original = load_model({shared_path(kStories)});
  const auto out = folder / "sharded";
  write_safetensors_model(original, out);  // one file first: the sharded write must replace it
  ASSERT_TRUE(fs::exists(out / "model.safetensors"));
  write_safetensors_model(original, out, {}, {"source", 200'000});
  EXPECT_FALSE(fs::exists(out / "model.safetensors")) << "a stale single file would shadow the shards";
  ASSERT_TRUE(fs::exists(out / "model.safetensors.index.json"));
  const auto index = nlohmann::json::parse(testing::read_text(out / "model.safetensors.index.json"));
  std::set<std::string> shards;
  for (const auto& [tensor_name, file] : index["weight_map"].items()) shards.insert(file.get<std::string>());
  EXPECT_GE(shards.size(), 3u);
  std::uintmax_t total = 0;
  for (const auto& shard : shards) {
    EXPECT_TRUE(fs::exists(out / shard)) << shard;
    EXPECT_LE(fs::file_size(out / shard), 200'000u + 40'000u) << shard << " (a shard holds up to max_shard_size of tensors)";
  }
  for (const auto* view : SafetensorsCheckpoint::open(out).tensors()) total += view->bytes.size();
  EXPECT_EQ(index["metadata"]["total_size"].get<std::uintmax_t>(), total);
  const auto loaded = load_model({out});
  ASSERT_EQ(loaded.tensors.size(), original.tensors.size());
  for (const auto& [tensor_name, tensor] : original.tensors) EXPECT_TRUE(at::equal(loaded.stored(tensor_name), tensor)) << tensor_name;
  // Back to one file: the shards and the index go.
  write_safetensors_model(original, out);
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
  EXPECT_FALSE(fs::exists(out / "model.safetensors.index.json"));
  for (const auto& shard : shards) EXPECT_FALSE(fs::exists(out / shard)) << shard;
}

std::string recipe_text(const fs::path& out, const std::string& passes) {
  const auto tokens = shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string();
  return "model: " + shared_path(kStories).string() + "\ndata:\n  calibration: {tokens: " + tokens +
         ", seq_len: 128, max_tokens: 2048}\n  eval: {tokens: " + tokens + ", seq_len: 256, max_tokens: 4096}\npasses:\n" +
         passes + "outputs:\n  - {format: onnx, path: " + (out / "model.onnx").string() +
         "}\n  - {format: safetensors, path: " + (out / "model").string() + "}\n";
}

TEST(Streaming, ARunUnderATinyMemoryLimitGivesTheSameReportAndFiles) {
  at::set_num_threads(1);
  testing::TemporaryFolder folder;
  Progress quiet(ProgressStyle::None);
  const std::string needles = "lengths: \"48, 96\", depths: \"0, 0.5, 1\", tests_per_cell: 2";
  const std::string passes = "  - retrieval-heads: {data: eval, " + needles + "}\n  - outlier-stats: {}\n  - smooth: {alpha: 0.5}\n" +
                             "  - quantize: {mode: w8a8, range: percentile}\n  - eval: {kl: true, niah: true, niah_data: eval, " +
                             needles + "}\n";
  RunOptions roomy;
  RunOptions tight;
  // Hidden states (256 KB a batch) far above a quarter of it: spilled; the needle tests' weights
  // converted for every pass over a layer, their caches in waves.
  tight.memory_limit = 64 << 10;
  const auto a = run_recipe(parse_recipe(recipe_text(folder / "a", passes), "a.yaml"), roomy, quiet).report;
  const auto b = run_recipe(parse_recipe(recipe_text(folder / "b", passes), "b.yaml"), tight, quiet).report;
  EXPECT_EQ(a["metrics"], b["metrics"]);
  for (std::size_t i = 0; i < a["passes"].size(); ++i)
    EXPECT_EQ(a["passes"][i]["statistics"], b["passes"][i]["statistics"]) << a["passes"][i]["name"];
  // The files differ only in their provenance (the recipe's name).
  const auto file_a = SafetensorsCheckpoint::open(folder / "a/model"), file_b = SafetensorsCheckpoint::open(folder / "b/model");
  const auto tensors_a = views_of(file_a), tensors_b = views_of(file_b);
  ASSERT_EQ(tensors_a.size(), tensors_b.size());
  for (const auto& [name, view] : tensors_a) {
    const auto& other = tensors_b.at(name);
    EXPECT_TRUE(view.dtype == other.dtype && view.shape == other.shape &&
                std::equal(view.bytes.begin(), view.bytes.end(), other.bytes.begin(), other.bytes.end()))
        << name;
  }
  onnx::ModelProto graph_a, graph_b;
  std::ifstream in_a(folder / "a/model.onnx", std::ios::binary), in_b(folder / "b/model.onnx", std::ios::binary);
  ASSERT_TRUE(graph_a.ParseFromIstream(&in_a) && graph_b.ParseFromIstream(&in_b));
  EXPECT_EQ(graph_a.graph().SerializeAsString(), graph_b.graph().SerializeAsString());
}

TEST(Streaming, AWholeModelPassRefusesToStartAboveTheMemoryLimit) {
  testing::TemporaryFolder folder;
  Progress quiet(ProgressStyle::None);
  RunOptions tight;
  tight.memory_limit = 1 << 20;  // stories260K is 1 MB of float32: a fine-tune needs two copies
  const auto recipe = parse_recipe(recipe_text(folder / "c", "  - eval: {}\n  - finetune: {steps: 1}\n"), "c.yaml");
  try {
    run_recipe(recipe, tight, quiet);
    FAIL() << "expected the fine-tune to be refused";
  } catch (const InputError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("c.yaml:"), std::string::npos) << message;
    EXPECT_NE(message.find("finetune holds the whole model"), std::string::npos) << message;
    EXPECT_NE(message.find("more than the memory limit of 1.0 MB"), std::string::npos) << message;
  }
  EXPECT_FALSE(fs::exists(folder / "c")) << "nothing is written before the refusal";
  // Streamed passes run under the same limit.
  EXPECT_NO_THROW(run_recipe(parse_recipe(recipe_text(folder / "d", "  - eval: {kl: false}\n"), "d.yaml"), tight, quiet));
}

}  // namespace
}  // namespace lathe
