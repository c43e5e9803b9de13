#include "support/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <string>

#include "support/errors.h"

namespace lathe {
namespace {

std::filesystem::path temporary_sibling(const std::filesystem::path& destination) {
  std::random_device entropy;
  auto name = "." + destination.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
              std::to_string(entropy() % 1000000);
  return destination.parent_path() / name;
}

void sync_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_atomically(const std::filesystem::path& destination,
                           const std::function<void(std::ostream&)>& write) {
  std::error_code ec;
  if (destination.has_parent_path()) {
    std::filesystem::create_directories(destination.parent_path(), ec);
    if (ec) throw InputError(destination.string(), "cannot create its folder: " + ec.message());
  }
  auto temporary = temporary_sibling(destination);
  try {
    {
      std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
      if (!out) throw InputError(destination.string(), std::string("cannot write: ") + std::strerror(errno));
      write(out);
      out.flush();
      if (!out) throw InputError(destination.string(), "write failed (disk full?)");
    }
    sync_file(temporary);
    std::filesystem::rename(temporary, destination, ec);
    if (ec) throw InputError(destination.string(), "cannot replace: " + ec.message());
  } catch (...) {
    std::filesystem::remove(temporary, ec);
    throw;
  }
}

}  // namespace lathe
