// Evaluation throughput of lathe's executor: mean next-token loss over a uint16 token file in
// non-overlapping windows, timed without model loading. Prints one JSON line, in the same
// shape as bench/torch_reference.py, so bench/eval_throughput.sh can compare them.

#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/model_loader.h"
#include "executor/evaluation.h"
#include "executor/executor.h"
#include "formats/dataset.h"
#include "support/allocator.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: eval_throughput MODEL TOKENS [--threads N] [--max-tokens N] [--window N] [--batch N]\n");
    return 2;
  }
  lathe::keep_freed_memory_for_reuse();
  int threads = 1;
  std::int64_t max_tokens = 0, window = 512, batch = 8;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const auto value = std::atoll(argv[i + 1]);
    if (flag == "--threads") threads = static_cast<int>(value);
    else if (flag == "--max-tokens") max_tokens = value;
    else if (flag == "--window") window = value;
    else if (flag == "--batch") batch = value;
  }
  at::set_num_threads(threads);
  const auto model = lathe::load_model({argv[1]});
  auto tokens = lathe::read_token_file(argv[2], lathe::TokenFileType::U16, model.config.vocab);
  if (max_tokens > 0 && static_cast<std::int64_t>(tokens.size()) > max_tokens + 1) tokens.resize(max_tokens + 1);
  const auto batches = lathe::make_eval_batches({tokens}, /*pack=*/true, {window, batch});
  const lathe::Executor executor(model);

  const auto start = std::chrono::steady_clock::now();
  const auto metrics = lathe::evaluate(executor, batches);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"mean_loss\": %.10f, \"tokens\": %lld, \"seconds\": %.6f, \"tokens_per_second\": %.3f}\n", metrics.mean_loss,
              static_cast<long long>(metrics.tokens), seconds, static_cast<double>(metrics.tokens) / seconds);
  return 0;
}
