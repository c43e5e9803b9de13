#pragma once

// How a pass runs the model one layer at a time: the hidden-state budget from the run's memory
// limit, and a progress line "what: layer i/n, tokens/s, time left".

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "executor/evaluation.h"
#include "executor/streamed_forward.h"

namespace lathe {

class Model;
class PassContext;

// `batches`: the data set the model runs over (its tokens give the rate).
StreamingOptions layer_streaming(PassContext& context, const std::string& what, const std::vector<EvalBatch>& batches);

// Bytes of activations (hidden states, KV caches) a pass keeps in memory: a quarter of the run's
// memory limit (0: no limit).
std::int64_t activation_budget(const PassContext& context);

// Whether the model's weights in float32 (what a whole-model forward converts and keeps) fit
// under the run's memory limit beside the activation budget.
bool float_weights_fit(const PassContext& context, const Model& model);

// A progress callback for work in counted steps: "what: step_name i/n, time left".
std::function<void(std::int64_t done, std::int64_t steps)> step_progress(PassContext& context, const std::string& what,
                                                                         const std::string& step_name);

}  // namespace lathe
