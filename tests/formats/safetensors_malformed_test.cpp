// Malformed safetensors files: each must be refused with one line naming the file and problem.

#include <gtest/gtest.h>

#include "formats/safetensors.h"
#include "tests/formats/test_support.h"

namespace lathe {
namespace {

using testing::ScratchDir;

class SafetensorsMalformed : public ::testing::Test {
 protected:
  // Writes `bytes` as bad.safetensors and expects open() to fail with all `phrases`.
  std::string expect_refused(const std::string& bytes, const std::vector<std::string>& phrases) {
    auto path = dir_ / "bad.safetensors";
    testing::write_bytes(path, bytes);
    std::vector<std::string> all = {path.string() + ": "};
    all.insert(all.end(), phrases.begin(), phrases.end());
    return testing::expect_input_error([&] { SafetensorsFile::open(path); }, all);
  }

  // A header holding one tensor entry, with `data_size` bytes of data.
  std::string one_tensor(const std::string& entry, std::size_t data_size) {
    return testing::safetensors_bytes("{\"a.weight\":" + entry + "}", data_size);
  }

  ScratchDir dir_;
};

TEST_F(SafetensorsMalformed, TruncatedInsideTheData) {
  std::vector<std::byte> bytes(24);
  std::vector<TensorView> tensors = {{"a.weight", DType::F32, {2, 3}, bytes},
                                     {"b.weight", DType::F32, {2, 3}, bytes}};
  write_safetensors(dir_ / "good.safetensors", tensors, {});
  std::string good = testing::read_bytes(dir_ / "good.safetensors");
  expect_refused(good.substr(0, good.size() - 10),
                 {"tensor \"b.weight\": data_offsets [24,48] run past the end of the file",
                  "is the file truncated?"});
}

TEST_F(SafetensorsMalformed, ShorterThanEightBytes) {
  expect_refused(std::string("\x05\x00\x00", 3), {"file is 3 bytes, too short to hold the 8-byte header length"});
  expect_refused("", {"file is 0 bytes"});
}

TEST_F(SafetensorsMalformed, HeaderLengthPastTheEnd) {
  expect_refused(testing::u64_le(100) + "{}", {"header length 100 runs past the end of the file (10 bytes)"});
  expect_refused(testing::u64_le(~0ull) + "{}", {"header length 18446744073709551615 runs past the end"});
}

TEST_F(SafetensorsMalformed, AbsurdHeaderLength) {
  // A sparse file: 200 MB on paper, nothing on disk.
  auto path = dir_ / "huge.safetensors";
  testing::write_bytes(path, testing::u64_le(150'000'000) + "{}");
  std::filesystem::resize_file(path, 200'000'000);
  testing::expect_input_error([&] { SafetensorsFile::open(path); },
                              {"huge.safetensors: header length 150000000 exceeds the 100000000-byte limit"});
}

TEST_F(SafetensorsMalformed, HeaderIsNotJson) {
  expect_refused(testing::safetensors_bytes("{\"a\": {\"dtype\": F32}}", 0),
                 {"invalid JSON header at line 1, column 17:", "syntax error"});
  expect_refused(testing::safetensors_bytes("{\n\"a\":\n  [1,}", 0), {"invalid JSON header at line 3, column 6"});
  expect_refused(testing::safetensors_bytes("", 0), {"invalid JSON header at line 1, column 1"});
  expect_refused(testing::safetensors_bytes("{\"\xff\": 1}", 0), {"invalid JSON header"});
  // A NUL byte where the space padding should be.
  expect_refused(testing::safetensors_bytes(std::string("{}\0", 3), 0),
                 {"invalid JSON header at line 1, column 3: NUL byte"});
}

TEST_F(SafetensorsMalformed, HeaderIsNotAnObject) {
  expect_refused(testing::safetensors_bytes("[1, 2]  ", 0), {"JSON header must be an object, got array"});
}

TEST_F(SafetensorsMalformed, DuplicateTensorName) {
  std::string entry = R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
  expect_refused(testing::safetensors_bytes("{\"a\":" + entry + ",\"a\":" + entry + "}", 1),
                 {"duplicate key \"a\" in the JSON header"});
}

TEST_F(SafetensorsMalformed, EntryIsNotAnObject) {
  expect_refused(one_tensor("[1, 2]", 0), {"tensor \"a.weight\": expected an object", "got array"});
}

TEST_F(SafetensorsMalformed, MissingOrMistypedFields) {
  expect_refused(one_tensor(R"({"shape":[1],"data_offsets":[0,4]})", 4),
                 {"tensor \"a.weight\": \"dtype\" is missing"});
  expect_refused(one_tensor(R"({"dtype":"F32","data_offsets":[0,4]})", 4),
                 {"tensor \"a.weight\": \"shape\" is missing"});
  expect_refused(one_tensor(R"({"dtype":"F32","shape":[1]})", 4),
                 {"tensor \"a.weight\": \"data_offsets\" is missing"});
  expect_refused(one_tensor(R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})", 4),
                 {"\"dtype\" must be a string, got number"});
  expect_refused(one_tensor(R"({"dtype":"F32","shape":"1","data_offsets":[0,4]})", 4),
                 {"\"shape\" must be an array of integers, got string"});
  expect_refused(one_tensor(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,4]})", 4),
                 {"dimension 0 of \"shape\" must be an integer, got 2.5"});
  expect_refused(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,8]})", 8),
                 {"\"data_offsets\" must be two non-negative integers [begin, end], got [0,4,8]"});
  expect_refused(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})", 4),
                 {"\"data_offsets\" must be two non-negative integers"});
  expect_refused(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[4,0]})", 4),
                 {"data_offsets [4,0] end before they begin"});
}

TEST_F(SafetensorsMalformed, UnknownDType) {
  expect_refused(one_tensor(R"({"dtype":"F64","shape":[1],"data_offsets":[0,8]})", 8),
                 {"tensor \"a.weight\": unknown dtype \"F64\" (lathe reads F32, F16, BF16, I8, U8, I32, I64)"});
}

TEST_F(SafetensorsMalformed, ShapeDisagreesWithByteCount) {
  std::string message = expect_refused(
      one_tensor(R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,20]})", 20),
      {"tensor \"a.weight\": shape [2,3] of F32 needs 24 bytes but data_offsets give 20"});
  EXPECT_EQ(message, (dir_ / "bad.safetensors").string() +
                         ": tensor \"a.weight\": shape [2,3] of F32 needs 24 bytes but data_offsets give 20");
}

TEST_F(SafetensorsMalformed, ShapeOverflows) {
  expect_refused(
      one_tensor(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]})", 0),
      {"shape [4294967296,4294967296] of F32 is too large"});
  expect_refused(one_tensor(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,0]})", 0),
                 {"dimension 0 of \"shape\" is too large"});
}

TEST_F(SafetensorsMalformed, NegativeDimension) {
  expect_refused(one_tensor(R"({"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]})", 24),
                 {"tensor \"a.weight\": dimension 1 of shape [2,-3] is negative"});
}

TEST_F(SafetensorsMalformed, OverlappingOffsets) {
  expect_refused(testing::safetensors_bytes(
                     R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                     R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                     24),
                 {"tensor \"b\": data_offsets [8,24] overlap tensor \"a\" [0,16]"});
  // Two tensors on exactly the same bytes.
  expect_refused(testing::safetensors_bytes(
                     R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                     R"("b":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                     16),
                 {"tensor \"b\": data_offsets [0,16] overlap tensor \"a\" [0,16]"});
}

TEST_F(SafetensorsMalformed, GappedOffsets) {
  expect_refused(testing::safetensors_bytes(
                     R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                     R"("b":{"dtype":"F32","shape":[4],"data_offsets":[24,40]}})",
                     40),
                 {"tensor \"b\": data_offsets [24,40] leave a gap of 8 unused bytes after tensor \"a\""});
  expect_refused(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})", 8),
                 {"tensor \"a.weight\": data_offsets [4,8] leave a gap of 4 unused bytes at the start of the data"});
}

TEST_F(SafetensorsMalformed, OffsetsPastTheEnd) {
  expect_refused(one_tensor(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})", 12),
                 {"tensor \"a.weight\": data_offsets [0,16] run past the end of the file",
                  "12 bytes of data follow the header"});
}

TEST_F(SafetensorsMalformed, TrailingBytes) {
  expect_refused(one_tensor(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})", 20),
                 {"the header describes 16 bytes of tensor data but 20 follow it (4 trailing bytes)"});
  expect_refused(testing::safetensors_bytes("{}", 3), {"describes 0 bytes", "3 trailing bytes"});
}

TEST_F(SafetensorsMalformed, MetadataIsNotAStringMap) {
  expect_refused(testing::safetensors_bytes(R"({"__metadata__":{"format":"pt","step":3}})", 0),
                 {"__metadata__ must map strings to strings, but \"step\" is a number"});
  expect_refused(testing::safetensors_bytes(R"({"__metadata__":["pt"]})", 0),
                 {"__metadata__ must be an object mapping strings to strings, got array"});
}

TEST_F(SafetensorsMalformed, NotAFile) {
  testing::expect_input_error([&] { SafetensorsFile::open(dir_.path()); },
                              {dir_.path().string(), "is a folder"});
  testing::expect_input_error([&] { SafetensorsFile::open(dir_ / "absent.safetensors"); },
                              {"absent.safetensors: does not exist"});
}

TEST_F(SafetensorsMalformed, MinimalValidFiles) {
  // Accepted edge cases, to show the checks are not too strict.
  testing::write_bytes(dir_ / "empty.safetensors", testing::safetensors_bytes("{}", 0));
  EXPECT_TRUE(SafetensorsFile::open(dir_ / "empty.safetensors").tensors().empty());
  testing::write_bytes(dir_ / "unaligned.safetensors",
                       testing::safetensors_bytes(
                           R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[1,5]},)"
                           R"("a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                           R"("z":{"dtype":"F32","shape":[0],"data_offsets":[5,5]}})",
                           5));
  // A zero dimension makes the tensor empty however large the other dimensions are.
  testing::write_bytes(dir_ / "zero.safetensors",
                       testing::safetensors_bytes(
                           R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", 0));
  EXPECT_EQ(SafetensorsFile::open(dir_ / "zero.safetensors").tensors().at(0).element_count(), 0);

  auto file = SafetensorsFile::open(dir_ / "unaligned.safetensors");
  ASSERT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.tensors()[0].name, "a");
  EXPECT_EQ(file.tensors()[1].name, "b");
  EXPECT_EQ(file.tensors()[2].name, "z");
}

}  // namespace
}  // namespace lathe
