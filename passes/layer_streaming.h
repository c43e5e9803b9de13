#pragma once

// How a pass runs the model one layer at a time: the hidden-state budget from the run's memory
// limit, and a progress line "what: layer i/n, tokens/s, time left".

#include <string>
#include <vector>

#include "executor/evaluation.h"
#include "executor/streamed_forward.h"

namespace lathe {

class PassContext;

// `batches`: the data set the model runs over (its tokens give the rate).
StreamingOptions layer_streaming(PassContext& context, const std::string& what, const std::vector<EvalBatch>& batches);

}  // namespace lathe
