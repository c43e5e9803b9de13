#pragma once

// VIB pruning's cut: folds each kept unit's deterministic mask value into the weights it
// scales, then removes the units at zero for real (heads, kv heads, FFN neurons, whole blocks,
// hidden dimensions). The cut model computes what the deterministically masked model
// (vib_deterministic_hooks) computes.

#include "executor/vib_masks.h"

namespace lathe {

class Model;

void cut_to_selection(Model& model, const VibMasks& masks, const VibKeep& keep);

}  // namespace lathe
