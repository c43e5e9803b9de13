// Reading the real checkpoints in shared/models.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <set>

#include "formats/safetensors.h"
#include "tests/formats/test_support.h"

namespace lathe {
namespace {

using testing::shared_dir;

const std::filesystem::path kStories = shared_dir() / "models/stories260K/hf/model.safetensors";
const std::filesystem::path kMakemore = shared_dir() / "models/makemore-names-gpt/hf/model.safetensors";
const std::filesystem::path kRetrieval = shared_dir() / "models/tinystories-retrieval/model.safetensors";

std::int64_t parameter_count(const std::vector<TensorView>& tensors) {
  std::int64_t total = 0;
  for (const auto& tensor : tensors) total += tensor.element_count();
  return total;
}

TEST(SafetensorsRead, Stories260K) {
  auto file = SafetensorsFile::open(kStories);
  ASSERT_EQ(file.tensors().size(), 47u);
  EXPECT_EQ(parameter_count(file.tensors()), 260032);
  for (const auto& tensor : file.tensors()) {
    EXPECT_EQ(tensor.dtype, DType::F32) << tensor.name;
    EXPECT_EQ(tensor.bytes.size(), static_cast<std::size_t>(tensor.element_count()) * 4);
  }
  EXPECT_EQ(file.metadata(), (Metadata{{"format", "pt"}}));
  EXPECT_EQ(file.path(), kStories);

  const TensorView* embedding = file.find("model.embed_tokens.weight");
  ASSERT_NE(embedding, nullptr);
  EXPECT_EQ(embedding->shape, (std::vector<std::int64_t>{512, 64}));
  EXPECT_EQ(embedding->bytes.size(), 512u * 64 * 4);
  const TensorView* k_proj = file.find("model.layers.4.self_attn.k_proj.weight");
  ASSERT_NE(k_proj, nullptr);
  EXPECT_EQ(k_proj->shape, (std::vector<std::int64_t>{32, 64}));
  const TensorView* gate = file.find("model.layers.0.mlp.gate_proj.weight");
  ASSERT_NE(gate, nullptr);
  EXPECT_EQ(gate->shape, (std::vector<std::int64_t>{172, 64}));
  EXPECT_EQ(file.find("lm_head.weight"), nullptr);  // tied to the embedding
  EXPECT_EQ(file.find(""), nullptr);
}

TEST(SafetensorsRead, TensorsAreInOffsetOrderAndTileTheData) {
  auto file = SafetensorsFile::open(kStories);
  auto all = file.mapping()->bytes();
  const std::byte* end = all.data() + all.size();
  // The tensors' bytes, in order, run back to back up to the last byte of the file.
  const std::byte* expected = file.tensors().front().bytes.data();
  for (const auto& tensor : file.tensors()) {
    EXPECT_EQ(tensor.bytes.data(), expected) << tensor.name;
    expected = tensor.bytes.data() + tensor.bytes.size();
  }
  EXPECT_EQ(expected, end);
  EXPECT_EQ(file.tensors().front().name, "model.embed_tokens.weight");
  EXPECT_EQ(file.tensors().back().name, "model.norm.weight");
}

TEST(SafetensorsRead, BytesAreTheFileBytes) {
  auto file = SafetensorsFile::open(kStories);
  std::string raw = testing::read_bytes(kStories);
  const TensorView* norm = file.find("model.norm.weight");
  ASSERT_NE(norm, nullptr);
  // The last tensor ends the file.
  ASSERT_EQ(norm->bytes.size(), 64u * 4);
  EXPECT_EQ(std::memcmp(norm->bytes.data(), raw.data() + raw.size() - 256, 256), 0);
  // RMSNorm weights of a trained model: finite and mostly positive.
  float weights[64];
  std::memcpy(weights, norm->bytes.data(), sizeof weights);
  int positive = 0;
  for (float w : weights) {
    EXPECT_TRUE(std::isfinite(w));
    positive += w > 0;
  }
  EXPECT_GT(positive, 48);
}

TEST(SafetensorsRead, MakemoreGpt2) {
  auto file = SafetensorsFile::open(kMakemore);
  ASSERT_EQ(file.tensors().size(), 53u);
  EXPECT_EQ(parameter_count(file.tensors()), 204544);
  EXPECT_EQ(file.metadata(), (Metadata{{"format", "pt"}}));
  const TensorView* c_attn = file.find("transformer.h.0.attn.c_attn.weight");
  ASSERT_NE(c_attn, nullptr);
  EXPECT_EQ(c_attn->shape, (std::vector<std::int64_t>{64, 192}));  // Conv1D [in, out]
  const TensorView* lm_head = file.find("lm_head.weight");
  ASSERT_NE(lm_head, nullptr);
  EXPECT_EQ(lm_head->shape, (std::vector<std::int64_t>{27, 64}));
  const TensorView* positions = file.find("transformer.wpe.weight");
  ASSERT_NE(positions, nullptr);
  EXPECT_EQ(positions->shape, (std::vector<std::int64_t>{16, 64}));
  std::set<std::string> names;
  for (const auto& tensor : file.tensors()) names.insert(tensor.name);
  EXPECT_EQ(names.size(), 53u);
}

TEST(SafetensorsRead, FileWithoutMetadata) {
  auto file = SafetensorsFile::open(kRetrieval);
  EXPECT_TRUE(file.metadata().empty());
  EXPECT_EQ(file.tensors().size(), 38u);
  EXPECT_EQ(parameter_count(file.tensors()), 443232);
}

TEST(SafetensorsRead, ViewsOutliveTheFileObject) {
  std::span<const std::byte> bytes;
  std::shared_ptr<const MappedFile> mapping;
  {
    auto file = SafetensorsFile::open(kStories);
    bytes = file.find("model.norm.weight")->bytes;
    mapping = file.mapping();
  }
  ASSERT_EQ(bytes.size(), 256u);
  std::string raw = testing::read_bytes(kStories);
  EXPECT_EQ(std::memcmp(bytes.data(), raw.data() + raw.size() - 256, 256), 0);
}

TEST(SafetensorsRead, CheckpointFromFileAndFolder) {
  for (const auto& path : {kStories, kStories.parent_path()}) {
    auto checkpoint = SafetensorsCheckpoint::open(path);
    ASSERT_EQ(checkpoint.shards().size(), 1u) << path;
    EXPECT_EQ(checkpoint.tensors().size(), 47u);
    EXPECT_EQ(checkpoint.bytes_on_disk(), std::filesystem::file_size(kStories));
    EXPECT_EQ(checkpoint.metadata(), (Metadata{{"format", "pt"}}));
    const TensorView* norm = checkpoint.find("model.norm.weight");
    ASSERT_NE(norm, nullptr);
    EXPECT_EQ(norm, checkpoint.shards()[0].find("model.norm.weight"));
    EXPECT_EQ(checkpoint.find("missing"), nullptr);
  }
}

TEST(SafetensorsRead, DTypeNamesAndSizes) {
  const std::pair<DType, std::size_t> expected[] = {
      {DType::F32, 4}, {DType::F16, 2}, {DType::BF16, 2}, {DType::I8, 1},
      {DType::U8, 1},  {DType::I32, 4}, {DType::I64, 8}};
  for (auto [dtype, size] : expected) {
    EXPECT_EQ(dtype_size(dtype), size);
    EXPECT_EQ(parse_dtype(dtype_name(dtype), "x.safetensors"), dtype);
  }
  testing::expect_input_error([] { parse_dtype("F64", "x.safetensors"); },
                              {"x.safetensors: ", "unknown dtype \"F64\""});
}

}  // namespace
}  // namespace lathe
