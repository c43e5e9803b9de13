// Writes the logits lathe's executor computes for a checkpoint (any dtype lathe reads, also its
// own int8 safetensors output), one decoder layer at a time, so that a benchmark can compare
// them position by position with another runtime's (bench/real_size.sh, ONNX Runtime).
// Usage: executor_logits MODEL_DIR IDS.bin BATCH SEQ OUT.bin [--threads N] [--double]
//   IDS.bin: BATCH x SEQ little-endian int64 ids; OUT.bin: BATCH x SEQ x vocab float32.
//   --double: the whole model in float64 (int8 weights dequantized in float64), as the test
//   suite's references evaluate: what an int8 graph computes without float32 rounding, which
//   can put an activation on the other side of a quantizer's rounding boundary.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>

#include "core/model_loader.h"
#include "executor/streamed_forward.h"
#include "support/allocator.h"

int main(int argc, char** argv) {
  int threads = 1;
  bool in_double = false, usage = argc < 6;
  for (int i = 6; i < argc && !usage; ++i) {
    const std::string option = argv[i];
    if (option == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (option == "--double")
      in_double = true;
    else
      usage = true;
  }
  if (usage) {
    std::fprintf(stderr, "usage: executor_logits MODEL_DIR IDS.bin BATCH SEQ OUT.bin [--threads N] [--double]\n");
    return 2;
  }
  try {
    lathe::keep_freed_memory_for_reuse();
    at::set_num_threads(threads);
    const auto batch = std::atoll(argv[3]), length = std::atoll(argv[4]);
    auto ids = at::empty({batch, length}, at::kLong);
    std::ifstream in(argv[2], std::ios::binary);
    if (!in.read(static_cast<char*>(ids.data_ptr()), static_cast<std::streamsize>(ids.nbytes()))) {
      std::fprintf(stderr, "executor_logits: %s holds fewer than %lld x %lld int64 ids\n", argv[2],
                   static_cast<long long>(batch), static_cast<long long>(length));
      return 2;
    }
    auto model = lathe::load_model(lathe::ModelLocation{argv[1]});
    at::NoGradGuard no_grad;
    if (in_double) model = lathe::with_float64_values(model);
    const lathe::Executor executor(model);
    std::ofstream out(argv[5], std::ios::binary);
    lathe::streamed_forward({{&executor, nullptr}}, {ids}, [&](std::size_t, const std::vector<at::Tensor>& logits) {
      const auto values = logits[0].to(at::kFloat).contiguous();
      out.write(static_cast<const char*>(values.data_ptr()), static_cast<std::streamsize>(values.nbytes()));
    });
    if (!out.flush()) {
      std::fprintf(stderr, "executor_logits: could not write %s\n", argv[5]);
      return 1;
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "executor_logits: %s\n", error.what());
    return 1;
  }
  return 0;
}
