#pragma once

#include <string>

#include "executor/head_importance.h"
#include "passes/pass.h"

namespace lathe {

class Model;
class PassContext;

// `head-importance`: scores every head (gradient, ablation or entropy) over calibration data;
// scores go to the IR, the report, a CSV table and an SVG heatmap.
PassInfo head_importance_pass_info();

struct ImportanceRequest {
  ImportanceMethod method = ImportanceMethod::Gradient;
  std::string data;  // "" : calibration, then eval
  std::int64_t max_tokens = 8192;
  std::uint64_t seed = 0;
};

// The request a pass's parameters describe: the method named by parameter `method_param`, and
// `data`, `max_tokens` and `seed`.
ImportanceRequest importance_request(const ParamValues& params, const std::string& method_param);

// The scores for `request`, computed once per model state and then taken from the analysis cache.
const HeadScores& cached_head_importance(const Model& model, PassContext& context, const ImportanceRequest& request);

}  // namespace lathe
