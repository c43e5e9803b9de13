#include "executor/needle_haystack.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "executor/executor.h"
#include "support/errors.h"

namespace lathe {
namespace {

std::vector<std::int32_t> candidate_needle_ids(const std::vector<std::int32_t>& haystack, const NeedleOptions& options) {
  std::vector<std::int32_t> ids;
  if (options.needle_ids) {
    for (auto id = options.needle_ids->first; id <= options.needle_ids->second; ++id) ids.push_back(id);
  } else {
    std::set<std::int32_t> seen(haystack.begin(), haystack.end());
    ids.assign(seen.begin(), seen.end());
  }
  return ids;
}

// Tests of one prompt and needle length, run together.
struct TestBatch {
  std::vector<std::size_t> members;
  at::Tensor prompt;  // [B, L]
  at::Tensor needle;  // [B, N]
  at::Tensor start;   // [B, 1]
  std::int64_t cue = 0;
  std::int64_t continuation() const { return needle.size(1) - cue; }
};

std::vector<TestBatch> make_batches(const std::vector<NeedleTest>& tests, std::int64_t max_tokens) {
  std::map<std::pair<std::int64_t, std::int64_t>, std::vector<std::size_t>> by_shape;
  for (std::size_t i = 0; i < tests.size(); ++i)
    by_shape[{static_cast<std::int64_t>(tests[i].prompt.size()), static_cast<std::int64_t>(tests[i].needle.size())}].push_back(i);
  std::vector<TestBatch> batches;
  for (const auto& [shape, all] : by_shape) {
    const auto per_batch = static_cast<std::size_t>(std::max<std::int64_t>(1, max_tokens / shape.first));
    for (std::size_t first = 0; first < all.size(); first += per_batch) {
      TestBatch batch;
      batch.members.assign(all.begin() + first, all.begin() + std::min(all.size(), first + per_batch));
      const auto size = static_cast<std::int64_t>(batch.members.size());
      batch.prompt = at::empty({size, shape.first}, at::kLong);
      batch.needle = at::empty({size, shape.second}, at::kLong);
      batch.start = at::empty({size, 1}, at::kLong);
      for (std::int64_t b = 0; b < size; ++b) {
        const auto& test = tests[batch.members[b]];
        std::copy(test.prompt.begin(), test.prompt.end(), batch.prompt[b].data_ptr<std::int64_t>());
        std::copy(test.needle.begin(), test.needle.end(), batch.needle[b].data_ptr<std::int64_t>());
        batch.start[b][0] = test.needle_start;
      }
      batch.cue = tests[batch.members.front()].cue_length;
      batches.push_back(std::move(batch));
    }
  }
  return batches;
}

// Bytes a batch holds while it runs: its KV cache (float32 keys and values of every position in
// every layer) and the hidden states of its prompt.
std::int64_t state_bytes(const Model& model, const TestBatch& batch) {
  std::int64_t kv_width = 0;
  for (const auto& layer : model.layers) kv_width += 2 * layer.kv_heads * model.config.head_dim;
  const auto positions = batch.prompt.size(1) + batch.continuation();
  return 4 * batch.prompt.size(0) * (positions * kv_width + batch.prompt.size(1) * model.config.hidden);
}

// The copy-paste rule for one decoding step: a head copies when its strongest attention (of the
// last query position) is on a needle position of the prompt holding the token produced.
void count_copies(const TestBatch& batch, const std::vector<at::Tensor>& argmax, const at::Tensor& copied,
                  at::Tensor& copies) {
  const auto length = batch.prompt.size(1);
  for (std::size_t layer = 0; layer < argmax.size(); ++layer) {
    if (!argmax[layer].defined()) continue;
    const auto& positions = argmax[layer];  // [B, Hq]
    auto in_prompt = positions.lt(length);
    auto token = batch.prompt.gather(1, positions.clamp_max(length - 1));
    auto in_needle = positions.ge(batch.start).logical_and(positions.lt(batch.start + batch.needle.size(1)));
    auto copy = in_prompt.logical_and(in_needle).logical_and(token.eq(copied.unsqueeze(1)));
    const auto heads = copy.size(1);
    for (std::int64_t b = 0; b < copy.size(0); ++b)
      copies[static_cast<std::int64_t>(batch.members[b])][static_cast<std::int64_t>(layer)].narrow(0, 0, heads).add_(copy[b]);
  }
}

double needle_recall(const at::Tensor& produced, const at::Tensor& wanted, NeedleDecoding decoding) {
  const auto continuation = wanted.size(0);
  if (continuation == 0) return 0.0;
  double hits = 0;
  if (decoding == NeedleDecoding::TeacherForced) {
    hits = produced.eq(wanted).sum().item<double>();
  } else {  // ROUGE-1 recall: each needle token matched at most as often as it was produced
    std::map<std::int64_t, int> available;
    for (std::int64_t t = 0; t < continuation; ++t) ++available[produced[t].item<std::int64_t>()];
    for (std::int64_t t = 0; t < continuation; ++t) {
      auto& count = available[wanted[t].item<std::int64_t>()];
      if (count > 0) {
        --count;
        ++hits;
      }
    }
  }
  return hits / static_cast<double>(continuation);
}

// Runs a wave of batches one layer at a time: the prompts but their last token fill the KV
// caches, then each decoding step runs every batch through layer 0, layer 1, ... With
// `release_layers` a layer's converted weights are dropped after each pass over it, so the
// weights never exist in float32 all at once (and each step converts them again).
void run_wave(const Executor& executor, const std::vector<TestBatch>& wave, NeedleDecoding decoding,
              const ForwardHooks* hooks, bool score_heads, const NeedleRunOptions& options, NeedleResults& results,
              std::int64_t& layer_passes_done, std::int64_t layer_passes) {
  const auto& model = executor.model();
  const int layers = model.layer_count();
  const auto pass_done = [&] {
    ++layer_passes_done;
    if (options.on_layer_pass) options.on_layer_pass(layer_passes_done, layer_passes);
  };
  ForwardHooks gates;
  if (hooks != nullptr) gates.head_gates = hooks->head_gates;
  std::vector<KvCache> caches(wave.size());
  for (auto& cache : caches) {
    cache.keys.resize(model.layers.size());
    cache.values.resize(model.layers.size());
  }

  // Prompt lengths differ between the batches of a wave, so positions are per batch.
  const auto prompt_length = [&](std::size_t b) { return wave[b].prompt.size(1) - 1; };
  {
    std::vector<at::Tensor> hidden(wave.size());
    for (std::size_t b = 0; b < wave.size(); ++b)
      hidden[b] = prompt_length(b) > 0 ? executor.embed(wave[b].prompt.narrow(1, 0, prompt_length(b))) : at::Tensor();
    for (int layer = 0; layer < layers; ++layer) {
      for (std::size_t b = 0; b < wave.size(); ++b)
        if (hidden[b].defined()) hidden[b] = executor.decoder_layer(layer, hidden[b], 0, &gates, &caches[b]);
      if (options.release_layers) executor.release_layer(layer);
    }
    pass_done();
  }

  // Greedy decoding feeds the model's own tokens: one step per needle token. Teacher forcing
  // feeds the needle, known in advance: one step over all of the continuation.
  std::int64_t steps = 0;
  for (const auto& batch : wave) steps = std::max(steps, batch.continuation());
  const auto step_count = decoding == NeedleDecoding::Greedy ? steps : std::min<std::int64_t>(steps, 1);
  std::vector<at::Tensor> input(wave.size()), produced(wave.size());
  std::vector<std::vector<at::Tensor>> argmax(wave.size(), std::vector<at::Tensor>(model.layers.size()));
  for (std::size_t b = 0; b < wave.size(); ++b) {
    const auto& batch = wave[b];
    input[b] = batch.prompt.narrow(1, prompt_length(b), 1);
    if (decoding == NeedleDecoding::TeacherForced)
      input[b] = at::cat({input[b], batch.needle.narrow(1, batch.cue, batch.continuation() - 1)}, 1);
    produced[b] = at::empty({batch.prompt.size(0), batch.continuation()}, at::kLong);
  }
  for (std::int64_t step = 0; step < step_count; ++step) {
    std::vector<at::Tensor> hidden(wave.size());
    std::vector<ForwardHooks> batch_hooks(wave.size(), gates);
    for (std::size_t b = 0; b < wave.size(); ++b) {
      if (step >= wave[b].continuation()) continue;
      caches[b].length = prompt_length(b) + step;  // positions already cached
      hidden[b] = executor.embed(input[b], caches[b].length);
      if (score_heads)
        batch_hooks[b].on_attention = [&argmax, b](int layer, const at::Tensor& probabilities) {
          argmax[b][layer] = probabilities.argmax(-1);  // [B, Hq, T]
        };
    }
    for (int layer = 0; layer < layers; ++layer) {
      for (std::size_t b = 0; b < wave.size(); ++b)
        if (hidden[b].defined())
          hidden[b] = executor.decoder_layer(layer, hidden[b], caches[b].length, &batch_hooks[b], &caches[b]);
      if (options.release_layers) executor.release_layer(layer);
    }
    for (std::size_t b = 0; b < wave.size(); ++b) {
      if (!hidden[b].defined()) continue;
      const auto& batch = wave[b];
      auto next = executor.output_head(hidden[b], nullptr).argmax(-1);  // [B, T]
      const auto first = decoding == NeedleDecoding::Greedy ? step : 0;
      produced[b].narrow(1, first, next.size(1)).copy_(next);
      for (std::int64_t t = 0; t < next.size(1); ++t) {
        const auto copied = decoding == NeedleDecoding::Greedy ? next.select(1, t) : batch.needle.select(1, batch.cue + t);
        if (score_heads) {
          std::vector<at::Tensor> row(model.layers.size());
          for (std::size_t layer = 0; layer < row.size(); ++layer)
            if (argmax[b][layer].defined()) row[layer] = argmax[b][layer].select(2, t);
          count_copies(batch, row, copied, results.copies);
        }
      }
      if (decoding == NeedleDecoding::Greedy) input[b] = next;
      for (auto& layer : argmax[b]) layer = at::Tensor();
    }
    if (options.release_layers) executor.release_layer(-1);
    pass_done();
  }

  for (std::size_t b = 0; b < wave.size(); ++b)
    for (std::int64_t i = 0; i < wave[b].prompt.size(0); ++i)
      results.recall[wave[b].members[i]] =
          needle_recall(produced[b][i], wave[b].needle[i].narrow(0, wave[b].cue, wave[b].continuation()), decoding);
}

// The same tests with a full forward of the growing sequence per step and no cache.
void run_without_cache(const Executor& executor, const std::vector<TestBatch>& batches, NeedleDecoding decoding,
                       const ForwardHooks* hooks, bool score_heads, NeedleResults& results) {
  const auto& model = executor.model();
  for (const auto& batch : batches) {
    ForwardHooks step_hooks;
    if (hooks != nullptr) step_hooks.head_gates = hooks->head_gates;
    std::vector<at::Tensor> argmax(model.layers.size());
    if (score_heads)
      step_hooks.on_attention = [&](int layer, const at::Tensor& probabilities) {
        argmax[layer] = probabilities.select(2, probabilities.size(2) - 1).argmax(-1);  // [B, Hq]
      };
    auto sequence = batch.prompt;
    auto produced = at::empty({batch.prompt.size(0), batch.continuation()}, at::kLong);
    for (std::int64_t step = 0; step < batch.continuation(); ++step) {
      auto logits = executor.forward(sequence, &step_hooks);
      auto next = logits.select(1, logits.size(1) - 1).argmax(-1);  // [B]
      auto expected = batch.needle.select(1, batch.cue + step);
      produced.select(1, step).copy_(next);
      auto copied = decoding == NeedleDecoding::Greedy ? next : expected;
      if (score_heads) count_copies(batch, argmax, copied, results.copies);
      for (auto& layer : argmax) layer = at::Tensor();
      sequence = at::cat({sequence, copied.unsqueeze(1)}, 1);
    }
    for (std::int64_t i = 0; i < batch.prompt.size(0); ++i)
      results.recall[batch.members[i]] =
          needle_recall(produced[i], batch.needle[i].narrow(0, batch.cue, batch.continuation()), decoding);
  }
}

NeedleResults empty_results(const Model& model, std::size_t tests) {
  std::int64_t max_heads = 0;
  for (const auto& layer : model.layers) max_heads = std::max(max_heads, layer.query_heads);
  NeedleResults results;
  results.recall.assign(tests, 0.0);
  results.copies = at::zeros({static_cast<std::int64_t>(tests), model.layer_count(), max_heads}, at::kLong);
  return results;
}

// Prompt tokens a batch runs at once: enough for matrix products at full speed, few enough that
// the MLP's intermediate activations of long prompts stay small.
constexpr std::int64_t kTokensPerBatch = 4096;

}  // namespace

std::vector<std::int64_t> default_context_lengths(std::int64_t max_positions, const NeedleOptions& options) {
  const auto longest = max_positions - (options.needle_length - options.cue_length) + 1;
  return {longest / 4, longest / 2, longest};
}

std::vector<NeedleTest> make_needle_tests(const std::vector<std::int32_t>& haystack, std::int64_t bos_id,
                                          std::int64_t max_positions, const NeedleOptions& options,
                                          const std::string& origin) {
  if (options.needle_length < 2 || options.cue_length < 1 || options.cue_length >= options.needle_length)
    throw InputError(origin + ": needles need at least 2 tokens and a cue shorter than the needle");
  const auto ids = candidate_needle_ids(haystack, options);
  if (options.kind == NeedleKind::RandomTokens && ids.empty()) throw InputError(origin + ": no token ids to draw needles from");
  const std::int64_t prefix = bos_id >= 0 ? 1 : 0;
  const auto stream_size = static_cast<std::int64_t>(haystack.size());
  std::mt19937_64 random(options.seed);
  std::vector<NeedleTest> tests;
  for (const auto length : options.context_lengths) {
    const auto haystack_length = length - prefix - options.needle_length - options.cue_length;
    if (haystack_length < 1 || length + options.needle_length - options.cue_length - 1 > max_positions)
      throw InputError(origin + ": context length " + std::to_string(length) + " does not fit a needle of " +
                       std::to_string(options.needle_length) + " tokens in the model's " + std::to_string(max_positions) +
                       " positions");
    const auto window = haystack_length + (options.insert_needle ? 0 : options.needle_length);
    if (stream_size < window + options.needle_length)
      throw InputError(origin + ": the haystack data has " + std::to_string(stream_size) + " tokens; context length " +
                       std::to_string(length) + " needs " + std::to_string(window + options.needle_length));
    for (const auto depth : options.depths) {
      for (std::int64_t repeat = 0; repeat < options.tests_per_cell; ++repeat) {
        NeedleTest test;
        test.context_length = length;
        test.depth = depth;
        test.cue_length = options.cue_length;
        const auto offset = static_cast<std::int64_t>(random() % static_cast<std::uint64_t>(stream_size - window + 1));
        if (options.kind == NeedleKind::RandomTokens) {
          for (std::int64_t i = 0; i < options.needle_length; ++i) test.needle.push_back(ids[random() % ids.size()]);
        } else {  // a span from the far side of the corpus
          auto far = (offset + window + stream_size / 2) % (stream_size - options.needle_length + 1);
          test.needle.assign(haystack.begin() + far, haystack.begin() + far + options.needle_length);
        }
        const auto insert_at = static_cast<std::int64_t>(std::llround(depth * static_cast<double>(haystack_length)));
        if (bos_id >= 0) test.prompt.push_back(bos_id);
        test.prompt.insert(test.prompt.end(), haystack.begin() + offset, haystack.begin() + offset + insert_at);
        test.needle_start = static_cast<std::int64_t>(test.prompt.size());
        if (options.insert_needle) test.prompt.insert(test.prompt.end(), test.needle.begin(), test.needle.end());
        test.prompt.insert(test.prompt.end(), haystack.begin() + offset + insert_at, haystack.begin() + offset + window);
        test.prompt.insert(test.prompt.end(), test.needle.begin(), test.needle.begin() + options.cue_length);
        tests.push_back(std::move(test));
      }
    }
  }
  return tests;
}

std::vector<std::int32_t> sample_haystack(const Executor& executor, std::int64_t tokens, std::int64_t bos_id,
                                          std::uint64_t seed) {
  at::NoGradGuard no_grad;
  const auto& config = executor.model().config;
  auto generator = at::detail::createCPUGenerator(seed);
  std::vector<std::int32_t> stream;
  constexpr std::int64_t kBatch = 8;
  const auto length = config.max_positions - 1;
  while (static_cast<std::int64_t>(stream.size()) < tokens) {
    KvCache cache;
    auto input = at::full({kBatch, 1}, bos_id >= 0 ? bos_id : 0, at::kLong);
    std::vector<at::Tensor> columns;
    for (std::int64_t step = 0; step < length; ++step) {
      auto logits = executor.forward(input, nullptr, &cache).select(1, 0);
      input = at::multinomial(at::softmax(logits, -1), 1, false, generator);
      columns.push_back(input);
    }
    auto sampled = at::cat(columns, 1);
    for (std::int64_t b = 0; b < kBatch; ++b)
      for (std::int64_t t = 0; t < length; ++t) {
        const auto id = static_cast<std::int32_t>(sampled[b][t].item<std::int64_t>());
        if (id != bos_id && id != config.eos_id) stream.push_back(id);
      }
  }
  stream.resize(tokens);
  return stream;
}

NeedleResults run_needle_tests(const Executor& executor, const std::vector<NeedleTest>& tests, NeedleDecoding decoding,
                               const ForwardHooks* hooks, bool score_heads, const NeedleRunOptions& options) {
  at::NoGradGuard no_grad;
  const auto& model = executor.model();
  auto results = empty_results(model, tests.size());
  const auto batches = make_batches(tests, kTokensPerBatch);
  // Waves: consecutive batches whose caches fit the budget together (at least one batch each).
  std::vector<std::vector<TestBatch>> waves;
  std::int64_t wave_bytes = 0;
  for (const auto& batch : batches) {
    const auto bytes = state_bytes(model, batch);
    if (waves.empty() || (options.state_budget > 0 && wave_bytes + bytes > options.state_budget)) {
      waves.emplace_back();
      wave_bytes = 0;
    }
    waves.back().push_back(batch);
    wave_bytes += bytes;
  }
  std::int64_t layer_passes = 0, done = 0;
  for (const auto& wave : waves) {
    std::int64_t steps = 0;
    for (const auto& batch : wave) steps = std::max(steps, batch.continuation());
    layer_passes += 1 + (decoding == NeedleDecoding::Greedy ? steps : std::min<std::int64_t>(steps, 1));
  }
  for (const auto& wave : waves) run_wave(executor, wave, decoding, hooks, score_heads, options, results, done, layer_passes);
  return results;
}

NeedleResults run_needle_tests_without_cache(const Executor& executor, const std::vector<NeedleTest>& tests,
                                             NeedleDecoding decoding, const ForwardHooks* hooks, bool score_heads) {
  at::NoGradGuard no_grad;
  auto results = empty_results(executor.model(), tests.size());
  run_without_cache(executor, make_batches(tests, kTokensPerBatch), decoding, hooks, score_heads, results);
  return results;
}

}  // namespace lathe
