// Writes the benchmarks' mid-size Llama (random weights, hidden 512, 8 layers; see
// random_llama.h) as a safetensors checkpoint with config.json, so recipes and the lathe
// command line can run on it, and input.bin: 256 random token ids (int64) for timing runs.
//
// Usage: random_llama_checkpoint OUT_DIR

#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <random>

#include "random_llama.h"
#include "writers/safetensors_model_writer.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: random_llama_checkpoint OUT_DIR\n");
    return 2;
  }
  try {
    const std::filesystem::path out = argv[1];
    const lathe::RandomLlamaShape shape;
    auto model = lathe::random_llama(shape, 1);
    model.source.config = {{"model_type", "llama"}};
    lathe::write_safetensors_model(model, out);
    std::mt19937_64 random(2);
    std::uniform_int_distribution<std::int64_t> id(3, shape.vocab - 1);
    std::ofstream input(out / "input.bin", std::ios::binary);
    for (int i = 0; i < 256; ++i) {
      const auto value = id(random);
      for (int b = 0; b < 8; ++b) input.put(static_cast<char>((value >> (8 * b)) & 0xff));
    }
    std::printf("random Llama: hidden %lld, %lld layers, %lld heads, FFN %lld, vocab %lld, %lld parameters -> %s\n",
                static_cast<long long>(shape.hidden), static_cast<long long>(shape.layers),
                static_cast<long long>(shape.heads), static_cast<long long>(shape.ffn),
                static_cast<long long>(shape.vocab), static_cast<long long>(model.parameter_count()), out.c_str());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "random_llama_checkpoint: %s\n", error.what());
    return 1;
  }
  return 0;
}
