// Time of the retrieval-head analysis: test generation vs decoding, and decoding with the KV
// cache vs full re-runs of the growing sequence, on tinystories-retrieval and on a mid-size
// Llama with random weights (hidden 512, 8 layers, 8 heads, 512 positions).
// Usage: retrieval_timing SHARED_DIR [--threads N]

#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/model_loader.h"
#include "executor/executor.h"
#include "executor/needle_haystack.h"
#include "formats/dataset.h"
#include "random_llama.h"
#include "support/allocator.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void measure(const char* name, const lathe::Model& model, const std::vector<std::int32_t>& haystack,
             const lathe::NeedleOptions& options) {
  lathe::Executor executor(model);
  auto start = Clock::now();
  const auto tests = lathe::make_needle_tests(haystack, model.config.bos_id, model.config.max_positions, options, name);
  const double generate = seconds_since(start);
  start = Clock::now();
  lathe::run_needle_tests(executor, tests, lathe::NeedleDecoding::TeacherForced, nullptr, true);
  const double cached = seconds_since(start);
  start = Clock::now();
  lathe::run_needle_tests_without_cache(executor, tests, lathe::NeedleDecoding::TeacherForced, nullptr, true);
  const double rerun = seconds_since(start);
  std::printf("%-22s %4zu tests  analysis %7.3f s (decoding %6.2f %%)  full re-runs %7.3f s  KV cache speed-up %.2fx\n",
              name, tests.size(), generate + cached, 100.0 * cached / (generate + cached), rerun, rerun / cached);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: retrieval_timing SHARED_DIR [--threads N]\n");
    return 2;
  }
  lathe::keep_freed_memory_for_reuse();
  const std::string shared = argv[1];
  const int threads = argc >= 4 ? std::atoi(argv[3]) : 1;
  at::set_num_threads(threads);
  std::printf("retrieval-heads analysis, teacher-forced, %d thread(s)\n", threads);

  auto tokens = lathe::read_token_file(shared + "/data/tinystories-valid/tinystories_valid_head.tok512.u16.bin",
                                       lathe::TokenFileType::U16, 512);
  std::vector<std::int32_t> haystack;
  for (auto id : tokens)
    if (id != 1) haystack.push_back(id);

  lathe::NeedleOptions options;  // the defaults of the retrieval-heads pass
  options.needle_ids = std::make_pair(259, 511);
  const auto fixture = lathe::load_model({shared + "/models/tinystories-retrieval"});
  options.context_lengths = lathe::default_context_lengths(fixture.config.max_positions, options);
  measure("tinystories-retrieval", fixture, haystack, options);

  const auto mid = lathe::random_llama({}, 0);
  options.context_lengths = lathe::default_context_lengths(mid.config.max_positions, options);
  options.tests_per_cell = 2;
  measure("random llama 512x8", mid, haystack, options);
  return 0;
}
