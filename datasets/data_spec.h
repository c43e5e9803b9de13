#pragma once

// One named data entry of a recipe: which file, how it is read, and how it is cut into
// sequences for the model.

#include <cstdint>
#include <filesystem>

#include "formats/dataset.h"
#include "support/source_location.h"

namespace lathe {

enum class DataFormat { Tokens, Text };

struct DataSpec {
  DataFormat format = DataFormat::Tokens;
  std::filesystem::path path;
  TokenFileType token_type = TokenFileType::U16;  // tokens: {dtype: u16 | u32}
  TextSplit split = TextSplit::Paragraphs;        // text: {split: paragraphs | lines}
  bool bos = true;                                // text: prefix each piece with the model's BOS
  bool eos = false;                               // text: end each piece with the model's EOS
  // true: concatenate and cut into windows of seq_len inputs; false: one sequence per piece.
  bool pack = true;
  std::int64_t seq_len = 0;     // 0: the model's maximum positions
  std::int64_t max_tokens = 0;  // 0: all
  std::int64_t batch_size = 8;
  SourceLocation where;  // of the tokens or text path
};

}  // namespace lathe
