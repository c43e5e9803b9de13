#pragma once

// Structured hidden-dimension removal: the residual stream keeps some of its dimensions
// everywhere it is written and read: the token and position tables' columns, every norm, the
// input columns of the q/k/v projections and of the MLP's first projections, the output rows
// (and biases) of the o and down projections, and the output head's columns. Norms then
// compute their statistics over the kept dimensions, as a norm restricted to them would.

#include <cstdint>
#include <vector>

namespace lathe {

class Model;

// Keeps dimensions `kept` (distinct, in [0, hidden), at least one; the layout keeps their
// order). std::invalid_argument otherwise, and for a gated-attention model (each gate reads a
// hidden / Hq wide slice of the layer input, which fewer dimensions would change).
void keep_hidden_dimensions(Model& model, const std::vector<std::int64_t>& kept);

}  // namespace lathe
