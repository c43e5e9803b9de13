#include "passes/layer_streaming.h"

#include <chrono>
#include <cstdio>

#include "core/model.h"
#include "passes/pass_context.h"
#include "support/progress.h"

namespace lathe {
namespace {

std::string duration_text(double seconds) {
  const auto whole = static_cast<long>(seconds + 0.5);
  char text[32];
  if (whole >= 3600)
    std::snprintf(text, sizeof text, "%ldh%02ldm", whole / 3600, whole / 60 % 60);
  else if (whole >= 60)
    std::snprintf(text, sizeof text, "%ldm%02lds", whole / 60, whole % 60);
  else
    std::snprintf(text, sizeof text, "%lds", whole);
  return text;
}

}  // namespace

StreamingOptions layer_streaming(PassContext& context, const std::string& what, const std::vector<EvalBatch>& batches) {
  std::int64_t tokens = 0;
  for (const auto& batch : batches) tokens += batch.inputs.numel();
  StreamingOptions options;
  options.hidden_state_budget = activation_budget(context);
  const auto start = std::chrono::steady_clock::now();
  options.on_stage = [&progress = context.progress, what, tokens, start](int done, int stages) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double fraction = static_cast<double>(done) / stages;
    std::string line = what + ": layer " + std::to_string(std::max(0, std::min(done - 1, stages - 2))) + "/" +
                       std::to_string(stages - 2);
    if (seconds > 0 && done > 0) {
      char rate[64];
      std::snprintf(rate, sizeof rate, ", %.0f tokens/s", static_cast<double>(tokens) * fraction / seconds);
      line += rate;
      if (done < stages) line += ", " + duration_text(seconds * (1.0 - fraction) / fraction) + " left";
    }
    progress.heartbeat(line);
  };
  return options;
}

std::int64_t activation_budget(const PassContext& context) { return context.memory_limit / 4; }

bool float_weights_fit(const PassContext& context, const Model& model) {
  return context.memory_limit <= 0 || model.float_bytes() <= context.memory_limit - activation_budget(context);
}

std::function<void(std::int64_t, std::int64_t)> step_progress(PassContext& context, const std::string& what,
                                                              const std::string& step_name) {
  const auto start = std::chrono::steady_clock::now();
  return [&progress = context.progress, what, step_name, start](std::int64_t done, std::int64_t steps) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string line = what + ": " + step_name + " " + std::to_string(done) + "/" + std::to_string(steps);
    if (seconds > 0 && done > 0 && done < steps)
      line += ", " + duration_text(seconds * static_cast<double>(steps - done) / static_cast<double>(done)) + " left";
    progress.heartbeat(line);
  };
}

}  // namespace lathe
