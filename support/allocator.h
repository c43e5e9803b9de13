#pragma once

namespace lathe {

// Makes glibc malloc keep freed memory for reuse instead of returning each large block to the
// kernel. LibTorch's CPU allocator does not cache, so without this every attention-score
// tensor of a forward (tens of MB) is a fresh mmap that page-faults in and is unmapped again:
// evaluation spent more time in the kernel than in arithmetic. Blocks above 32 MB (a real-size
// model's larger weights) are still mapped and unmapped each time: kept in the heap, the small
// objects that outlive them (scales, tensor headers) split their free space, and quantizing a
// 1.1 B model grew the heap by 1.7 GB, about one int8 weight per weight (see also
// return_freed_memory). Call once at start-up.
void keep_freed_memory_for_reuse();

// Gives the pages of freed heap memory back to the kernel, also those between blocks still in
// use. Layer-at-a-time work frees a layer's worth of tensors at a time, but small objects that
// outlive them (scales, tensor headers) split the free space, so without this the heap's
// resident size grew by about a layer per layer. Does nothing while less than 64 MB is free, so
// callers need no throttle of their own: call it whenever a layer or a large tensor is done.
void return_freed_memory();

}  // namespace lathe
