#include "passes/needle_setup.h"

#include <algorithm>

#include "core/model.h"
#include "datasets/data_sets.h"
#include "executor/executor.h"
#include "passes/layer_streaming.h"
#include "passes/pass_context.h"
#include "support/errors.h"
#include "support/number_text.h"

namespace lathe {
std::vector<ParamSpec> needle_param_specs() {
  return {
      {"needle", ParamType::String, std::string("random"), "needle kind: random tokens, or a span from a distant part of the corpus", {"random", "corpus"}, {}, {}},
      {"needle_ids", ParamType::IdRange, IdRange{}, "random needles draw ids from this range, e.g. 259-511; default: ids seen in the haystack", {}, 0.0, {}},
      {"needle_length", ParamType::Int, std::int64_t{12}, "needle tokens", {}, 2.0, 256.0},
      {"cue_length", ParamType::Int, std::int64_t{3}, "needle tokens given at the end of the prompt", {}, 1.0, 255.0},
      {"lengths", ParamType::IntList, std::vector<std::int64_t>{}, "prompt lengths; default: 1/4, 1/2 and all of the model's positions", {}, 3.0, {}},
      {"depths", ParamType::FloatList, std::vector<double>{0, 0.25, 0.5, 0.75, 1}, "needle depths in the haystack, 0 (start) to 1 (end)", {}, 0.0, 1.0},
      {"tests_per_cell", ParamType::Int, std::int64_t{4}, "tests per length and depth", {}, 1.0, 10000.0},
      {"seed", ParamType::Int, std::int64_t{0}, "seed for haystack windows and needles", {}, 0.0, {}},
  };
}

NeedleOptions needle_options(const ParamValues& params, const Model& model, const std::string& origin) {
  NeedleOptions options;
  options.kind = params.get_string("needle") == "corpus" ? NeedleKind::CorpusSpan : NeedleKind::RandomTokens;
  options.needle_length = params.get_int("needle_length");
  options.cue_length = params.get_int("cue_length");
  if (options.cue_length >= options.needle_length)
    throw InputError(origin + ": cue_length must be shorter than needle_length");
  options.tests_per_cell = params.get_int("tests_per_cell");
  options.seed = static_cast<std::uint64_t>(params.get_int("seed"));
  if (const auto& ids = params.get_id_range("needle_ids"); !ids.empty()) {
    if (ids.last >= model.config.vocab)
      throw InputError(origin + ": needle_ids " + param_value_to_string(ids) + " must lie inside the vocabulary of " +
                       std::to_string(model.config.vocab));
    options.needle_ids = std::make_pair(static_cast<int>(ids.first), static_cast<int>(ids.last));
  }
  options.depths = params.get_float_list("depths");
  if (options.depths.empty()) throw InputError(origin + ": depths must name at least one depth");
  const auto& lengths = params.get_int_list("lengths");
  options.context_lengths = lengths.empty() ? default_context_lengths(model.config.max_positions, options) : lengths;
  for (const auto length : lengths)
    if (length <= options.needle_length || length > model.config.max_positions)
      throw InputError(origin + ": lengths must lie between " + std::to_string(options.needle_length + 1) +
                       " (longer than the needle) and the model's " + std::to_string(model.config.max_positions) +
                       " positions; got " + std::to_string(length));
  return options;
}

Haystack load_haystack(PassContext& context, const Executor& executor, const std::string& data_name,
                       const NeedleOptions& options) {
  const auto& model = executor.model();
  const auto entry = context.data.calibration_entry(data_name);
  Haystack haystack;
  if (entry.empty()) {
    if (!float_weights_fit(context, model))
      throw InputError(context.where.str() + ": sampling a haystack from the model holds its float32 weights (about " +
                       byte_size(model.float_bytes()) + ") in memory, more than the memory limit of " +
                       byte_size(context.memory_limit) + "; name a data entry for the haystacks");
    const auto longest = *std::max_element(options.context_lengths.begin(), options.context_lengths.end());
    const auto seed = options.seed + 7919;  // not the needles' stream
    haystack.tokens = sample_haystack(executor, std::max<std::int64_t>(4 * longest, 2048), model.config.bos_id, seed);
    haystack.source = "sampled from the model (seed " + std::to_string(seed) + ")";
    return haystack;
  }
  for (const auto& sequence : context.data.sequences(entry, context.where))
    for (auto id : sequence)
      if (id != model.config.bos_id && id != model.config.eos_id) haystack.tokens.push_back(id);
  haystack.source = "data." + entry;
  return haystack;
}

NeedleRunOptions needle_run_options(PassContext& context, const Model& model, const std::string& what) {
  NeedleRunOptions options;
  options.state_budget = activation_budget(context);
  options.release_layers = !float_weights_fit(context, model);
  options.on_layer_pass = step_progress(context, what + (options.release_layers ? " (one layer at a time)" : ""),
                                        "pass over the layers");
  return options;
}

std::vector<NeedleTest> needle_tests(PassContext& context, const Executor& executor, const std::string& data_name,
                                     const NeedleOptions& options, std::string* haystack_source) {
  auto haystack = load_haystack(context, executor, data_name, options);
  if (haystack_source != nullptr) *haystack_source = haystack.source;
  return make_needle_tests(haystack.tokens, executor.model().config.bos_id, executor.model().config.max_positions,
                           options, context.where.str());
}

}  // namespace lathe
