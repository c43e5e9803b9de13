#pragma once

// Needle-in-a-haystack tests: a needle (a token span unrelated to its surroundings) is placed at
// a depth of a haystack, the prompt ends with the needle's first tokens (the cue), and the model
// must continue with the rest of the needle. Used to find retrieval heads (Wu et al., 2024) and
// to measure retrieval before and after compression.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace lathe {

class Executor;
struct ForwardHooks;

enum class NeedleKind { RandomTokens, CorpusSpan };

struct NeedleOptions {
  NeedleKind kind = NeedleKind::RandomTokens;
  std::int64_t needle_length = 12;
  std::int64_t cue_length = 3;
  std::vector<std::int64_t> context_lengths;  // prompt lengths (BOS + haystack + needle + cue)
  std::vector<double> depths = {0.0, 0.25, 0.5, 0.75, 1.0};
  std::int64_t tests_per_cell = 4;
  // Random-token needles draw ids from [first, last]; empty: the ids that occur in the haystack.
  std::optional<std::pair<std::int32_t, std::int32_t>> needle_ids;
  bool insert_needle = true;  // false: a control with the needle left out of the haystack
  std::uint64_t seed = 0;
};

struct NeedleTest {
  std::vector<std::int64_t> prompt;  // ends with the cue
  std::int64_t needle_start = 0;     // where the needle (or, in a control, its slot) begins in the prompt
  std::vector<std::int64_t> needle;
  std::int64_t cue_length = 0;
  std::int64_t context_length = 0;
  double depth = 0;
  std::int64_t continuation() const { return static_cast<std::int64_t>(needle.size()) - cue_length; }
};

// Default context lengths for a model: a quarter, half and all of what fits with the needle.
std::vector<std::int64_t> default_context_lengths(std::int64_t max_positions, const NeedleOptions& options);

// Builds the grid of tests from a haystack token stream (special tokens already removed).
// InputError when the stream is too short for the longest context.
std::vector<NeedleTest> make_needle_tests(const std::vector<std::int32_t>& haystack, std::int64_t bos_id,
                                          std::int64_t max_positions, const NeedleOptions& options,
                                          const std::string& origin);

// A haystack the model writes itself: sampled at temperature 1 from BOS, seeded.
std::vector<std::int32_t> sample_haystack(const Executor& executor, std::int64_t tokens, std::int64_t bos_id,
                                          std::uint64_t seed);

enum class NeedleDecoding { Greedy, TeacherForced };

struct NeedleResults {
  std::vector<double> recall;  // per test: needle tokens reproduced / continuation length
  // Per test, layer and query head: needle tokens the head copied (the copy-paste rule).
  at::Tensor copies;           // [tests, layers, max query heads], int64
};

struct NeedleRunOptions {
  // Bytes the KV caches and prompt hidden states of the tests run together may take; tests
  // beyond it run in later waves. 0: all at once.
  std::int64_t state_budget = 0;
  // Drop each layer's converted float32 weights after every pass over it, for a model whose
  // float32 copy does not fit in memory (each decoding step then converts them again).
  bool release_layers = false;
  // After each pass over the layers: (passes done, passes in all).
  std::function<void(std::int64_t done, std::int64_t passes)> on_layer_pass;
};

// Runs the tests with a KV cache, batching tests of equal length, one decoder layer at a time
// over all batches of a wave. Greedy: the model's own continuation, recall = ROUGE-1 recall of
// it against the needle. Teacher-forced: the needle is fed, recall = share of positions whose
// argmax is the needle token. `hooks` may carry head gates (for removals). Copies are counted
// when `score_heads` is set.
NeedleResults run_needle_tests(const Executor& executor, const std::vector<NeedleTest>& tests,
                               NeedleDecoding decoding, const ForwardHooks* hooks, bool score_heads,
                               const NeedleRunOptions& options = {});

// Runs each test with full forwards instead of the KV cache (for benchmarks and tests).
NeedleResults run_needle_tests_without_cache(const Executor& executor, const std::vector<NeedleTest>& tests,
                                             NeedleDecoding decoding, const ForwardHooks* hooks, bool score_heads);

}  // namespace lathe
