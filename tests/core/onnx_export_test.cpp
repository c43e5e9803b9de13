// The ONNX writer against the executor: every exported file passes onnx's own checker (full
// check, in Debian's python) and gives the executor's logits when ONNX Runtime runs it
// (tests/node/run_onnx.js).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/model_loader.h"
#include "executor/executor.h"
#include "onnx_runtime.h"
#include "support/errors.h"
#include "test_paths.h"
#include "writers/onnx_writer.h"

namespace lathe {
namespace {

namespace fs = std::filesystem;
using testing::shared_path;
using testing::source_path;
using testing::TemporaryFolder;
using testing::expect_pass_onnx_checker;
using testing::random_ids;
using testing::read_text;
using testing::run_in_onnx_runtime;

constexpr double kTolerance = 1e-4;

// max |ONNX Runtime - executor| over the logits of a random batch of `batch` x `length` ids.
double max_difference_from_executor(const Model& model, const fs::path& model_path, std::int64_t batch,
                                    std::int64_t length, const TemporaryFolder& folder) {
  auto ids = random_ids(model.config.vocab, batch, length, /*seed=*/1234 + length);
  auto from_onnx = run_in_onnx_runtime(model_path, ids, model.config.vocab, folder);
  if (!from_onnx.defined()) return std::numeric_limits<double>::infinity();
  at::NoGradGuard no_grad;
  auto expected = Executor(model).forward(ids);
  return (from_onnx - expected).abs().max().item<double>();
}

onnx::ModelProto read_model_proto(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  onnx::ModelProto proto;
  EXPECT_TRUE(proto.ParseFromIstream(&in)) << path;
  return proto;
}

class OnnxExport : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }

  // Exports, checks with onnx's checker, and compares with the executor on batch 2 at each
  // sequence length.
  void expect_matches_executor(const Model& model, const std::string& name, std::vector<std::int64_t> lengths,
                               const OnnxExportOptions& options = {}) {
    const auto path = folder_ / (name + ".onnx");
    write_onnx(model, path, options);
    expect_pass_onnx_checker({path}, folder_);
    expect_runs_like_executor(model, path, name, lengths);
  }

  void expect_runs_like_executor(const Model& model, const fs::path& path, const std::string& name,
                                 std::vector<std::int64_t> lengths) {
    for (auto length : lengths) {
      const auto difference = max_difference_from_executor(model, path, /*batch=*/2, length, folder_);
      EXPECT_LE(difference, kTolerance) << name << " at sequence length " << length;
      std::cout << "[ diff     ] " << name << " batch 2 x " << length << ": max |onnx - executor| = " << difference
                << "\n";
    }
  }

  TemporaryFolder folder_;
};

Model load_stories260k() { return load_model({shared_path("models/stories260K/hf")}); }

TEST_F(OnnxExport, Stories260KMatchesExecutor) {
  auto model = load_stories260k();
  expect_matches_executor(model, "stories260K", {7, 100});
  EXPECT_FALSE(fs::exists(folder_ / "stories260K.onnx.data"));
}

TEST_F(OnnxExport, MakemoreFromSafetensorsMatchesExecutor) {
  auto model = load_model({shared_path("models/makemore-names-gpt/hf")});
  expect_matches_executor(model, "makemore", {7, model.config.max_positions});
}

TEST_F(OnnxExport, MakemoreFromPyTorchStateDictMatchesExecutor) {
  auto model = load_model({shared_path("models/makemore-names-gpt/original/model.pt"),
                           shared_path("models/makemore-names-gpt/hf/config.json")});
  expect_matches_executor(model, "makemore_pt", {7, model.config.max_positions});
}

TEST_F(OnnxExport, ExternalDataMatchesExecutor) {
  auto model = load_stories260k();
  OnnxExportOptions options;
  options.external_data_threshold = 0;
  expect_matches_executor(model, "stories260K_external", {7}, options);

  const auto data_path = folder_ / "stories260K_external.onnx.data";
  ASSERT_TRUE(fs::exists(data_path));
  EXPECT_LT(fs::file_size(folder_ / "stories260K_external.onnx"), 64u * 1024);
  auto proto = read_model_proto(folder_ / "stories260K_external.onnx");
  int external = 0;
  for (const auto& tensor : proto.graph().initializer()) {
    if (tensor.data_location() != onnx::TensorProto::EXTERNAL) continue;
    ++external;
    EXPECT_FALSE(tensor.has_raw_data()) << tensor.name();
    std::map<std::string, std::string> entries;
    for (const auto& entry : tensor.external_data()) entries[entry.key()] = entry.value();
    EXPECT_EQ(entries["location"], "stories260K_external.onnx.data") << tensor.name();
    const auto offset = std::stoull(entries["offset"]), length = std::stoull(entries["length"]);
    EXPECT_EQ(offset % 4096, 0u) << tensor.name();
    EXPECT_LE(offset + length, fs::file_size(data_path)) << tensor.name();
  }
  EXPECT_GT(external, 0);
}

// Layer 1 keeps 2 query heads over 1 kv head, layer 2 loses its attention, layer 3's MLP is
// narrowed to 100: the graph must follow each layer's own structure.
TEST_F(OnnxExport, PerLayerStructureMatchesExecutor) {
  auto model = load_stories260k();
  const auto head_dim = model.config.head_dim;
  auto narrow = [&](const std::string& name, int dim, std::int64_t size) {
    auto& tensor = model.tensors.at(name);
    tensor = tensor.narrow(dim, 0, size).contiguous();
  };
  // Query heads 0 and 1 read kv head 0 (8 query heads over 4 kv heads).
  ASSERT_EQ(model.layers[1].group_size(), 2);
  narrow("layers.1.attn.q.weight", 0, 2 * head_dim);
  narrow("layers.1.attn.k.weight", 0, head_dim);
  narrow("layers.1.attn.v.weight", 0, head_dim);
  narrow("layers.1.attn.o.weight", 1, 2 * head_dim);
  model.layers[1].query_heads = 2;
  model.layers[1].kv_heads = 1;

  for (const auto* name : {"attn_norm.weight", "attn.q.weight", "attn.k.weight", "attn.v.weight", "attn.o.weight"})
    model.tensors.erase(layer_name(2, name));
  model.layers[2].query_heads = 0;
  model.layers[2].kv_heads = 0;

  narrow("layers.3.mlp.gate.weight", 0, 100);
  narrow("layers.3.mlp.up.weight", 0, 100);
  narrow("layers.3.mlp.down.weight", 1, 100);
  model.layers[3].ffn_width = 100;
  validate_model(model, "per-layer test model");

  expect_matches_executor(model, "stories260K_pruned", {1, 33});
}

// Block options the shipped families do not use, set on makemore (GPT-2 style): the graph
// must follow the options as the executor does.
TEST_F(OnnxExport, OtherBlockOptionsMatchExecutor) {
  const auto base = load_model({shared_path("models/makemore-names-gpt/hf")});
  std::vector<std::pair<std::string, Model>> variants;

  auto erf_gelu = base.clone();
  erf_gelu.family.block.mlp = MlpKind::Gelu;
  variants.emplace_back("gelu_erf", erf_gelu);

  auto plain = base.clone();
  plain.family.block.mlp = MlpKind::Relu;
  plain.family.block.attention_bias = plain.family.block.mlp_bias = plain.family.block.norm_bias = false;
  std::erase_if(plain.tensors, [](const auto& entry) { return entry.first.ends_with(".bias"); });
  plain.config.tied_embeddings = true;
  plain.tensors.erase("lm_head.weight");
  variants.emplace_back("relu_tied_without_biases", plain);

  auto bidirectional = base.clone();
  bidirectional.family.block.causal = false;
  bidirectional.family.block.norm = NormKind::RMS;
  variants.emplace_back("bidirectional_rms", bidirectional);

  std::vector<fs::path> paths;
  for (const auto& [name, model] : variants) {
    validate_model(model, name);
    paths.push_back(folder_ / (name + ".onnx"));
    write_onnx(model, paths.back());
  }
  expect_pass_onnx_checker(paths, folder_);
  for (size_t i = 0; i < variants.size(); ++i)
    expect_runs_like_executor(variants[i].second, paths[i], variants[i].first, {base.config.max_positions});
}

TEST_F(OnnxExport, WritesMetadataAndInterface) {
  auto model = load_model({shared_path("models/makemore-names-gpt/hf")});
  OnnxExportOptions options;
  options.metadata = {{"lathe.recipe", "recipes/tiny.yaml"}, {"lathe.passes", "head-prune,quantize"}};
  const auto path = folder_ / "makemore.onnx";
  write_onnx(model, path, options);

  auto proto = read_model_proto(path);
  EXPECT_EQ(proto.producer_name(), "lathe");
  EXPECT_EQ(proto.ir_version(), 8);
  ASSERT_EQ(proto.opset_import_size(), 1);
  EXPECT_EQ(proto.opset_import(0).version(), 17);
  EXPECT_EQ(proto.graph().name(), "lathe");
  std::map<std::string, std::string> metadata;
  for (const auto& entry : proto.metadata_props()) metadata[entry.key()] = entry.value();
  EXPECT_EQ(metadata["lathe.recipe"], "recipes/tiny.yaml");
  EXPECT_EQ(metadata["lathe.passes"], "head-prune,quantize");
  EXPECT_EQ(metadata["family"], "gpt2");

  ASSERT_EQ(proto.graph().input_size(), 1);
  const auto& input = proto.graph().input(0);
  EXPECT_EQ(input.name(), "input_ids");
  EXPECT_EQ(input.type().tensor_type().elem_type(), onnx::TensorProto::INT64);
  ASSERT_EQ(input.type().tensor_type().shape().dim_size(), 2);
  EXPECT_EQ(input.type().tensor_type().shape().dim(0).dim_param(), "batch");
  EXPECT_EQ(input.type().tensor_type().shape().dim(1).dim_param(), "sequence");
  ASSERT_EQ(proto.graph().output_size(), 1);
  const auto& output = proto.graph().output(0);
  EXPECT_EQ(output.name(), "logits");
  EXPECT_EQ(output.type().tensor_type().elem_type(), onnx::TensorProto::FLOAT);
  ASSERT_EQ(output.type().tensor_type().shape().dim_size(), 3);
  EXPECT_EQ(output.type().tensor_type().shape().dim(2).dim_value(), model.config.vocab);
  EXPECT_FALSE(fs::exists(folder_ / "makemore.onnx.data"));
}

TEST_F(OnnxExport, RejectsOtherOpsets) {
  auto model = load_model({shared_path("models/makemore-names-gpt/hf")});
  OnnxExportOptions options;
  options.opset = 13;
  EXPECT_THROW(write_onnx(model, folder_ / "model.onnx", options), InputError);
  EXPECT_FALSE(fs::exists(folder_ / "model.onnx"));
}

}  // namespace
}  // namespace lathe
