#pragma once

// How much each attention head matters, by the methods the head-importance analysis offers:
//   gradient  E_x |dL/d xi_h| with a gate xi_h = 1 on each head's output (Michel et al., 2019)
//   ablation  the loss increase when that head alone is removed
//   entropy   how focused its attention is: 1 - H(row) / log(keys), averaged over rows
// and the baselines head-prune offers: magnitude (weight norms) and random.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "executor/evaluation.h"

namespace lathe {

class Executor;
class Model;

using HeadScores = std::vector<std::vector<double>>;  // [layer][query head]

enum class ImportanceMethod { Gradient, Ablation, Entropy, Magnitude, Random };
ImportanceMethod parse_importance_method(const std::string& name);
const char* importance_method_name(ImportanceMethod method);

HeadScores head_importance(const Executor& executor, const std::vector<EvalBatch>& batches, ImportanceMethod method,
                           std::uint64_t seed = 0, const std::function<void(const std::string&)>& progress = {});

// Divides each layer's scores by their L2 norm, so layers compare (Michel et al.).
void normalize_per_layer(HeadScores& scores);

}  // namespace lathe
