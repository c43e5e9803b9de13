#pragma once

#include "passes/pass.h"

namespace lathe {

// `head-prune`: removes the least important attention heads for real (rows and columns cut),
// to a fraction, a count or a parameter budget, globally or per layer, never touching
// protected heads; with grouped-query attention a kv head goes only with all its readers.
PassInfo head_prune_pass_info();

}  // namespace lathe
