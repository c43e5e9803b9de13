#pragma once

// Which units VIB pruning keeps: first those whose mask says so (log alpha < 0), with kept
// hidden and FFN widths rounded to multiples of `multiple_of`; then, in log-alpha order, units
// are removed (least important first) until the counted parameters are at most the target, and
// added back (most important first) while they still fit, so the target is met as closely as
// the units allow. Protected heads, their kv groups and attention blocks always stay.

#include <cstdint>
#include <string>
#include <vector>

#include "core/head_annotations.h"
#include "executor/vib_masks.h"

namespace lathe {

class Model;

struct LayerLogAlpha {
  std::vector<double> heads, groups, ffn;  // groups empty without grouped-query masks
  double attention = 0, mlp = 0;
};
struct VibLogAlpha {
  std::vector<LayerLogAlpha> layers;
  std::vector<double> hidden;
};
VibLogAlpha log_alphas(const VibMasks& masks);

struct SelectionRules {
  std::int64_t target = 0;  // counted parameters at most
  bool include_embeddings = false;
  std::int64_t multiple_of = 1;
  std::vector<HeadId> protected_heads;
};

// Exact counted parameters of the model cut to `keep` (the decoder layers, and the embeddings,
// final norm and head with include_embeddings): what the cut model's tensors hold.
std::int64_t counted_parameters(const Model& model, const VibKeep& keep, bool include_embeddings);

// The fewest counted parameters any selection reaches under the rules (everything removable
// removed), for refusing a target before training.
std::int64_t fewest_counted_parameters(const Model& model, const SelectionRules& rules);

// The selection; InputError naming `origin` when the target cannot be met.
VibKeep select_units(const Model& model, const VibLogAlpha& scores, const SelectionRules& rules, const std::string& origin);

}  // namespace lathe
