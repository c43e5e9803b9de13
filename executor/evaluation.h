#pragma once

// Language-model evaluation: mean next-token loss and, against a reference model, KL divergence
// and top-1 agreement, over batches cut from token sequences.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "executor/streamed_forward.h"

namespace lathe {

struct EvalBatch {
  at::Tensor inputs;   // [B, T] int64
  at::Tensor targets;  // [B, T] int64
  at::Tensor mask;     // [B, T] bool: which targets count
};

struct BatchingOptions {
  std::int64_t window = 0;      // inputs per window (at most the model's positions)
  std::int64_t batch_size = 8;
  std::int64_t max_tokens = 0;  // stop after this many targets (0: all)
};

// pack = true: the sequences are one stream cut into non-overlapping windows of `window`
// inputs, each predicting the next token (the last window is shorter). pack = false: each
// sequence on its own (longer ones cut into windows the same way). Short windows are padded
// and masked.
std::vector<EvalBatch> make_eval_batches(const std::vector<std::vector<std::int32_t>>& sequences, bool pack,
                                         const BatchingOptions& options);

struct EvalMetrics {
  double mean_loss = 0;
  double perplexity = 0;
  std::int64_t tokens = 0;
  std::optional<double> kl;              // KL(reference || model), nats per token
  std::optional<double> top1_agreement;  // share of tokens with the same argmax
  std::optional<double> reference_mean_loss;
};

// Runs the model (and the reference) one layer at a time over all batches (streamed_forward);
// `streaming.on_stage` reports progress.
EvalMetrics evaluate(const Executor& model, const std::vector<EvalBatch>& batches, const Executor* reference = nullptr,
                     const StreamingOptions& streaming = {});

// The inputs of each batch.
std::vector<at::Tensor> batch_inputs(const std::vector<EvalBatch>& batches);

}  // namespace lathe
