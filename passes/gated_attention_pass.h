#pragma once

#include "passes/pass.h"

namespace lathe {

// `gated-attention`: each query head's output is multiplied by sigmoid(<w_h, x_h> + b_h), x_h
// the head's slice of the normalized layer input (Bondarenko et al., 2023). The gates start at
// w = 0 and b = logit(init), and the o projection is scaled by 1 / sigmoid(b), so the model
// computes what it computed before (up to float rounding). Follow it with `finetune`.
PassInfo gated_attention_pass_info();

}  // namespace lathe
