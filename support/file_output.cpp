#include "support/file_output.h"

#include <unistd.h>

#include <cerrno>

namespace lathe {

FileOutputBuffer::FileOutputBuffer(int fd, std::size_t buffer_bytes) : fd_(fd), buffer_(buffer_bytes) {
  setp(buffer_.data(), buffer_.data() + buffer_.size());
}

bool FileOutputBuffer::write_all(const char* data, std::size_t size) {
  if (error_number_ != 0) return false;
  while (size > 0) {
    const auto done = ::write(fd_, data, size);
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) {
      error_number_ = done < 0 ? errno : ENOSPC;
      return false;
    }
    data += done;
    size -= static_cast<std::size_t>(done);
    written_ += static_cast<std::uint64_t>(done);
  }
  return true;
}

bool FileOutputBuffer::drain() {
  const auto pending = static_cast<std::size_t>(pptr() - pbase());
  setp(buffer_.data(), buffer_.data() + buffer_.size());
  return write_all(buffer_.data(), pending);
}

FileOutputBuffer::int_type FileOutputBuffer::overflow(int_type ch) {
  if (!drain()) return traits_type::eof();
  if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
  *pptr() = traits_type::to_char_type(ch);
  pbump(1);
  return ch;
}

std::streamsize FileOutputBuffer::xsputn(const char* data, std::streamsize size) {
  if (size < epptr() - pptr()) return std::streambuf::xsputn(data, size);
  if (!drain() || !write_all(data, static_cast<std::size_t>(size))) return 0;
  return size;
}

int FileOutputBuffer::sync() { return drain() ? 0 : -1; }

FileOutputBuffer::pos_type FileOutputBuffer::seekoff(off_type offset, std::ios_base::seekdir direction,
                                                     std::ios_base::openmode which) {
  if (offset != 0 || direction != std::ios_base::cur || !(which & std::ios_base::out)) return pos_type(off_type(-1));
  return pos_type(static_cast<off_type>(written_ + static_cast<std::uint64_t>(pptr() - pbase())));
}

}  // namespace lathe
