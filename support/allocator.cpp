#include "support/allocator.h"

#include <malloc.h>

#include <cstddef>

namespace lathe {

void keep_freed_memory_for_reuse() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);      // blocks up to 32 MB (glibc's largest) come from the heap ...
  mallopt(M_TRIM_THRESHOLD, 256 << 20);     // ... and up to 256 MB of freed heap stays mapped
  mallopt(M_TOP_PAD, 16 << 20);
}

namespace {

// Below this the pages are worth keeping: trimming makes the next layer fault them in again,
// which is what keep_freed_memory_for_reuse avoids for small models.
constexpr std::size_t kWorthReturning = 64 << 20;

void return_freed_memory_above(std::size_t kept) {
  if (mallinfo2().fordblks > kept + kWorthReturning) malloc_trim(0);
}

}  // namespace

void return_freed_memory() { return_freed_memory_above(0); }

void RepeatedStepMemory::step_finished() {
  if (first_) kept_ = mallinfo2().fordblks;
  first_ = false;
  return_freed_memory_above(kept_);
}

}  // namespace lathe
