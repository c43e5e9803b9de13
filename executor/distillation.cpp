#include "executor/distillation.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "core/model.h"
#include "executor/adamw.h"
#include "executor/executor.h"
#include "executor/outlier_stats.h"
#include "support/errors.h"

namespace lathe {

// Mean KL(teacher || student) over the valid positions: sum_v p_t (log p_t - log p_s).
at::Tensor distillation_loss(const at::Tensor& teacher_log_probabilities, const at::Tensor& student_logits, const at::Tensor& mask) {
  auto student_log_probabilities = at::log_softmax(student_logits, -1);
  auto per_position = (teacher_log_probabilities.exp() * (teacher_log_probabilities - student_log_probabilities)).sum(-1);
  auto valid = mask.to(per_position.scalar_type());
  return (per_position * valid).sum() / valid.sum().clamp_min(1.0);
}

namespace {

// Teacher log-probabilities are kept for every batch when they fit in this many bytes and
// recomputed per step otherwise.
constexpr double kTeacherCacheBytes = 256.0 * 1024 * 1024;

class TeacherOutputs {
 public:
  TeacherOutputs(const Model& teacher, const std::vector<EvalBatch>& batches) : executor_(teacher), batches_(batches) {
    double bytes = 0;
    for (const auto& batch : batches) bytes += static_cast<double>(batch.inputs.numel()) * teacher.config.vocab * 4.0;
    if (bytes <= kTeacherCacheBytes)
      for (const auto& batch : batches) cache_.push_back(compute(batch));
  }

  at::Tensor log_probabilities(std::size_t index) const {
    return cache_.empty() ? compute(batches_[index]) : cache_[index];
  }

 private:
  at::Tensor compute(const EvalBatch& batch) const {
    at::NoGradGuard no_grad;
    return at::log_softmax(executor_.forward(batch.inputs), -1);
  }

  Executor executor_;
  const std::vector<EvalBatch>& batches_;
  std::vector<at::Tensor> cache_;
};

}  // namespace

DistillationResult distill(Model& student, const Model& teacher, const std::vector<EvalBatch>& batches,
                           const DistillationOptions& options,
                           const std::function<void(const DistillationStep&)>& on_step) {
  if (batches.empty()) throw std::invalid_argument("distillation needs at least one batch");
  if (options.trainable.empty()) throw std::invalid_argument("distillation needs tensors to train");
  if (student.config.vocab != teacher.config.vocab)
    throw std::invalid_argument("the student and the teacher must share a vocabulary");
  TeacherOutputs teacher_outputs(teacher, batches);

  std::vector<at::Tensor> parameters;
  for (const auto& name : options.trainable) {
    auto parameter = student.tensor(name).detach().clone().requires_grad_(true);
    student.tensors[name] = parameter;
    parameters.push_back(parameter);
  }
  AdamW optimizer(parameters, {options.beta1, options.beta2, options.epsilon, options.weight_decay});

  Executor executor(student);
  // The mean KL over every batch's valid positions, weighted by their count.
  auto mean_loss = [&] {
    at::NoGradGuard no_grad;
    double weighted = 0, positions = 0;
    for (std::size_t i = 0; i < batches.size(); ++i) {
      const double count = batches[i].mask.sum().item<double>();
      weighted += distillation_loss(teacher_outputs.log_probabilities(i), executor.forward(batches[i].inputs), batches[i].mask)
                      .item<double>() *
                  count;
      positions += count;
    }
    return positions > 0 ? weighted / positions : 0.0;
  };

  DistillationResult result;
  result.loss_before = mean_loss();
  auto& history = result.steps;
  for (std::int64_t step = 1; step <= options.steps; ++step) {
    const auto index = static_cast<std::size_t>((step - 1) % static_cast<std::int64_t>(batches.size()));
    const auto& batch = batches[index];

    double max_inf_norm = 0, kurtosis_sum = 0;
    std::int64_t kurtosis_count = 0;
    ForwardHooks hooks;
    hooks.on_activation = [&](int, ActivationSite site, const at::Tensor& activation) {
      if (site != ActivationSite::AttentionOutput) return at::Tensor();
      const auto metrics = sample_metrics(activation.detach(), batch.mask);
      for (double value : metrics.inf_norms) max_inf_norm = std::max(max_inf_norm, value);
      for (double value : metrics.kurtosis)
        if (std::isfinite(value)) kurtosis_sum += value, ++kurtosis_count;
      return at::Tensor();
    };
    auto loss = distillation_loss(teacher_outputs.log_probabilities(index), executor.forward(batch.inputs, &hooks), batch.mask);
    loss.backward();

    DistillationStep record;
    record.step = step;
    record.loss = loss.item<double>();
    record.max_inf_norm = max_inf_norm;
    record.mean_kurtosis = kurtosis_count > 0 ? kurtosis_sum / static_cast<double>(kurtosis_count)
                                              : std::numeric_limits<double>::quiet_NaN();
    if (!std::isfinite(record.loss))
      throw InputError("fine-tuning diverged at step " + std::to_string(step) +
                       " (the loss is not finite); lower the learning rate");

    // The rate decays linearly from learning_rate to 0.
    optimizer.step(options.learning_rate * (1.0 - static_cast<double>(step - 1) / static_cast<double>(options.steps)));
    history.push_back(record);
    if (on_step) on_step(record);
  }
  for (const auto& name : options.trainable) {
    student.tensors[name] = student.tensors[name].detach();
    if (!student.tensors[name].isfinite().all().item<bool>())
      throw InputError("fine-tuning diverged: " + name + " holds values that are not finite; lower the learning rate");
  }
  result.loss_after = mean_loss();
  return result;
}

}  // namespace lathe
