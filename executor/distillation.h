#pragma once

// Fine-tuning by distillation: the student's chosen tensors are trained so that its next-token
// distributions match a teacher's, KL(teacher || student) averaged over the batches' valid
// positions, with AdamW (decoupled weight decay on matrices, Loshchilov & Hutter 2019) and a learning rate
// that decays linearly to zero. Used to adapt a model to a changed attention (clipped softmax,
// gated heads) without labels.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "executor/evaluation.h"

namespace lathe {

class Model;

struct DistillationOptions {
  std::int64_t steps = 100;
  double learning_rate = 1e-3;
  double weight_decay = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  std::vector<std::string> trainable;  // canonical tensor names of the student
};

// One optimizer step: the distillation loss of its batch before the update, and the outlier
// metrics of the student's attention outputs on that batch (Bondarenko et al.): the largest
// infinity norm and the mean kurtosis over layers and samples.
struct DistillationStep {
  std::int64_t step = 0;  // 1-based
  double loss = 0;
  double max_inf_norm = 0;
  double mean_kurtosis = 0;
};

struct DistillationResult {
  std::vector<DistillationStep> steps;
  double loss_before = 0;  // mean KL over all valid positions of the batches, before training
  double loss_after = 0;   // the same after the last step
};

// Mean KL(teacher || student) over the valid positions (`mask` [B, T]) of logits [B, T, vocab].
at::Tensor distillation_loss(const at::Tensor& teacher_log_probabilities, const at::Tensor& student_logits,
                             const at::Tensor& mask);

// Trains `student` in place, one batch per step, cycling through `batches`. The trained tensors
// are replaced by new ones (loaded tensors may be read-only maps). `on_step` sees every step.
// A loss that stops being finite is an InputError (the learning rate is too high).
DistillationResult distill(Model& student, const Model& teacher, const std::vector<EvalBatch>& batches,
                           const DistillationOptions& options,
                           const std::function<void(const DistillationStep&)>& on_step = {});

}  // namespace lathe
