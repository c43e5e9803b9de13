#include "test_paths.h"

#include <unistd.h>

#include <random>

#include "support/allocator.h"

namespace lathe::testing {

// The tests run forwards the way lathe does.
const bool kAllocatorConfigured = (keep_freed_memory_for_reuse(), true);

TemporaryFolder::TemporaryFolder() {
  std::random_device entropy;
  path_ = std::filesystem::temp_directory_path() /
          ("lathe-test-" + std::to_string(::getpid()) + "-" + std::to_string(entropy()));
  std::filesystem::create_directories(path_);
}

TemporaryFolder::~TemporaryFolder() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace lathe::testing
