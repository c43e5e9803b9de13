#include "core/tensor_io.h"

#include <ATen/ATen.h>

#include <stdexcept>

namespace lathe {

at::ScalarType scalar_type_of(DType dtype) {
  switch (dtype) {
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I8: return at::kChar;
    case DType::U8: return at::kByte;
    case DType::I32: return at::kInt;
    case DType::I64: return at::kLong;
  }
  throw std::logic_error("unhandled dtype");
}

at::Tensor tensor_from_view(const TensorView& view, std::shared_ptr<const void> owner) {
  auto options = at::TensorOptions().dtype(scalar_type_of(view.dtype));
  if (view.bytes.empty()) return at::empty(view.shape, options);
  auto* data = const_cast<std::byte*>(view.bytes.data());
  if (reinterpret_cast<std::uintptr_t>(data) % dtype_size(view.dtype) != 0) {
    // Unaligned data (allowed by the format, though writers avoid it): copy.
    auto tensor = at::empty(view.shape, options);
    std::memcpy(tensor.data_ptr(), data, view.bytes.size());
    return tensor;
  }
  return at::from_blob(data, view.shape, [owner = std::move(owner)](void*) mutable { owner.reset(); },
                       options);
}

DType dtype_of(const at::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case at::kFloat: return DType::F32;
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kChar: return DType::I8;
    case at::kByte: return DType::U8;
    case at::kInt: return DType::I32;
    case at::kLong: return DType::I64;
    default: throw std::invalid_argument(std::string("no safetensors dtype for ") + at::toString(tensor.scalar_type()));
  }
}

TensorView view_of(const std::string& name, const at::Tensor& tensor) {
  if (!tensor.is_contiguous()) throw std::invalid_argument("tensor " + name + " is not contiguous");
  TensorView view;
  view.name = name;
  view.dtype = dtype_of(tensor);
  view.shape = tensor.sizes().vec();
  view.bytes = {static_cast<const std::byte*>(tensor.data_ptr()), static_cast<std::size_t>(tensor.numel() * tensor.element_size())};
  return view;
}

}  // namespace lathe
