#include "core/structured_cut.h"

#include <ATen/ATen.h>

#include "core/model.h"

namespace lathe {

void select_along(Model& model, const std::string& name, const at::Tensor& index, std::int64_t dim) {
  auto found = model.tensors.find(name);
  if (found == model.tensors.end()) return;
  found->second = found->second.index_select(dim, index).contiguous();
  auto scales = model.quantization.weight_scales.find(name);
  if (scales != model.quantization.weight_scales.end() && dim == 0)
    scales->second = scales->second.index_select(0, index).contiguous();
}

void erase_with_prefix(Model& model, const std::string& prefix) {
  for (auto it = model.tensors.begin(); it != model.tensors.end();)
    it = it->first.rfind(prefix, 0) == 0 ? model.tensors.erase(it) : std::next(it);
  auto& scales = model.quantization.weight_scales;
  for (auto it = scales.begin(); it != scales.end();)
    it = it->first.rfind(prefix, 0) == 0 ? scales.erase(it) : std::next(it);
}

}  // namespace lathe
