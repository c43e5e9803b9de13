#pragma once

#include "passes/pass.h"

namespace lathe {

// `smooth`: SmoothQuant-style migration of activation scale into weights, training-free. For
// each normalized input (attention input: q, k, v; MLP input: gate and up) and each channel j,
// s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) over calibration tokens and the weights reading
// it; the weights' column j is multiplied by s_j and the preceding norm's weight (and bias) is
// divided by it, so the model computes the same function with flatter activations (up to float
// rounding of the new weights; bit for bit with `power_of_two` scales).
PassInfo smooth_pass_info();

}  // namespace lathe
