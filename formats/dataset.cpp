#include "formats/dataset.h"

#include <algorithm>
#include <iterator>
#include <limits>
#include <string_view>

#include "formats/tokenizer.h"
#include "support/bounded_file.h"
#include "support/errors.h"
#include "support/mapped_file.h"
#include "support/utf8.h"

namespace lathe {
namespace {

// Python's str.isspace(), which str.strip() uses: the reference token files were made with it.
bool is_python_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

// Python's str.strip() on valid UTF-8.
std::string_view strip(std::string_view text) {
  std::size_t begin = 0;
  while (begin < text.size()) {
    auto code_point = utf8::decode(text, begin);
    if (!is_python_whitespace(code_point->value)) break;
    begin += code_point->size;
  }
  std::size_t end = text.size();
  while (end > begin) {
    std::size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    if (!is_python_whitespace(utf8::decode(text, start)->value)) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

std::string read_text_file(const std::filesystem::path& path) {
  return read_bounded_file(path, kTextDataFile);
}

// Python's universal newlines: "\r\n" and a lone "\r" both become "\n".
std::string normalize_newlines(const std::string& text) {
  std::string result;
  result.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\r') {
      result += text[i];
    } else {
      result += '\n';
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    }
  }
  return result;
}

std::size_t line_of(std::string_view text, std::size_t offset) {
  return 1 + static_cast<std::size_t>(std::count(text.begin(), text.begin() + offset, '\n'));
}

}  // namespace

std::vector<std::int32_t> read_token_file(const std::filesystem::path& path, TokenFileType type,
                                          std::int64_t vocab_size) {
  const std::string file = path.string();
  auto mapping = MappedFile::open(path);
  auto bytes = mapping->bytes();
  const std::size_t width = type == TokenFileType::U16 ? 2 : 4;
  const char* type_name = type == TokenFileType::U16 ? "u16" : "u32";
  if (bytes.size() % width != 0)
    throw InputError(file, "size " + std::to_string(bytes.size()) +
                               " bytes is not a multiple of " + std::to_string(width) + " (" +
                               type_name + " tokens)");

  std::vector<std::int32_t> tokens(bytes.size() / width);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    std::uint32_t value = 0;
    for (std::size_t b = width; b-- > 0;)
      value = (value << 8) | std::to_integer<std::uint32_t>(bytes[i * width + b]);
    bool too_large = value > static_cast<std::uint32_t>(std::numeric_limits<std::int32_t>::max()) ||
                     (vocab_size > 0 && value >= vocab_size);
    if (too_large)
      throw InputError(file, "token " + std::to_string(i) + " (byte offset " +
                                 std::to_string(i * width) + ") is " + std::to_string(value) +
                                 ", outside the vocabulary of " +
                                 (vocab_size > 0 ? std::to_string(vocab_size) : "2^31 ids"));
    tokens[i] = static_cast<std::int32_t>(value);
  }
  return tokens;
}

std::vector<std::vector<std::int32_t>> encode_text_file(const std::filesystem::path& path,
                                                        const Tokenizer& tokenizer,
                                                        const TextEncoding& encoding) {
  const std::string file = path.string();
  const std::string text = normalize_newlines(read_text_file(path));
  auto invalid = utf8::find_invalid(text);
  if (invalid != std::string::npos)
    throw InputError(file, "line " + std::to_string(line_of(text, invalid)) +
                               ": not valid UTF-8 (byte " + std::to_string(invalid) +
                               " after newline normalization)");

  // Like Python's text.split(separator): pieces between non-overlapping separators.
  const std::string_view separator = encoding.split == TextSplit::Paragraphs ? "\n\n" : "\n";
  const std::string_view all(text);
  std::vector<std::vector<std::int32_t>> sequences;
  std::size_t lines_before = 0, counted_up_to = 0;
  std::size_t start = 0;
  while (start <= all.size()) {
    std::size_t stop = all.find(separator, start);
    if (stop == std::string_view::npos) stop = all.size();
    std::string_view piece = strip(all.substr(start, stop - start));
    if (!piece.empty()) {
      std::size_t offset = static_cast<std::size_t>(piece.data() - all.data());
      lines_before += static_cast<std::size_t>(
          std::count(all.begin() + counted_up_to, all.begin() + offset, '\n'));
      counted_up_to = offset;
      std::vector<std::int32_t> sequence;
      if (encoding.bos_id >= 0) sequence.push_back(encoding.bos_id);
      try {
        auto ids = tokenizer.encode(std::string(piece));
        sequence.insert(sequence.end(), ids.begin(), ids.end());
      } catch (const InputError& error) {
        throw InputError(file, "line " + std::to_string(lines_before + 1) + ": " + error.what());
      }
      if (encoding.eos_id >= 0) sequence.push_back(encoding.eos_id);
      sequences.push_back(std::move(sequence));
    }
    start = stop + separator.size();
  }
  return sequences;
}

std::vector<std::int32_t> concatenate(const std::vector<std::vector<std::int32_t>>& sequences) {
  std::size_t total = 0;
  for (const auto& sequence : sequences) total += sequence.size();
  std::vector<std::int32_t> tokens;
  tokens.reserve(total);
  for (const auto& sequence : sequences) tokens.insert(tokens.end(), sequence.begin(), sequence.end());
  return tokens;
}

}  // namespace lathe
