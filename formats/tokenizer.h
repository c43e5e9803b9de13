#pragma once

// Tokenizers lathe reads from a model folder: SentencePiece `.model` files and the character
// `vocab.json` of makemore-style models.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lathe {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<std::int32_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<std::int32_t>& ids) const = 0;
  virtual std::int64_t vocab_size() const = 0;
  virtual std::string kind() const = 0;
  virtual const std::filesystem::path& source() const = 0;
};

// Loads `tokenizer.model` (SentencePiece) or `vocab.json` (characters) from `path`, which is
// the file itself or a folder holding it. Returns nullptr when a folder holds neither.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path);

// Loads a SentencePiece model file; InputError if it is not one.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path);

// Loads a JSON object mapping single characters to ids; unknown characters are an
// InputError when encoding, naming the character.
std::unique_ptr<Tokenizer> load_character_tokenizer(const std::filesystem::path& path);

}  // namespace lathe
