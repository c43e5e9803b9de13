#include "executor/calibration.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>

#include "core/quantization.h"
#include "executor/executor.h"

namespace lathe {
namespace {

// Values kept per site for percentile and MSE: enough for stable tails, bounded in memory.
constexpr std::int64_t kSampleLimit = std::int64_t{1} << 18;

struct SiteObservation {
  double low = std::numeric_limits<double>::infinity();
  double high = -std::numeric_limits<double>::infinity();
  double average_low = 0, average_high = 0;
  bool seen = false;
  std::vector<at::Tensor> samples;
  std::int64_t sampled = 0;
};

double sorted_quantile(const at::Tensor& sorted, double q) {
  const auto n = sorted.numel();
  const auto index = std::clamp<std::int64_t>(static_cast<std::int64_t>(std::llround(q * static_cast<double>(n - 1))), 0, n - 1);
  return sorted[index].item<double>();
}

ActivationRange mse_range(const at::Tensor& values, double low, double high, bool symmetric) {
  ActivationRange best{low, high};
  double best_error = std::numeric_limits<double>::infinity();
  for (int step = 0; step <= 60; ++step) {
    const double ratio = 1.0 - 0.0125 * step;  // 1 .. 0.25 of the observed range
    const double candidate_low = symmetric ? -std::max(-low, high) * ratio : low * ratio;
    const double candidate_high = symmetric ? std::max(-low, high) * ratio : high * ratio;
    const auto parameters = activation_parameters(candidate_low, candidate_high, symmetric);
    const double error = (fake_quantize(values, parameters) - values).pow(2).mean().item<double>();
    if (error < best_error) {
      best_error = error;
      best = {candidate_low, candidate_high};
    }
  }
  return best;
}

}  // namespace

RangeMethod parse_range_method(const std::string& name) {
  if (name == "minmax") return RangeMethod::MinMax;
  if (name == "moving-average") return RangeMethod::MovingAverage;
  if (name == "percentile") return RangeMethod::Percentile;
  if (name == "mse") return RangeMethod::Mse;
  throw std::invalid_argument("unknown range method " + name);
}

std::map<std::string, ActivationRange> calibrate_ranges(const Executor& executor, const std::vector<EvalBatch>& batches,
                                                        const std::set<std::string>& sites, const RangeOptions& options,
                                                        const StreamingOptions& streaming) {
  at::NoGradGuard no_grad;
  std::map<std::string, SiteObservation> observed;
  const bool keep_samples = options.method == RangeMethod::Percentile || options.method == RangeMethod::Mse;
  std::vector<ForwardHooks> hooks(batches.size());
  for (std::size_t b = 0; b < batches.size(); ++b) {
    hooks[b].on_activation = [&, b](int layer, ActivationSite site, const at::Tensor& activation) {
      const auto key = site_key(layer, site);
      if (!sites.count(key)) return at::Tensor();
      // Padded positions are not data.
      auto valid = batches[b].mask.reshape({-1});
      auto values = activation.reshape({-1, activation.size(-1)}).masked_select(valid.unsqueeze(1));
      auto& site_state = observed[key];
      const double low = values.min().item<double>(), high = values.max().item<double>();
      site_state.low = std::min(site_state.low, low);
      site_state.high = std::max(site_state.high, high);
      if (!site_state.seen) {
        site_state.average_low = low;
        site_state.average_high = high;
      } else {
        site_state.average_low = options.momentum * site_state.average_low + (1 - options.momentum) * low;
        site_state.average_high = options.momentum * site_state.average_high + (1 - options.momentum) * high;
      }
      site_state.seen = true;
      if (keep_samples && site_state.sampled < kSampleLimit) {
        at::Tensor take = values;
        if (values.numel() > kSampleLimit / 4) {
          auto generator = at::make_generator<at::CPUGeneratorImpl>(std::hash<std::string>{}(key) ^ (b * 0x9e3779b97f4a7c15ULL));
          take = values.index_select(0, at::randperm(values.numel(), generator, at::kLong).narrow(0, 0, kSampleLimit / 4));
        }
        site_state.sampled += take.numel();
        site_state.samples.push_back(take.clone());
      }
      return at::Tensor();
    };
  }
  streamed_forward({{&executor, &hooks}}, batch_inputs(batches), nullptr, streaming);

  std::map<std::string, ActivationRange> ranges;
  for (auto& [key, state] : observed) {
    switch (options.method) {
      case RangeMethod::MinMax: ranges[key] = {state.low, state.high}; break;
      case RangeMethod::MovingAverage: ranges[key] = {state.average_low, state.average_high}; break;
      case RangeMethod::Percentile: {
        auto sorted = std::get<0>(at::sort(at::cat(state.samples)));
        const double tail = 1.0 - options.percentile / 100.0;
        ranges[key] = {sorted_quantile(sorted, tail), sorted_quantile(sorted, 1.0 - tail)};
        break;
      }
      case RangeMethod::Mse: ranges[key] = mse_range(at::cat(state.samples), state.low, state.high, options.symmetric); break;
    }
  }
  return ranges;
}

}  // namespace lathe
