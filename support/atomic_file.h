#pragma once

#include <filesystem>
#include <fstream>
#include <functional>
#include <ostream>

namespace lathe {

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
  void commit();

 private:
  std::filesystem::path destination_;
  std::filesystem::path temporary_;
  std::ofstream out_;
  bool committed_ = false;
};

// Writes `destination` through a temporary file in the same folder that is renamed over it
// only after `write` returned and the data reached the disk, so an interrupted run never
// leaves a half-written file behind. Creates missing parent folders.
void write_file_atomically(const std::filesystem::path& destination,
                           const std::function<void(std::ostream&)>& write);

}  // namespace lathe
