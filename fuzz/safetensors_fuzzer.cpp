// A safetensors file: header length, JSON header, dtypes, shapes, offsets, metadata.

#include <cstddef>
#include <cstdint>

#include "formats/safetensors.h"
#include "fuzz_input.h"
#include "support/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = lathe::fuzz::write_input("model.safetensors", data, size);
  try {
    const auto file = lathe::SafetensorsFile::open(path);
    // Every byte a view claims must be readable.
    unsigned checksum = 0;
    for (const auto& view : file.tensors()) {
      checksum += static_cast<unsigned>(view.element_count());
      if (!view.bytes.empty()) checksum += static_cast<unsigned>(view.bytes.back());
    }
    for (const auto& [key, value] : file.metadata()) checksum += static_cast<unsigned>(key.size() + value.size());
    (void)checksum;
  } catch (const lathe::InputError&) {
  }
  return 0;
}
