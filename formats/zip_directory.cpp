#include "formats/zip_directory.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "support/errors.h"
#include "support/mapped_file.h"

namespace lathe {
namespace {

constexpr std::uint32_t kEndOfDirectory = 0x06054b50;
constexpr std::uint32_t kZip64EndLocator = 0x07064b50;
constexpr std::uint32_t kZip64End = 0x06064b50;
constexpr std::uint32_t kDirectoryEntry = 0x02014b50;

// Little-endian fields of a mapped archive, every read bounds-checked.
class ArchiveBytes {
 public:
  ArchiveBytes(const std::byte* data, std::size_t size, std::string file) : data_(data), size_(size), file_(std::move(file)) {}

  template <typename T>
  T read(std::uint64_t offset) const {
    if (offset > size_ || size_ - offset < sizeof(T)) throw InputError(file_, "zip directory points past the end of the file");
    T value = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
      value |= static_cast<T>(static_cast<T>(std::to_integer<std::uint8_t>(data_[offset + i])) << (8 * i));
    return value;
  }
  std::string text(std::uint64_t offset, std::size_t length) const {
    if (offset > size_ || size_ - offset < length) throw InputError(file_, "zip directory points past the end of the file");
    return {reinterpret_cast<const char*>(data_ + offset), length};
  }
  std::size_t size() const { return size_; }
  const std::string& file() const { return file_; }

 private:
  const std::byte* data_;
  std::size_t size_;
  std::string file_;
};

}  // namespace

std::uint32_t crc32_of(std::span<const std::byte> bytes) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  const auto* data = reinterpret_cast<const Bytef*>(bytes.data());
  std::size_t left = bytes.size();
  while (left > 0) {  // zlib takes lengths as uInt
    const auto chunk = static_cast<uInt>(std::min<std::size_t>(left, 1u << 30));
    crc = ::crc32(crc, data, chunk);
    data += chunk;
    left -= chunk;
  }
  return static_cast<std::uint32_t>(crc);
}

ZipDirectory read_zip_directory(const std::filesystem::path& path) {
  const auto mapping = MappedFile::open(path);
  const ArchiveBytes archive(mapping->bytes().data(), mapping->bytes().size(), path.string());
  // The end record is the last 22 bytes, before a comment of at most 65,535 bytes.
  constexpr std::size_t kEndSize = 22;
  if (archive.size() < kEndSize) throw InputError(path.string(), "too short for a zip archive");
  std::uint64_t end = archive.size() - kEndSize;
  const std::uint64_t earliest = archive.size() >= kEndSize + 65535 ? archive.size() - kEndSize - 65535 : 0;
  while (archive.read<std::uint32_t>(end) != kEndOfDirectory) {
    if (end == earliest) throw InputError(path.string(), "no zip central directory (not a zip archive, or truncated)");
    --end;
  }
  std::uint64_t entries = archive.read<std::uint16_t>(end + 10);
  std::uint64_t directory = archive.read<std::uint32_t>(end + 16);
  if (entries == 0xffff || directory == 0xffffffff) {  // zip64: the locator sits just before the end record
    if (end < 20 || archive.read<std::uint32_t>(end - 20) != kZip64EndLocator)
      throw InputError(path.string(), "zip64 archive without its end-of-directory locator");
    const auto zip64_end = archive.read<std::uint64_t>(end - 20 + 8);
    if (archive.read<std::uint32_t>(zip64_end) != kZip64End) throw InputError(path.string(), "malformed zip64 end of directory");
    entries = archive.read<std::uint64_t>(zip64_end + 32);
    directory = archive.read<std::uint64_t>(zip64_end + 48);
  }
  ZipDirectory result;
  result.offset = directory;
  std::uint64_t at = directory;
  for (std::uint64_t i = 0; i < entries; ++i) {
    if (archive.read<std::uint32_t>(at) != kDirectoryEntry) throw InputError(path.string(), "malformed zip central directory");
    const auto crc = archive.read<std::uint32_t>(at + 16);
    const auto name_length = archive.read<std::uint16_t>(at + 28);
    const auto extra_length = archive.read<std::uint16_t>(at + 30);
    const auto comment_length = archive.read<std::uint16_t>(at + 32);
    result.crcs[archive.text(at + 46, name_length)] = crc;
    at += 46 + name_length + extra_length + comment_length;
  }
  return result;
}

}  // namespace lathe
