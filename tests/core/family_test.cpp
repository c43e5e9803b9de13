// Family descriptions are trusted to describe a computation: every key is one lathe reads.

#include <gtest/gtest.h>

#include <string>

#include "core/embedded_files.h"
#include "core/family.h"
#include "support/errors.h"

namespace lathe {
namespace {

std::string refusal(const std::string& yaml) {
  try {
    parse_family(yaml, "f.yaml");
  } catch (const InputError& error) {
    return error.what();
  }
  return "";
}

std::string llama_with(const std::string& from, const std::string& to) {
  for (const auto& file : embedded_family_files()) {
    if (file.name != "llama.yaml") continue;
    auto text = file.text;
    const auto at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return text.replace(at, from.size(), to);
  }
  ADD_FAILURE() << "no embedded llama.yaml";
  return "";
}

TEST(Family, TheShippedDescriptionsParse) {
  ASSERT_GE(embedded_family_files().size(), 2u);
  for (const auto& file : embedded_family_files()) EXPECT_EQ(refusal(file.text), "") << file.name;
}

TEST(Family, UnknownKeysAreRefusedWhereTheyAre) {
  EXPECT_EQ(refusal(llama_with("block:\n", "blocks: {}\nblock:\n")),
            "f.yaml:6:1: unknown key \"blocks\"; valid: name, model_types, block, config, tensors");
  const auto in_block = refusal(llama_with("  norm: rms\n", "  norm: rms\n  qk_norm: true\n"));
  EXPECT_TRUE(in_block.starts_with("f.yaml:8:3: unknown key \"qk_norm\" in block; valid: norm,")) << in_block;
  const auto in_config = refusal(llama_with("  hidden: hidden_size\n", "  hidden: hidden_size\n  sliding: window\n"));
  EXPECT_TRUE(in_config.starts_with("f.yaml:20:3: unknown key \"sliding\" in config; valid: hidden,")) << in_config;
  EXPECT_NE(in_config.find("no_effect"), std::string::npos) << in_config;
  const auto in_tensors = refusal(llama_with("  ignored:\n", "  ignore:\n"));
  EXPECT_TRUE(in_tensors.starts_with("f.yaml:60:3: unknown key \"ignore\" in tensors; valid: model,")) << in_tensors;
  const auto not_a_list = refusal(llama_with("  no_effect: [initializer_range, pretraining_tp, attention_dropout]", "  no_effect: {a: 1}"));
  EXPECT_NE(not_a_list.find("\"no_effect\" must be a list of config.json keys"), std::string::npos) << not_a_list;
}

}  // namespace
}  // namespace lathe
