#include "executor/streamed_forward.h"

#include <ATen/ATen.h>


#include <memory>
#include <string>

#include "support/allocator.h"

namespace lathe {

HiddenStates::HiddenStates(std::size_t batches, bool on_disk, const std::filesystem::path& directory)
    : in_memory_(batches), slots_(batches) {
  if (on_disk) file_ = std::make_unique<TemporaryFile>(directory);
}

void HiddenStates::put(std::size_t batch, const at::Tensor& hidden) {
  if (file_ == nullptr) {
    in_memory_[batch] = hidden;
    return;
  }
  auto values = hidden.contiguous();
  auto& slot = slots_[batch];
  if (slot.offset < 0 || slot.shape != values.sizes().vec()) {
    slot.offset = file_size_;
    slot.shape = values.sizes().vec();
    file_size_ += static_cast<std::int64_t>(values.nbytes());
  }
  file_->write_at(values.data_ptr(), values.nbytes(), static_cast<std::uint64_t>(slot.offset));
}

at::Tensor HiddenStates::get(std::size_t batch) const {
  if (file_ == nullptr) return in_memory_[batch];
  const auto& slot = slots_[batch];
  auto values = at::empty(slot.shape, at::kFloat);
  file_->read_at(values.data_ptr(), values.nbytes(), static_cast<std::uint64_t>(slot.offset));
  return values;
}

void streamed_forward(const std::vector<StreamedModel>& models, const std::vector<at::Tensor>& inputs,
                      const std::function<void(std::size_t batch, const std::vector<at::Tensor>& logits)>& consume,
                      const StreamingOptions& options) {
  at::NoGradGuard no_grad;
  int layers = 0;
  std::int64_t hidden_bytes = 0;
  for (const auto& streamed : models) {
    layers = std::max<int>(layers, static_cast<int>(streamed.executor->model().layer_count()));
    for (const auto& ids : inputs) hidden_bytes += ids.numel() * streamed.executor->model().config.hidden * 4;
  }
  const bool on_disk = options.hidden_state_budget > 0 && hidden_bytes > options.hidden_state_budget;
  const int stages = layers + 2;
  auto hooks_of = [&](const StreamedModel& streamed, std::size_t batch) -> const ForwardHooks* {
    return streamed.hooks == nullptr || streamed.hooks->empty() ? nullptr : &(*streamed.hooks)[batch];
  };

  std::vector<std::unique_ptr<HiddenStates>> states;
  for (const auto& streamed : models) {
    states.push_back(std::make_unique<HiddenStates>(inputs.size(), on_disk, options.spill_directory));
    for (std::size_t b = 0; b < inputs.size(); ++b) states.back()->put(b, streamed.executor->embed(inputs[b], 0, hooks_of(streamed, b)));
    streamed.executor->release_layer(-1);
  }
  if (options.on_stage) options.on_stage(1, stages);
  for (int layer = 0; layer < layers; ++layer) {
    for (std::size_t m = 0; m < models.size(); ++m) {
      const auto& executor = *models[m].executor;
      if (layer >= executor.model().layer_count()) continue;
      for (std::size_t b = 0; b < inputs.size(); ++b)
        states[m]->put(b, executor.decoder_layer(layer, states[m]->get(b), 0, hooks_of(models[m], b)));
      executor.release_layer(layer);
    }
    return_freed_memory();
    if (options.on_stage) options.on_stage(layer + 2, stages);
  }
  std::vector<at::Tensor> logits(models.size());
  for (std::size_t b = 0; b < inputs.size(); ++b) {
    for (std::size_t m = 0; m < models.size(); ++m) {
      const auto& executor = *models[m].executor;
      if (consume)
        logits[m] = executor.output_head(states[m]->get(b), hooks_of(models[m], b));
      else
        executor.final_hidden(states[m]->get(b), hooks_of(models[m], b));
    }
    if (consume) consume(b, logits);
    std::fill(logits.begin(), logits.end(), at::Tensor());
  }
  for (const auto& streamed : models) streamed.executor->release_layer(-1);
  if (options.on_stage) options.on_stage(stages, stages);
}

std::vector<at::Tensor> run_layers(const Executor& executor, std::vector<at::Tensor> hidden, int first, int last,
                                   const std::vector<ForwardHooks>* hooks) {
  at::NoGradGuard no_grad;
  for (int layer = first; layer < last; ++layer) {
    for (std::size_t b = 0; b < hidden.size(); ++b)
      hidden[b] = executor.decoder_layer(layer, hidden[b], 0, hooks == nullptr || hooks->empty() ? nullptr : &(*hooks)[b]);
    executor.release_layer(layer);
    return_freed_memory();
  }
  return hidden;
}

}  // namespace lathe
