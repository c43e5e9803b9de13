#include "executor/evaluation.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "executor/executor.h"

namespace lathe {
namespace {

struct Window {
  const std::int32_t* tokens;  // inputs are tokens[0 .. length), targets tokens[1 .. length]
  std::int64_t length;
};

void cut_windows(const std::vector<std::int32_t>& stream, std::int64_t window, std::vector<Window>& out) {
  const auto targets = static_cast<std::int64_t>(stream.size()) - 1;
  for (std::int64_t start = 0; start < targets; start += window)
    out.push_back({stream.data() + start, std::min(window, targets - start)});
}

}  // namespace

std::vector<EvalBatch> make_eval_batches(const std::vector<std::vector<std::int32_t>>& sequences, bool pack,
                                         const BatchingOptions& options) {
  if (options.window <= 0 || options.batch_size <= 0) throw std::invalid_argument("window and batch size must be positive");
  std::vector<std::int32_t> stream;
  std::vector<Window> windows;
  if (pack) {
    for (const auto& sequence : sequences) stream.insert(stream.end(), sequence.begin(), sequence.end());
    cut_windows(stream, options.window, windows);
  } else {
    for (const auto& sequence : sequences) cut_windows(sequence, options.window, windows);
  }
  if (options.max_tokens > 0) {
    std::int64_t kept = 0;
    std::size_t count = 0;
    while (count < windows.size() && kept < options.max_tokens) {
      windows[count].length = std::min(windows[count].length, options.max_tokens - kept);
      kept += windows[count++].length;
    }
    windows.resize(count);
  }

  std::vector<EvalBatch> batches;
  for (std::size_t first = 0; first < windows.size(); first += options.batch_size) {
    const auto count = std::min<std::size_t>(options.batch_size, windows.size() - first);
    std::int64_t longest = 0;
    for (std::size_t i = 0; i < count; ++i) longest = std::max(longest, windows[first + i].length);
    auto inputs = at::zeros({static_cast<std::int64_t>(count), longest}, at::kLong);
    auto targets = at::zeros_like(inputs);
    auto mask = at::zeros({static_cast<std::int64_t>(count), longest}, at::kBool);
    auto in = inputs.accessor<std::int64_t, 2>();
    auto out = targets.accessor<std::int64_t, 2>();
    auto valid = mask.accessor<bool, 2>();
    for (std::size_t row = 0; row < count; ++row) {
      const auto& window = windows[first + row];
      for (std::int64_t t = 0; t < window.length; ++t) {
        in[row][t] = window.tokens[t];
        out[row][t] = window.tokens[t + 1];
        valid[row][t] = true;
      }
    }
    batches.push_back({inputs, targets, mask});
  }
  return batches;
}

std::vector<at::Tensor> batch_inputs(const std::vector<EvalBatch>& batches) {
  std::vector<at::Tensor> inputs;
  inputs.reserve(batches.size());
  for (const auto& batch : batches) inputs.push_back(batch.inputs);
  return inputs;
}

EvalMetrics evaluate(const Executor& model, const std::vector<EvalBatch>& batches, const Executor* reference,
                     const StreamingOptions& streaming) {
  at::NoGradGuard no_grad;
  double loss_sum = 0, kl_sum = 0, reference_loss_sum = 0;
  std::int64_t tokens = 0, agreeing = 0;
  std::vector<StreamedModel> models = {{&model, nullptr}};
  if (reference != nullptr) models.push_back({reference, nullptr});
  // One sequence at a time: the log-probabilities of a batch are several times its logits,
  // and with a large vocabulary that would dwarf a decoder layer.
  streamed_forward(models, batch_inputs(batches), [&](std::size_t i, const std::vector<at::Tensor>& logits) {
    const auto& batch = batches[i];
    for (std::int64_t row = 0; row < batch.inputs.size(0); ++row) {
      const auto targets = batch.targets[row].unsqueeze(-1);
      const auto mask = batch.mask[row];
      auto log_probs = at::log_softmax(logits[0][row], -1);
      loss_sum -= log_probs.gather(-1, targets).squeeze(-1).masked_select(mask).to(at::kDouble).sum().item<double>();
      tokens += mask.sum().item<std::int64_t>();
      if (reference == nullptr) continue;
      auto reference_log_probs = at::log_softmax(logits[1][row], -1);
      auto token_kl = (reference_log_probs.exp() * (reference_log_probs - log_probs)).sum(-1);
      reference_loss_sum -= reference_log_probs.gather(-1, targets).squeeze(-1).masked_select(mask).to(at::kDouble).sum().item<double>();
      kl_sum += token_kl.masked_select(mask).to(at::kDouble).sum().item<double>();
      agreeing += log_probs.argmax(-1).eq(reference_log_probs.argmax(-1)).logical_and(mask).sum().item<std::int64_t>();
    }
  }, streaming);
  EvalMetrics metrics;
  metrics.tokens = tokens;
  metrics.mean_loss = tokens > 0 ? loss_sum / static_cast<double>(tokens) : 0.0;
  metrics.perplexity = std::exp(metrics.mean_loss);
  if (reference != nullptr && tokens > 0) {
    metrics.kl = kl_sum / static_cast<double>(tokens);
    metrics.top1_agreement = static_cast<double>(agreeing) / static_cast<double>(tokens);
    metrics.reference_mean_loss = reference_loss_sum / static_cast<double>(tokens);
  }
  return metrics;
}

}  // namespace lathe
