#pragma once

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <string>

namespace lathe {

// Reads a PyTorch checkpoint saved with torch.save (zip format) holding a state dict, or a
// dict with the state dict under "state_dict" or "model", through LibTorch's unpickler.
std::map<std::string, at::Tensor> read_torch_state_dict(const std::filesystem::path& path);

}  // namespace lathe
