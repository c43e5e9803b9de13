// A sharded checkpoint's model.safetensors.index.json, beside two valid shards.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "formats/safetensors.h"
#include "fuzz_input.h"
#include "support/errors.h"

namespace {

void write_shards() {
  static const float weights[4] = {1, 2, 3, 4};
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(weights), sizeof(weights));
  const auto folder = lathe::fuzz::scratch_folder();
  lathe::write_safetensors(folder / "model-00001-of-00002.safetensors", {{"a.weight", lathe::DType::F32, {2, 2}, bytes}}, {});
  lathe::write_safetensors(folder / "model-00002-of-00002.safetensors", {{"b.weight", lathe::DType::F32, {4}, bytes}}, {});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool shards_written = (write_shards(), true);
  (void)shards_written;
  lathe::fuzz::write_input("model.safetensors.index.json", data, size);
  try {
    const auto checkpoint = lathe::SafetensorsCheckpoint::open(lathe::fuzz::scratch_folder());
    for (const auto* view : checkpoint.tensors()) (void)checkpoint.find(view->name);
    (void)checkpoint.bytes_on_disk();
  } catch (const lathe::InputError&) {
  }
  return 0;
}
