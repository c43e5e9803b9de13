#pragma once

#include "passes/pass.h"

namespace lathe {

// `vib-prune`: learns variational masks over heads, kv groups, FFN neurons, the hidden
// dimensions and whole blocks under a size target (VTrans; masks only, or masks and weights),
// then folds the kept units' masks into the weights and removes the rest for real.
PassInfo vib_prune_pass_info();

}  // namespace lathe
