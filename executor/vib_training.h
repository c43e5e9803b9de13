#pragma once

// Training VIB masks under a size target (VTrans; the constraint as in CoFi and TVA-Prune):
//   loss = task + kl_factor * sum_s mult_s * KL_s + l1 (S - t) + l2 (S - t)^2
// S the expected kept fraction of the counted parameters under soft masks, t the target
// fraction warmed up linearly from 1 over `warmup` steps; the masks are trained by AdamW, the
// Lagrange multipliers l1, l2 (from 0) by gradient ascent. The task loss is the next-token loss
// with frozen weights, or, when the weights train too, KL to the unmasked model's predictions.

#include <cstdint>
#include <functional>
#include <vector>

#include "executor/evaluation.h"
#include "executor/vib_masks.h"

namespace lathe {

class Model;

struct VibTrainingOptions {
  std::int64_t steps = 100;
  std::int64_t warmup = 20;
  double target_fraction = 0.5;  // of the counted parameters
  bool include_embeddings = false;
  double kl_factor = 1e-6;
  KlMultipliers multipliers;
  double mask_learning_rate = 0.05;
  double lagrangian_learning_rate = 0.1;
  double beta = 10;  // soft masks sigmoid(-beta log alpha)
  // Weights train too (VTrans), distilling from the model as it was; else they are frozen.
  bool train_weights = false;
  double weight_learning_rate = 1e-4;
  std::uint64_t seed = 0;
};

struct VibStep {
  std::int64_t step = 0;  // 1-based
  double task_loss = 0;
  double kl = 0;          // sum_s mult_s KL_s, before kl_factor
  double expected_fraction = 0;
  double target_fraction = 0;
  double lambda1 = 0;
  double lambda2 = 0;
};

// Trains `masks` (and with train_weights the model's float tensors, replaced by trained copies)
// one batch per step, cycling through `batches`. InputError when the loss stops being finite.
std::vector<VibStep> train_vib_masks(Model& model, VibMasks& masks, const std::vector<EvalBatch>& batches,
                                     const VibTrainingOptions& options,
                                     const std::function<void(const VibStep&)>& on_step = {});

// Mean next-token loss of masked logits over a batch's valid targets.
at::Tensor next_token_loss(const at::Tensor& logits, const EvalBatch& batch);

}  // namespace lathe
