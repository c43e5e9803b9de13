// Time of one vib-prune training step (masks sampled into the executor's hooks, task loss,
// KL, expected size, backward into the masks, AdamW) against a plain forward + backward of the
// same batch (next-token loss, gradients into every weight), both in this process, in
// alternating rounds so that both meet the same machine load.
//
// Usage: vib_step_bench CHECKPOINT_DIR TOKENS.u16.bin [--seq N] [--batch N] [--steps N] [--rounds N]
//                       [--threads N]

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "core/model_loader.h"
#include "executor/executor.h"
#include "executor/evaluation.h"
#include "executor/vib_training.h"
#include "formats/dataset.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: vib_step_bench CHECKPOINT_DIR TOKENS.u16.bin [--seq N] [--batch N] [--steps N] "
                         "[--rounds N] [--threads N]\n");
    return 2;
  }
  std::int64_t seq = 256, batch = 4, steps = 5, rounds = 3, threads = 1;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const auto value = std::stoll(argv[i + 1]);
    if (flag == "--seq") seq = value;
    else if (flag == "--batch") batch = value;
    else if (flag == "--steps") steps = value;
    else if (flag == "--rounds") rounds = value;
    else if (flag == "--threads") threads = value;
  }
  try {
    at::set_num_threads(static_cast<int>(threads));
    auto model = lathe::load_model({argv[1]});
    const auto tokens = lathe::read_token_file(argv[2], lathe::TokenFileType::U16, model.config.vocab);
    lathe::BatchingOptions batching;
    batching.window = seq;
    batching.batch_size = batch;
    batching.max_tokens = seq * batch;
    const auto batches = lathe::make_eval_batches({tokens}, /*pack=*/true, batching);
    const auto& one = batches.front();

    lathe::VibTrainingOptions options;
    options.steps = steps;
    options.warmup = steps;
    auto masks = lathe::make_vib_masks(model, {}, 0);

    std::vector<at::Tensor> weights;
    lathe::Model trained = model.clone();
    for (auto& [name, tensor] : trained.tensors) {
      tensor = trained.tensor(name).detach().clone().requires_grad_(true);
      weights.push_back(tensor);
    }
    const lathe::Executor plain(trained);

    double best_vib = 1e30, best_plain = 1e30;
    for (std::int64_t round = 0; round < rounds; ++round) {
      auto start = Clock::now();
      lathe::train_vib_masks(model, masks, {one}, options);
      const double vib = seconds_since(start) / static_cast<double>(steps);
      start = Clock::now();
      for (std::int64_t step = 0; step < steps; ++step) {
        lathe::next_token_loss(plain.forward(one.inputs), one).backward();
        for (auto& weight : weights) weight.mutable_grad().reset();
      }
      const double forward_backward = seconds_since(start) / static_cast<double>(steps);
      std::printf("round %lld: vib-prune step %.1f ms, forward + backward %.1f ms, ratio %.2f\n",
                  static_cast<long long>(round + 1), 1e3 * vib, 1e3 * forward_backward, vib / forward_backward);
      best_vib = std::min(best_vib, vib);
      best_plain = std::min(best_plain, forward_backward);
    }
    std::printf("batch %lld x %lld tokens, %lld thread(s), best of %lld rounds of %lld steps: vib-prune step %.1f ms, "
                "forward + backward %.1f ms, ratio %.2f (goal <= 1.3: %s)\n",
                static_cast<long long>(batch), static_cast<long long>(seq), static_cast<long long>(threads),
                static_cast<long long>(rounds), static_cast<long long>(steps), 1e3 * best_vib, 1e3 * best_plain,
                best_vib / best_plain, best_vib / best_plain <= 1.3 ? "yes" : "NO");
  } catch (const std::exception& error) {
    std::fprintf(stderr, "vib_step_bench: %s\n", error.what());
    return 1;
  }
  return 0;
}
