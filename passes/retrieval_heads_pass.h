#pragma once

#include "passes/pass.h"

namespace lathe {

// `retrieval-heads`: scores every attention head by the copy-paste rule of Wu et al. (2024) on
// needle-in-a-haystack tests, marks the retrieval heads in the IR (and protects them on
// request), and can measure what removing them costs.
PassInfo retrieval_heads_pass_info();

}  // namespace lathe
