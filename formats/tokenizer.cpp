#include "formats/tokenizer.h"

#include <cstdio>
#include <map>
#include <string_view>

#include <nlohmann/json.hpp>

#include "formats/json_reader.h"
#include "formats/sentencepiece_model.h"
#include "support/errors.h"
#include "support/utf8.h"

namespace lathe {
namespace {

constexpr const char* kSentencePieceFileName = "tokenizer.model";
constexpr const char* kCharacterVocabFileName = "vocab.json";

std::string code_point_name(char32_t value) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "U+%04X", static_cast<unsigned>(value));
  return buffer;
}

void check_ids(const std::vector<std::int32_t>& ids, std::int64_t vocab_size,
               const std::filesystem::path& source) {
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab_size)
      throw InputError(source.string(), "cannot decode id " + std::to_string(ids[i]) +
                                            " at position " + std::to_string(i) +
                                            ": outside the vocabulary of " +
                                            std::to_string(vocab_size));
}

void check_exists(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw InputError(path.string(), "does not exist");
  if (std::filesystem::is_directory(path, ec))
    throw InputError(path.string(), "is a folder, expected a tokenizer file");
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::filesystem::path path)
      : source_(std::move(path)), model_((check_exists(source_), SentencePieceModel::load(source_))) {}

  std::vector<std::int32_t> encode(const std::string& text) const override { return model_.encode(text); }

  std::string decode(const std::vector<std::int32_t>& ids) const override {
    check_ids(ids, vocab_size(), source_);
    return model_.decode(ids);
  }

  std::int64_t vocab_size() const override { return model_.vocab_size(); }
  std::string kind() const override { return "sentencepiece"; }
  const std::filesystem::path& source() const override { return source_; }

 private:
  std::filesystem::path source_;
  SentencePieceModel model_;
};

// makemore-style vocabularies: every character of the text is one token.
class CharacterTokenizer final : public Tokenizer {
 public:
  explicit CharacterTokenizer(std::filesystem::path path) : source_(std::move(path)) {
    check_exists(source_);
    const std::string file = source_.string();
    nlohmann::json vocab = read_json_file(source_, kTokenizerFile);
    if (!vocab.is_object())
      throw InputError(file, "must be a JSON object mapping characters to ids, got " +
                                 json_type(vocab));
    if (vocab.empty()) throw InputError(file, "the vocabulary is empty");

    const auto size = static_cast<std::int64_t>(vocab.size());
    characters_.resize(vocab.size());
    for (const auto& [character, id_value] : vocab.items()) {
      auto code_point = character.empty() ? std::nullopt : utf8::decode(character, 0);
      if (!code_point || code_point->size != character.size())
        throw InputError(file, "key " + quote(character) + " is not a single character");
      if (!id_value.is_number_integer())
        throw InputError(file, "id of " + quote(character) + " must be an integer, got " +
                                   id_value.dump());
      auto id = id_value.get<std::int64_t>();  // ids past INT64_MAX wrap to negative
      if (id < 0 || id >= size)
        throw InputError(file, "id " + id_value.dump() + " of " + quote(character) +
                                   " is outside [0, " + std::to_string(size) +
                                   "): ids must number the " + std::to_string(size) +
                                   " characters from 0");
      auto& slot = characters_[static_cast<std::size_t>(id)];
      if (!slot.empty())
        throw InputError(file, "id " + std::to_string(id) + " is used by both " + quote(slot) +
                                   " and " + quote(character));
      slot = character;
      ids_.emplace(code_point->value, static_cast<std::int32_t>(id));
    }
  }

  std::vector<std::int32_t> encode(const std::string& text) const override {
    std::vector<std::int32_t> ids;
    std::size_t position = 0;
    while (position < text.size()) {
      auto code_point = utf8::decode(text, position);
      if (!code_point)
        throw InputError(source_.string(), "cannot encode text: invalid UTF-8 at byte " +
                                               std::to_string(position));
      auto it = ids_.find(code_point->value);
      if (it == ids_.end())
        throw InputError(source_.string(),
                         "cannot encode character " + quote(text.substr(position, code_point->size)) +
                             " (" + code_point_name(code_point->value) +
                             "): not in the vocabulary");
      ids.push_back(it->second);
      position += code_point->size;
    }
    return ids;
  }

  std::string decode(const std::vector<std::int32_t>& ids) const override {
    check_ids(ids, vocab_size(), source_);
    std::string text;
    for (auto id : ids) text += characters_[static_cast<std::size_t>(id)];
    return text;
  }

  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(characters_.size()); }
  std::string kind() const override { return "characters"; }
  const std::filesystem::path& source() const override { return source_; }

 private:
  std::filesystem::path source_;
  std::map<char32_t, std::int32_t> ids_;
  std::vector<std::string> characters_;  // indexed by id
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

std::unique_ptr<Tokenizer> load_character_tokenizer(const std::filesystem::path& path) {
  return std::make_unique<CharacterTokenizer>(path);
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw InputError(path.string(), "does not exist");
  if (std::filesystem::is_directory(path, ec)) {
    if (std::filesystem::exists(path / kSentencePieceFileName, ec))
      return load_sentencepiece_tokenizer(path / kSentencePieceFileName);
    if (std::filesystem::exists(path / kCharacterVocabFileName, ec))
      return load_character_tokenizer(path / kCharacterVocabFileName);
    return nullptr;
  }
  if (path.extension() == ".json") return load_character_tokenizer(path);
  return load_sentencepiece_tokenizer(path);
}

}  // namespace lathe
