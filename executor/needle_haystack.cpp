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

NeedleResults run_tests(const Executor& executor, const std::vector<NeedleTest>& tests, NeedleDecoding decoding,
                        const ForwardHooks* hooks, bool score_heads, bool use_cache) {
  at::NoGradGuard no_grad;
  const auto& model = executor.model();
  std::int64_t max_heads = 0;
  for (const auto& layer : model.layers) max_heads = std::max(max_heads, layer.query_heads);
  NeedleResults results;
  results.recall.assign(tests.size(), 0.0);
  results.copies = at::zeros({static_cast<std::int64_t>(tests.size()), model.layer_count(), max_heads}, at::kLong);

  // Tests of one prompt length run as batches, small enough that the prompt's attention
  // probabilities (captured whole when scoring heads) stay around 64 MB.
  std::map<std::pair<std::int64_t, std::int64_t>, std::vector<std::size_t>> by_shape;
  for (std::size_t i = 0; i < tests.size(); ++i)
    by_shape[{static_cast<std::int64_t>(tests[i].prompt.size()), static_cast<std::int64_t>(tests[i].needle.size())}].push_back(i);
  std::vector<std::pair<std::pair<std::int64_t, std::int64_t>, std::vector<std::size_t>>> groups;
  for (const auto& [shape, all] : by_shape) {
    const auto per_batch = static_cast<std::size_t>(
        std::max<std::int64_t>(1, (std::int64_t{1} << 24) / std::max<std::int64_t>(1, max_heads * shape.first * shape.first)));
    for (std::size_t first = 0; first < all.size(); first += per_batch)
      groups.push_back({shape, std::vector<std::size_t>(all.begin() + first, all.begin() + std::min(all.size(), first + per_batch))});
  }

  for (const auto& [shape, members] : groups) {
    const auto batch = static_cast<std::int64_t>(members.size());
    const auto length = shape.first;
    const auto cue = tests[members.front()].cue_length;
    const auto continuation = shape.second - cue;
    auto prompt = at::empty({batch, length}, at::kLong);
    auto needle = at::empty({batch, shape.second}, at::kLong);
    auto start = at::empty({batch, 1}, at::kLong);
    for (std::int64_t b = 0; b < batch; ++b) {
      const auto& test = tests[members[b]];
      std::copy(test.prompt.begin(), test.prompt.end(), prompt[b].data_ptr<std::int64_t>());
      std::copy(test.needle.begin(), test.needle.end(), needle[b].data_ptr<std::int64_t>());
      start[b][0] = test.needle_start;
    }

    ForwardHooks step_hooks;
    if (hooks != nullptr) step_hooks.head_gates = hooks->head_gates;
    std::vector<at::Tensor> argmax(model.layers.size());
    if (score_heads)
      step_hooks.on_attention = [&](int layer, const at::Tensor& probabilities) {
        argmax[layer] = probabilities.select(2, probabilities.size(2) - 1).argmax(-1);  // [B, Hq]
      };

    KvCache cache;
    auto sequence = prompt;
    auto input = prompt;
    auto produced = at::empty({batch, continuation}, at::kLong);
    for (std::int64_t step = 0; step < continuation; ++step) {
      auto logits = executor.forward(use_cache ? input : sequence, &step_hooks, use_cache ? &cache : nullptr);
      auto next = logits.select(1, logits.size(1) - 1).argmax(-1);  // [B]
      auto expected = needle.select(1, cue + step);
      produced.select(1, step).copy_(next);
      auto copied = decoding == NeedleDecoding::Greedy ? next : expected;
      if (score_heads) {
        for (int layer = 0; layer < model.layer_count(); ++layer) {
          if (!argmax[layer].defined()) continue;
          const auto& positions = argmax[layer];
          auto in_prompt = positions.lt(length);
          auto token = prompt.gather(1, positions.clamp_max(length - 1));
          auto in_needle = positions.ge(start).logical_and(positions.lt(start + shape.second));
          auto copies = in_prompt.logical_and(in_needle).logical_and(token.eq(copied.unsqueeze(1)));
          const auto heads = copies.size(1);
          for (std::int64_t b = 0; b < batch; ++b)
            results.copies[static_cast<std::int64_t>(members[b])][layer].narrow(0, 0, heads).add_(copies[b]);
          argmax[layer] = at::Tensor();
        }
      }
      auto fed = (decoding == NeedleDecoding::Greedy ? next : expected).unsqueeze(1);
      input = fed;
      sequence = at::cat({sequence, fed}, 1);
    }

    for (std::int64_t b = 0; b < batch; ++b) {
      auto wanted = needle[b].narrow(0, cue, continuation);
      double hits = 0;
      if (decoding == NeedleDecoding::TeacherForced) {
        hits = produced[b].eq(wanted).sum().item<double>();
      } else {  // ROUGE-1 recall: each needle token matched at most as often as it was produced
        std::map<std::int64_t, int> available;
        for (std::int64_t t = 0; t < continuation; ++t) ++available[produced[b][t].item<std::int64_t>()];
        for (std::int64_t t = 0; t < continuation; ++t) {
          auto& count = available[wanted[t].item<std::int64_t>()];
          if (count > 0) {
            --count;
            ++hits;
          }
        }
      }
      results.recall[members[b]] = continuation > 0 ? hits / static_cast<double>(continuation) : 0.0;
    }
  }
  return results;
}

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
                               const ForwardHooks* hooks, bool score_heads) {
  return run_tests(executor, tests, decoding, hooks, score_heads, /*use_cache=*/true);
}

NeedleResults run_needle_tests_without_cache(const Executor& executor, const std::vector<NeedleTest>& tests,
                                             NeedleDecoding decoding, const ForwardHooks* hooks, bool score_heads) {
  return run_tests(executor, tests, decoding, hooks, score_heads, /*use_cache=*/false);
}

}  // namespace lathe
