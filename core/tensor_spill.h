#pragma once

// Tensors a pass makes for a large model, moved out of ordinary memory into a temporary file
// and mapped back: the pages are the kernel's page cache, read when a layer uses them and given
// back after (Model::release_pages), so a quantized 8 B model's int8 weights need not all be
// resident at once. The file goes away with the last mapping.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "support/temporary_file.h"

namespace lathe {

class Model;

class TensorSpill {
 public:
  // A file in `directory` (default: the system's temporary folder).
  explicit TensorSpill(const std::filesystem::path& directory = {}) : file_(directory) {}

  // The same values backed by the file; the mapping joins model.mapped_files.
  at::Tensor park(const at::Tensor& tensor, Model& model);
  // Replaces a stored tensor of the model: a memory-mapped one (from the checkpoint or an earlier
  // spill) by `values` parked in the file, one in ordinary memory by `values` themselves. The
  // old tensor's mapped pages are given back.
  void replace(Model& model, const std::string& name, const at::Tensor& values);

 private:
  TemporaryFile file_;
  std::uint64_t end_ = 0;
};

}  // namespace lathe
