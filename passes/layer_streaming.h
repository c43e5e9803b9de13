#pragma once

// How a pass runs the model one layer at a time: the hidden-state budget from the run's memory
// limit, and a progress line "what: layer i/n, tokens/s, time left".

#include <cstdint>
#include <string>

#include "executor/streamed_forward.h"

namespace lathe {

class PassContext;

// `tokens`: the tokens of the data set (for the rate).
StreamingOptions layer_streaming(PassContext& context, const std::string& what, std::int64_t tokens);

}  // namespace lathe
