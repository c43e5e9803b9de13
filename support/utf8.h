#pragma once

// Strict UTF-8 decoding (no overlong forms, no surrogates, nothing above U+10FFFF).

#include <cstddef>
#include <optional>
#include <string_view>

namespace lathe::utf8 {

struct CodePoint {
  char32_t value;
  std::size_t size;  // bytes
};

// The code point starting at text[position], or nullopt if the bytes there are not valid UTF-8.
inline std::optional<CodePoint> decode(std::string_view text, std::size_t position) {
  auto lead = static_cast<unsigned char>(text[position]);
  if (lead < 0x80) return CodePoint{lead, 1};
  std::size_t size;
  char32_t value;
  char32_t smallest;
  if ((lead & 0xE0) == 0xC0) {
    size = 2, value = lead & 0x1F, smallest = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    size = 3, value = lead & 0x0F, smallest = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    size = 4, value = lead & 0x07, smallest = 0x10000;
  } else {
    return std::nullopt;
  }
  if (text.size() - position < size) return std::nullopt;
  for (std::size_t i = 1; i < size; ++i) {
    auto byte = static_cast<unsigned char>(text[position + i]);
    if ((byte & 0xC0) != 0x80) return std::nullopt;
    value = (value << 6) | (byte & 0x3F);
  }
  if (value < smallest || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF))
    return std::nullopt;
  return CodePoint{value, size};
}

// Byte offset of the first invalid sequence, or npos when all of `text` is valid UTF-8.
inline std::size_t find_invalid(std::string_view text) {
  std::size_t position = 0;
  while (position < text.size()) {
    auto code_point = decode(text, position);
    if (!code_point) return position;
    position += code_point->size;
  }
  return std::string_view::npos;
}

}  // namespace lathe::utf8
