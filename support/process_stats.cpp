#include "support/process_stats.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <thread>

namespace lathe {
namespace {

// CPUs a cgroup quota allows ("quota period" microseconds), or 0 when it sets none.
int cgroup_cpu_limit() {
  double quota = 0, period = 0;
  std::ifstream v2("/sys/fs/cgroup/cpu.max");
  std::string quota_text;
  if (v2 >> quota_text >> period) {
    if (quota_text == "max" || period <= 0) return 0;
    quota = std::stod(quota_text);
  } else {
    std::ifstream v1_quota("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), v1_period("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
    if (!(v1_quota >> quota) || !(v1_period >> period) || quota <= 0 || period <= 0) return 0;
  }
  return quota > 0 ? std::max(1, static_cast<int>(std::ceil(quota / period))) : 0;
}

}  // namespace

int usable_cpu_count() {
  int count = static_cast<int>(std::thread::hardware_concurrency());
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) == 0) count = CPU_COUNT(&allowed);
  try {
    if (const int limit = cgroup_cpu_limit(); limit > 0) count = std::min(count, limit);
  } catch (const std::exception&) {
    // An unreadable quota: the affinity mask stands.
  }
  return std::max(1, count);
}

void reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  if (clear) clear << "5";
}

std::uint64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

std::uint64_t available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::uint64_t kilobytes = 0;
  std::string unit;
  while (meminfo >> key >> kilobytes >> unit)
    if (key == "MemAvailable:") return kilobytes * 1024;
  return 0;
}

}  // namespace lathe
