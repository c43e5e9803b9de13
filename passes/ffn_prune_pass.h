#pragma once

#include "passes/pass.h"

namespace lathe {

// `ffn-prune`: removes the least important FFN neurons for real (gate/up rows and down
// columns cut), by weight magnitude or calibration activation, to a fraction of the neurons or
// a parameter budget, globally or per layer, in widths that are multiples of `multiple_of`.
PassInfo ffn_prune_pass_info();

}  // namespace lathe
