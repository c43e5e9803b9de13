#pragma once

#include <cstdint>

namespace lathe {

// Resets the kernel's peak resident set size of this process, so the next peak_rss_bytes()
// measures from now on (Linux /proc/self/clear_refs; a no-op where that is not writable).
void reset_peak_rss();
// Peak resident set size since the start or the last reset, in bytes (0 if unknown).
std::uint64_t peak_rss_bytes();
// Memory the kernel could give this process now without swapping (MemAvailable), in bytes (0
// if unknown).
std::uint64_t available_memory_bytes();

// The CPUs this process may use: those of its affinity mask (taskset, a container's cpuset),
// fewer if a cgroup CPU quota (cpu.max, or v1's cfs_quota_us) allows less, at least 1.
// std::thread::hardware_concurrency counts the machine's, which oversubscribes a CI container.
int usable_cpu_count();

}  // namespace lathe
