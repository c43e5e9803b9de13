#include "support/temporary_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "support/atomic_file.h"
#include "support/errors.h"

namespace lathe {

TemporaryFile::TemporaryFile(const std::filesystem::path& directory) {
  const auto folder = directory.empty() ? temporary_directory() : directory;
  auto pattern = (folder / "lathe-XXXXXX").string();
  fd_ = ::mkstemp(pattern.data());
  if (fd_ < 0) throw InputError(folder.string(), std::string("cannot create a temporary file: ") + std::strerror(errno));
  ::unlink(pattern.c_str());
  label_ = pattern + " (temporary)";
}

TemporaryFile::~TemporaryFile() { ::close(fd_); }

void TemporaryFile::write_at(const void* data, std::size_t bytes, std::uint64_t offset) const {
  const auto* cursor = static_cast<const char*>(data);
  for (std::size_t done = 0; done < bytes;) {
    const auto written = ::pwrite(fd_, cursor + done, bytes - done, static_cast<off_t>(offset + done));
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) throw InputError(label_, std::string("cannot write (is $TMPDIR full?): ") + std::strerror(errno));
    done += static_cast<std::size_t>(written);
  }
}

void TemporaryFile::read_at(void* data, std::size_t bytes, std::uint64_t offset) const {
  auto* cursor = static_cast<char*>(data);
  for (std::size_t done = 0; done < bytes;) {
    const auto read = ::pread(fd_, cursor + done, bytes - done, static_cast<off_t>(offset + done));
    if (read < 0 && errno == EINTR) continue;
    if (read <= 0) throw InputError(label_, std::string("cannot read: ") + (read < 0 ? std::strerror(errno) : "end of file"));
    done += static_cast<std::size_t>(read);
  }
}

}  // namespace lathe
