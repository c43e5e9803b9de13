#pragma once

// A temporary file for data that does not fit in memory: created in a folder and unlinked at
// once, so it goes away with its descriptor (and any mappings of it), even if the process dies.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace lathe {

class TemporaryFile {
 public:
  // In `directory`, default temporary_directory(); InputError when it cannot be made.
  explicit TemporaryFile(const std::filesystem::path& directory = {});
  ~TemporaryFile();
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;

  // All of `bytes` at `offset`, or an InputError naming the file (a full disk, most likely).
  void write_at(const void* data, std::size_t bytes, std::uint64_t offset) const;
  void read_at(void* data, std::size_t bytes, std::uint64_t offset) const;

  int descriptor() const { return fd_; }
  // The name it had, for messages.
  const std::string& label() const { return label_; }

 private:
  std::string label_;
  int fd_ = -1;
};

}  // namespace lathe
