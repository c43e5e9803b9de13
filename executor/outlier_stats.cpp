#include "executor/outlier_stats.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "core/model.h"

namespace lathe {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_shapes(const at::Tensor& activation, const at::Tensor& mask) {
  if (activation.dim() != 3) throw std::invalid_argument("activation statistics need [batch, sequence, channels]");
  if (mask.defined() && (mask.dim() != 2 || mask.size(0) != activation.size(0) || mask.size(1) != activation.size(1)))
    throw std::invalid_argument("the mask must be [batch, sequence] of the activation");
}

std::vector<double> to_vector(const at::Tensor& tensor) {
  auto values = tensor.to(at::kDouble).contiguous();
  const double* data = values.data_ptr<double>();
  return std::vector<double>(data, data + values.numel());
}

// The sum of a [rows, channels] tensor in the same order whatever the thread count: each row
// by ATen (one thread per row), then the rows in order. A whole-tensor sum splits across threads,
// and the report's last digits changed between --threads 1 and 2.
double sum_in_row_order(const at::Tensor& rows) {
  const auto row_sums = rows.sum(1).contiguous();
  const double* data = row_sums.data_ptr<double>();
  double total = 0;
  for (std::int64_t i = 0; i < row_sums.numel(); ++i) total += data[i];
  return total;
}

// Mean and largest of the values that are not NaN; NaN when there are none.
std::pair<double, double> mean_and_max(const std::vector<double>& values) {
  double sum = 0, largest = -std::numeric_limits<double>::infinity();
  std::size_t count = 0;
  for (double value : values) {
    if (std::isnan(value)) continue;
    sum += value;
    largest = std::max(largest, value);
    ++count;
  }
  if (count == 0) return {kNaN, kNaN};
  return {sum / static_cast<double>(count), largest};
}

}  // namespace

SampleMetrics sample_metrics(const at::Tensor& activation, const at::Tensor& mask) {
  check_shapes(activation, mask);
  at::NoGradGuard no_grad;
  const auto batch = activation.size(0), channels = activation.size(2);
  auto x = activation.detach().to(at::kDouble);
  auto valid = mask.defined() ? mask.to(at::kBool).unsqueeze(-1) : at::ones({batch, activation.size(1), 1}, at::kBool);
  // Padded positions become 0 (not 0 * x, which keeps a NaN or an infinity there).
  x = at::where(valid, x, 0.0);
  auto count = valid.sum({1, 2}).to(at::kDouble) * static_cast<double>(channels);  // [B] values per sample
  auto mean = x.sum({1, 2}) / count.clamp_min(1.0);
  auto deviation = at::where(valid, x - mean.view({batch, 1, 1}), 0.0);
  auto squared = deviation.square();
  auto m2 = squared.sum({1, 2}) / count.clamp_min(1.0);
  auto m4 = squared.square().sum({1, 2}) / count.clamp_min(1.0);
  auto inf_norm = x.abs().amax({1, 2});

  const auto counts = to_vector(count), second = to_vector(m2), fourth = to_vector(m4), norms = to_vector(inf_norm);
  SampleMetrics metrics;
  for (std::int64_t b = 0; b < batch; ++b) {
    if (counts[b] == 0) continue;
    metrics.inf_norms.push_back(norms[b]);
    metrics.kurtosis.push_back(second[b] > 0 ? fourth[b] / (second[b] * second[b]) : kNaN);
  }
  return metrics;
}

void ActivationStatistics::add(const at::Tensor& activation, const at::Tensor& mask) {
  check_shapes(activation, mask);
  at::NoGradGuard no_grad;
  auto batch_metrics = sample_metrics(activation, mask);
  samples_.inf_norms.insert(samples_.inf_norms.end(), batch_metrics.inf_norms.begin(), batch_metrics.inf_norms.end());
  samples_.kurtosis.insert(samples_.kurtosis.end(), batch_metrics.kurtosis.begin(), batch_metrics.kurtosis.end());

  const auto channels = activation.size(2);
  auto rows = activation.detach().to(at::kDouble).reshape({-1, channels});
  if (mask.defined()) rows = rows.index_select(0, mask.reshape({-1}).nonzero().squeeze(1));
  if (rows.size(0) == 0) return;

  const auto lows = to_vector(rows.amin(0)), highs = to_vector(rows.amax(0));
  if (channel_max_.empty()) {
    channel_min_ = lows;
    channel_max_ = highs;
  } else {
    if (static_cast<std::int64_t>(channel_max_.size()) != channels)
      throw std::invalid_argument("activation statistics: the number of channels changed between batches");
    for (std::int64_t j = 0; j < channels; ++j) {
      channel_min_[j] = std::min(channel_min_[j], lows[j]);
      channel_max_[j] = std::max(channel_max_[j], highs[j]);
    }
  }

  // Running mean and sum of squared deviations, one batch at a time (Chan, Golub and LeVeque).
  const double count = static_cast<double>(rows.numel());
  const double batch_mean = sum_in_row_order(rows) / count;
  const double batch_squared = sum_in_row_order((rows - batch_mean).square());
  const double total = values_ + count;
  const double delta = batch_mean - mean_;
  mean_ += delta * count / total;
  squared_deviations_ += batch_squared + delta * delta * values_ * count / total;
  values_ = total;
  tokens_ += rows.size(0);
}

double ActivationStatistics::standard_deviation() const {
  return values_ > 0 ? std::sqrt(squared_deviations_ / values_) : kNaN;
}

double ActivationStatistics::mean_inf_norm() const { return mean_and_max(samples_.inf_norms).first; }
double ActivationStatistics::max_inf_norm() const { return mean_and_max(samples_.inf_norms).second; }
double ActivationStatistics::mean_kurtosis() const { return mean_and_max(samples_.kurtosis).first; }
double ActivationStatistics::max_kurtosis() const { return mean_and_max(samples_.kurtosis).second; }

std::vector<double> ActivationStatistics::channel_abs_max() const {
  std::vector<double> result(channel_max_.size());
  for (std::size_t j = 0; j < result.size(); ++j) result[j] = std::max(std::abs(channel_min_[j]), std::abs(channel_max_[j]));
  return result;
}

std::vector<std::int64_t> ActivationStatistics::outlier_channels(double sigmas) const {
  std::vector<std::int64_t> outliers;
  const double limit = sigmas * standard_deviation();
  if (!(limit > 0)) return outliers;
  for (std::size_t j = 0; j < channel_max_.size(); ++j)
    if (channel_max_[j] - mean_ > limit || mean_ - channel_min_[j] > limit) outliers.push_back(static_cast<std::int64_t>(j));
  return outliers;
}

std::vector<LayerActivationStatistics> gather_activation_statistics(const Executor& executor,
                                                                    const std::vector<EvalBatch>& batches,
                                                                    const std::vector<ActivationSite>& sites,
                                                                    const StreamingOptions& streaming) {
  at::NoGradGuard no_grad;
  std::vector<LayerActivationStatistics> statistics(executor.model().layers.size());
  std::vector<ForwardHooks> hooks(batches.size());
  for (std::size_t b = 0; b < batches.size(); ++b)
    hooks[b].on_activation = [&, b](int layer, ActivationSite site, const at::Tensor& activation) {
      if (layer >= 0 && std::find(sites.begin(), sites.end(), site) != sites.end())
        statistics[layer][site].add(activation, batches[b].mask);
      return at::Tensor();
    };
  streamed_forward({{&executor, &hooks}}, batch_inputs(batches), nullptr, streaming);
  return statistics;
}

}  // namespace lathe
