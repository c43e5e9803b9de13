// The zip container of a PyTorch checkpoint: end of central directory (zip64 too) and the
// entries' CRC-32s.

#include <cstddef>
#include <cstdint>
#include <span>

#include "formats/zip_directory.h"
#include "fuzz_input.h"
#include "support/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = lathe::fuzz::write_input("model.pt", data, size);
  try {
    const auto crcs = lathe::read_zip_directory(path).crcs;
    (void)crcs;
    (void)lathe::crc32_of(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size));
  } catch (const lathe::InputError&) {
  }
  return 0;
}
