#include "support/atomic_file.h"

#include <cstdlib>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <string>

#include "support/errors.h"

namespace lathe {
namespace {

std::filesystem::path temporary_sibling(const std::filesystem::path& destination) {
  std::random_device entropy;
  auto name = "." + destination.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
              std::to_string(entropy() % 1000000);
  return destination.parent_path() / name;
}

void sync_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Creates the destination's folder, removes what killed runs left beside it, and names a fresh
// temporary sibling.
std::filesystem::path prepare_temporary_sibling(const std::filesystem::path& destination) {
  std::error_code ec;
  if (destination.has_parent_path()) {
    std::filesystem::create_directories(destination.parent_path(), ec);
    if (ec) throw InputError(destination.string(), "cannot create its folder: " + ec.message());
  }
  remove_stale_temporaries(destination);
  return temporary_sibling(destination);
}

int create_for_writing(const std::filesystem::path& temporary, const std::filesystem::path& destination) {
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) throw InputError(destination.string(), std::string("cannot write: ") + std::strerror(errno));
  return fd;
}

}  // namespace

void remove_stale_temporaries(const std::filesystem::path& destination) {
  const auto prefix = "." + destination.filename().string() + ".tmp-";
  std::error_code ec;
  const auto folder = destination.has_parent_path() ? destination.parent_path() : std::filesystem::path(".");
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec)) {
    const auto name = entry.path().filename().string();
    if (!name.starts_with(prefix)) continue;
    const auto pid_end = name.find('-', prefix.size());
    if (pid_end == std::string::npos) continue;
    const auto pid = std::atol(name.substr(prefix.size(), pid_end - prefix.size()).c_str());
    if (pid <= 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)) {
      std::error_code ignored;
      std::filesystem::remove_all(entry.path(), ignored);
    }
  }
}

StagedFolder::StagedFolder(std::filesystem::path destination)
    : destination_(std::move(destination)), staging_(prepare_temporary_sibling(destination_)) {
  std::error_code ec;
  std::filesystem::create_directory(staging_, ec);
  if (ec) throw InputError(destination_.string(), "cannot write beside it: " + ec.message());
}

StagedFolder::~StagedFolder() {
  if (committed_) return;
  std::error_code ignored;
  std::filesystem::remove_all(staging_, ignored);
}

std::string StagedFolder::at_destination(std::string message) const {
  const auto staged = staging_.string(), destination = destination_.string();
  for (auto at = message.find(staged); at != std::string::npos; at = message.find(staged, at + destination.size()))
    message.replace(at, staged.size(), destination);
  return message;
}

void StagedFolder::commit() {
  sync_file(staging_);
  std::error_code ec;
  if (std::filesystem::is_directory(destination_, ec)) {
    // Swap in one step, then remove the earlier folder (now under the staging name).
    if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, destination_.c_str(), RENAME_EXCHANGE) != 0)
      throw InputError(destination_.string(), std::string("cannot replace: ") + std::strerror(errno));
    committed_ = true;
    std::filesystem::remove_all(staging_, ec);
  } else {
    std::filesystem::rename(staging_, destination_, ec);
    if (ec) throw InputError(destination_.string(), "cannot replace: " + ec.message());
    committed_ = true;
  }
  if (destination_.has_parent_path()) sync_file(destination_.parent_path());
}

std::filesystem::path temporary_directory() {
  std::error_code ec;
  auto folder = std::filesystem::temp_directory_path(ec);
  if (ec) {
    const char* variable = std::getenv("TMPDIR");
    throw InputError(variable != nullptr ? std::string(variable) : std::string("/tmp"),
                     "the folder for temporary files ($TMPDIR) does not exist");
  }
  return folder;
}

AtomicFile::AtomicFile(std::filesystem::path destination)
    : destination_(std::move(destination)),
      temporary_(prepare_temporary_sibling(destination_)),
      fd_(create_for_writing(temporary_, destination_)),
      buffer_(fd_),
      out_(&buffer_) {}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (committed_) return;
  std::error_code ignored;
  std::filesystem::remove(temporary_, ignored);
}

std::string write_error_text(int error_number) {
  return error_number != 0 ? std::string(std::strerror(error_number)) : std::string("the write failed (disk full?)");
}

void AtomicFile::check_written() {
  out_.flush();
  if (out_ && buffer_.error_number() == 0) return;
  throw InputError(destination_.string(), "cannot write: " + write_error_text(buffer_.error_number()));
}

void AtomicFile::commit() {
  check_written();
  if (::fsync(fd_) != 0 && errno != EINVAL)
    throw InputError(destination_.string(), "cannot write: " + write_error_text(errno));
  ::close(fd_);
  fd_ = -1;
  std::error_code ec;
  std::filesystem::rename(temporary_, destination_, ec);
  if (ec) throw InputError(destination_.string(), "cannot replace: " + ec.message());
  committed_ = true;
  if (destination_.has_parent_path()) sync_file(destination_.parent_path());
}

void write_file_atomically(const std::filesystem::path& destination,
                           const std::function<void(std::ostream&)>& write) {
  AtomicFile file(destination);
  write(file.stream());
  file.commit();
}

}  // namespace lathe
