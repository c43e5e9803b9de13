#include "core/tensor_spill.h"

#include <ATen/ATen.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/model.h"
#include "support/atomic_file.h"
#include "support/errors.h"
#include "support/mapped_file.h"

namespace lathe {

TensorSpill::TensorSpill(const std::filesystem::path& directory) {
  const auto folder = directory.empty() ? temporary_directory() : directory;
  auto pattern = (folder / "lathe-tensors-XXXXXX").string();
  fd_ = ::mkstemp(pattern.data());
  if (fd_ < 0) throw InputError(folder.string(), std::string("cannot create a temporary file: ") + std::strerror(errno));
  ::unlink(pattern.c_str());
  label_ = pattern + " (temporary)";
}

TensorSpill::~TensorSpill() {
  if (fd_ >= 0) ::close(fd_);
}

at::Tensor TensorSpill::park(const at::Tensor& tensor, Model& model) {
  const auto values = tensor.contiguous();
  const auto bytes = static_cast<std::uint64_t>(values.nbytes());
  if (bytes == 0) return values;
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const auto offset = (end_ + page - 1) / page * page;
  const auto* cursor = static_cast<const char*>(values.data_ptr());
  for (std::uint64_t done = 0; done < bytes;) {
    const auto written = ::pwrite(fd_, cursor + done, bytes - done, static_cast<off_t>(offset + done));
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0)
      throw InputError(label_.string(), std::string("cannot write (disk full?): ") + std::strerror(errno));
    done += static_cast<std::uint64_t>(written);
  }
  end_ = offset + bytes;
  auto mapping = MappedFile::map_region(fd_, offset, bytes, label_);
  model.mapped_files.push_back(mapping);
  auto* data = const_cast<std::byte*>(mapping->bytes().data());
  return at::from_blob(data, values.sizes(), [mapping](void*) mutable { mapping.reset(); }, values.options());
}

}  // namespace lathe
