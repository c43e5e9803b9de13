#pragma once

#include "passes/pass.h"

namespace lathe {

// `clipped-softmax`: every attention softmax becomes clip((zeta - gamma) softmax(x) + gamma, 0, 1)
// (Bondarenko et al., 2023), so a head can give exact zeros without pushing its scores, and
// with them the activations, to extremes. gamma = -alpha / T unless given. Changes the model's
// function: follow it with `finetune`.
PassInfo clipped_softmax_pass_info();

}  // namespace lathe
