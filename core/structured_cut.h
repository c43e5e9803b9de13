#pragma once

// The tensor edits structured removal is made of, shared by head and FFN-neuron removal.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace lathe {

class Model;

// Keeps the slices `index` of tensor `name` along `dim` (nothing when the model lacks it); an
// int8 weight's row scales follow its rows.
void select_along(Model& model, const std::string& name, const at::Tensor& index, std::int64_t dim);

// Erases every tensor (and int8 scales) whose name starts with `prefix`.
void erase_with_prefix(Model& model, const std::string& prefix);

}  // namespace lathe
