// Hugging Face config.json: typed lookups and one-line errors.

#include <gtest/gtest.h>

#include "formats/hf_config.h"
#include "tests/formats/test_support.h"

namespace lathe {
namespace {

using testing::ScratchDir;

TEST(HfConfig, Stories260K) {
  auto path = testing::shared_dir() / "models/stories260K/hf/config.json";
  auto config = HfConfig::load(path);
  EXPECT_EQ(config.origin(), path);
  EXPECT_EQ(config.get_string("model_type"), "llama");
  EXPECT_EQ(config.get_int("hidden_size"), 64);
  EXPECT_EQ(config.get_int("num_key_value_heads"), 4);
  EXPECT_DOUBLE_EQ(config.get_double("rms_norm_eps"), 1e-5);
  EXPECT_EQ(config.get_int("rope_theta"), 10000);  // stored as 10000.0
  EXPECT_DOUBLE_EQ(config.get_double("hidden_size"), 64.0);
  EXPECT_TRUE(config.get_bool("tie_word_embeddings"));
  EXPECT_TRUE(config.has("vocab_size"));
  EXPECT_FALSE(config.has("pad_token_id"));  // null
  EXPECT_FALSE(config.find_int("pad_token_id").has_value());
  EXPECT_FALSE(config.has("n_head"));
  EXPECT_FALSE(config.find_int("n_head").has_value());
  EXPECT_EQ(config.find_int("num_hidden_layers"), 5);
  EXPECT_EQ(config.find_bool("attention_bias"), false);
  EXPECT_EQ(config.find_string("hidden_act"), "silu");
  EXPECT_EQ(config.json()["architectures"][0], "LlamaForCausalLM");
}

TEST(HfConfig, MakemoreGpt2) {
  auto config = HfConfig::load(testing::shared_dir() / "models/makemore-names-gpt/hf/config.json");
  EXPECT_EQ(config.get_int("n_head"), 4);
  EXPECT_EQ(config.get_int("n_positions"), 16);
  EXPECT_EQ(config.get_string("activation_function"), "gelu_new");
  EXPECT_FALSE(config.get_bool("tie_word_embeddings"));
  EXPECT_DOUBLE_EQ(*config.find_double("layer_norm_epsilon"), 1e-5);
}

TEST(HfConfig, InvalidJsonGivesLineAndColumn) {
  ScratchDir dir;
  auto path = dir / "config.json";
  testing::write_bytes(path, "{\n  \"n_head\": 4,\n  \"n_embd\": ,\n}\n");
  auto message = testing::expect_input_error([&] { HfConfig::load(path); },
                                             {path.string() + ": invalid JSON at line 3, column 13: ",
                                              "syntax error"});
  EXPECT_EQ(message.find("[json.exception"), std::string::npos) << message;
  testing::write_bytes(path, "{\"n_head\": 4");
  testing::expect_input_error([&] { HfConfig::load(path); },
                              {"config.json: invalid JSON at line 1, column 13", "end of input"});
}

TEST(HfConfig, TopLevelMustBeAnObject) {
  ScratchDir dir;
  testing::write_bytes(dir / "config.json", "[1, 2]");
  testing::expect_input_error([&] { HfConfig::load(dir / "config.json"); },
                              {"config.json: top level must be a JSON object, got array"});
  testing::expect_input_error([&] { HfConfig::from_json(nlohmann::json(3), "inline.json"); },
                              {"inline.json: top level must be a JSON object, got number"});
}

TEST(HfConfig, MissingFile) {
  testing::expect_input_error([] { HfConfig::load("/nonexistent/config.json"); },
                              {"/nonexistent/config.json: does not exist"});
}

TEST(HfConfig, MissingKey) {
  auto config = HfConfig::from_json({{"n_embd", 64}, {"pad_token_id", nullptr}}, "config.json");
  auto message = testing::expect_input_error([&] { config.get_int("n_head"); }, {});
  EXPECT_EQ(message, "config.json: key \"n_head\" is missing");
  testing::expect_input_error([&] { config.get_string("model_type"); },
                              {"config.json: key \"model_type\" is missing"});
  testing::expect_input_error([&] { config.get_int("pad_token_id"); },
                              {"config.json: key \"pad_token_id\" is null"});
}

TEST(HfConfig, WrongTypes) {
  auto config = HfConfig::from_json(
      {{"n_head", "4"}, {"eps", "small"}, {"tied", 1}, {"name", 3}, {"half", 64.5}, {"big", 1e30}},
      "config.json");
  auto message = testing::expect_input_error([&] { config.get_int("n_head"); }, {});
  EXPECT_EQ(message, "config.json: key \"n_head\" must be an integer, got string");
  testing::expect_input_error([&] { config.find_int("n_head"); }, {"must be an integer, got string"});
  testing::expect_input_error([&] { config.get_int("half"); },
                              {"key \"half\" must be an integer, got 64.5"});
  testing::expect_input_error([&] { config.get_int("big"); }, {"key \"big\" must be an integer"});
  testing::expect_input_error([&] { config.get_double("eps"); },
                              {"key \"eps\" must be a number, got string"});
  testing::expect_input_error([&] { config.get_bool("tied"); },
                              {"key \"tied\" must be true or false, got number"});
  testing::expect_input_error([&] { config.get_string("name"); },
                              {"key \"name\" must be a string, got number"});
}

TEST(HfConfig, IntegralFloatsAndLimits) {
  auto config = HfConfig::from_json(
      {{"a", 64.0}, {"b", -2.0}, {"c", 9223372036854775807LL}, {"d", 18446744073709551615ULL}},
      "config.json");
  EXPECT_EQ(config.get_int("a"), 64);
  EXPECT_EQ(config.get_int("b"), -2);
  EXPECT_EQ(config.get_int("c"), 9223372036854775807LL);
  testing::expect_input_error([&] { config.get_int("d"); }, {"key \"d\" must be an integer"});
}

TEST(HfConfig, DuplicateKeys) {
  ScratchDir dir;
  testing::write_bytes(dir / "config.json", R"({"n_head": 4, "n_head": 8})");
  testing::expect_input_error([&] { HfConfig::load(dir / "config.json"); },
                              {"config.json: duplicate key \"n_head\""});
}

// Keys may repeat across objects, not within one, at any depth; and a large object of objects
// (a safetensors header of many tensors) is checked in one linear pass.
TEST(HfConfig, DuplicateKeysAreFoundPerObjectAtAnyDepth) {
  ScratchDir dir;
  testing::write_bytes(dir / "config.json", R"({"a": {"x": 1}, "b": {"x": 2, "y": [{"x": 3}, {"x": 4}]}})");
  EXPECT_EQ(HfConfig::load(dir / "config.json").json()["b"]["y"][1]["x"], 4);
  testing::write_bytes(dir / "config.json", R"({"a": {"x": 1}, "b": {"x": 2, "y": [{"x": 3, "z": 0, "x": 4}]}})");
  testing::expect_input_error([&] { HfConfig::load(dir / "config.json"); }, {"config.json: duplicate key \"x\""});
  std::string many = "{";
  for (int i = 0; i < 100000; ++i) many += (i ? ",\"t" : "\"t") + std::to_string(i) + "\": {\"shape\": [0]}";
  testing::write_bytes(dir / "config.json", many + ", \"t99999\": {}}");
  testing::expect_input_error([&] { HfConfig::load(dir / "config.json"); }, {"config.json: duplicate key \"t99999\""});
}

}  // namespace
}  // namespace lathe
