#include "core/quantization.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace lathe {

const char* quantization_mode_name(ModelQuantization::Mode mode) {
  switch (mode) {
    case ModelQuantization::Mode::None: return "none";
    case ModelQuantization::Mode::Static: return "w8a8";
    case ModelQuantization::Mode::WeightOnly: return "w8";
    case ModelQuantization::Mode::Dynamic: return "dynamic";
  }
  return "?";
}

const char* target_cpu_name(TargetCpu target) {
  switch (target) {
    case TargetCpu::Any: return "any";
    case TargetCpu::Avx2: return "avx2";
    case TargetCpu::Vnni: return "vnni";
  }
  return "?";
}

bool parse_target_cpu(const std::string& name, TargetCpu& target) {
  for (auto candidate : {TargetCpu::Any, TargetCpu::Avx2, TargetCpu::Vnni})
    if (name == target_cpu_name(candidate)) {
      target = candidate;
      return true;
    }
  return false;
}

std::int64_t weight_limit_for(TargetCpu target) { return target == TargetCpu::Vnni ? 127 : 63; }

QuantizedWeight quantize_weight(const WeightRowReader& read_rows, std::int64_t rows, std::int64_t columns,
                                std::int64_t limit, const at::Tensor& scales) {
  QuantizedWeight result;
  result.values = at::empty({rows, columns}, at::kChar);
  result.scales = scales.defined() ? scales.to(at::kFloat).contiguous() : at::empty({rows}, at::kFloat);
  // Blocks of 2 MB: each operation on a block still runs on every thread at full speed; smaller
  // blocks spend their time waking threads (measured on a 5632 x 2048 float16 weight, passive
  // wait policy: 256 KB blocks 100 ms, 2 MB 17 ms, the whole tensor at once 63 ms).
  constexpr std::int64_t kBlockBytes = 2 << 20;
  const auto block = std::max<std::int64_t>(1, kBlockBytes / (4 * std::max<std::int64_t>(1, columns)));
  auto buffer = at::empty({std::min(block, rows), columns}, at::kFloat);
  for (std::int64_t first = 0; first < rows; first += block) {
    const auto count = std::min(block, rows - first);
    auto weight = buffer.narrow(0, 0, count);
    read_rows(first, weight);
    auto scale = result.scales.narrow(0, first, count);
    if (!scales.defined()) scale.copy_(weight.abs().amax(1).clamp_min(1e-12) / static_cast<double>(limit));
    auto q = (weight / scale.unsqueeze(1)).round_().clamp_(-limit, limit);
    result.values.narrow(0, first, count).copy_(q);
    result.max_error = std::max(result.max_error, q.mul_(scale.unsqueeze(1)).sub_(weight).abs_().max().item<double>());
  }
  return result;
}

at::Tensor mse_weight_scales(const at::Tensor& weight, std::int64_t limit) {
  const double levels = static_cast<double>(limit);
  auto max_abs = weight.abs().amax(1).clamp_min(1e-12);
  // Per row, the clip ratio (0.5 .. 1) with the least squared error.
  auto best_scales = max_abs / levels;
  auto best_error = at::full_like(max_abs, std::numeric_limits<float>::infinity());
  for (int step = 0; step <= 50; ++step) {
    const double ratio = 1.0 - 0.01 * step;
    auto scales = max_abs * ratio / levels;
    auto dequantized = at::round(weight / scales.unsqueeze(1)).clamp(-levels, levels) * scales.unsqueeze(1);
    auto error = (dequantized - weight).pow(2).sum(1);
    auto better = error.lt(best_error);
    best_error = at::where(better, error, best_error);
    best_scales = at::where(better, scales, best_scales);
  }
  return best_scales.contiguous();
}

at::Tensor fake_quantize(const at::Tensor& x, const ActivationQuantization& parameters) {
  auto q = (at::round(x / parameters.scale) + parameters.zero_point).clamp(-128, 127);
  return (q - parameters.zero_point) * parameters.scale;
}

at::Tensor fake_quantize_dynamic(const at::Tensor& x) {
  const float low = std::min(0.0f, x.min().item<float>());
  const float high = std::max(0.0f, x.max().item<float>());
  const float scale = (high - low) / 255.0f;
  if (scale == 0.0f) return x;
  const float zero_point = std::clamp(std::nearbyint(-low / scale), 0.0f, 255.0f);
  auto q = (at::round(x / scale) + zero_point).clamp(0, 255);
  return (q - zero_point) * scale;
}

ActivationQuantization activation_parameters(double low, double high, bool symmetric) {
  low = std::min(low, 0.0);
  high = std::max(high, 0.0);
  ActivationQuantization parameters;
  if (symmetric) {
    parameters.scale = static_cast<float>(std::max(std::max(-low, high), 1e-8) / 127.0);
    parameters.zero_point = 0;
  } else {
    parameters.scale = static_cast<float>(std::max(high - low, 1e-8) / 255.0);
    parameters.zero_point =
        static_cast<std::int32_t>(std::clamp(std::nearbyint(-128.0 - low / parameters.scale), -128.0, 127.0));
  }
  return parameters;
}

}  // namespace lathe
