#pragma once

// INT8 quantization as the IR carries it: weights symmetric int8 per output channel (the model's
// float tensor then holds the dequantized values, so every consumer computes what the int8 model
// computes), activations int8 per tensor with a scale and zero point fixed by calibration
// (static) or computed from each tensor at run time (dynamic, uint8 as ONNX Runtime's
// DynamicQuantizeLinear). Sites are named "layers.{i}.{site}" or "final_hidden".

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>

namespace lathe {

struct ActivationQuantization {
  float scale = 1.0f;
  std::int32_t zero_point = 0;  // int8: 0 for symmetric
};

struct ModelQuantization {
  enum class Mode { None, Static, WeightOnly, Dynamic };
  Mode mode = Mode::None;
  // Largest int8 weight magnitude: 127, or 63 ("reduced range") so that ONNX Runtime's AVX2
  // kernels, which add pairs of u8 x s8 products in 16 bits, cannot saturate.
  std::int64_t weight_limit = 63;
  std::map<std::string, at::Tensor> weight_scales;             // canonical weight name -> [out] float
  std::map<std::string, ActivationQuantization> activations;  // static mode: site -> parameters
  std::set<std::string> dynamic_sites;                        // dynamic mode: sites quantized at run time

  bool active() const { return mode != Mode::None; }
};

const char* quantization_mode_name(ModelQuantization::Mode mode);

// The int8 values of a weight [out, in] under per-output-channel scales [out], in [-limit, limit].
at::Tensor quantize_weight(const at::Tensor& weight, const at::Tensor& scales, std::int64_t limit);
// Per-output-channel symmetric scales: max|w| / limit (minmax) or the clip minimizing the
// squared error (mse).
at::Tensor weight_scales(const at::Tensor& weight, bool mse, std::int64_t limit);

// ONNX QuantizeLinear then DequantizeLinear to int8 (round half to even, saturate).
at::Tensor fake_quantize(const at::Tensor& x, const ActivationQuantization& parameters);
// DynamicQuantizeLinear then DequantizeLinear: uint8, range [min(0, min x), max(0, max x)].
at::Tensor fake_quantize_dynamic(const at::Tensor& x);

// Parameters for a calibrated range [low, high] (widened to include 0).
ActivationQuantization activation_parameters(double low, double high, bool symmetric);

}  // namespace lathe
