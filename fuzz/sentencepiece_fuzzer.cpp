// A SentencePiece tokenizer.model, then a round trip through it.

#include <cstddef>
#include <cstdint>
#include <string>

#include "formats/sentencepiece_model.h"
#include "support/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto model =
        lathe::SentencePieceModel::parse(std::string(reinterpret_cast<const char*>(data), size), "tokenizer.model");
    const auto ids = model.encode("Once upon a time, Lily saw a \xc3\xa9 bird.\n");
    (void)model.decode(ids);
  } catch (const lathe::InputError&) {
  }
  return 0;
}
