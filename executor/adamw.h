#pragma once

// AdamW (Loshchilov & Hutter, 2019): Adam with bias correction and decoupled weight decay,
// over tensors that require grad. Shared by fine-tuning and mask training.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace lathe {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  double weight_decay = 0.0;  // on tensors of two or more dimensions only
};

class AdamW {
 public:
  AdamW(std::vector<at::Tensor> parameters, AdamWOptions options = {});

  // One update at `learning_rate` from the gradients the parameters hold, which it then
  // clears; a parameter without a gradient is left as it is.
  void step(double learning_rate);

  std::int64_t steps() const { return steps_; }

 private:
  std::vector<at::Tensor> parameters_;
  std::vector<at::Tensor> first_;
  std::vector<at::Tensor> second_;
  AdamWOptions options_;
  std::int64_t steps_ = 0;
};

}  // namespace lathe
