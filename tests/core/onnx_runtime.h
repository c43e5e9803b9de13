#pragma once

// Runs exported ONNX files the way the tests need: python onnx's checker (Debian's
// /usr/bin/python3) and ONNX Runtime through onnxruntime-node (tests/node/run_onnx.js).

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <string>
#include <vector>

#include "test_paths.h"

namespace lathe::testing {

std::string read_text(const std::filesystem::path& path);
// Expects onnx.checker.check_model(full_check=True) to accept every file.
void expect_pass_onnx_checker(const std::vector<std::filesystem::path>& model_paths, const TemporaryFolder& folder);
at::Tensor random_ids(std::int64_t vocab, std::int64_t batch, std::int64_t length, std::uint64_t seed);
// Logits [B, T, vocab] from ONNX Runtime for ids [B, T]; undefined (and a test failure) on error.
// `optimization`: ONNX Runtime's graph optimization level (disabled, basic, extended, all).
at::Tensor run_in_onnx_runtime(const std::filesystem::path& model_path, const at::Tensor& ids, std::int64_t vocab,
                               const TemporaryFolder& folder, const std::string& optimization = "all");

}  // namespace lathe::testing
