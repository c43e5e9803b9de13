#include "support/allocator.h"

#include <malloc.h>

namespace lathe {

void keep_freed_memory_for_reuse() {
  mallopt(M_MMAP_THRESHOLD, 4 << 20);       // blocks up to 4 MB come from the heap ...
  mallopt(M_TRIM_THRESHOLD, 256 << 20);     // ... and up to 256 MB of freed heap stays mapped
  mallopt(M_TOP_PAD, 16 << 20);
}

void return_freed_memory() { malloc_trim(0); }

}  // namespace lathe
