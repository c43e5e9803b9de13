#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>

#include "support/file_output.h"

namespace lathe {

// Temporary files and staging folders lathe leaves beside `destination` are named
// .<name>.tmp-<pid>-<n>; those of processes that no longer run (a killed run) are removed
// when the next run writes there. AtomicFile and StagedFolder do this themselves.
void remove_stale_temporaries(const std::filesystem::path& destination);

// The folder for temporary files ($TMPDIR, else /tmp); InputError when it is not a folder.
std::filesystem::path temporary_directory();

// A file written in pieces under a temporary name in its destination's folder; commit() makes
// it the destination (after the data reached the disk). Destroyed uncommitted, it is removed.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path destination);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  std::ostream& stream() { return out_; }
  const std::filesystem::path& temporary_path() const { return temporary_; }
  // InputError naming the destination and why, when a write so far failed ("cannot write: No
  // space left on device"); flushes first.
  void check_written();
  void commit();

 private:
  std::filesystem::path destination_;
  std::filesystem::path temporary_;
  int fd_ = -1;
  FileOutputBuffer buffer_;
  std::ostream out_;
  bool committed_ = false;
};

// A folder written under a temporary sibling name; commit() puts it at its destination in one
// rename (swapping with an earlier folder there, which is then removed), so the destination is
// never a half-written folder. Destroyed uncommitted, the staging folder is removed.
class StagedFolder {
 public:
  explicit StagedFolder(std::filesystem::path destination);
  ~StagedFolder();
  StagedFolder(const StagedFolder&) = delete;
  StagedFolder& operator=(const StagedFolder&) = delete;

  const std::filesystem::path& path() const { return staging_; }
  void commit();
  // `message` about a file being staged, naming its destination instead ("out/m/config.json:
  // cannot write", not the staging folder's name).
  std::string at_destination(std::string message) const;

 private:
  std::filesystem::path destination_;
  std::filesystem::path staging_;
  bool committed_ = false;
};

// What a failed write's errno says ("No space left on device"), or a guess when it says nothing.
std::string write_error_text(int error_number);

// Writes `destination` through a temporary file in the same folder that is renamed over it
// only after `write` returned and the data reached the disk, so an interrupted run never
// leaves a half-written file behind. Creates missing parent folders.
void write_file_atomically(const std::filesystem::path& destination,
                           const std::function<void(std::ostream&)>& write);

}  // namespace lathe
