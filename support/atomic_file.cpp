#include "support/atomic_file.h"

#include <cstdlib>

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

std::filesystem::path temporary_directory() {
  std::error_code ec;
  auto folder = std::filesystem::temp_directory_path(ec);
  if (ec) {
    const char* variable = std::getenv("TMPDIR");
    throw InputError(variable != nullptr ? std::string(variable) : std::string("/tmp"),
                     "the folder for temporary files ($TMPDIR) does not exist");
  }
  return folder;
}

AtomicFile::AtomicFile(std::filesystem::path destination) : destination_(std::move(destination)) {
  std::error_code ec;
  if (destination_.has_parent_path()) {
    std::filesystem::create_directories(destination_.parent_path(), ec);
    if (ec) throw InputError(destination_.string(), "cannot create its folder: " + ec.message());
  }
  temporary_ = temporary_sibling(destination_);
  out_.open(temporary_, std::ios::binary | std::ios::trunc);
  if (!out_) throw InputError(destination_.string(), std::string("cannot write: ") + std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  out_.close();
  std::error_code ignored;
  std::filesystem::remove(temporary_, ignored);
}

void AtomicFile::commit() {
  out_.flush();
  if (!out_) throw InputError(destination_.string(), "write failed (disk full?)");
  out_.close();
  sync_file(temporary_);
  std::error_code ec;
  std::filesystem::rename(temporary_, destination_, ec);
  if (ec) throw InputError(destination_.string(), "cannot replace: " + ec.message());
  committed_ = true;
}

void write_file_atomically(const std::filesystem::path& destination,
                           const std::function<void(std::ostream&)>& write) {
  AtomicFile file(destination);
  write(file.stream());
  file.commit();
}

}  // namespace lathe
