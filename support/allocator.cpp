#include "support/allocator.h"

#include <malloc.h>

#include <cstddef>

namespace lathe {

void keep_freed_memory_for_reuse() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);      // blocks up to 32 MB (glibc's largest) come from the heap ...
  mallopt(M_TRIM_THRESHOLD, 256 << 20);     // ... and up to 256 MB of freed heap stays mapped
  mallopt(M_TOP_PAD, 16 << 20);
}

void return_freed_memory() {
  // Below this the pages are worth keeping: trimming makes the next layer fault them in again,
  // which is what keep_freed_memory_for_reuse avoids for small models.
  constexpr std::size_t kWorthReturning = 64 << 20;
  if (mallinfo2().fordblks > kWorthReturning) malloc_trim(0);
}

}  // namespace lathe
