// Token files and text files turned into token sequences.

#include <gtest/gtest.h>

#include <algorithm>

#include "formats/dataset.h"
#include "formats/tokenizer.h"
#include "tests/formats/test_support.h"

namespace lathe {
namespace {

using testing::ScratchDir;

const std::filesystem::path kTinyStories = testing::shared_dir() / "data/tinystories-valid";
const std::filesystem::path kTok512 = testing::shared_dir() / "models/stories260K/tokenizer/tok512.model";

// Each byte is one token: shows exactly which text reached the tokenizer.
class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<std::int32_t> encode(const std::string& text) const override {
    return {text.begin(), text.end()};
  }
  std::string decode(const std::vector<std::int32_t>& ids) const override {
    return {ids.begin(), ids.end()};
  }
  std::int64_t vocab_size() const override { return 256; }
  std::string kind() const override { return "bytes"; }
  const std::filesystem::path& source() const override { return source_; }

 private:
  std::filesystem::path source_ = "bytes";
};

std::vector<std::string> pieces(const std::string& text, TextSplit split) {
  ScratchDir dir;
  testing::write_bytes(dir / "text.txt", text);
  ByteTokenizer tokenizer;
  std::vector<std::string> result;
  for (const auto& sequence : encode_text_file(dir / "text.txt", tokenizer, {split, -1, -1}))
    result.push_back(tokenizer.decode(sequence));
  return result;
}

TEST(Dataset, ReproducesTheTinyStoriesTokenFile) {
  auto tokenizer = load_sentencepiece_tokenizer(kTok512);
  auto sequences = encode_text_file(kTinyStories / "tinystories_valid_head.txt", *tokenizer,
                                    {TextSplit::Paragraphs, /*bos_id=*/1, /*eos_id=*/-1});
  EXPECT_EQ(sequences.size(), 1428u);
  for (const auto& sequence : sequences) ASSERT_EQ(sequence.front(), 1);
  auto tokens = concatenate(sequences);
  auto expected = read_token_file(kTinyStories / "tinystories_valid_head.tok512.u16.bin",
                                  TokenFileType::U16, 512);
  ASSERT_EQ(expected.size(), 125000u);
  ASSERT_EQ(tokens.size(), expected.size());
  auto mismatch = std::mismatch(tokens.begin(), tokens.end(), expected.begin());
  EXPECT_TRUE(mismatch.first == tokens.end())
      << "first difference at token " << (mismatch.first - tokens.begin());
  EXPECT_EQ(std::count(expected.begin(), expected.end(), 1), 1428);
  EXPECT_EQ(*std::max_element(expected.begin(), expected.end()), 487);
}

TEST(Dataset, MakemoreNamesOnePerLine) {
  auto tokenizer = load_tokenizer(testing::shared_dir() / "models/makemore-names-gpt/hf");
  ASSERT_NE(tokenizer, nullptr);
  auto sequences = encode_text_file(testing::shared_dir() / "data/makemore-names/test.txt", *tokenizer,
                                    {TextSplit::Lines, /*bos_id=*/0, /*eos_id=*/0});
  ASSERT_EQ(sequences.size(), 1000u);
  for (const auto& sequence : sequences) {
    ASSERT_GE(sequence.size(), 3u);
    EXPECT_EQ(sequence.front(), 0);
    EXPECT_EQ(sequence.back(), 0);
    EXPECT_TRUE(std::all_of(sequence.begin() + 1, sequence.end() - 1,
                            [](std::int32_t id) { return id >= 1 && id <= 26; }));
  }
}

TEST(Dataset, ParagraphsSplitLikePython) {
  // Python: [p.strip() for p in text.split("\n\n") if p.strip()]
  EXPECT_EQ(pieces("  first para \nstill first \n\n\n\nsecond\n\n \n\nthird\n", TextSplit::Paragraphs),
            (std::vector<std::string>{"first para \nstill first", "second", "third"}));
  EXPECT_EQ(pieces("a\n\n\nb", TextSplit::Paragraphs), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(pieces("", TextSplit::Paragraphs), std::vector<std::string>{});
  EXPECT_EQ(pieces("\n\n\n\n", TextSplit::Paragraphs), std::vector<std::string>{});
  EXPECT_EQ(pieces("only", TextSplit::Paragraphs), std::vector<std::string>{"only"});
}

TEST(Dataset, StripRemovesUnicodeWhitespaceLikePython) {
  // U+00A0, U+2003, U+3000 and \x1c are whitespace to str.strip(); U+200B is not.
  EXPECT_EQ(pieces("\xc2\xa0\tword\xe2\x80\x83\xe3\x80\x80\x1c", TextSplit::Lines),
            std::vector<std::string>{"word"});
  EXPECT_EQ(pieces("\xe2\x80\x8bword\xe2\x80\x8b", TextSplit::Lines),
            std::vector<std::string>{"\xe2\x80\x8bword\xe2\x80\x8b"});
  EXPECT_EQ(pieces("caf\xc3\xa9 \xc2\xa0", TextSplit::Lines), std::vector<std::string>{"caf\xc3\xa9"});
}

TEST(Dataset, WindowsNewlines) {
  EXPECT_EQ(pieces("one\r\n\r\ntwo\r\nstill two\r\n", TextSplit::Paragraphs),
            (std::vector<std::string>{"one", "two\nstill two"}));
  EXPECT_EQ(pieces("a\r\nb\rc\n\nd", TextSplit::Lines), (std::vector<std::string>{"a", "b", "c", "d"}));
}

TEST(Dataset, BosAndEos) {
  ScratchDir dir;
  testing::write_bytes(dir / "t.txt", "ab\ncd\n");
  ByteTokenizer tokenizer;
  auto sequences = encode_text_file(dir / "t.txt", tokenizer, {TextSplit::Lines, 1, 2});
  EXPECT_EQ(sequences, (std::vector<std::vector<std::int32_t>>{{1, 'a', 'b', 2}, {1, 'c', 'd', 2}}));
  EXPECT_EQ(concatenate(sequences), (std::vector<std::int32_t>{1, 'a', 'b', 2, 1, 'c', 'd', 2}));
  sequences = encode_text_file(dir / "t.txt", tokenizer, {TextSplit::Lines, -1, 0});
  EXPECT_EQ(sequences, (std::vector<std::vector<std::int32_t>>{{'a', 'b', 0}, {'c', 'd', 0}}));
}

TEST(Dataset, TokenizerErrorsNameTheTextFileAndLine) {
  ScratchDir dir;
  auto path = dir / "names.txt";
  testing::write_bytes(path, "emma\n\nolivia\nAva\n");
  auto tokenizer = load_tokenizer(testing::shared_dir() / "models/makemore-names-gpt/hf");
  testing::expect_input_error([&] { encode_text_file(path, *tokenizer, {TextSplit::Lines, 0, 0}); },
                              {path.string() + ": line 4: ", "vocab.json", "character \"A\""});
}

TEST(Dataset, InvalidUtf8Text) {
  ScratchDir dir;
  testing::write_bytes(dir / "bad.txt", "fine\nbad \xc3\x28 here\n");
  ByteTokenizer tokenizer;
  testing::expect_input_error([&] { encode_text_file(dir / "bad.txt", tokenizer, {}); },
                              {"bad.txt: line 2: not valid UTF-8"});
  testing::expect_input_error([&] { encode_text_file(dir / "absent.txt", tokenizer, {}); },
                              {"absent.txt: does not exist"});
}

TEST(TokenFile, U16AndU32LittleEndian) {
  ScratchDir dir;
  testing::write_bytes(dir / "t.u16", std::string("\x01\x00\xff\x01\x00\x00", 6));
  EXPECT_EQ(read_token_file(dir / "t.u16", TokenFileType::U16, 512),
            (std::vector<std::int32_t>{1, 511, 0}));
  testing::write_bytes(dir / "t.u32", std::string("\x01\x02\x03\x00\x05\x00\x00\x00", 8));
  EXPECT_EQ(read_token_file(dir / "t.u32", TokenFileType::U32, 0),
            (std::vector<std::int32_t>{0x030201, 5}));
  testing::write_bytes(dir / "empty.u16", "");
  EXPECT_TRUE(read_token_file(dir / "empty.u16", TokenFileType::U16, 512).empty());
}

TEST(TokenFile, OddSizeForU16) {
  ScratchDir dir;
  testing::write_bytes(dir / "t.u16", std::string("\x01\x00\x02", 3));
  testing::expect_input_error([&] { read_token_file(dir / "t.u16", TokenFileType::U16, 512); },
                              {"t.u16: size 3 bytes is not a multiple of 2 (u16 tokens)"});
  testing::write_bytes(dir / "t.u32", std::string(6, '\0'));
  testing::expect_input_error([&] { read_token_file(dir / "t.u32", TokenFileType::U32, 512); },
                              {"t.u32: size 6 bytes is not a multiple of 4 (u32 tokens)"});
}

TEST(TokenFile, IdOutsideTheVocabulary) {
  ScratchDir dir;
  testing::write_bytes(dir / "t.u16", std::string("\x01\x00\x02\x00\x58\x02", 6));  // 1, 2, 600
  auto message = testing::expect_input_error(
      [&] { read_token_file(dir / "t.u16", TokenFileType::U16, 512); },
      {"t.u16: token 2 (byte offset 4) is 600, outside the vocabulary of 512"});
  EXPECT_EQ(read_token_file(dir / "t.u16", TokenFileType::U16, 601).back(), 600);
  EXPECT_EQ(read_token_file(dir / "t.u16", TokenFileType::U16, 0).back(), 600);  // unchecked
  testing::write_bytes(dir / "t.u32", std::string("\x00\x00\x00\x80", 4));
  testing::expect_input_error([&] { read_token_file(dir / "t.u32", TokenFileType::U32, 0); },
                              {"token 0 (byte offset 0) is 2147483648"});
}

}  // namespace
}  // namespace lathe
