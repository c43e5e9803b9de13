#pragma once

// Activation ranges for static quantization, observed over calibration batches at chosen sites:
// min-max, moving-average min-max (Bondarenko et al.'s running min-max over batches),
// percentile, or the clipping range with the least quantization error (MSE).

#include <map>
#include <set>
#include <string>
#include <vector>

#include "executor/evaluation.h"

namespace lathe {

class Executor;

enum class RangeMethod { MinMax, MovingAverage, Percentile, Mse };
RangeMethod parse_range_method(const std::string& name);

struct RangeOptions {
  RangeMethod method = RangeMethod::MinMax;
  double percentile = 99.99;  // for Percentile
  double momentum = 0.9;      // for MovingAverage
  bool symmetric = false;     // MSE searches symmetric or asymmetric ranges
};

struct ActivationRange {
  double low = 0;
  double high = 0;
};

// Ranges for each site key in `sites` ("layers.{i}.{site}", see executor.h site_key), the
// model run one layer at a time over the batches (streamed_forward). Percentile and MSE keep a
// random sample of each batch's values, drawn from a generator seeded by the site and batch, so
// the ranges do not depend on the order the observations come in.
std::map<std::string, ActivationRange> calibrate_ranges(const Executor& executor, const std::vector<EvalBatch>& batches,
                                                        const std::set<std::string>& sites, const RangeOptions& options,
                                                        const StreamingOptions& streaming = {});

}  // namespace lathe
