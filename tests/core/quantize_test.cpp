// INT8: the QDQ and dynamic ONNX graphs compute what the executor's fake-quantized model
// computes, and ONNX Runtime computes what the graphs specify, on AVX2 and VNNI CPUs alike;
// excluded weights stay float; exclude patterns are checked; target_cpu sets the weight range.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <fstream>

#include "core/model_loader.h"
#include "core/quantization.h"
#include "executor/executor.h"
#include "formats/safetensors.h"
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

struct QuantizedRun {
  nlohmann::json report;
  std::filesystem::path onnx;
};

std::string recipe_for(const std::string& model, const std::string& data, const std::string& params,
                       const std::filesystem::path& onnx) {
  return "model: " + model + "\ndata:\n  calibration: " + data + "\npasses:\n  - quantize: {" + params +
         "}\noutputs:\n  - {format: onnx, path: " + onnx.string() + "}\n";
}

class Quantize : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }

  // Runs the recipe, then checks its ONNX output against the quantized model the run ended with:
  // the executor and ONNX Runtime each against the exact evaluation of the graph (which rounding
  // flips cannot upset). With `end_to_end`, ONNX Runtime's logits must also agree with the
  // executor's at every position to 1e-3 x max |logit| (the bound), on inputs that meet
  // no rounding flip: a flip early in a sequence moves the positions after it, and with dynamic
  // per-tensor scales every position, so end to end is not a bound two correct evaluations meet
  // in general.
  Model expect_onnx_matches_executor(const std::string& model, const std::string& data, const std::string& params,
                                     std::int64_t length, const std::string& optimization = "all",
                                     bool end_to_end = false) {
    testing::TemporaryFolder folder;
    const auto onnx_path = folder / "model.onnx";
    Progress quiet(ProgressStyle::None);
    const auto recipe = parse_recipe(recipe_for(model, data, params, onnx_path), "q.yaml");
    Model quantized;
    run_recipe(recipe, RunOptions{}, quiet, &quantized);
    EXPECT_TRUE(quantized.quantization.active()) << params;
    if (!quantized.quantization.active()) return quantized;

    auto ids = testing::random_ids(quantized.config.vocab, 2, length, 7);
    testing::expect_int8_onnx_computes_its_graph(onnx_path, quantized, ids, folder, params, optimization);
    at::NoGradGuard no_grad;
    auto expected = Executor(quantized).forward(ids);
    const auto float_logits = Executor(load_model(model_location(recipe.model))).forward(ids);
    EXPECT_GT((expected - float_logits).abs().max().item<double>(), 0.0) << "nothing was quantized";
    if (!end_to_end) return quantized;
    const double scale = float_logits.abs().max().item<double>();
    auto from_onnx = testing::run_in_onnx_runtime(onnx_path, ids, quantized.config.vocab, folder, optimization);
    EXPECT_TRUE(from_onnx.defined());
    if (!from_onnx.defined()) return quantized;
    const double largest = testing::expect_int8_logits_agree(from_onnx, quantized, ids, scale, params);
    EXPECT_LE(largest, 1e-3 * scale) << params;
    return quantized;
  }

  const std::string stories_ = shared_path("models/stories260K/hf").string();
  const std::string stories_data_ = "{tokens: " + shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
                                    ", max_tokens: 4096}";
  const std::string makemore_ = shared_path("models/makemore-names-gpt/hf").string();
  const std::string makemore_data_ = "{text: " + shared_path("data/makemore-names/names.txt").string() +
                                     ", split: lines, eos: true, pack: false, max_tokens: 4096}";
};

// The weight quantizer works a block of rows at a time, reading rows from the stored dtype; it
// must give what the per-tensor formula gives: scales max|w| / limit (or the given ones), values
// round-half-even(w / scale) saturated, and the largest error.
TEST(WeightQuantizer, BlocksOfRowsGiveTheWholeTensorFormula) {
  at::set_num_threads(2);
  const std::int64_t rows = 1001, columns = 700;  // blocks of 748 rows, the last one short
  auto weight = (at::randn({rows, columns}, at::TensorOptions().dtype(at::kFloat)) *
                 at::linspace(1e-3, 10.0, rows).unsqueeze(1)).to(at::kHalf);
  weight[7].zero_();  // a dead row: scale 1e-12 / limit, values 0
  const auto values = weight.to(at::kFloat);
  const auto read = [&](std::int64_t first, const at::Tensor& out) { out.copy_(weight.narrow(0, first, out.size(0))); };
  for (std::int64_t limit : {63, 127}) {
    const auto scales = values.abs().amax(1).clamp_min(1e-12) / static_cast<double>(limit);
    const auto expected = (values / scales.unsqueeze(1)).round().clamp(-limit, limit).to(at::kChar);
    const auto error = (expected.to(at::kFloat) * scales.unsqueeze(1) - values).abs().max().item<double>();
    const auto blocked = quantize_weight(read, rows, columns, limit);
    EXPECT_TRUE(at::equal(blocked.scales, scales)) << limit;
    EXPECT_TRUE(at::equal(blocked.values, expected)) << limit;
    EXPECT_EQ(blocked.max_error, error) << limit;
    EXPECT_EQ(blocked.values.abs().max().item<std::int64_t>(), limit);
    // Given scales (the mse clip): values saturate where the clip is below max|w|.
    const auto clipped = scales * 0.7;
    const auto expected_clipped = (values / clipped.unsqueeze(1)).round().clamp(-limit, limit).to(at::kChar);
    const auto with_scales = quantize_weight(read, rows, columns, limit, clipped);
    EXPECT_TRUE(at::equal(with_scales.scales, clipped)) << limit;
    EXPECT_TRUE(at::equal(with_scales.values, expected_clipped)) << limit;
  }
  at::set_num_threads(1);
}

TEST_F(Quantize, StaticQdqMatchesExecutorOnStories260K) {
  expect_onnx_matches_executor(stories_, stories_data_, "mode: w8a8", 64, "all", true);
}
TEST_F(Quantize, StaticQdqMatchesExecutorOnMakemore) {
  expect_onnx_matches_executor(makemore_, makemore_data_, "mode: w8a8, exclude: \"\"", 16, "all", true);
}
TEST_F(Quantize, SymmetricActivations) {
  expect_onnx_matches_executor(stories_, stories_data_, "mode: w8a8, activations: symmetric", 32);
}
TEST_F(Quantize, PercentileRanges) {
  expect_onnx_matches_executor(stories_, stories_data_, "mode: w8a8, range: percentile", 32);
}
TEST_F(Quantize, MseWeightsAndRanges) {
  expect_onnx_matches_executor(stories_, stories_data_, "mode: w8a8, weights: mse", 32);
  expect_onnx_matches_executor(makemore_, makemore_data_, "mode: w8a8, range: mse", 16);
}
TEST_F(Quantize, ClippingRangesMatchExecutor) {
  expect_onnx_matches_executor(makemore_, makemore_data_, "mode: w8a8, range: moving-average", 16);
  expect_onnx_matches_executor(stories_, stories_data_, "mode: w8a8, range: moving-average", 64);
  expect_onnx_matches_executor(stories_, stories_data_, "mode: w8a8, range: percentile, activations: symmetric", 64);
}
TEST_F(Quantize, TiedEmbeddingIsQuantizedWithTheOutputHead) {
  expect_onnx_matches_executor(stories_, stories_data_, "mode: w8a8, exclude: \"\"", 48);
  expect_onnx_matches_executor(stories_, stories_data_, "mode: dynamic, exclude: \"\"", 48);
  testing::TemporaryFolder folder;
  Progress quiet(ProgressStyle::None);
  Model quantized;
  run_recipe(parse_recipe(recipe_for(stories_, stories_data_, "exclude: \"\"", folder / "int8.onnx"), "q.yaml"), RunOptions{}, quiet,
             &quantized);
  ASSERT_TRUE(quantized.quantization.weight_scales.count("embed.weight"));
  // Nothing large stays float: the table is stored once, as int8 (the rotary tables are the
  // largest float initializers left).
  onnx::ModelProto proto;
  std::ifstream in(folder / "int8.onnx", std::ios::binary);
  ASSERT_TRUE(proto.ParseFromIstream(&in));
  for (const auto& tensor : proto.graph().initializer())
    if (tensor.raw_data().size() > 16384 && tensor.name().rfind("rotary.", 0) != 0)
      EXPECT_EQ(tensor.data_type(), onnx::TensorProto::INT8) << tensor.name();
  write_safetensors_model(quantized, folder / "int8");
  const auto loaded = load_model(ModelLocation{folder / "int8"});
  EXPECT_TRUE(at::equal(loaded.tensor("embed.weight"), quantized.tensor("embed.weight")));
}
TEST_F(Quantize, MovingAverageRangesLieInsideMinMax) {
  testing::TemporaryFolder folder;
  Progress quiet(ProgressStyle::None);
  auto run = [&](const std::string& range) {
    return run_recipe(parse_recipe(recipe_for(makemore_, makemore_data_, "range: " + range, folder / (range + ".onnx")), "q.yaml"),
                      RunOptions{}, quiet)
        .report["passes"][0]["statistics"]["activations"];
  };
  const auto minmax = run("minmax"), moving = run("moving-average");
  ASSERT_EQ(minmax.size(), moving.size());
  for (const auto& [site, range] : moving.items()) {
    EXPECT_GE(range["low"].get<double>(), minmax[site]["low"].get<double>() - 1e-6) << site;
    EXPECT_LE(range["high"].get<double>(), minmax[site]["high"].get<double>() + 1e-6) << site;
  }
}
TEST_F(Quantize, DynamicMatchesExecutor) {
  expect_onnx_matches_executor(stories_, stories_data_, "mode: dynamic", 64);
  expect_onnx_matches_executor(makemore_, makemore_data_, "mode: dynamic", 16);
}
// ONNX Runtime's extended optimizations turn a DequantizeLinear weight feeding a float MatMul
// into an integer kernel that quantizes the activation at run time, so the weight-only graph is
// checked as written (basic optimizations).
TEST_F(Quantize, WeightOnlyMatchesExecutor) {
  expect_onnx_matches_executor(makemore_, makemore_data_, "mode: w8", 16, "basic");
  expect_onnx_matches_executor(stories_, stories_data_, "mode: w8", 32, "basic");
}

TEST_F(Quantize, ExcludedWeightsStayFloat) {
  testing::TemporaryFolder folder;
  const auto onnx_path = folder / "model.onnx";
  Progress quiet(ProgressStyle::None);
  auto report = run_recipe(parse_recipe(recipe_for(makemore_, makemore_data_, "exclude: \"layers.0.*, lm_head.weight, nothing.here\"",
                                                   onnx_path), "q.yaml"),
                           RunOptions{}, quiet).report;
  const auto& stats = report["passes"][0]["statistics"];
  EXPECT_EQ(stats["float_weights"].size(), 7u) << stats.dump();  // q, k, v, o, up, down of layer 0, and the head
  EXPECT_NE(stats["warnings"].dump().find("nothing.here"), std::string::npos) << stats.dump();
  EXPECT_EQ(stats["warnings"].dump().find("MatMulNBits"), std::string::npos) << "a w8a8 model warned of w8";
  onnx::ModelProto proto;
  std::ifstream in(onnx_path, std::ios::binary);
  ASSERT_TRUE(proto.ParseFromIstream(&in));
  int int8_weights = 0;
  for (const auto& tensor : proto.graph().initializer()) {
    if (tensor.name().rfind("layers.0.", 0) == 0 || tensor.name().rfind("lm_head", 0) == 0)
      EXPECT_NE(tensor.data_type(), onnx::TensorProto::INT8) << tensor.name();
    if (tensor.data_type() == onnx::TensorProto::INT8 && tensor.dims_size() == 2) ++int8_weights;
  }
  EXPECT_EQ(int8_weights, 3 * 6);  // q, k, v, o, up, down of layers 1-3
}

TEST_F(Quantize, MalformedExcludePatternIsBadInput) {
  testing::TemporaryFolder folder;
  Progress quiet(ProgressStyle::None);
  EXPECT_THROW(run_recipe(parse_recipe(recipe_for(makemore_, makemore_data_, "exclude: \"layers.[0]\"", folder / "m.onnx"), "q.yaml"),
                          RunOptions{}, quiet),
               InputError);
}

}  // namespace
}  // namespace lathe

namespace lathe {
namespace {

TEST_F(Quantize, Int8SafetensorsRoundTripWithIdenticalWeights) {
  for (const auto& [model, data] : {std::pair{stories_, stories_data_}, std::pair{makemore_, makemore_data_}}) {
    testing::TemporaryFolder folder;
    Progress quiet(ProgressStyle::None);
    Model quantized;
    run_recipe(parse_recipe("model: " + model + "\ndata:\n  calibration: " + data +
                                "\npasses:\n  - quantize: {exclude: \"\"}\noutputs:\n  - {format: safetensors, path: " +
                                (folder / "int8").string() + "}\n",
                            "q.yaml"),
               RunOptions{}, quiet, &quantized);
    auto file = SafetensorsFile::open(folder / "int8/model.safetensors");
    int int8_tensors = 0;
    for (const auto& view : file.tensors()) int8_tensors += view.dtype == DType::I8;
    EXPECT_GT(int8_tensors, 0) << model;
    auto reloaded = load_model({folder / "int8"});
    EXPECT_EQ(reloaded.quantization.mode, quantized.quantization.mode);
    EXPECT_EQ(reloaded.quantization.weight_scales.size(), quantized.quantization.weight_scales.size());
    EXPECT_EQ(reloaded.quantization.activations.size(), quantized.quantization.activations.size());
    for (const auto& [name, tensor] : quantized.tensors) EXPECT_TRUE(at::equal(reloaded.stored(name), tensor)) << name;
    for (const auto& [name, scales] : quantized.quantization.weight_scales)
      EXPECT_TRUE(at::equal(reloaded.quantization.weight_scales.at(name), scales)) << name;
    auto ids = testing::random_ids(quantized.config.vocab, 2, 12, 3);
    at::NoGradGuard no_grad;
    EXPECT_TRUE(at::equal(Executor(reloaded).forward(ids), Executor(quantized).forward(ids))) << model;
  }
}

// Full 8-bit weights where the recipe targets VNNI CPUs; 7 bits by default, safe on AVX2 too.
// ONNX Runtime is held to the graph for 8-bit weights only on a CPU with VNNI (the check
// detects the CPU); the executor is held to it everywhere.
TEST_F(Quantize, TargetCpuSetsTheWeightRange) {
  for (const char* mode : {"w8a8", "dynamic", "w8"}) {
    const auto optimization = std::string(mode) == "w8" ? "basic" : "all";
    const auto vnni = expect_onnx_matches_executor(stories_, stories_data_, std::string("target_cpu: vnni, exclude: \"\", mode: ") + mode,
                                                   48, optimization);
    EXPECT_EQ(vnni.quantization.target_cpu, TargetCpu::Vnni);
    EXPECT_EQ(vnni.quantization.weight_limit, 127);
    expect_onnx_matches_executor(makemore_, makemore_data_, std::string("target_cpu: vnni, mode: ") + mode, 16, optimization);
  }
  const auto avx2 = expect_onnx_matches_executor(makemore_, makemore_data_, "target_cpu: avx2, mode: dynamic, exclude: \"\"", 16);
  EXPECT_EQ(avx2.quantization.weight_limit, 63);

  testing::TemporaryFolder folder;
  Progress quiet(ProgressStyle::None);
  auto run = [&](const std::string& params, const std::string& name, Model* model) {
    return run_recipe(parse_recipe(recipe_for(stories_, stories_data_, params, folder / (name + ".onnx")), "q.yaml"), RunOptions{},
                      quiet, model)
        .report["passes"][0]["statistics"];
  };
  Model by_default, for_vnni, weight_only;
  EXPECT_NE(run("mode: w8", "w8", &weight_only)["warnings"].dump().find("optimization level basic"), std::string::npos);
  const auto default_stats = run("mode: dynamic", "default", &by_default);
  const auto vnni_stats = run("mode: dynamic, target_cpu: vnni", "vnni", &for_vnni);
  EXPECT_EQ(default_stats["target_cpu"], "any");
  EXPECT_EQ(default_stats["weight_limit"], 63);
  EXPECT_EQ(vnni_stats["target_cpu"], "vnni");
  EXPECT_EQ(vnni_stats["weight_limit"], 127);

  // The ONNX file says what it targets, and its int8 weights use the range.
  for (const auto& [name, limit] : {std::pair<std::string, int>{"default", 63}, {"vnni", 127}}) {
    onnx::ModelProto proto;
    std::ifstream in(folder / (name + ".onnx"), std::ios::binary);
    ASSERT_TRUE(proto.ParseFromIstream(&in));
    nlohmann::json metadata;
    for (const auto& entry : proto.metadata_props())
      if (entry.key() == "lathe_quantization") metadata = nlohmann::json::parse(entry.value());
    EXPECT_EQ(metadata["target_cpu"], name == "vnni" ? "vnni" : "any") << name;
    EXPECT_EQ(metadata["weight_limit"], limit) << name;
    int largest = 0;
    for (const auto& tensor : proto.graph().initializer())
      if (tensor.data_type() == onnx::TensorProto::INT8)
        for (char byte : tensor.raw_data()) largest = std::max(largest, std::abs(static_cast<int>(static_cast<std::int8_t>(byte))));
    EXPECT_EQ(largest, limit) << name;
  }
  // Safetensors keeps the target and reads back the identical model.
  write_safetensors_model(for_vnni, folder / "vnni");
  const auto loaded = load_model(ModelLocation{folder / "vnni"});
  EXPECT_EQ(loaded.quantization.target_cpu, TargetCpu::Vnni);
  EXPECT_EQ(loaded.quantization.weight_limit, 127);
  for (const auto& [name, tensor] : for_vnni.tensors) EXPECT_TRUE(at::equal(loaded.stored(name), tensor)) << name;
}

TEST_F(Quantize, UnknownTargetCpuIsBadInput) {
  testing::TemporaryFolder folder;
  try {
    parse_recipe(recipe_for(stories_, stories_data_, "target_cpu: arm", folder / "m.onnx"), "q.yaml");
    ADD_FAILURE() << "target_cpu: arm was accepted";
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find("target_cpu"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace lathe
