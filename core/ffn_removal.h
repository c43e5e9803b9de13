#pragma once

// Structured FFN-neuron removal: cuts a neuron's rows of the gate and up projections (and up
// bias) and its column of the down projection. A layer left without neurons loses its MLP
// (and its norm) altogether, its output bias folded into the stream before it.

#include <cstdint>
#include <map>
#include <vector>

namespace lathe {

class Model;

// Keeps, in each listed layer, the neurons `kept[layer]` (indices into the current layout, in
// any order; the layout keeps their order). std::invalid_argument for a neuron or layer that
// does not exist, or a layer whose MLP is already gone.
void keep_ffn_neurons(Model& model, const std::map<int, std::vector<std::int64_t>>& kept);

// Parameters of one layer's MLP with this many neurons (its norm included; 0 for none).
std::int64_t mlp_parameters(const Model& model, std::int64_t neurons);

}  // namespace lathe
