#pragma once

// Runs models one decoder layer at a time over every batch of a data set: the embeddings of all
// batches, then layer 0 over all of them, then layer 1, ..., then the output head batch by
// batch. Only one layer's float32 weights exist at a time (each executor drops a layer's
// conversions and gives its mapped pages back when the layer is done), so a checkpoint far
// larger than memory runs in about one layer plus the hidden states. The hidden states stay in
// memory up to a budget and go to an unlinked temporary file above it. Every batch meets the
// same operations as in Executor::forward, so the results are identical.

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "executor/executor.h"
#include "support/temporary_file.h"

namespace lathe {

struct StreamedModel {
  const Executor* executor = nullptr;
  // Hooks for each batch (empty: none). Calls come layer-major: every batch's layer 0, then
  // every batch's layer 1, ...
  const std::vector<ForwardHooks>* hooks = nullptr;
};

struct StreamingOptions {
  // Bytes of hidden states kept in memory (all models together); 0: no limit.
  std::int64_t hidden_state_budget = 0;
  // Where hidden states above the budget go; default the system's temporary folder.
  std::filesystem::path spill_directory;
  // After each stage: (stages done, stages in all); stages are the embedding, each layer, the head.
  std::function<void(int done, int stages)> on_stage;
};

// Calls consume(batch, logits) for each batch in order, logits[m] [B, T, vocab] of models[m].
// Without a consumer the head stage stops at the final norm (observers still see it).
void streamed_forward(const std::vector<StreamedModel>& models, const std::vector<at::Tensor>& inputs,
                      const std::function<void(std::size_t batch, const std::vector<at::Tensor>& logits)>& consume,
                      const StreamingOptions& options = {});

// The hidden states after layers [first, last) of one model, one layer at a time over every
// batch (`hooks`: per batch, or null), from the hidden states before layer `first`.
std::vector<at::Tensor> run_layers(const Executor& executor, std::vector<at::Tensor> hidden, int first, int last,
                                   const std::vector<ForwardHooks>* hooks = nullptr);

// Hidden states of a data set, one tensor per batch, in memory or in a temporary file.
class HiddenStates {
 public:
  HiddenStates(std::size_t batches, bool on_disk, const std::filesystem::path& directory);

  void put(std::size_t batch, const at::Tensor& hidden);
  at::Tensor get(std::size_t batch) const;
  bool on_disk() const { return file_ != nullptr; }

 private:
  struct Slot {
    std::vector<std::int64_t> shape;
    std::int64_t offset = -1;
  };
  std::vector<at::Tensor> in_memory_;
  std::vector<Slot> slots_;
  std::int64_t file_size_ = 0;
  std::unique_ptr<TemporaryFile> file_;
};

}  // namespace lathe
