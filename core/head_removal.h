#pragma once

// Structured head removal: cuts removed query heads' rows of W_q (and bias) and columns of
// W_o, and a kv head's rows of W_k and W_v once no query head reads it any more. A layer left
// without heads loses its attention (and its norm) altogether. Head annotations follow the
// heads that stay.

#include <vector>

#include "core/head_annotations.h"

namespace lathe {

class Model;

// Removes `heads` (indices into the current layout). Throws std::invalid_argument for a head
// that does not exist; callers check protection first (check_not_protected).
void remove_heads(Model& model, const std::vector<HeadId>& heads);

// Attention parameters of one layer with this many query and kv heads.
std::int64_t attention_parameters(const Model& model, std::int64_t query_heads, std::int64_t kv_heads);

}  // namespace lathe
