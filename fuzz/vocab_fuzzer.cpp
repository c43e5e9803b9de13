// The character vocab.json of makemore-style models, then a round trip through it.

#include <cstddef>
#include <cstdint>

#include "formats/tokenizer.h"
#include "fuzz_input.h"
#include "support/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = lathe::fuzz::write_input("vocab.json", data, size);
  try {
    const auto tokenizer = lathe::load_character_tokenizer(path);
    (void)tokenizer->vocab_size();
    (void)tokenizer->decode(tokenizer->encode("emma"));
  } catch (const lathe::InputError&) {
  }
  return 0;
}
