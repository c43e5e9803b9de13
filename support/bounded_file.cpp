#include "support/bounded_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "support/errors.h"
#include "support/number_text.h"

namespace lathe {

int open_regular_file(const std::filesystem::path& path, const char* what) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0)
    throw InputError(path.string(), errno == ENOENT ? std::string("does not exist")
                                                    : std::string("cannot read: ") + std::strerror(errno));
  if (S_ISDIR(info.st_mode)) throw InputError(path.string(), std::string("is a folder, expected a ") + what);
  if (!S_ISREG(info.st_mode))
    throw InputError(path.string(), std::string("is not a regular file (a FIFO, device or socket), expected a ") + what);
  // O_NONBLOCK: should the path have been replaced by a FIFO since the stat, open returns at once.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw InputError(path.string(), std::string("cannot open: ") + std::strerror(errno));
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    throw InputError(path.string(), std::string("is not a regular file, expected a ") + what);
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

std::string read_bounded_file(const std::filesystem::path& path, const FileKind& kind) {
  const int fd = open_regular_file(path, kind.name);
  struct stat info {};
  ::fstat(fd, &info);
  const auto size = static_cast<std::uint64_t>(info.st_size);
  if (size > kind.limit) {
    ::close(fd);
    throw InputError(path.string(), "is " + byte_size(static_cast<std::int64_t>(size)) + "; a " + kind.name +
                                        " is at most " + byte_size(static_cast<std::int64_t>(kind.limit)));
  }
  std::string text(size, '\0');
  std::size_t done = 0;
  while (done < size) {
    const auto got = ::read(fd, text.data() + done, size - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const std::string problem = std::strerror(errno);
      ::close(fd);
      throw InputError(path.string(), "cannot read: " + problem);
    }
    if (got == 0) break;  // the file shrank while being read: parse what there is
    done += static_cast<std::size_t>(got);
  }
  ::close(fd);
  text.resize(done);
  return text;
}

}  // namespace lathe
