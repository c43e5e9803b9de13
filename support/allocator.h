#pragma once

namespace lathe {

// Makes glibc malloc keep freed memory for reuse instead of returning each large block to the
// kernel. LibTorch's CPU allocator does not cache, so without this every attention-score
// tensor of a forward (tens of MB) is a fresh mmap that page-faults in and is unmapped again:
// evaluation spent more time in the kernel than in arithmetic. Call once at start-up.
void keep_freed_memory_for_reuse();

}  // namespace lathe
