#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

namespace lathe {

// A read-only memory mapping of a whole file. Shared so that tensors wrapping its bytes can
// keep it alive after the reader that opened it is gone.
class MappedFile {
 public:
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);
  // Maps `size` bytes of an open file from `offset` (a multiple of the page size); `label`
  // names it in errors. The mapping stays valid after the descriptor is closed.
  static std::shared_ptr<const MappedFile> map_region(int fd, std::uint64_t offset, std::size_t size,
                                                      const std::filesystem::path& label);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  bool contains(const void* begin, std::size_t size) const {
    const auto* first = static_cast<const std::byte*>(begin);
    return data_ != nullptr && first >= data_ && first + size <= data_ + size_;
  }
  // Drops the pages wholly inside [begin, begin + size) from this process's memory; the next
  // read maps them from the file again. The mapping is read-only, so nothing
  // is lost.
  void release(const void* begin, std::size_t size) const;
  // Maps the pages of [begin, begin + size) in one call before they are read (where the kernel
  // can: MADV_POPULATE_READ, Linux 5.14), instead of one page fault per 4 KiB.
  void populate(const void* begin, std::size_t size) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile(std::filesystem::path path, const std::byte* data, std::size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::filesystem::path path_;
  const std::byte* data_;
  std::size_t size_;
};

}  // namespace lathe
