#pragma once

// A Llama-shaped model with random weights, made in memory for benchmarks that need a model
// larger than the shipped checkpoints.

#include <cstdint>

#include "core/model.h"

namespace lathe {

struct RandomLlamaShape {
  std::int64_t hidden = 512;
  std::int64_t layers = 8;
  std::int64_t heads = 8;
  std::int64_t kv_heads = 8;
  std::int64_t ffn = 1408;
  std::int64_t vocab = 512;
  std::int64_t max_positions = 512;
};

Model random_llama(const RandomLlamaShape& shape, std::uint64_t seed);

}  // namespace lathe
