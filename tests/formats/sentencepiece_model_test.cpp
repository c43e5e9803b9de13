// lathe's own SentencePiece BPE encoder against libsentencepiece, the reference
// implementation (linked into this torch-free test binary only).

#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include <fstream>
#include <random>
#include <sstream>

#include "formats/sentencepiece_model.h"
#include "support/errors.h"

namespace lathe {
namespace {

std::filesystem::path tokenizer_path() {
  return std::filesystem::path(LATHE_SHARED_DIR) / "models/stories260K/tokenizer/tok512.model";
}

class SentencePieceAgainstReference : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(reference_.Load(tokenizer_path().string()).ok()); }

  std::vector<std::int32_t> reference_ids(const std::string& text) {
    std::vector<int> ids;
    EXPECT_TRUE(reference_.Encode(text, &ids).ok());
    return {ids.begin(), ids.end()};
  }

  sentencepiece::SentencePieceProcessor reference_;
  SentencePieceModel model_ = SentencePieceModel::load(tokenizer_path());
};

TEST_F(SentencePieceAgainstReference, EveryLineOfTinyStories) {
  std::ifstream in(std::filesystem::path(LATHE_SHARED_DIR) / "data/tinystories-valid/tinystories_valid_head.txt");
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    ASSERT_EQ(model_.encode(line), reference_ids(line)) << "line " << lines << ": " << line;
    ++lines;
  }
  EXPECT_GT(lines, 2000);
}

TEST_F(SentencePieceAgainstReference, WhitespaceControlCharactersAndUnicode) {
  for (const std::string text : {"", " ", "   ", "  two  spaces  ", "tab\there", "new\nline", "trailing ",
                                 "caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80", "bad utf8 \xFF\xFE end", "123456 7.5",
                                 "\xE2\x96\x81" "already escaped", "<s> </s> <unk>", "ALL CAPS!!!"}) {
    EXPECT_EQ(model_.encode(text), reference_ids(text)) << "[" << text << "]";
  }
}

TEST_F(SentencePieceAgainstReference, RandomByteStrings) {
  std::mt19937 generator(7);
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyz ABCXYZ.,!?'\"\n\t0123456789\xC3\xA9\xE2\x96\x81";
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const int length = static_cast<int>(generator() % 60);
    for (int i = 0; i < length; ++i) text += alphabet[generator() % alphabet.size()];
    ASSERT_EQ(model_.encode(text), reference_ids(text)) << "[" << text << "]";
  }
}

TEST_F(SentencePieceAgainstReference, DecodeMatches) {
  for (const std::string text : {"Once upon a time, there was a little girl named Lily.", "caf\xC3\xA9 x\ny"}) {
    const auto ids = reference_ids(text);
    std::string expected;
    ASSERT_TRUE(reference_.Decode(std::vector<int>(ids.begin(), ids.end()), &expected).ok());
    EXPECT_EQ(model_.decode(model_.encode(text)), expected);
  }
}

TEST(SentencePieceModel, RejectsWhatItCannotRead) {
  EXPECT_THROW(SentencePieceModel::parse("", "empty.model"), InputError);
  EXPECT_THROW(SentencePieceModel::parse(std::string("\x0a\xff\xff\xff\x0f", 5), "truncated.model"), InputError);
  try {
    SentencePieceModel::parse("not a model at all", "text.model");
    FAIL() << "parsed text as a model";
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find("text.model"), std::string::npos) << error.what();
  }
}

// Found by fuzz/sentencepiece_fuzzer (fuzz/regressions/sentencepiece/byte-piece-with-a-sign):
// a byte piece "<0x-E>" was read as byte 0xFFFFFFF2 and indexed past the byte table.
TEST(SentencePieceModel, ByteParseAcceptsOnlyTwoHexDigits) {
  const std::string model("\x0a\x0f\x0a\x06<0x-E>\x15\x00\x00\x00\x00\x18\x06\x12\x04\x18\x02xt\x1a\x0c\x0a\x08identity\x12\x00",
                          37);
  try {
    SentencePieceModel::parse(model, "fuzzed.model");
    FAIL() << "read a byte piece with a sign";
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find("byte piece \"<0x-E>\" is not of the form <0xXX>"), std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace lathe
