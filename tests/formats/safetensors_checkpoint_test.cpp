// Sharded checkpoints: model.safetensors.index.json and its shards, generated from stories260K.

#include <gtest/gtest.h>

#include <cstring>

#include <nlohmann/json.hpp>

#include "formats/safetensors.h"
#include "tests/formats/test_support.h"

namespace lathe {
namespace {

using testing::ScratchDir;

const std::filesystem::path kStories = testing::shared_dir() / "models/stories260K/hf/model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";
constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
constexpr const char* kShard2 = "model-00002-of-00002.safetensors";

// Splits stories260K into two shards in `dir` and writes an index for them.
// Returns the index's weight_map so tests can corrupt it.
nlohmann::json write_sharded_stories(const std::filesystem::path& dir, const SafetensorsFile& source) {
  const auto& tensors = source.tensors();
  std::vector<TensorView> first(tensors.begin(), tensors.begin() + 20);
  std::vector<TensorView> second(tensors.begin() + 20, tensors.end());
  write_safetensors(dir / kShard1, first, source.metadata());
  write_safetensors(dir / kShard2, second, source.metadata());
  nlohmann::json weight_map = nlohmann::json::object();
  std::size_t total = 0;
  for (const auto& tensor : first) weight_map[tensor.name] = kShard1, total += tensor.bytes.size();
  for (const auto& tensor : second) weight_map[tensor.name] = kShard2, total += tensor.bytes.size();
  return {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
}

void write_index(const std::filesystem::path& dir, const nlohmann::json& index) {
  testing::write_bytes(dir / kIndex, index.dump(2));
}

TEST(SafetensorsCheckpoint, ShardedThroughIndexAndFolder) {
  ScratchDir dir;
  auto source = SafetensorsFile::open(kStories);
  write_index(dir.path(), write_sharded_stories(dir.path(), source));

  for (const auto& path : {dir / kIndex, dir.path()}) {
    auto checkpoint = SafetensorsCheckpoint::open(path);
    ASSERT_EQ(checkpoint.shards().size(), 2u) << path;
    EXPECT_EQ(checkpoint.shards()[0].path().filename(), kShard1);
    EXPECT_EQ(checkpoint.shards()[0].tensors().size(), 20u);
    EXPECT_EQ(checkpoint.shards()[1].tensors().size(), 27u);
    EXPECT_EQ(checkpoint.tensors().size(), 47u);
    EXPECT_EQ(checkpoint.metadata(), source.metadata());
    EXPECT_EQ(checkpoint.bytes_on_disk(),
              std::filesystem::file_size(dir / kShard1) + std::filesystem::file_size(dir / kShard2));
    for (const auto& tensor : source.tensors()) {
      const TensorView* found = checkpoint.find(tensor.name);
      ASSERT_NE(found, nullptr) << tensor.name;
      EXPECT_EQ(found->shape, tensor.shape);
      ASSERT_EQ(found->bytes.size(), tensor.bytes.size());
      EXPECT_EQ(std::memcmp(found->bytes.data(), tensor.bytes.data(), tensor.bytes.size()), 0)
          << tensor.name;
    }
  }
}

TEST(SafetensorsCheckpoint, CopiesAndMovesKeepTheirLookups) {
  ScratchDir dir;
  auto source = SafetensorsFile::open(kStories);
  write_index(dir.path(), write_sharded_stories(dir.path(), source));
  std::optional<SafetensorsCheckpoint> original = SafetensorsCheckpoint::open(dir.path());
  SafetensorsCheckpoint copy = *original;
  SafetensorsCheckpoint moved = std::move(*original);
  original.reset();
  for (const auto* checkpoint : {&copy, &moved}) {
    const TensorView* norm = checkpoint->find("model.norm.weight");
    ASSERT_NE(norm, nullptr);
    EXPECT_EQ(norm, checkpoint->shards()[1].find("model.norm.weight"));
    EXPECT_EQ(norm->bytes.size(), 256u);
  }
}

TEST(SafetensorsCheckpoint, IndexNamingAMissingShard) {
  ScratchDir dir;
  auto index = write_sharded_stories(dir.path(), SafetensorsFile::open(kStories));
  index["weight_map"]["model.norm.weight"] = "model-00003-of-00003.safetensors";
  write_index(dir.path(), index);
  testing::expect_input_error([&] { SafetensorsCheckpoint::open(dir.path()); },
                              {kIndex, "shard \"model-00003-of-00003.safetensors\"",
                               "(listed for tensor \"model.norm.weight\") does not exist"});
}

TEST(SafetensorsCheckpoint, IndexNamingATensorAbsentFromItsShard) {
  ScratchDir dir;
  auto index = write_sharded_stories(dir.path(), SafetensorsFile::open(kStories));
  index["weight_map"]["lm_head.weight"] = kShard2;
  write_index(dir.path(), index);
  testing::expect_input_error(
      [&] { SafetensorsCheckpoint::open(dir / kIndex); },
      {kIndex, "tensor \"lm_head.weight\" is listed in shard \"" + std::string(kShard2) +
                   "\", which does not hold it"});
}

TEST(SafetensorsCheckpoint, TensorInTwoShards) {
  ScratchDir dir;
  auto source = SafetensorsFile::open(kStories);
  auto index = write_sharded_stories(dir.path(), source);
  // Shard 2 also gets the embedding, which the index maps to shard 1.
  std::vector<TensorView> second;
  for (const auto& tensor : source.tensors())
    if (index["weight_map"][tensor.name] == kShard2 || tensor.name == "model.embed_tokens.weight")
      second.push_back(tensor);
  write_safetensors(dir / kShard2, second, source.metadata());
  write_index(dir.path(), index);
  testing::expect_input_error([&] { SafetensorsCheckpoint::open(dir.path()); },
                              {kIndex, "tensor \"model.embed_tokens.weight\" is in both shard"});
}

TEST(SafetensorsCheckpoint, ShardHoldingAnUnlistedTensor) {
  ScratchDir dir;
  auto index = write_sharded_stories(dir.path(), SafetensorsFile::open(kStories));
  index["weight_map"].erase("model.norm.weight");
  write_index(dir.path(), index);
  testing::expect_input_error([&] { SafetensorsCheckpoint::open(dir.path()); },
                              {kIndex, "holds tensor \"model.norm.weight\"", "does not list"});
}

TEST(SafetensorsCheckpoint, MalformedIndex) {
  ScratchDir dir;
  testing::write_bytes(dir / kIndex, R"({"metadata": {}})");
  testing::expect_input_error([&] { SafetensorsCheckpoint::open(dir.path()); },
                              {kIndex, "\"weight_map\" is missing"});
  testing::write_bytes(dir / kIndex, R"({"weight_map": {"a": 3}})");
  testing::expect_input_error([&] { SafetensorsCheckpoint::open(dir.path()); },
                              {kIndex, "entry of tensor \"a\" must be a shard file name, got 3"});
  testing::write_bytes(dir / kIndex, R"({"weight_map": {}})");
  testing::expect_input_error([&] { SafetensorsCheckpoint::open(dir.path()); },
                              {kIndex, "lists no tensors"});
  testing::write_bytes(dir / kIndex, "{\"weight_map\": {\n  \"a\": \"x.safetensors\",\n}}");
  testing::expect_input_error([&] { SafetensorsCheckpoint::open(dir.path()); },
                              {kIndex, "invalid JSON at line 3, column 1"});
}

TEST(SafetensorsCheckpoint, FolderWithoutCheckpoint) {
  ScratchDir dir;
  testing::expect_input_error(
      [&] { SafetensorsCheckpoint::open(dir.path()); },
      {dir.path().string(), "folder holds neither model.safetensors nor model.safetensors.index.json"});
  testing::expect_input_error([&] { SafetensorsCheckpoint::open(dir / "nothing.safetensors"); },
                              {"nothing.safetensors: does not exist"});
}

}  // namespace
}  // namespace lathe
