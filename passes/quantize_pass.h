#pragma once

#include "passes/pass.h"

namespace lathe {

// `quantize`: int8 weights (symmetric, per output channel) and int8 activations (static,
// calibrated per tensor; or dynamic), fake-quantized in the IR so `eval` measures the int8
// model, with the scales and zero points the ONNX writer turns into QDQ or dynamic int8 graphs.
PassInfo quantize_pass_info();

}  // namespace lathe
