#include "core/tensor_spill.h"

#include <ATen/ATen.h>

#include <unistd.h>

#include "core/model.h"
#include "support/mapped_file.h"

namespace lathe {

at::Tensor TensorSpill::park(const at::Tensor& tensor, Model& model) {
  const auto values = tensor.contiguous();
  const auto bytes = static_cast<std::uint64_t>(values.nbytes());
  if (bytes == 0) return values;
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const auto offset = (end_ + page - 1) / page * page;
  file_.write_at(values.data_ptr(), bytes, offset);
  end_ = offset + bytes;
  auto mapping = MappedFile::map_region(file_.descriptor(), offset, bytes, file_.label());
  std::erase_if(model.mapped_files, [](const auto& entry) { return entry.expired(); });
  model.mapped_files.push_back(mapping);
  auto* data = const_cast<std::byte*>(mapping->bytes().data());
  return at::from_blob(data, values.sizes(), [mapping](void*) mutable { mapping.reset(); }, values.options());
}

void TensorSpill::replace(Model& model, const std::string& name, const at::Tensor& values) {
  const bool mapped = model.is_memory_mapped(name);
  model.release_pages(name);
  model.tensors[name] = mapped ? park(values, model) : values;
}

}  // namespace lathe
