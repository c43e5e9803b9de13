#pragma once

// The central directory of a zip archive (torch.save's format): each entry's name and CRC-32,
// so that records read from it can be checked. LibTorch's zip reader does not check them.

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>

namespace lathe {

struct ZipDirectory {
  std::uint64_t offset = 0;                    // where the central directory starts in the file
  std::map<std::string, std::uint32_t> crcs;   // entry name -> CRC-32 of its uncompressed bytes
};

// The central directory (zip64 too). InputError naming `path` when it is missing or malformed.
ZipDirectory read_zip_directory(const std::filesystem::path& path);

std::uint32_t crc32_of(std::span<const std::byte> bytes);

}  // namespace lathe
