#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>

struct evp_md_ctx_st;

namespace lathe {

// SHA-256 (OpenSSL's, which uses the CPU's SHA instructions where there are any).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, std::size_t size);
  // The digest as 64 lowercase hex digits; the object is spent afterwards.
  std::string hex();

 private:
  evp_md_ctx_st* context_;
};

std::string sha256_hex(std::string_view bytes);

struct FileDigest {
  std::uint64_t file_bytes = 0;  // the file's size
  std::string sha256;            // of the bytes hashed
};

// Of at most `size` bytes of a regular file from `offset` (to its end by default), read in
// pieces; InputError naming the file when it is not a regular file (`what` says what was
// expected) or cannot be read.
FileDigest file_sha256(const std::filesystem::path& path, const char* what, std::uint64_t offset = 0,
                       std::uint64_t size = std::numeric_limits<std::uint64_t>::max());

}  // namespace lathe
