#pragma once

// What the passes that run needle-in-a-haystack tests share: their parameters and where their
// haystacks come from.

#include <string>
#include <vector>

#include "executor/needle_haystack.h"
#include "passes/pass.h"

namespace lathe {

class Executor;
class Model;
class PassContext;

// needle, needle_ids, needle_length, cue_length, lengths, depths, tests_per_cell, seed.
std::vector<ParamSpec> needle_param_specs();

// The options those parameters describe, checked against the model; InputError naming `origin`.
NeedleOptions needle_options(const ParamValues& params, const Model& model, const std::string& origin);

// The haystack token stream: the named data entry ("" picks calibration, then eval) without
// BOS/EOS, or, when the recipe has no data, text the model samples itself (InputError when the
// model's float32 weights do not fit in the memory limit: sampling runs every layer per token).
struct Haystack {
  std::vector<std::int32_t> tokens;
  std::string source;
};
Haystack load_haystack(PassContext& context, const Executor& executor, const std::string& data_name,
                       const NeedleOptions& options);

// How a pass runs the tests under the run's memory limit: the tests' KV caches in waves of a
// quarter of it; the model's converted float32 weights kept from step to step only if they fit
// beside them; a progress line per pass over the layers.
NeedleRunOptions needle_run_options(PassContext& context, const Model& model, const std::string& what);

// Tests of the grid from `options` over the haystack.
std::vector<NeedleTest> needle_tests(PassContext& context, const Executor& executor, const std::string& data_name,
                                     const NeedleOptions& options, std::string* haystack_source = nullptr);

}  // namespace lathe
