// Writing safetensors: round trips, layout and alignment, validation of what is written.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "formats/safetensors.h"
#include "tests/formats/test_support.h"

namespace lathe {
namespace {

using testing::ScratchDir;

// Owns the bytes that TensorViews point into.
struct TensorSet {
  std::vector<std::vector<std::byte>> storage;
  std::vector<TensorView> views;

  void add(std::string name, DType dtype, std::vector<std::int64_t> shape) {
    std::int64_t count = 1;
    for (auto dim : shape) count *= dim;
    auto& bytes = storage.emplace_back(static_cast<std::size_t>(count) * dtype_size(dtype));
    // A pattern that differs per tensor and per byte.
    std::uint32_t state = static_cast<std::uint32_t>(std::hash<std::string>{}(name));
    for (auto& byte : bytes) {
      state = state * 1664525u + 1013904223u;
      byte = static_cast<std::byte>(state >> 24);
    }
    views.push_back(TensorView{std::move(name), dtype, std::move(shape), {}});
  }

  // Views are bound after all storage exists, so growing `storage` cannot invalidate them.
  const std::vector<TensorView>& bound() {
    for (std::size_t i = 0; i < views.size(); ++i) views[i].bytes = std::span<const std::byte>(storage[i]);
    return views;
  }
};

TensorSet mixed_tensors() {
  TensorSet set;
  set.add("embed.weight", DType::F16, {7, 3});
  set.add("norm.weight", DType::BF16, {5});
  set.add("quantized.weight", DType::I8, {3, 5});
  set.add("quantized.zero_point", DType::U8, {3});
  set.add("positions", DType::I64, {3});
  set.add("lookup", DType::I32, {2, 3});
  set.add("dense.weight", DType::F32, {3, 5});
  set.add("scalar", DType::F32, {});
  set.add("empty", DType::F32, {0, 4});
  set.add("odd.bytes", DType::U8, {1});
  return set;
}

const Metadata kMetadata = {{"format", "pt"}, {"note", "quotes \" and unicode \xc3\xa9"}};

bool same_bytes(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

TEST(SafetensorsWrite, RoundTripAllDTypes) {
  ScratchDir dir;
  auto set = mixed_tensors();
  const auto& tensors = set.bound();
  write_safetensors(dir / "a.safetensors", tensors, kMetadata);

  auto file = SafetensorsFile::open(dir / "a.safetensors");
  EXPECT_EQ(file.metadata(), kMetadata);
  ASSERT_EQ(file.tensors().size(), tensors.size());
  for (const auto& original : tensors) {
    const TensorView* read = file.find(original.name);
    ASSERT_NE(read, nullptr) << original.name;
    EXPECT_EQ(read->dtype, original.dtype) << original.name;
    EXPECT_EQ(read->shape, original.shape) << original.name;
    EXPECT_TRUE(same_bytes(read->bytes, original.bytes)) << original.name;
  }
  EXPECT_EQ(file.find("scalar")->element_count(), 1);
  EXPECT_EQ(file.find("empty")->bytes.size(), 0u);

  // Writing what was read gives the same file, byte for byte.
  write_safetensors(dir / "b.safetensors", file.tensors(), file.metadata());
  EXPECT_EQ(testing::read_bytes(dir / "a.safetensors"), testing::read_bytes(dir / "b.safetensors"));
}

TEST(SafetensorsWrite, EveryTensorIsAlignedToItsElementSize) {
  ScratchDir dir;
  auto set = mixed_tensors();
  write_safetensors(dir / "a.safetensors", set.bound(), {});
  auto file = SafetensorsFile::open(dir / "a.safetensors");
  std::string raw = testing::read_bytes(dir / "a.safetensors");
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, raw.data(), 8);
  EXPECT_EQ((8 + header_size) % 8, 0u) << "data must start 8-byte aligned";
  // The JSON is padded with spaces, and only with spaces.
  std::string header = raw.substr(8, header_size);
  auto json_end = header.rfind('}') + 1;
  EXPECT_LT(header.size() - json_end, 8u);
  EXPECT_EQ(header.substr(json_end), std::string(header.size() - json_end, ' '));

  const std::byte* data_start = file.mapping()->bytes().data() + 8 + header_size;
  std::size_t previous_size = 8;
  for (const auto& tensor : file.tensors()) {
    auto offset = static_cast<std::size_t>(tensor.bytes.data() - data_start);
    EXPECT_EQ(offset % dtype_size(tensor.dtype), 0u) << tensor.name << " at " << offset;
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(tensor.bytes.data()) % dtype_size(tensor.dtype), 0u)
        << tensor.name;
    // Larger element types come first.
    EXPECT_LE(dtype_size(tensor.dtype), previous_size) << tensor.name;
    previous_size = dtype_size(tensor.dtype);
  }
}

TEST(SafetensorsWrite, OrderIsBySizeThenName) {
  ScratchDir dir;
  auto set = mixed_tensors();
  write_safetensors(dir / "a.safetensors", set.bound(), {});
  auto file = SafetensorsFile::open(dir / "a.safetensors");
  std::vector<std::string> names;
  for (const auto& tensor : file.tensors()) names.push_back(tensor.name);
  // Within one element size by name, whatever the dtype; "empty" has no bytes.
  const std::vector<std::string> expected = {
      "positions", "dense.weight", "empty", "lookup", "scalar", "embed.weight",
      "norm.weight", "odd.bytes", "quantized.weight", "quantized.zero_point"};
  EXPECT_EQ(names, expected);
}

TEST(SafetensorsWrite, EmptyMetadataIsLeftOut) {
  ScratchDir dir;
  auto set = mixed_tensors();
  write_safetensors(dir / "a.safetensors", set.bound(), {});
  EXPECT_EQ(testing::read_bytes(dir / "a.safetensors").find("__metadata__"), std::string::npos);
  EXPECT_TRUE(SafetensorsFile::open(dir / "a.safetensors").metadata().empty());
}

TEST(SafetensorsWrite, NoTensors) {
  ScratchDir dir;
  write_safetensors(dir / "empty.safetensors", {}, {{"format", "pt"}});
  auto file = SafetensorsFile::open(dir / "empty.safetensors");
  EXPECT_TRUE(file.tensors().empty());
  EXPECT_EQ(file.metadata().at("format"), "pt");
}

TEST(SafetensorsWrite, RealCheckpointRoundTrip) {
  ScratchDir dir;
  auto original = SafetensorsFile::open(testing::shared_dir() / "models/stories260K/hf/model.safetensors");
  write_safetensors(dir / "once.safetensors", original.tensors(), original.metadata());
  auto once = SafetensorsFile::open(dir / "once.safetensors");
  ASSERT_EQ(once.tensors().size(), original.tensors().size());
  EXPECT_EQ(once.metadata(), original.metadata());
  for (const auto& tensor : original.tensors()) {
    const TensorView* copy = once.find(tensor.name);
    ASSERT_NE(copy, nullptr) << tensor.name;
    EXPECT_EQ(copy->shape, tensor.shape);
    EXPECT_TRUE(same_bytes(copy->bytes, tensor.bytes)) << tensor.name;
  }
  write_safetensors(dir / "twice.safetensors", once.tensors(), once.metadata());
  EXPECT_EQ(testing::read_bytes(dir / "once.safetensors"), testing::read_bytes(dir / "twice.safetensors"));
}

TEST(SafetensorsWrite, OverwritingTheFileBeingRead) {
  ScratchDir dir;
  auto set = mixed_tensors();
  write_safetensors(dir / "a.safetensors", set.bound(), {});
  std::string before = testing::read_bytes(dir / "a.safetensors");
  {
    auto file = SafetensorsFile::open(dir / "a.safetensors");
    // The mapping keeps the old bytes alive while the new file replaces the old one.
    write_safetensors(dir / "a.safetensors", file.tensors(), {{"rewritten", "yes"}});
  }
  auto file = SafetensorsFile::open(dir / "a.safetensors");
  EXPECT_EQ(file.metadata().at("rewritten"), "yes");
  for (const auto& original : set.views)
    EXPECT_TRUE(same_bytes(file.find(original.name)->bytes, original.bytes)) << original.name;
  // No temporary files are left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            1);
}

TEST(SafetensorsWrite, RejectsWrongByteCount) {
  ScratchDir dir;
  std::vector<std::byte> bytes(20);
  std::vector<TensorView> tensors = {{"a.weight", DType::F32, {2, 3}, bytes}};
  auto path = dir / "bad.safetensors";
  testing::expect_input_error([&] { write_safetensors(path, tensors, {}); },
                              {"bad.safetensors: ", "tensor \"a.weight\"",
                               "shape [2,3] of F32 needs 24 bytes but 20 were given"});
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(SafetensorsWrite, RejectsNegativeDimension) {
  ScratchDir dir;
  std::vector<TensorView> tensors = {{"a", DType::F32, {2, -3}, {}}};
  testing::expect_input_error([&] { write_safetensors(dir / "bad.safetensors", tensors, {}); },
                              {"bad.safetensors: ", "tensor \"a\"", "[2,-3]"});
}

TEST(SafetensorsWrite, RejectsDuplicateAndReservedNames) {
  ScratchDir dir;
  std::vector<std::byte> four(4), two(2);
  std::vector<TensorView> duplicates = {{"a", DType::F32, {1}, four}, {"a", DType::F16, {1}, two}};
  testing::expect_input_error([&] { write_safetensors(dir / "bad.safetensors", duplicates, {}); },
                              {"bad.safetensors: ", "two tensors named \"a\""});
  std::vector<TensorView> reserved = {{"__metadata__", DType::F32, {1}, four}};
  testing::expect_input_error([&] { write_safetensors(dir / "bad.safetensors", reserved, {}); },
                              {"bad.safetensors: ", "reserved"});
  std::vector<TensorView> unnamed = {{"", DType::F32, {1}, four}};
  testing::expect_input_error([&] { write_safetensors(dir / "bad.safetensors", unnamed, {}); },
                              {"bad.safetensors: ", "empty name"});
}

TEST(SafetensorsWrite, RejectsInvalidUtf8Names) {
  ScratchDir dir;
  std::vector<std::byte> four(4);
  std::vector<TensorView> tensors = {{"bad\xff", DType::F32, {1}, four}};
  testing::expect_input_error([&] { write_safetensors(dir / "bad.safetensors", tensors, {}); },
                              {"bad.safetensors: ", "not valid UTF-8"});
}

}  // namespace
}  // namespace lathe
