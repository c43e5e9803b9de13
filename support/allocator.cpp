#include "support/allocator.h"

#include <malloc.h>

namespace lathe {

void keep_freed_memory_for_reuse() {
  mallopt(M_MMAP_MAX, 0);                   // large blocks come from the heap too ...
  mallopt(M_TRIM_THRESHOLD, 256 << 20);     // ... and up to 256 MB of freed heap stays mapped
  mallopt(M_TOP_PAD, 16 << 20);
}

}  // namespace lathe
