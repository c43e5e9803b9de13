#include "support/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "support/bounded_file.h"
#include "support/errors.h"

namespace lathe {

std::shared_ptr<const MappedFile> MappedFile::open(const std::filesystem::path& path) {
  const int fd = open_regular_file(path, "file to map");
  struct stat info {};
  ::fstat(fd, &info);
  auto size = static_cast<std::size_t>(info.st_size);
  const std::byte* data = nullptr;
  if (size > 0) {
    void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      ::close(fd);
      throw InputError(path.string(), std::string("cannot map: ") + std::strerror(errno));
    }
    data = static_cast<const std::byte*>(mapping);
  }
  ::close(fd);
  return std::shared_ptr<const MappedFile>(new MappedFile(path, data, size));
}

std::shared_ptr<const MappedFile> MappedFile::map_region(int fd, std::uint64_t offset, std::size_t size,
                                                         const std::filesystem::path& label) {
  if (size == 0) return std::shared_ptr<const MappedFile>(new MappedFile(label, nullptr, 0));
  void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (mapping == MAP_FAILED) throw InputError(label.string(), std::string("cannot map: ") + std::strerror(errno));
  return std::shared_ptr<const MappedFile>(new MappedFile(label, static_cast<const std::byte*>(mapping), size));
}

void MappedFile::release(const void* begin, std::size_t size) const {
  if (!contains(begin, size)) return;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto first = (reinterpret_cast<std::uintptr_t>(begin) + page - 1) / page * page;
  const auto last = (reinterpret_cast<std::uintptr_t>(begin) + size) / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void MappedFile::populate(const void* begin, std::size_t size) const {
#ifdef MADV_POPULATE_READ
  if (!contains(begin, size)) return;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto first = reinterpret_cast<std::uintptr_t>(begin) / page * page;
  const auto last = reinterpret_cast<std::uintptr_t>(begin) + size;
  ::madvise(reinterpret_cast<void*>(first), last - first, MADV_POPULATE_READ);  // a hint: errors are ignored
#else
  (void)begin;
  (void)size;
#endif
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

}  // namespace lathe
