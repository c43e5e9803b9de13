#pragma once

#include "passes/pass.h"

namespace lathe {

// `eval`: loss and perplexity on a data set, KL divergence and top-1 agreement against the
// unmodified model, parameter count and bytes on disk.
PassInfo eval_pass_info();

}  // namespace lathe
