#pragma once

// SentencePiece BPE tokenization, read straight from a `.model` file (a serialized
// sentencepiece.ModelProto). lathe does not link libsentencepiece: it bundles its own copy of
// protobuf-lite and exports those symbols, which clash with the libprotobuf that LibTorch and
// ONNX load into the same process. The test suite checks this encoder against libsentencepiece
// token for token.
//
// Supported: BPE models with the identity normalizer (Llama-family tokenizers), byte fallback,
// dummy prefix, extra-whitespace removal, user-defined symbols. Anything else is an InputError.

#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

namespace lathe {

class SentencePieceModel {
 public:
  enum class PieceType : std::uint8_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

  static SentencePieceModel load(const std::filesystem::path& path);
  static SentencePieceModel parse(const std::string& bytes, const std::string& origin);

  std::vector<std::int32_t> encode(const std::string& text) const;
  std::string decode(const std::vector<std::int32_t>& ids) const;
  std::int64_t vocab_size() const { return static_cast<std::int64_t>(pieces_.size()); }

 private:
  struct Piece {
    std::string text;
    float score = 0;
    PieceType type = PieceType::Normal;
  };

  std::string normalize(const std::string& text) const;
  std::int32_t piece_id(const std::string& piece) const;  // -1 if none

  std::vector<Piece> pieces_;
  std::unordered_map<std::string, std::int32_t> mergeable_;  // normal, user-defined and unused pieces
  std::unordered_map<std::string, std::int32_t> reserved_;   // control, unknown and byte pieces
  std::vector<std::string> user_defined_;                    // matched whole before splitting
  std::int32_t byte_ids_[256];
  std::int32_t unknown_id_ = 0;
  bool byte_fallback_ = false;
  bool add_dummy_prefix_ = true;
  bool remove_extra_whitespaces_ = true;
  bool escape_whitespaces_ = true;
};

}  // namespace lathe
