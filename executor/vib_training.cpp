#include "executor/vib_training.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/model.h"
#include "executor/adamw.h"
#include "executor/distillation.h"
#include "executor/executor.h"
#include "support/errors.h"

namespace lathe {

at::Tensor next_token_loss(const at::Tensor& logits, const EvalBatch& batch) {
  auto log_probabilities = at::log_softmax(logits, -1);
  auto per_position = -log_probabilities.gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1);
  auto valid = batch.mask.to(per_position.scalar_type());
  return (per_position * valid).sum() / valid.sum().clamp_min(1.0);
}

std::vector<VibStep> train_vib_masks(Model& model, VibMasks& masks, const std::vector<EvalBatch>& batches,
                                     const VibTrainingOptions& options,
                                     const std::function<void(const VibStep&)>& on_step) {
  if (batches.empty()) throw std::invalid_argument("mask training needs at least one batch");
  const double full = static_cast<double>(
      options.include_embeddings ? model.parameter_count() : model.decoder_parameter_count());
  if (full <= 0) throw std::invalid_argument("mask training needs parameters to count");

  // The unmasked model, as it is before any weight trains, is the teacher when weights train.
  const Model teacher = model.clone();
  const Executor teacher_executor(teacher);
  std::vector<at::Tensor> weights;
  if (options.train_weights)
    for (auto& [name, tensor] : model.tensors) {
      tensor = model.tensor(name).detach().clone().requires_grad_(true);
      weights.push_back(tensor);
    }
  AdamW mask_optimizer(masks.parameters());
  AdamW weight_optimizer(weights);

  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed ^ 0x5eedULL);
  const Executor executor(model);
  double lambda1 = 0, lambda2 = 0;
  std::vector<VibStep> history;
  for (std::int64_t step = 1; step <= options.steps; ++step) {
    const auto& batch = batches[static_cast<std::size_t>((step - 1) % static_cast<std::int64_t>(batches.size()))];
    const auto hooks = vib_training_hooks(model, masks, &generator, options.beta);
    const auto logits = executor.forward(batch.inputs, &hooks);
    at::Tensor task;
    if (options.train_weights) {
      at::Tensor teacher_log_probabilities;
      {
        at::NoGradGuard no_grad;
        teacher_log_probabilities = at::log_softmax(teacher_executor.forward(batch.inputs), -1);
      }
      task = distillation_loss(teacher_log_probabilities, logits, batch.mask);
    } else {
      task = next_token_loss(logits, batch);
    }
    const auto kl = weighted_kl(masks, options.multipliers);
    const auto expected = expected_parameters(model, masks, options.beta, options.include_embeddings) / full;
    const double warmed = options.warmup > 0 ? std::min(1.0, static_cast<double>(step) / static_cast<double>(options.warmup)) : 1.0;
    const double target = 1.0 - (1.0 - options.target_fraction) * warmed;
    const auto gap = expected - target;
    const auto loss = task + kl * options.kl_factor + gap * lambda1 + gap.pow(2) * lambda2;
    loss.backward();

    VibStep record;
    record.step = step;
    record.task_loss = task.item<double>();
    record.kl = kl.item<double>();
    record.expected_fraction = expected.item<double>();
    record.target_fraction = target;
    record.lambda1 = lambda1;
    record.lambda2 = lambda2;
    if (!std::isfinite(record.task_loss) || !std::isfinite(loss.item<double>()))
      throw InputError("mask training diverged at step " + std::to_string(step) +
                       " (the loss is not finite); lower the learning rates");

    mask_optimizer.step(options.mask_learning_rate);
    if (options.train_weights) weight_optimizer.step(options.weight_learning_rate);
    // Gradient ascent on the multipliers: d loss / d l1 = gap, d loss / d l2 = gap^2.
    const double difference = record.expected_fraction - target;
    lambda1 += options.lagrangian_learning_rate * difference;
    lambda2 += options.lagrangian_learning_rate * difference * difference;
    history.push_back(record);
    if (on_step) on_step(record);
  }
  for (auto& weight : weights) weight = weight.detach();
  if (options.train_weights)
    for (auto& [name, tensor] : model.tensors) {
      tensor = tensor.detach();
      if (!tensor.isfinite().all().item<bool>())
        throw InputError("mask training diverged: " + name + " holds values that are not finite; lower weight_learning_rate");
    }
  return history;
}

}  // namespace lathe
