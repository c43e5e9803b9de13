#pragma once

// Evaluation and calibration data: pre-tokenized token files and text files, turned into
// token sequences.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lathe {

class Tokenizer;

enum class TokenFileType { U16, U32 };

// Reads a little-endian token file. A size that is not a multiple of the element size, or
// an id >= vocab_size (when vocab_size > 0), is an InputError naming the file and position.
std::vector<std::int32_t> read_token_file(const std::filesystem::path& path, TokenFileType type,
                                          std::int64_t vocab_size);

enum class TextSplit { Paragraphs, Lines };

struct TextEncoding {
  TextSplit split = TextSplit::Paragraphs;
  // Ids to put before and after each piece of text; negative means none.
  std::int32_t bos_id = -1;
  std::int32_t eos_id = -1;
};

// Splits the file into paragraphs (on blank lines, "\n\n") or lines, strips each piece,
// skips empty ones and encodes every piece as [bos] + tokens + [eos].
std::vector<std::vector<std::int32_t>> encode_text_file(const std::filesystem::path& path,
                                                        const Tokenizer& tokenizer,
                                                        const TextEncoding& encoding);

// Concatenates sequences into one token stream.
std::vector<std::int32_t> concatenate(const std::vector<std::vector<std::int32_t>>& sequences);

}  // namespace lathe
