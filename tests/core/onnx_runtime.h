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
// Logits [B, T, vocab] of the graph evaluated exactly as its operators specify
// (tests/python/onnx_exact.py: float64, integer products in int64), independent of ONNX Runtime
// and of lathe; undefined (and a test failure) on error.
at::Tensor run_exact_reference(const std::filesystem::path& model_path, const at::Tensor& ids, std::int64_t vocab,
                               const TemporaryFolder& folder);

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

// Whether this CPU has VNNI (avx512_vnni or avx_vnni in /proc/cpuinfo): ONNX Runtime's int8
// kernels then accumulate u8 x s8 products in 32 bits; without it (AVX2) they add pairs in 16
// bits with saturation.
bool cpu_has_vnni();

// An exported int8 file against what its graph specifies (tests/python/onnx_exact.py):
// - the executor in double against the exact evaluation, at every position (1e-5 x max |logit|);
// - ONNX Runtime one quantized step at a time, given its own inputs to each step (1e-4 of the
//   step's largest value), so rounding flips cannot cascade: where the CPU promises exact int8
//   products for the model's weights (7-bit weights, or any with VNNI). Elsewhere the model must
//   run with finite logits.
// End to end, a dynamically quantized graph amplifies one rounding flip into every position
// (a flip moves a per-tensor scale that every value after it is rounded with), so end-to-end
// logits of two correct evaluations can differ everywhere; this check does not depend on that.
// `optimization`: ONNX Runtime's graph optimization level. Writes the ids to folder/input_ids.bin.
void expect_int8_onnx_computes_its_graph(const std::filesystem::path& model_path, const Model& quantized,
                                         const at::Tensor& ids, const TemporaryFolder& folder, const std::string& what,
                                         const std::string& optimization = "all");

}  // namespace lathe::testing
