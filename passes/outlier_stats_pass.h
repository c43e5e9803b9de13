#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "executor/outlier_stats.h"
#include "passes/pass.h"

namespace lathe {

class Model;
class PassContext;

// `outlier-stats`: outlier metrics of Bondarenko et al. (2023) on every layer's attention
// output and FFN output over calibration data (max infinity norm and kurtosis, averaged over
// samples) and the channels with values beyond 6 standard deviations; to the report, a CSV
// table and an SVG bar chart. Changes nothing.
PassInfo outlier_stats_pass_info();

// Statistics at the attention input and output and the MLP input and output of every layer over
// `max_tokens` of the data entry, computed once per model state and then taken from the
// analysis cache (shared by outlier-stats and smooth).
const std::vector<LayerActivationStatistics>& cached_activation_statistics(const Model& model, PassContext& context,
                                                                           const std::string& data,
                                                                           std::int64_t max_tokens);

}  // namespace lathe
