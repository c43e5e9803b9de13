#include "executor/head_importance.h"

#include <ATen/ATen.h>

#include <cmath>
#include <random>
#include <stdexcept>

#include "core/model.h"
#include "executor/executor.h"
#include "executor/streamed_forward.h"

namespace lathe {
namespace {

HeadScores zeros_like_heads(const Model& model) {
  HeadScores scores;
  for (const auto& layer : model.layers) scores.emplace_back(layer.query_heads, 0.0);
  return scores;
}

at::Tensor batch_loss(const at::Tensor& logits, const EvalBatch& batch) {
  auto token_loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), batch.targets.reshape({-1}),
                                           /*weight=*/{}, at::Reduction::None);
  auto mask = batch.mask.reshape({-1}).to(at::kFloat);
  return (token_loss * mask).sum() / mask.sum();
}

ForwardHooks unit_gates(const Model& model, bool requires_grad) {
  ForwardHooks hooks;
  for (const auto& layer : model.layers)
    hooks.head_gates.push_back(at::ones({std::max<std::int64_t>(layer.query_heads, 1)}).set_requires_grad(requires_grad));
  return hooks;
}

HeadScores gradient_importance(const Executor& executor, const std::vector<EvalBatch>& batches,
                               const std::function<void(const std::string&)>& progress) {
  const auto& model = executor.model();
  auto scores = zeros_like_heads(model);
  for (std::size_t i = 0; i < batches.size(); ++i) {
    auto hooks = unit_gates(model, true);
    batch_loss(executor.forward(batches[i].inputs, &hooks), batches[i]).backward();
    for (int layer = 0; layer < model.layer_count(); ++layer) {
      if (!hooks.head_gates[layer].grad().defined()) continue;
      auto gradient = hooks.head_gates[layer].grad().abs();
      for (std::int64_t h = 0; h < model.layers[layer].query_heads; ++h)
        scores[layer][h] += gradient[h].item<double>() / static_cast<double>(batches.size());
    }
    if (progress) progress("gradient: batch " + std::to_string(i + 1) + "/" + std::to_string(batches.size()));
  }
  return scores;
}

// One layer at a time: the hidden states before layer l are shared by every head of layer l, so
// each ablation runs only layers l .. L (with the head's gate at 0) and the head. A gate of 1
// multiplies exactly, so the scores are those of full forwards with one head gated off.
HeadScores ablation_importance(const Executor& executor, const std::vector<EvalBatch>& batches,
                               const std::function<void(const std::string&)>& progress) {
  at::NoGradGuard no_grad;
  const auto& model = executor.model();
  auto scores = zeros_like_heads(model);
  const auto layers = static_cast<int>(model.layer_count());
  auto loss_from = [&](const std::vector<at::Tensor>& hidden, int first, const std::vector<ForwardHooks>* hooks) {
    const auto last = run_layers(executor, hidden, first, layers, hooks);
    double total = 0, tokens = 0;
    for (std::size_t b = 0; b < batches.size(); ++b) {
      const double count = batches[b].mask.sum().item<double>();
      const auto* batch_hooks = hooks == nullptr ? nullptr : &(*hooks)[b];
      total += batch_loss(executor.output_head(last[b], batch_hooks), batches[b]).item<double>() * count;
      tokens += count;
    }
    executor.release_layer(-1);
    return total / std::max(1.0, tokens);
  };
  std::vector<at::Tensor> before;  // the hidden states before the current layer
  for (const auto& batch : batches) before.push_back(executor.embed(batch.inputs));
  executor.release_layer(-1);
  const double baseline = loss_from(before, 0, nullptr);
  for (int layer = 0; layer < layers; ++layer) {
    for (std::int64_t h = 0; h < model.layers[layer].query_heads; ++h) {
      std::vector<ForwardHooks> hooks(batches.size(), unit_gates(model, false));
      auto gates = hooks.front().head_gates[layer].clone();
      gates[h] = 0.0;
      for (auto& batch_hooks : hooks) batch_hooks.head_gates[layer] = gates;
      scores[layer][h] = loss_from(before, layer, &hooks) - baseline;
      if (progress) progress("ablation: head " + std::to_string(layer) + "." + std::to_string(h));
    }
    before = run_layers(executor, std::move(before), layer, layer + 1);
  }
  return scores;
}

HeadScores entropy_importance(const Executor& executor, const std::vector<EvalBatch>& batches) {
  at::NoGradGuard no_grad;
  const auto& model = executor.model();
  auto sums = zeros_like_heads(model);
  std::vector<double> rows(model.layers.size(), 0.0);
  std::vector<EvalBatch> scored;  // a batch of single positions has no choice to measure
  for (const auto& batch : batches)
    if (batch.inputs.size(1) > 1) scored.push_back(batch);
  std::vector<ForwardHooks> hooks(scored.size());
  for (std::size_t b = 0; b < scored.size(); ++b)
    hooks[b].on_attention = [&, b](int layer, const at::Tensor& probabilities) {
      // Row t of a causal layer spreads over t + 1 keys; the first row has no choice.
      const auto length = probabilities.size(2);
      auto entropy = -(probabilities * at::log(probabilities.clamp_min(1e-12))).sum(-1);  // [B, H, T]
      auto keys = at::arange(1, length + 1, at::kFloat);
      auto focus = (1.0 - entropy / at::log(keys).clamp_min(1e-12)).narrow(2, 1, length - 1);
      auto valid = scored[b].mask.narrow(1, 1, length - 1).unsqueeze(1).to(at::kFloat);  // [B, 1, T-1]
      auto per_head = (focus * valid).sum(at::IntArrayRef{0, 2});
      for (std::int64_t h = 0; h < per_head.size(0); ++h) sums[layer][h] += per_head[h].template item<double>();
      rows[layer] += valid.sum().item<double>();
    };
  streamed_forward({{&executor, &hooks}}, batch_inputs(scored), nullptr);
  for (std::size_t layer = 0; layer < sums.size(); ++layer)
    for (auto& value : sums[layer]) value /= std::max(1.0, rows[layer]);
  return sums;
}

HeadScores magnitude_importance(const Model& model) {
  auto scores = zeros_like_heads(model);
  const auto d = model.config.head_dim;
  for (int layer = 0; layer < model.layer_count(); ++layer) {
    if (!model.layers[layer].has_attention()) continue;
    const auto& q = model.layer_tensor(layer, "attn.q.weight");
    const auto& o = model.layer_tensor(layer, "attn.o.weight");
    for (std::int64_t h = 0; h < model.layers[layer].query_heads; ++h)
      scores[layer][h] = q.narrow(0, h * d, d).norm().item<double>() * o.narrow(1, h * d, d).norm().item<double>();
  }
  return scores;
}

HeadScores random_importance(const Model& model, std::uint64_t seed) {
  auto scores = zeros_like_heads(model);
  std::mt19937_64 random(seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (auto& layer : scores)
    for (auto& value : layer) value = uniform(random);
  return scores;
}

}  // namespace

ImportanceMethod parse_importance_method(const std::string& name) {
  if (name == "gradient") return ImportanceMethod::Gradient;
  if (name == "ablation") return ImportanceMethod::Ablation;
  if (name == "entropy") return ImportanceMethod::Entropy;
  if (name == "magnitude") return ImportanceMethod::Magnitude;
  if (name == "random") return ImportanceMethod::Random;
  throw std::invalid_argument("unknown importance method " + name);
}

const char* importance_method_name(ImportanceMethod method) {
  switch (method) {
    case ImportanceMethod::Gradient: return "gradient";
    case ImportanceMethod::Ablation: return "ablation";
    case ImportanceMethod::Entropy: return "entropy";
    case ImportanceMethod::Magnitude: return "magnitude";
    case ImportanceMethod::Random: return "random";
  }
  return "?";
}

HeadScores head_importance(const Executor& executor, const std::vector<EvalBatch>& batches, ImportanceMethod method,
                           std::uint64_t seed, const std::function<void(const std::string&)>& progress) {
  switch (method) {
    case ImportanceMethod::Gradient: return gradient_importance(executor, batches, progress);
    case ImportanceMethod::Ablation: return ablation_importance(executor, batches, progress);
    case ImportanceMethod::Entropy: return entropy_importance(executor, batches);
    case ImportanceMethod::Magnitude: return magnitude_importance(executor.model());
    case ImportanceMethod::Random: return random_importance(executor.model(), seed);
  }
  throw std::logic_error("unhandled importance method");
}

void normalize_per_layer(HeadScores& scores) {
  for (auto& layer : scores) {
    double norm = 0;
    for (auto value : layer) norm += value * value;
    norm = std::sqrt(norm);
    if (norm > 0)
      for (auto& value : layer) value /= norm;
  }
}

}  // namespace lathe
