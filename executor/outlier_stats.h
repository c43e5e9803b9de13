#pragma once

// Activation statistics over calibration data, for the outlier analysis of Bondarenko et al.
// (2023) and for migrating activation scale into weights (SmoothQuant):
//   per sample (one sequence of a batch, padded positions excluded), the infinity norm and the
//   Pearson kurtosis m4 / m2^2 (central moments, not excess) of the flattened activation;
//   per channel (hidden dimension), the smallest and largest value over all tokens;
//   per site, the mean and standard deviation of all values.

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "executor/evaluation.h"
#include "executor/streamed_forward.h"
#include "executor/executor.h"

namespace lathe {

struct SampleMetrics {
  std::vector<double> inf_norms;  // one per sample with at least one valid position
  std::vector<double> kurtosis;   // the same samples; NaN where all values are equal
};

// activation [B, T, C]; mask [B, T] bool (undefined: every position counts).
SampleMetrics sample_metrics(const at::Tensor& activation, const at::Tensor& mask);

class ActivationStatistics {
 public:
  // Adds the valid positions of one batch: activation [B, T, C], mask [B, T] or undefined.
  void add(const at::Tensor& activation, const at::Tensor& mask);

  std::int64_t samples() const { return static_cast<std::int64_t>(samples_.inf_norms.size()); }
  std::int64_t tokens() const { return tokens_; }
  std::int64_t channels() const { return static_cast<std::int64_t>(channel_max_.size()); }
  const SampleMetrics& sample_values() const { return samples_; }

  double mean() const { return mean_; }
  double standard_deviation() const;
  // Over samples: the mean and the largest infinity norm; the mean and largest kurtosis of the
  // samples that have one. NaN without samples.
  double mean_inf_norm() const;
  double max_inf_norm() const;
  double mean_kurtosis() const;
  double max_kurtosis() const;

  const std::vector<double>& channel_min() const { return channel_min_; }
  const std::vector<double>& channel_max() const { return channel_max_; }
  // max |x_j| over tokens, per channel j.
  std::vector<double> channel_abs_max() const;
  // Channels with a value farther than `sigmas` standard deviations (of all this site's values)
  // from the site's mean in at least one token, in increasing order.
  std::vector<std::int64_t> outlier_channels(double sigmas = 6.0) const;

 private:
  SampleMetrics samples_;
  std::vector<double> channel_min_;
  std::vector<double> channel_max_;
  std::int64_t tokens_ = 0;
  double values_ = 0;  // tokens x channels, as a double for the running moments
  double mean_ = 0;
  double squared_deviations_ = 0;  // sum of (x - mean)^2, combined batch by batch (Chan et al.)
};

// Statistics of one layer, by site.
using LayerActivationStatistics = std::map<ActivationSite, ActivationStatistics>;

// Runs the model one layer at a time over every batch (no gradients; streamed_forward) and
// gathers statistics at `sites` of every layer that has them ([layer] -> site -> statistics).
std::vector<LayerActivationStatistics> gather_activation_statistics(
    const Executor& executor, const std::vector<EvalBatch>& batches, const std::vector<ActivationSite>& sites,
    const StreamingOptions& streaming = {});

}  // namespace lathe
