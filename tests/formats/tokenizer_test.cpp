// SentencePiece and character tokenizers.

#include <gtest/gtest.h>

#include "formats/tokenizer.h"
#include "tests/formats/test_support.h"

namespace lathe {
namespace {

using testing::ScratchDir;

const std::filesystem::path kTok512 = testing::shared_dir() / "models/stories260K/tokenizer/tok512.model";
const std::filesystem::path kMakemoreFolder = testing::shared_dir() / "models/makemore-names-gpt/hf";

TEST(SentencePieceTokenizer, SplitsTheReferenceSentence) {
  auto tokenizer = load_sentencepiece_tokenizer(kTok512);
  EXPECT_EQ(tokenizer->kind(), "sentencepiece");
  EXPECT_EQ(tokenizer->vocab_size(), 512);
  EXPECT_EQ(tokenizer->source(), kTok512);
  const std::string sentence = "Once upon a time, there was a little girl named Lily.";
  const std::vector<std::int32_t> expected = {403, 407, 261, 378, 432, 383, 286, 261,
                                              376, 298, 315, 421, 395, 317, 426};
  EXPECT_EQ(tokenizer->encode(sentence), expected);
  EXPECT_EQ(tokenizer->decode(expected), sentence);
  EXPECT_TRUE(tokenizer->encode("").empty());
}

TEST(SentencePieceTokenizer, ByteFallbackRoundTrips) {
  auto tokenizer = load_sentencepiece_tokenizer(kTok512);
  const std::string text = "Zo\xc3\xab saw a \xe2\x9c\x93 and 42 cats.";  // non-ASCII via byte tokens
  auto ids = tokenizer->encode(text);
  EXPECT_EQ(tokenizer->decode(ids), text);
}

TEST(SentencePieceTokenizer, DecodeRejectsIdsOutsideTheVocabulary) {
  auto tokenizer = load_sentencepiece_tokenizer(kTok512);
  testing::expect_input_error([&] { tokenizer->decode({403, 512}); },
                              {"tok512.model: ", "cannot decode id 512 at position 1",
                               "outside the vocabulary of 512"});
  testing::expect_input_error([&] { tokenizer->decode({-1}); }, {"cannot decode id -1"});
}

TEST(SentencePieceTokenizer, RejectsOtherFiles) {
  ScratchDir dir;
  testing::write_bytes(dir / "tokenizer.model", "this is not a protobuf \xff\xff\xff\xff");
  testing::expect_input_error([&] { load_sentencepiece_tokenizer(dir / "tokenizer.model"); },
                              {"tokenizer.model: not a SentencePiece model"});
  testing::expect_input_error([&] { load_sentencepiece_tokenizer(dir / "absent.model"); },
                              {"absent.model: does not exist"});
}

TEST(CharacterTokenizer, MakemoreNames) {
  auto tokenizer = load_character_tokenizer(kMakemoreFolder / "vocab.json");
  EXPECT_EQ(tokenizer->kind(), "characters");
  EXPECT_EQ(tokenizer->vocab_size(), 27);
  EXPECT_EQ(tokenizer->encode("emma"), (std::vector<std::int32_t>{5, 13, 13, 1}));
  EXPECT_EQ(tokenizer->decode({5, 13, 13, 1}), "emma");
  EXPECT_EQ(tokenizer->decode({0, 1, 26, 0}), ".az.");
  EXPECT_TRUE(tokenizer->encode("").empty());
}

TEST(CharacterTokenizer, UnknownCharacter) {
  auto tokenizer = load_character_tokenizer(kMakemoreFolder / "vocab.json");
  testing::expect_input_error([&] { tokenizer->encode("Emma"); },
                              {"vocab.json: ", "cannot encode character \"E\" (U+0045): not in the vocabulary"});
  testing::expect_input_error([&] { tokenizer->encode("zo\xc3\xab"); },
                              {"character \"\xc3\xab\" (U+00EB)"});
  testing::expect_input_error([&] { tokenizer->encode("ab\n"); }, {"character \"\\n\" (U+000A)"});
  testing::expect_input_error([&] { tokenizer->encode("ab\xff"); }, {"invalid UTF-8 at byte 2"});
  testing::expect_input_error([&] { tokenizer->decode({27}); },
                              {"cannot decode id 27", "outside the vocabulary of 27"});
}

TEST(CharacterTokenizer, MultiByteCharacters) {
  ScratchDir dir;
  testing::write_bytes(dir / "vocab.json", "{\"\xc3\xa9\": 1, \"a\": 0, \"\xe2\x82\xac\": 2}");
  auto tokenizer = load_character_tokenizer(dir / "vocab.json");
  EXPECT_EQ(tokenizer->encode("a\xc3\xa9\xe2\x82\xac"), (std::vector<std::int32_t>{0, 1, 2}));
  EXPECT_EQ(tokenizer->decode({2, 1, 0}), "\xe2\x82\xac\xc3\xa9" "a");
}

TEST(CharacterTokenizer, MalformedVocabularies) {
  ScratchDir dir;
  auto path = dir / "vocab.json";
  auto refused = [&](const std::string& text, const std::string& phrase) {
    testing::write_bytes(path, text);
    testing::expect_input_error([&] { load_character_tokenizer(path); }, {path.string() + ": ", phrase});
  };
  refused(R"({"a": 0, "b": 1, "c": 1})", "id 1 is used by both \"b\" and \"c\"");
  refused(R"({"a": 0, "b": 5})", "id 5 of \"b\" is outside [0, 2)");
  refused(R"({"a": 0, "b": -1})", "id -1 of \"b\" is outside [0, 2)");
  refused(R"({"a": 0, "bc": 1})", "key \"bc\" is not a single character");
  refused(R"({"a": 0, "": 1})", "key \"\" is not a single character");
  refused(R"({"a": "0"})", "id of \"a\" must be an integer, got \"0\"");
  refused(R"({"a": 0.5})", "id of \"a\" must be an integer, got 0.5");
  refused(R"(["a", "b"])", "must be a JSON object mapping characters to ids, got array");
  refused("{}", "the vocabulary is empty");
  refused(R"({"a": 0,)", "invalid JSON at line 1, column 9");
}

TEST(LoadTokenizer, FindsTheTokenizerInAFolder) {
  auto sentencepiece = load_tokenizer(testing::shared_dir() / "models/stories260K/hf");
  ASSERT_NE(sentencepiece, nullptr);
  EXPECT_EQ(sentencepiece->kind(), "sentencepiece");
  EXPECT_EQ(sentencepiece->source().filename(), "tokenizer.model");

  auto characters = load_tokenizer(kMakemoreFolder);
  ASSERT_NE(characters, nullptr);
  EXPECT_EQ(characters->kind(), "characters");

  // A file is loaded by its extension.
  EXPECT_EQ(load_tokenizer(kTok512)->kind(), "sentencepiece");
  EXPECT_EQ(load_tokenizer(kMakemoreFolder / "vocab.json")->kind(), "characters");

  ScratchDir empty;
  EXPECT_EQ(load_tokenizer(empty.path()), nullptr);
  testing::expect_input_error([&] { load_tokenizer(empty / "missing"); }, {"missing: does not exist"});
}

TEST(LoadTokenizer, PrefersSentencePieceOverVocabJson) {
  ScratchDir dir;
  std::filesystem::copy_file(kTok512, dir / "tokenizer.model");
  std::filesystem::copy_file(kMakemoreFolder / "vocab.json", dir / "vocab.json");
  EXPECT_EQ(load_tokenizer(dir.path())->kind(), "sentencepiece");
}

}  // namespace
}  // namespace lathe
