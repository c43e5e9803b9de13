#pragma once

// INT8 quantization as the IR carries it: weights symmetric int8 per output channel (the model
// holds the int8 values, and Model::tensor gives int8 x scale, so every consumer computes what
// the int8 model computes), activations int8 per tensor with a scale and zero point fixed by
// calibration (static) or computed from each tensor at run time (dynamic, uint8 as ONNX Runtime's
// DynamicQuantizeLinear). Sites are named "layers.{i}.{site}" or "final_hidden".

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>

namespace lathe {

struct ActivationQuantization {
  float scale = 1.0f;
  std::int32_t zero_point = 0;  // int8: 0 for symmetric
};

// The x86 CPUs an exported int8 model must compute correctly on. ONNX Runtime's u8 x s8 kernels
// without VNNI (AVX2: vpmaddubsw) add pairs of products in 16 bits with saturation, so a pair of
// full-range weights (|w| up to 127) times activations near 255 can exceed 32767 and silently
// clip; VNNI kernels (vpdpbusd) accumulate in 32 bits. 7-bit weights (|w| <= 63) keep every pair
// sum below 2 x 255 x 63 = 32130, which is exact on both.
enum class TargetCpu { Any, Avx2, Vnni };

const char* target_cpu_name(TargetCpu target);
// The target named `name` ("any", "avx2", "vnni"); false when there is none.
bool parse_target_cpu(const std::string& name, TargetCpu& target);
// Largest int8 weight magnitude that is exact on the target: 127 with VNNI, else 63.
std::int64_t weight_limit_for(TargetCpu target);

struct ModelQuantization {
  enum class Mode { None, Static, WeightOnly, Dynamic };
  Mode mode = Mode::None;
  TargetCpu target_cpu = TargetCpu::Any;
  std::int64_t weight_limit = weight_limit_for(TargetCpu::Any);  // largest |int8 weight|
  std::map<std::string, at::Tensor> weight_scales;             // canonical weight name -> [out] float
  std::map<std::string, ActivationQuantization> activations;  // static mode: site -> parameters
  std::set<std::string> dynamic_sites;                        // dynamic mode: sites quantized at run time

  bool active() const { return mode != Mode::None; }
};

const char* quantization_mode_name(ModelQuantization::Mode mode);

// Per-output-channel symmetric int8 weights.
struct QuantizedWeight {
  at::Tensor values;      // int8 [out, in], in [-limit, limit]
  at::Tensor scales;      // float32 [out]
  double max_error = 0;   // largest |value x scale - w|
};
// Writes rows first .. first + out.size(0) of a weight, as float32, into `out`.
using WeightRowReader = std::function<void(std::int64_t first, const at::Tensor& out)>;
// Quantizes a weight [rows, columns] a block of rows at a time (2 MB, read once from the stored
// dtype; the steps after run in cache): scales max|w| / limit, or `scales` when given, values
// round(w / scale) clamped to [-limit, limit].
QuantizedWeight quantize_weight(const WeightRowReader& read_rows, std::int64_t rows, std::int64_t columns,
                                std::int64_t limit, const at::Tensor& scales = {});
// Per-output-channel scales with the clip (0.5 .. 1 of max|w|) minimizing the squared error.
at::Tensor mse_weight_scales(const at::Tensor& weight, std::int64_t limit);

// ONNX QuantizeLinear then DequantizeLinear to int8 (round half to even, saturate).
at::Tensor fake_quantize(const at::Tensor& x, const ActivationQuantization& parameters);
// DynamicQuantizeLinear then DequantizeLinear: uint8, range [min(0, min x), max(0, max x)].
at::Tensor fake_quantize_dynamic(const at::Tensor& x);

// Parameters for a calibrated range [low, high] (widened to include 0).
ActivationQuantization activation_parameters(double low, double high, bool symmetric);

}  // namespace lathe
