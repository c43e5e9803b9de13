#pragma once

// Moving tensors between LibTorch and the torch-free format layer.

#include <ATen/core/Tensor.h>

#include <memory>

#include "formats/safetensors.h"

namespace lathe {

// Wraps a view's bytes without copying; the tensor keeps `owner` (the mapping) alive.
// The tensor is read-only in spirit: clone before writing into it.
at::Tensor tensor_from_view(const TensorView& view, std::shared_ptr<const void> owner);

DType dtype_of(const at::Tensor& tensor);
at::ScalarType scalar_type_of(DType dtype);

// A view of a contiguous CPU tensor's bytes; the tensor must outlive the view.
TensorView view_of(const std::string& name, const at::Tensor& tensor);

}  // namespace lathe
