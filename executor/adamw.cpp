#include "executor/adamw.h"

#include <ATen/ATen.h>

#include <cmath>

namespace lathe {

AdamW::AdamW(std::vector<at::Tensor> parameters, AdamWOptions options)
    : parameters_(std::move(parameters)), options_(options) {
  for (const auto& parameter : parameters_) {
    first_.push_back(at::zeros_like(parameter));
    second_.push_back(at::zeros_like(parameter));
  }
}

void AdamW::step(double learning_rate) {
  ++steps_;
  const double correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  at::NoGradGuard no_grad;
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    auto& parameter = parameters_[i];
    auto gradient = parameter.grad();
    if (!gradient.defined()) continue;
    first_[i].mul_(options_.beta1).add_(gradient, 1.0 - options_.beta1);
    second_[i].mul_(options_.beta2).addcmul_(gradient, gradient, 1.0 - options_.beta2);
    // Decay matrices only, as is usual: norms, biases and gate offsets keep their scale.
    if (options_.weight_decay > 0 && parameter.dim() >= 2) parameter.mul_(1.0 - learning_rate * options_.weight_decay);
    auto denominator = (second_[i] / correction2).sqrt_().add_(options_.epsilon);
    parameter.addcdiv_(first_[i], denominator, -learning_rate / correction1);
    parameter.mutable_grad().reset();
  }
}

}  // namespace lathe
