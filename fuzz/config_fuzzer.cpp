// A Hugging Face config.json, read as lathe reads it, and the keys the model loader asks for.

#include <cstddef>
#include <cstdint>

#include "formats/hf_config.h"
#include "fuzz_input.h"
#include "support/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = lathe::fuzz::write_input("config.json", data, size);
  try {
    const auto config = lathe::HfConfig::load(path);
    for (const char* key : {"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                            "intermediate_size", "vocab_size", "max_position_embeddings", "n_embd", "n_layer"}) {
      try {
        if (config.has(key)) (void)config.get_int(key);
      } catch (const lathe::InputError&) {
      }
    }
    for (const char* key : {"rms_norm_eps", "rope_theta", "layer_norm_epsilon"}) {
      try {
        if (config.has(key)) (void)config.get_double(key);
      } catch (const lathe::InputError&) {
      }
    }
    for (const char* key : {"model_type", "hidden_act", "torch_dtype"}) {
      try {
        if (config.has(key)) (void)config.get_string(key);
      } catch (const lathe::InputError&) {
      }
    }
    try {
      if (config.has("tie_word_embeddings")) (void)config.get_bool("tie_word_embeddings");
    } catch (const lathe::InputError&) {
    }
  } catch (const lathe::InputError&) {
  }
  return 0;
}
