#include "formats/sentencepiece_model.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <iterator>
#include <queue>
#include <sstream>

#include "support/bounded_file.h"
#include "support/errors.h"

namespace lathe {
namespace {

constexpr const char* kSpaceSymbol = "\xE2\x96\x81";  // U+2581, stands for a space
constexpr const char* kReplacementCharacter = "\xEF\xBF\xBD";

// Protobuf wire format, as much as ModelProto needs.
class WireReader {
 public:
  WireReader(const char* data, std::size_t size, const std::string& origin)
      : data_(data), end_(data + size), origin_(origin) {}

  bool done() const { return data_ >= end_; }

  std::uint64_t varint() {
    std::uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (data_ >= end_) fail("truncated varint");
      const auto byte = static_cast<std::uint8_t>(*data_++);
      value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    fail("varint too long");
  }

  // Returns (field number, wire type).
  std::pair<std::uint32_t, std::uint32_t> tag() {
    const auto key = varint();
    return {static_cast<std::uint32_t>(key >> 3), static_cast<std::uint32_t>(key & 7)};
  }

  WireReader message() {
    const auto length = varint();
    if (length > static_cast<std::uint64_t>(end_ - data_)) fail("field length past the end");
    WireReader inner(data_, length, origin_);
    data_ += length;
    return inner;
  }

  std::string bytes() {
    auto inner = message();
    return std::string(inner.data_, inner.end_);
  }

  float fixed32_float() {
    if (end_ - data_ < 4) fail("truncated float");
    float value;
    std::memcpy(&value, data_, 4);
    data_ += 4;
    return value;
  }

  void skip(std::uint32_t wire_type) {
    switch (wire_type) {
      case 0: varint(); return;
      case 1: advance(8); return;
      case 2: message(); return;
      case 5: advance(4); return;
      default: fail("unsupported wire type " + std::to_string(wire_type));
    }
  }

  [[noreturn]] void fail(const std::string& problem) const {
    throw InputError(origin_, "not a SentencePiece model: " + problem);
  }

 private:
  void advance(std::size_t count) {
    if (static_cast<std::size_t>(end_ - data_) < count) fail("truncated field");
    data_ += count;
  }

  const char* data_;
  const char* end_;
  const std::string& origin_;
};

std::size_t utf8_length(const std::string& text, std::size_t at) {
  const auto lead = static_cast<unsigned char>(text[at]);
  std::size_t length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xe ? 3 : (lead >> 3) == 0x1e ? 4 : 0;
  if (length == 0 || at + length > text.size()) return 0;
  for (std::size_t i = 1; i < length; ++i)
    if ((static_cast<unsigned char>(text[at + i]) & 0xc0) != 0x80) return 0;
  return length;
}

}  // namespace

SentencePieceModel SentencePieceModel::load(const std::filesystem::path& path) {
  return parse(read_bounded_file(path, kTokenizerFile), path.string());
}

SentencePieceModel SentencePieceModel::parse(const std::string& bytes, const std::string& origin) {
  SentencePieceModel model;
  std::fill(std::begin(model.byte_ids_), std::end(model.byte_ids_), -1);
  std::int64_t model_type = 1;  // UNIGRAM is the proto default
  std::string normalizer = "nmt_nfkc";
  WireReader reader(bytes.data(), bytes.size(), origin);
  while (!reader.done()) {
    const auto [field, wire_type] = reader.tag();
    if (field == 1 && wire_type == 2) {  // pieces
      auto piece_reader = reader.message();
      Piece piece;
      while (!piece_reader.done()) {
        const auto [piece_field, piece_wire] = piece_reader.tag();
        if (piece_field == 1 && piece_wire == 2) piece.text = piece_reader.bytes();
        else if (piece_field == 2 && piece_wire == 5) piece.score = piece_reader.fixed32_float();
        else if (piece_field == 3 && piece_wire == 0) piece.type = static_cast<PieceType>(piece_reader.varint());
        else piece_reader.skip(piece_wire);
      }
      model.pieces_.push_back(std::move(piece));
    } else if (field == 2 && wire_type == 2) {  // trainer_spec
      auto trainer = reader.message();
      while (!trainer.done()) {
        const auto [trainer_field, trainer_wire] = trainer.tag();
        if (trainer_field == 3 && trainer_wire == 0) model_type = static_cast<std::int64_t>(trainer.varint());
        else if (trainer_field == 35 && trainer_wire == 0) model.byte_fallback_ = trainer.varint() != 0;
        else trainer.skip(trainer_wire);
      }
    } else if (field == 3 && wire_type == 2) {  // normalizer_spec
      auto spec = reader.message();
      while (!spec.done()) {
        const auto [spec_field, spec_wire] = spec.tag();
        if (spec_field == 1 && spec_wire == 2) normalizer = spec.bytes();
        else if (spec_field == 2 && spec_wire == 2) { if (!spec.bytes().empty() && normalizer != "identity") normalizer = "precompiled"; }
        else if (spec_field == 3 && spec_wire == 0) model.add_dummy_prefix_ = spec.varint() != 0;
        else if (spec_field == 4 && spec_wire == 0) model.remove_extra_whitespaces_ = spec.varint() != 0;
        else if (spec_field == 5 && spec_wire == 0) model.escape_whitespaces_ = spec.varint() != 0;
        else spec.skip(spec_wire);
      }
    } else {
      reader.skip(wire_type);
    }
  }
  if (model.pieces_.empty()) throw InputError(origin, "not a SentencePiece model: it has no pieces");
  if (model_type != 2)
    throw InputError(origin, "SentencePiece model type " + std::to_string(model_type) +
                                 " is not supported; lathe reads BPE models (type 2)");
  if (normalizer != "identity")
    throw InputError(origin, "SentencePiece normalizer \"" + normalizer +
                                 "\" is not supported; lathe reads models with the identity normalizer");

  bool has_unknown = false;
  for (std::int32_t id = 0; id < static_cast<std::int32_t>(model.pieces_.size()); ++id) {
    const auto& piece = model.pieces_[id];
    switch (piece.type) {
      case PieceType::Normal:
      case PieceType::Unused:
        model.mergeable_.emplace(piece.text, id);
        break;
      case PieceType::UserDefined:
        model.mergeable_.emplace(piece.text, id);
        model.user_defined_.push_back(piece.text);
        break;
      case PieceType::Unknown:
        model.unknown_id_ = id;
        has_unknown = true;
        model.reserved_.emplace(piece.text, id);
        break;
      case PieceType::Byte: {
        // Exactly <0xXX> with two hex digits (sscanf's %X would also take a sign: "<0x-E>").
        const auto& text = piece.text;
        auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
        if (text.size() != 6 || text.compare(0, 3, "<0x") != 0 || !hex(text[3]) || !hex(text[4]) || text[5] != '>')
          throw InputError(origin, "byte piece \"" + text + "\" is not of the form <0xXX>");
        model.byte_ids_[std::stoi(text.substr(3, 2), nullptr, 16)] = id;
        model.reserved_.emplace(piece.text, id);
        break;
      }
      case PieceType::Control:
        model.reserved_.emplace(piece.text, id);
        break;
      default:
        throw InputError(origin, "piece " + std::to_string(id) + " has an unknown type");
    }
  }
  if (!has_unknown) throw InputError(origin, "SentencePiece model has no unknown piece");
  if (model.byte_fallback_)
    for (int byte = 0; byte < 256; ++byte)
      if (model.byte_ids_[byte] < 0) throw InputError(origin, "byte fallback is on but a byte piece is missing");
  // Longest first, so that matching user-defined symbols prefers the longest.
  std::sort(model.user_defined_.begin(), model.user_defined_.end(),
            [](const auto& a, const auto& b) { return a.size() > b.size(); });
  return model;
}

std::string SentencePieceModel::normalize(const std::string& text) const {
  std::string_view input(text);
  if (remove_extra_whitespaces_)
    while (!input.empty() && input.front() == ' ') input.remove_prefix(1);
  if (input.empty()) return {};
  const std::string space = escape_whitespaces_ ? kSpaceSymbol : " ";
  std::string out;
  if (add_dummy_prefix_) out += space;
  bool previous_space = remove_extra_whitespaces_;
  while (!input.empty()) {
    const auto length = utf8_length(std::string(input.substr(0, 4)), 0);
    std::string character = length == 0 ? std::string(kReplacementCharacter) : std::string(input.substr(0, length));
    input.remove_prefix(length == 0 ? 1 : length);
    if (character == " ") {
      if (previous_space) continue;
      out += space;
      previous_space = remove_extra_whitespaces_;
    } else {
      out += character;
      previous_space = false;
    }
  }
  if (remove_extra_whitespaces_)
    while (out.size() >= space.size() && out.compare(out.size() - space.size(), space.size(), space) == 0 &&
           out.size() > (add_dummy_prefix_ ? space.size() : 0))
      out.resize(out.size() - space.size());
  return out;
}

std::int32_t SentencePieceModel::piece_id(const std::string& piece) const {
  if (auto found = reserved_.find(piece); found != reserved_.end()) return found->second;
  if (auto found = mergeable_.find(piece); found != mergeable_.end()) return found->second;
  return -1;
}

std::vector<std::int32_t> SentencePieceModel::encode(const std::string& text) const {
  const auto normalized = normalize(text);
  if (normalized.empty()) return {};

  // Symbols as a linked list over the normalized text; merges join neighbours.
  struct Symbol {
    std::size_t begin, length;
    int previous, next;
    bool frozen;  // a user-defined symbol: never merged
  };
  std::vector<Symbol> symbols;
  for (std::size_t at = 0; at < normalized.size();) {
    std::size_t length = 0;
    bool user_defined = false;
    for (const auto& symbol : user_defined_)
      if (normalized.compare(at, symbol.size(), symbol) == 0) {
        length = symbol.size();
        user_defined = true;
        break;
      }
    if (length == 0) length = std::max<std::size_t>(1, utf8_length(normalized, at));
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({at, length, index - 1, index + 1, user_defined});
    at += length;
  }
  symbols.back().next = -1;

  struct Candidate {
    float score;
    int left, right;
    std::size_t length;
  };
  auto lower_priority = [](const Candidate& a, const Candidate& b) {
    return a.score != b.score ? a.score < b.score : a.left > b.left;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(lower_priority)> agenda(lower_priority);
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0 || symbols[left].frozen || symbols[right].frozen) return;
    const auto length = symbols[left].length + symbols[right].length;
    auto found = mergeable_.find(normalized.substr(symbols[left].begin, length));
    if (found == mergeable_.end() || pieces_[found->second].type == PieceType::UserDefined) return;
    agenda.push({pieces_[found->second].score, left, right, length});
  };
  for (std::size_t i = 1; i < symbols.size(); ++i) consider(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!agenda.empty()) {
    const auto top = agenda.top();
    agenda.pop();
    auto& left = symbols[top.left];
    auto& right = symbols[top.right];
    // Stale candidates: one side was merged away or grew since.
    if (left.length == 0 || right.length == 0 || left.length + right.length != top.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].previous = top.left;
    consider(left.previous, top.left);
    consider(top.left, left.next);
  }

  std::vector<std::int32_t> ids;
  for (int i = 0; i >= 0; i = symbols[i].next) {
    const auto piece = normalized.substr(symbols[i].begin, symbols[i].length);
    const auto id = piece_id(piece);
    if (id >= 0 && pieces_[id].type != PieceType::Unused) {
      ids.push_back(id);
    } else if (byte_fallback_) {
      for (unsigned char byte : piece) ids.push_back(byte_ids_[byte]);
    } else if (ids.empty() || ids.back() != unknown_id_) {
      ids.push_back(unknown_id_);  // runs of unknown symbols become one unknown id
    }
  }
  return ids;
}

std::string SentencePieceModel::decode(const std::vector<std::int32_t>& ids) const {
  std::string text;
  for (auto id : ids) {
    if (id < 0 || id >= vocab_size()) throw InputError("token id " + std::to_string(id) + " is outside the vocabulary");
    const auto& piece = pieces_[id];
    switch (piece.type) {
      case PieceType::Control: break;
      case PieceType::Byte: text += static_cast<char>(std::stoi(piece.text.substr(3, 2), nullptr, 16)); break;
      case PieceType::Unknown: text += " \xE2\x81\x87 "; break;
      default: text += piece.text;
    }
  }
  std::string out;
  for (std::size_t at = 0; at < text.size();) {
    if (text.compare(at, 3, kSpaceSymbol) == 0) {
      out += ' ';
      at += 3;
    } else {
      out += text[at++];
    }
  }
  if (add_dummy_prefix_ && !out.empty() && out.front() == ' ') out.erase(0, 1);
  return out;
}

}  // namespace lathe
