#pragma once

#include <cstdint>
#include <streambuf>
#include <vector>

namespace lathe {

// A stream buffer onto an open file descriptor that remembers why its first write failed.
// std::ofstream only sets failbit and loses errno, so a full disk or a file-size limit could
// only be guessed at; this keeps "No space left on device" or "File too large" for the message.
// Writes of at least its buffer's size go straight to the file.
class FileOutputBuffer : public std::streambuf {
 public:
  explicit FileOutputBuffer(int fd, std::size_t buffer_bytes = std::size_t{1} << 20);
  FileOutputBuffer(const FileOutputBuffer&) = delete;
  FileOutputBuffer& operator=(const FileOutputBuffer&) = delete;

  // The errno of the first failed write, 0 while none failed.
  int error_number() const { return error_number_; }

 protected:
  int_type overflow(int_type ch) override;
  std::streamsize xsputn(const char* data, std::streamsize size) override;
  int sync() override;
  // Only the current position (what tellp asks): the bytes written so far.
  pos_type seekoff(off_type offset, std::ios_base::seekdir direction, std::ios_base::openmode which) override;

 private:
  bool drain();
  bool write_all(const char* data, std::size_t size);

  int fd_;
  std::vector<char> buffer_;
  std::uint64_t written_ = 0;  // bytes handed to the file
  int error_number_ = 0;
};

}  // namespace lathe
