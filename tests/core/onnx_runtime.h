#pragma once

// Runs exported ONNX files the way the tests need: python onnx's checker (Debian's
// /usr/bin/python3) and ONNX Runtime through onnxruntime-node (tests/node/run_onnx.js).

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <string>
#include <vector>

#include "test_paths.h"

namespace lathe {
class Model;
}

namespace lathe::testing {

std::string read_text(const std::filesystem::path& path);
// Expects onnx.checker.check_model(full_check=True) to accept every file.
void expect_pass_onnx_checker(const std::vector<std::filesystem::path>& model_paths, const TemporaryFolder& folder);
at::Tensor random_ids(std::int64_t vocab, std::int64_t batch, std::int64_t length, std::uint64_t seed);
// Logits [B, T, vocab] from ONNX Runtime for ids [B, T]; undefined (and a test failure) on error.
// `optimization`: ONNX Runtime's graph optimization level (disabled, basic, extended, all).
at::Tensor run_in_onnx_runtime(const std::filesystem::path& model_path, const at::Tensor& ids, std::int64_t vocab,
                               const TemporaryFolder& folder, const std::string& optimization = "all");

// ONNX Runtime's logits of an int8 model against the executor's, allowing for rounding flips:
// two evaluations of the same int8 model that round differently (float sums in another order,
// integer kernels, double) put a few activations on the other side of a rounding boundary of a
// quantizer, and one int8 step there moves the logits of that position and of the positions
// attending to it by up to ~0.5 (seen: ONNX Runtime agreeing with the float executor to 7.6e-6
// while the double evaluation of the same model differs by 0.49). So the logits are compared
// with the executor in float and in double, per position: with the closer one, the median
// position must agree to 1e-4 x `scale` (seen: 1e-7 to 3e-7) and three quarters of the positions
// to 1e-3 x `scale` (one flip early in a sequence reaches the positions after it: seen up to 7 %
// of them). A wrong scale, zero point or placement moves every position. Returns the smaller of
// the two largest differences.
double expect_int8_logits_agree(const at::Tensor& from_onnx, const Model& quantized, const at::Tensor& ids, double scale,
                              const std::string& what);

}  // namespace lathe::testing
