// Recipe parsing: valid recipes, defaults, every kind of error with its exact location and
// message, `--set` overrides, and the round trip through recipe_to_yaml.
//
// The tests use the eval pass's parameters data (string), kl (bool), batch_size (int >= 0)
// and label (string).

#include "pipeline/recipe.h"

#include <gtest/gtest.h>

#include <fstream>

#include "passes/pass_registry.h"
#include "support/errors.h"
#include "test_paths.h"

namespace lathe {
namespace {

Recipe parse(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return parse_recipe(yaml, "r.yaml", overrides);
}

// The message of the InputError that parsing throws, or a note that it threw none.
std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parse(yaml, overrides);
  } catch (const InputError& error) {
    std::string message = error.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << "error messages are one line";
    return message;
  }
  return "<no error>";
}

::testing::AssertionResult starts_with(const std::string& text, const std::string& prefix) {
  if (text.compare(0, prefix.size(), prefix) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not start with \"" << prefix << "\"";
}

void expect_same_recipe(const Recipe& a, const Recipe& b) {
  EXPECT_EQ(a.model.path, b.model.path);
  EXPECT_EQ(a.model.config, b.model.config);
  EXPECT_EQ(a.model.family, b.model.family);
  ASSERT_EQ(a.data.size(), b.data.size());
  for (const auto& [name, spec] : a.data) {
    SCOPED_TRACE("data." + name);
    ASSERT_EQ(b.data.count(name), 1u);
    const DataSpec& other = b.data.at(name);
    EXPECT_EQ(spec.format, other.format);
    EXPECT_EQ(spec.path, other.path);
    EXPECT_EQ(spec.token_type, other.token_type);
    EXPECT_EQ(spec.split, other.split);
    EXPECT_EQ(spec.bos, other.bos);
    EXPECT_EQ(spec.eos, other.eos);
    EXPECT_EQ(spec.pack, other.pack);
    EXPECT_EQ(spec.seq_len, other.seq_len);
    EXPECT_EQ(spec.max_tokens, other.max_tokens);
    EXPECT_EQ(spec.batch_size, other.batch_size);
  }
  ASSERT_EQ(a.passes.size(), b.passes.size());
  for (size_t i = 0; i < a.passes.size(); ++i) {
    EXPECT_EQ(a.passes[i].name, b.passes[i].name);
    EXPECT_EQ(a.passes[i].params.values(), b.passes[i].params.values());
  }
  ASSERT_EQ(a.outputs.size(), b.outputs.size());
  for (size_t i = 0; i < a.outputs.size(); ++i) {
    EXPECT_EQ(a.outputs[i].format, b.outputs[i].format);
    EXPECT_EQ(a.outputs[i].path, b.outputs[i].path);
    EXPECT_EQ(a.outputs[i].dtype, b.outputs[i].dtype);
    EXPECT_EQ(a.outputs[i].max_shard_size, b.outputs[i].max_shard_size);
    EXPECT_EQ(a.outputs[i].external_data, b.outputs[i].external_data);
  }
  EXPECT_EQ(a.gates.max_perplexity_increase, b.gates.max_perplexity_increase);
  EXPECT_EQ(a.gates.max_loss_increase, b.gates.max_loss_increase);
  EXPECT_EQ(a.gates.max_kl, b.gates.max_kl);
  EXPECT_EQ(a.gates.min_top1_agreement, b.gates.min_top1_agreement);
}

// Every line number in the tests below is a line of one of these texts.
const char* const kFullRecipe = R"(model: {path: models/stories260K/hf, config: models/config.json, family: llama}
data:
  calibration: {text: data/valid.txt, split: lines, bos: false, eos: true, pack: false, seq_len: 128, max_tokens: 4096, batch_size: 4}
  eval: {tokens: data/valid.u16.bin, dtype: u32, seq_len: 256, max_tokens: 1000, batch_size: 2}
passes:
  - eval: {kl: false, label: before, batch_size: 3}
  - eval
outputs:
  - {format: onnx, path: out/model.onnx, external_data: true}
  - {format: safetensors, path: out/model, dtype: bfloat16, max_shard_size: 500000000}
gates:
  max_perplexity_increase: 0.05
  max_loss_increase: 0.1
  max_kl: 0.2
  min_top1_agreement: 0.9
)";

// ---------------------------------------------------------------------------------------
// Valid recipes

TEST(RecipeParse, FullRecipe) {
  Recipe recipe = parse(kFullRecipe);
  EXPECT_EQ(recipe.source, "r.yaml");

  EXPECT_EQ(recipe.model.path, "models/stories260K/hf");
  EXPECT_EQ(recipe.model.config, std::filesystem::path("models/config.json"));
  EXPECT_EQ(recipe.model.family, "llama");
  EXPECT_EQ(recipe.model.where.str(), "r.yaml:1:15");

  ASSERT_EQ(recipe.data.size(), 2u);
  const DataSpec& calibration = recipe.data.at("calibration");
  EXPECT_EQ(calibration.format, DataFormat::Text);
  EXPECT_EQ(calibration.path, "data/valid.txt");
  EXPECT_EQ(calibration.split, TextSplit::Lines);
  EXPECT_FALSE(calibration.bos);
  EXPECT_TRUE(calibration.eos);
  EXPECT_FALSE(calibration.pack);
  EXPECT_EQ(calibration.seq_len, 128);
  EXPECT_EQ(calibration.max_tokens, 4096);
  EXPECT_EQ(calibration.batch_size, 4);
  EXPECT_EQ(calibration.where.str(), "r.yaml:3:23");
  const DataSpec& eval = recipe.data.at("eval");
  EXPECT_EQ(eval.format, DataFormat::Tokens);
  EXPECT_EQ(eval.path, "data/valid.u16.bin");
  EXPECT_EQ(eval.token_type, TokenFileType::U32);
  EXPECT_EQ(eval.seq_len, 256);
  EXPECT_EQ(eval.max_tokens, 1000);
  EXPECT_EQ(eval.batch_size, 2);
  EXPECT_EQ(eval.where.str(), "r.yaml:4:18");

  ASSERT_EQ(recipe.passes.size(), 2u);
  EXPECT_EQ(recipe.passes[0].name, "eval");
  EXPECT_FALSE(recipe.passes[0].params.get_bool("kl"));
  EXPECT_EQ(recipe.passes[0].params.get_string("label"), "before");
  EXPECT_EQ(recipe.passes[0].params.get_int("batch_size"), 3);
  EXPECT_EQ(recipe.passes[0].where.str(), "r.yaml:6:5");
  EXPECT_EQ(recipe.passes[1].name, "eval");
  EXPECT_TRUE(recipe.passes[1].params.get_bool("kl"));
  EXPECT_EQ(recipe.passes[1].where.str(), "r.yaml:7:5");

  ASSERT_EQ(recipe.outputs.size(), 2u);
  EXPECT_EQ(recipe.outputs[0].format, "onnx");
  EXPECT_EQ(recipe.outputs[0].path, "out/model.onnx");
  EXPECT_EQ(recipe.outputs[0].where.str(), "r.yaml:9:26");
  EXPECT_EQ(recipe.outputs[1].format, "safetensors");
  EXPECT_EQ(recipe.outputs[1].path, "out/model");
  EXPECT_TRUE(recipe.outputs[0].external_data);
  EXPECT_EQ(recipe.outputs[1].dtype, "bfloat16");
  EXPECT_EQ(recipe.outputs[1].max_shard_size, 500000000);

  EXPECT_EQ(recipe.gates.max_perplexity_increase, 0.05);
  EXPECT_EQ(recipe.gates.max_loss_increase, 0.1);
  EXPECT_EQ(recipe.gates.max_kl, 0.2);
  EXPECT_EQ(recipe.gates.min_top1_agreement, 0.9);
  EXPECT_EQ(recipe.gates.where.str(), "r.yaml:11:1");
}

TEST(RecipeParse, DefaultsFillEverythingLeftOut) {
  Recipe recipe = parse("model: m\ndata:\n  eval: {tokens: t.bin}\n  calibration: {text: c.txt}\npasses:\n  - eval\n");
  EXPECT_EQ(recipe.model.path, "m");
  EXPECT_FALSE(recipe.model.config);
  EXPECT_FALSE(recipe.model.family);

  const DataSpec& eval = recipe.data.at("eval");
  EXPECT_EQ(eval.token_type, TokenFileType::U16);
  EXPECT_EQ(eval.seq_len, 0);
  EXPECT_EQ(eval.max_tokens, 0);
  EXPECT_EQ(eval.batch_size, 8);
  const DataSpec& calibration = recipe.data.at("calibration");
  EXPECT_EQ(calibration.split, TextSplit::Paragraphs);
  EXPECT_TRUE(calibration.bos);
  EXPECT_FALSE(calibration.eos);
  EXPECT_TRUE(calibration.pack);

  // Every declared parameter has a value, the declared default.
  const PassInfo* info = find_pass("eval");
  ASSERT_NE(info, nullptr);
  ASSERT_EQ(recipe.passes.size(), 1u);
  const ParamValues& params = recipe.passes[0].params;
  EXPECT_EQ(params.values().size(), info->params.size());
  for (const ParamSpec& spec : info->params) {
    ASSERT_EQ(params.values().count(spec.name), 1u) << spec.name;
    EXPECT_EQ(params.values().at(spec.name), spec.default_value) << spec.name;
  }

  EXPECT_TRUE(recipe.outputs.empty());
  EXPECT_FALSE(recipe.gates.max_perplexity_increase);
  EXPECT_FALSE(recipe.gates.max_loss_increase);
  EXPECT_FALSE(recipe.gates.max_kl);
  EXPECT_FALSE(recipe.gates.min_top1_agreement);
}

TEST(RecipeParse, EmptySectionsAreAllowed) {
  Recipe recipe = parse("model: m\ndata:\npasses:\noutputs: []\ngates: {}\n");
  EXPECT_TRUE(recipe.data.empty());
  EXPECT_TRUE(recipe.passes.empty());
  EXPECT_TRUE(recipe.outputs.empty());
  EXPECT_FALSE(recipe.gates.max_kl);
}

TEST(RecipeParse, PassWithAnEmptyParameterMap) {
  Recipe recipe = parse("model: m\npasses:\n  - eval:\n  - eval: {}\n");
  ASSERT_EQ(recipe.passes.size(), 2u);
  EXPECT_TRUE(recipe.passes[0].params.get_bool("kl"));
  EXPECT_TRUE(recipe.passes[1].params.get_bool("kl"));
}

TEST(RecipeParse, BlockStyleParameters) {
  Recipe recipe = parse("model: m\npasses:\n  - eval:\n      kl: false\n      batch_size: 16\n");
  ASSERT_EQ(recipe.passes.size(), 1u);
  EXPECT_FALSE(recipe.passes[0].params.get_bool("kl"));
  EXPECT_EQ(recipe.passes[0].params.get_int("batch_size"), 16);
}

TEST(RecipeParse, ScalarTypeRules) {
  // Bool: true and false in any of YAML's three spellings.
  EXPECT_FALSE(parse("model: m\npasses: [eval: {kl: False}]\n").passes[0].params.get_bool("kl"));
  EXPECT_TRUE(parse("model: m\npasses: [eval: {kl: TRUE}]\n").passes[0].params.get_bool("kl"));
  // Int: an explicit + sign is fine.
  EXPECT_EQ(parse("model: m\npasses: [eval: {batch_size: +4}]\n").passes[0].params.get_int("batch_size"), 4);
  // String: any scalar, quoted or not, keeps its text.
  EXPECT_EQ(parse("model: m\npasses: [eval: {label: 0.50}]\n").passes[0].params.get_string("label"), "0.50");
  EXPECT_EQ(parse("model: m\npasses: [eval: {label: true}]\n").passes[0].params.get_string("label"), "true");
  EXPECT_EQ(parse("model: m\npasses: [eval: {label: ''}]\n").passes[0].params.get_string("label"), "");
  // Float: integers and floats.
  Recipe recipe = parse("model: m\ngates: {max_kl: 1, max_loss_increase: -0.5, min_top1_agreement: 1e-1}\n");
  EXPECT_EQ(recipe.gates.max_kl, 1.0);
  EXPECT_EQ(recipe.gates.max_loss_increase, -0.5);
  EXPECT_EQ(recipe.gates.min_top1_agreement, 0.1);
}

TEST(RecipeParse, PathsStayAsWritten) {
  Recipe recipe =
      parse("model: ../models/x/\ndata: {eval: {tokens: ./a b.bin}}\noutputs: [{format: onnx, path: /tmp/o.onnx}]\n");
  EXPECT_EQ(recipe.model.path, "../models/x/");
  EXPECT_EQ(recipe.data.at("eval").path, "./a b.bin");
  EXPECT_EQ(recipe.outputs[0].path, "/tmp/o.onnx");
}

TEST(RecipeParse, SourceLocationText) {
  EXPECT_EQ((SourceLocation{"r.yaml", 3, 14}).str(), "r.yaml:3:14");
  EXPECT_EQ((SourceLocation{"--set gates.max_kl=x", 0, 0}).str(), "--set gates.max_kl=x");
}

// ---------------------------------------------------------------------------------------
// Errors: each is one line, file:line:col first, then the problem and the valid choices.

TEST(RecipeErrors, UnknownPassListsTheKnownPasses) {
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval\n  - evl: {kl: true}\n"),
            "r.yaml:4:5: unknown pass \"evl\"; known passes: " + pass_names());
  EXPECT_EQ(error_of("model: m\npasses: [quantise]\n"),
            "r.yaml:2:10: unknown pass \"quantise\"; known passes: " + pass_names());
}

TEST(RecipeErrors, UnknownParameterListsTheValidParameters) {
  std::string valid;
  for (const ParamSpec& spec : find_pass("eval")->params) valid += (valid.empty() ? "" : ", ") + spec.name;
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: {kl: true, perplexty: true}\n"),
            "r.yaml:3:22: unknown parameter \"perplexty\" of pass eval; valid parameters: " + valid);
}

TEST(RecipeErrors, BoolParameterOfTheWrongType) {
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: {kl: maybe}\n"),
            "r.yaml:3:16: parameter \"kl\" of pass eval must be a bool, got \"maybe\"");
  // YAML 1.1's yes/no are not booleans here.
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: {kl: yes}\n"),
            "r.yaml:3:16: parameter \"kl\" of pass eval must be a bool, got \"yes\"");
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: {kl: \"true\"}\n"),
            "r.yaml:3:16: parameter \"kl\" of pass eval must be a bool, got \"true\" (quoted, so a string)");
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: {kl: [true]}\n"),
            "r.yaml:3:16: parameter \"kl\" of pass eval must be a bool, got a sequence");
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: {kl: }\n"),
            "r.yaml:3:12: parameter \"kl\" of pass eval must be a bool, got an empty value");
}

TEST(RecipeErrors, IntParameterRejectsFractionsAndBounds) {
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: {batch_size: 1.5}\n"),
            "r.yaml:3:24: parameter \"batch_size\" of pass eval must be an integer, got \"1.5\"");
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: {batch_size: 1e3}\n"),
            "r.yaml:3:24: parameter \"batch_size\" of pass eval must be an integer, got \"1e3\"");
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: {batch_size: -2}\n"),
            "r.yaml:3:24: parameter \"batch_size\" of pass eval must be >= 0, got -2");
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: {batch_size: 99999999999999999999}\n"),
            "r.yaml:3:24: parameter \"batch_size\" of pass eval is out of range: \"99999999999999999999\"");
}

// Lists and ranges are read when the recipe is: a sequence or one comma-separated scalar,
// each item checked, and a problem reported at the item's own column.
TEST(RecipeParse, ListParametersFromSequencesOrCommaText) {
  const char* kForms[] = {"lengths: [64, 128], depths: [0, 0.5]", "lengths: \"64, 128\", depths: \"0,0.5\"",
                          "lengths: 64, depths: 0"};
  for (const char* form : kForms) {
    SCOPED_TRACE(form);
    Recipe recipe = parse(std::string("model: m\npasses:\n  - retrieval-heads: {") + form + "}\n");
    const auto& params = recipe.passes[0].params;
    EXPECT_EQ(params.get_int_list("lengths").front(), 64);
    EXPECT_EQ(params.get_float_list("depths").front(), 0.0);
  }
  Recipe recipe = parse("model: m\npasses:\n  - retrieval-heads: {needle_ids: 259-511, protect: \"retrieval, 1.10\"}\n"
                        "  - quantize: {exclude: [lm_head.weight, \"layers.0.*\"]}\n");
  EXPECT_EQ(recipe.passes[0].params.get_id_range("needle_ids"), (IdRange{259, 511}));
  const auto& heads = recipe.passes[0].params.get_heads("protect");
  EXPECT_EQ(heads.roles, std::vector<std::string>{"retrieval"});
  EXPECT_EQ(heads.heads, (std::vector<HeadId>{{1, 10}}));
  EXPECT_EQ(recipe.passes[1].params.get_patterns("exclude"), (std::vector<std::string>{"lm_head.weight", "layers.0.*"}));
  // Empty text is the empty list: the parameter's default behaviour.
  EXPECT_TRUE(parse("model: m\npasses:\n  - quantize: {exclude: \"\"}\n").passes[0].params.get_patterns("exclude").empty());
  // The normalized text reads back the same.
  expect_same_recipe(recipe, parse(recipe_to_yaml(recipe)));
}

TEST(RecipeErrors, ListItemsAreCheckedWhereTheyStand) {
  EXPECT_EQ(error_of("model: m\npasses:\n  - retrieval-heads: {depths: [0, 0.5, 1.5]}\n"),
            "r.yaml:3:40: parameter \"depths\" of pass retrieval-heads: \"1.5\" must be between 0 and 1");
  EXPECT_EQ(error_of("model: m\npasses:\n  - retrieval-heads: {lengths: \"64, x\"}\n"),
            "r.yaml:3:37: parameter \"lengths\" of pass retrieval-heads: \"x\" is not an integer");
  EXPECT_EQ(error_of("model: m\npasses:\n  - retrieval-heads:\n      lengths: 64, -5\n"),
            "r.yaml:4:20: parameter \"lengths\" of pass retrieval-heads: \"-5\" must be >= 3");
  EXPECT_EQ(error_of("model: m\npasses:\n  - retrieval-heads: {lengths: \"64,,128\"}\n"),
            "r.yaml:3:36: parameter \"lengths\" of pass retrieval-heads: \"\" is not an integer");
  EXPECT_EQ(error_of("model: m\npasses:\n  - retrieval-heads: {needle_ids: abc}\n"),
            "r.yaml:3:35: parameter \"needle_ids\" of pass retrieval-heads: \"abc\" is not a range of ids FIRST-LAST, "
            "e.g. 259-511");
  EXPECT_EQ(error_of("model: m\npasses:\n  - retrieval-heads: {needle_ids: 511-259}\n"),
            "r.yaml:3:35: parameter \"needle_ids\" of pass retrieval-heads: \"511-259\" ends before it starts");
  EXPECT_EQ(error_of("model: m\npasses:\n  - retrieval-heads: {needle_ids: [1, 2]}\n"),
            "r.yaml:3:35: parameter \"needle_ids\" of pass retrieval-heads must be a range of ids FIRST-LAST, got a "
            "sequence");
  EXPECT_EQ(error_of("model: m\npasses:\n  - head-prune: {protect: \"1.99, x\"}\n"),
            "r.yaml:3:34: parameter \"protect\" of pass head-prune: \"x\" is not a head; give layer.head pairs like "
            "\"1.0, 1.3\" or retrieval");
  EXPECT_EQ(error_of("model: m\npasses:\n  - quantize: {exclude: \"lm_head.weight, [\"}\n"),
            "r.yaml:3:42: parameter \"exclude\" of pass quantize: \"[\" is not a pattern; give tensor names with * "
            "and ? wildcards, e.g. \"lm_head.weight, layers.0.*\"");
  EXPECT_EQ(error_of("model: m\npasses:\n  - quantize: {exclude: [{a: 1}]}\n"),
            "r.yaml:3:26: parameter \"exclude\" of pass quantize: items must be scalars, got a map");
}

TEST(RecipeErrors, ParametersThatExcludeEachOther) {
  EXPECT_EQ(error_of("model: m\npasses:\n  - head-prune: {keep: 0.5, heads: 3}\n"),
            "r.yaml:3:36: parameters \"keep\" (at r.yaml:3:24) and \"heads\" of pass head-prune exclude each other; "
            "give one of keep, heads, budget");
  // The normalized recipe names only the one given, so it reads back.
  Recipe recipe = parse("model: m\npasses:\n  - head-prune: {budget: 1000}\n");
  EXPECT_EQ(recipe_to_yaml(recipe).find("keep"), std::string::npos) << recipe_to_yaml(recipe);
  expect_same_recipe(recipe, parse(recipe_to_yaml(recipe)));
  EXPECT_NE(recipe_to_yaml(parse("model: m\npasses:\n  - head-prune\n")).find("keep: 0.75"), std::string::npos);
}

TEST(RecipeErrors, BadChoiceListsTheChoices) {
  EXPECT_EQ(error_of("model: m\ndata:\n  eval: {tokens: t.bin, dtype: u8}\n"),
            "r.yaml:3:32: key \"dtype\" in data.eval must be one of u16, u32; got \"u8\"");
  EXPECT_EQ(error_of("model: m\ndata:\n  eval: {text: t.txt, split: words}\n"),
            "r.yaml:3:30: key \"split\" in data.eval must be one of paragraphs, lines; got \"words\"");
}

TEST(RecipeErrors, UnknownDataKeyListsTheValidKeys) {
  EXPECT_EQ(error_of("model: m\ndata:\n  eval: {tokns: t.bin}\n"),
            "r.yaml:3:10: unknown key \"tokns\" in data.eval; valid keys: tokens, text, dtype, split, bos, eos, "
            "pack, seq_len, max_tokens, batch_size");
  EXPECT_EQ(error_of("model: m\ndata:\n  evaluation: {tokens: t.bin}\n"),
            "r.yaml:3:3: unknown key \"evaluation\" in data; valid keys: eval, calibration");
}

TEST(RecipeErrors, UnknownTopLevelKey) {
  EXPECT_EQ(error_of("model: m\npass:\n  - eval\n"),
            "r.yaml:2:1: unknown top-level key \"pass\"; valid keys: model, data, passes, outputs, gates");
}

TEST(RecipeErrors, YamlSyntaxErrors) {
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: {kl: true\n"),
            "r.yaml:4:1: invalid YAML: end of map flow not found");
  EXPECT_EQ(error_of("model: m\n  data: x\n"), "r.yaml:2:7: invalid YAML: illegal map value");
  EXPECT_EQ(error_of("model: m\n---\nmodel: n\n"), "r.yaml:2:1: the recipe has more than one YAML document; expected one");
  // yaml-cpp's LoadAll never ends on this (found by fuzz/recipe_fuzzer): it collects empty
  // documents until memory runs out.
  EXPECT_EQ(error_of(", tax_to\x1ckens: 32o\x1ckensens: 32768}\n\npasses: 768}\n\npasses: "),
            "r.yaml:1:1: the recipe has more than one YAML document; expected one");
}

TEST(RecipeErrors, MissingOrEmptyModel) {
  EXPECT_EQ(error_of("# a comment\npasses: [eval]\n"),
            "r.yaml:2:1: missing key \"model\": the checkpoint to compile, as a path or {path, config, family}");
  EXPECT_EQ(error_of("model: \"\"\n"), "r.yaml:1:8: model must not be empty");
  EXPECT_EQ(error_of("model:\n"),
            "r.yaml:1:1: model must be a path or a map {path, config, family}, got an empty value");
  EXPECT_EQ(error_of("model: {config: c.json}\n"), "r.yaml:1:8: missing key \"path\" in model");
  EXPECT_EQ(error_of("model: {path: p, famly: llama}\n"),
            "r.yaml:1:18: unknown key \"famly\" in model; valid keys: path, config, family");
}

TEST(RecipeErrors, WrongNodeKinds) {
  EXPECT_EQ(error_of(""),
            "r.yaml:1:1: the recipe is empty; expected a map with keys model, data, passes, outputs, gates");
  EXPECT_EQ(error_of("- model\n"),
            "r.yaml:1:1: a recipe is a map with keys model, data, passes, outputs, gates; got a sequence");
  EXPECT_EQ(error_of("model: [a, b]\n"),
            "r.yaml:1:8: model must be a path or a map {path, config, family}, got a sequence");
  EXPECT_EQ(error_of("model: m\ndata:\n  - eval\n"),
            "r.yaml:3:3: data must be a map of data entries (eval, calibration), got a sequence");
  EXPECT_EQ(error_of("model: m\ndata:\n  eval: t.bin\n"),
            "r.yaml:3:9: data.eval must be a map {tokens: file, ...} or {text: file, ...}, got \"t.bin\"");
  EXPECT_EQ(error_of("model: m\npasses:\n  eval: {kl: true}\n"),
            "r.yaml:3:3: passes must be a sequence (- name: {param: value}), got a map");
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: true\n"),
            "r.yaml:3:11: the parameters of pass eval must be a map {param: value}, got \"true\"");
  EXPECT_EQ(error_of("model: m\npasses:\n  - [eval]\n"),
            "r.yaml:3:5: each entry of passes must be a pass name or a map {name: {param: value}}, got a sequence");
  EXPECT_EQ(error_of("model: m\noutputs: {format: onnx}\n"),
            "r.yaml:2:10: outputs must be a sequence (- {format: onnx|safetensors, path: ...}), got a map");
  EXPECT_EQ(error_of("model: m\ngates: 0.1\n"), "r.yaml:2:8: gates must be a map {max_kl: 0.2, ...}, got \"0.1\"");
}

TEST(RecipeErrors, PassParametersNotIndentedUnderTheName) {
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval:\n    kl: true\n"),
            "r.yaml:3:5: a pass is a map with one key, the pass name; this one has 2 keys (eval, kl); indent the "
            "parameters under the pass name or write - eval: {kl: ...}");
}

TEST(RecipeErrors, DuplicateKeys) {
  EXPECT_EQ(error_of("model: m\ngates:\n  max_kl: 0.1\n  max_kl: 0.2\n"),
            "r.yaml:4:3: duplicate key \"max_kl\" in gates; first given at r.yaml:3:3");
  EXPECT_EQ(error_of("model: m\nmodel: n\n"),
            "r.yaml:2:1: duplicate key \"model\" in the recipe; first given at r.yaml:1:1");
}

TEST(RecipeErrors, DataEntryNeedsExactlyOneOfTokensAndText) {
  EXPECT_EQ(error_of("model: m\ndata:\n  eval: {tokens: t.bin, text: t.txt}\n"),
            "r.yaml:3:31: data.eval has both \"tokens\" and \"text\"; give one");
  EXPECT_EQ(error_of("model: m\ndata:\n  calibration: {seq_len: 64}\n"),
            "r.yaml:3:3: data.calibration needs \"tokens\" (a token file) or \"text\" (a text file)");
  EXPECT_EQ(error_of("model: m\ndata:\n  eval: {tokens: ''}\n"),
            "r.yaml:3:18: key \"tokens\" in data.eval must not be empty");
}

TEST(RecipeErrors, DataKeysThatDoNotApplyToTheFormat) {
  EXPECT_EQ(error_of("model: m\ndata:\n  eval: {tokens: t.bin, bos: false}\n"),
            "r.yaml:3:30: key \"bos\" in data.eval applies only to text data, and this entry reads tokens");
  EXPECT_EQ(error_of("model: m\ndata:\n  eval: {text: t.txt, dtype: u32}\n"),
            "r.yaml:3:30: key \"dtype\" in data.eval applies only to token files, and this entry reads text");
}

TEST(RecipeErrors, NegativeSizesInData) {
  EXPECT_EQ(error_of("model: m\ndata:\n  eval: {tokens: t.bin, seq_len: -1}\n"),
            "r.yaml:3:34: key \"seq_len\" in data.eval must be >= 0, got -1");
  EXPECT_EQ(error_of("model: m\ndata:\n  eval: {tokens: t.bin, batch_size: 0}\n"),
            "r.yaml:3:37: key \"batch_size\" in data.eval must be >= 1, got 0");
  EXPECT_EQ(error_of("model: m\ndata:\n  eval: {tokens: t.bin, max_tokens: ten}\n"),
            "r.yaml:3:37: key \"max_tokens\" in data.eval must be an integer, got \"ten\"");
}

TEST(RecipeErrors, Outputs) {
  EXPECT_EQ(error_of("model: m\noutputs:\n  - {format: tflite, path: m.tflite}\n"),
            "r.yaml:3:14: unknown output format \"tflite\"; valid formats: onnx, safetensors");
  EXPECT_EQ(error_of("model: m\noutputs:\n  - {path: m.onnx}\n"),
            "r.yaml:3:5: missing key \"format\" in outputs.0; valid formats: onnx, safetensors");
  EXPECT_EQ(error_of("model: m\noutputs:\n  - {format: onnx}\n"), "r.yaml:3:5: missing key \"path\" in outputs.0");
  EXPECT_EQ(error_of("model: m\noutputs:\n  - {format: onnx, paht: m.onnx}\n"),
            "r.yaml:3:20: unknown key \"paht\" in outputs.0; valid keys: format, path, dtype, max_shard_size, external_data");
  EXPECT_EQ(error_of("model: m\noutputs:\n  - {format: onnx, path: m.onnx, dtype: float16}\n"),
            "r.yaml:3:41: dtype applies to safetensors outputs; ONNX files hold float32 and int8");
  EXPECT_EQ(error_of("model: m\noutputs:\n  - {format: safetensors, path: m, dtype: fp16}\n"),
            "r.yaml:3:43: key \"dtype\" in outputs.0 must be one of source, float32, float16, bfloat16; got \"fp16\"");
}

TEST(RecipeErrors, DuplicateOutputPath) {
  EXPECT_EQ(
      error_of("model: m\noutputs:\n  - {format: onnx, path: out/m.onnx}\n  - {format: onnx, path: ./out//m.onnx}\n"),
      "r.yaml:4:26: duplicate output path \"./out//m.onnx\"; already written by the output at r.yaml:3:26");
  EXPECT_EQ(
      error_of("model: m\noutputs:\n  - {format: safetensors, path: out/m}\n  - {format: safetensors, path: out/m/}\n"),
      "r.yaml:4:33: duplicate output path \"out/m/\"; already written by the output at r.yaml:3:33");
}

TEST(RecipeErrors, GatesOutOfRange) {
  EXPECT_EQ(error_of("model: m\ngates:\n  min_top1_agreement: 1.5\n"),
            "r.yaml:3:23: key \"min_top1_agreement\" in gates must be between 0 and 1, got 1.5");
  EXPECT_EQ(error_of("model: m\ngates:\n  max_kl: -0.1\n"),
            "r.yaml:3:11: key \"max_kl\" in gates must be >= 0, got -0.1");
  EXPECT_EQ(error_of("model: m\ngates:\n  max_kl: .inf\n"),
            "r.yaml:3:11: key \"max_kl\" in gates must be a number, got \".inf\"");
  EXPECT_EQ(error_of("model: m\ngates:\n  max_ppl: 0.1\n"),
            "r.yaml:3:3: unknown key \"max_ppl\" in gates; valid keys: max_perplexity_increase, max_loss_increase, "
            "max_kl, min_top1_agreement");
}

TEST(RecipeErrors, LongAndMultilineValuesStayOnOneLine) {
  std::string message = error_of("model: m\npasses:\n  - eval: {kl: \"a\\nb\"}\n");
  EXPECT_EQ(message, "r.yaml:3:16: parameter \"kl\" of pass eval must be a bool, got \"a\\nb\" (quoted, so a string)");
  message = error_of("model: m\npasses:\n  - eval: {kl: " + std::string(200, 'x') + "}\n");
  EXPECT_EQ(message,
            "r.yaml:3:16: parameter \"kl\" of pass eval must be a bool, got \"" + std::string(80, 'x') + "...\"");
}

// ---------------------------------------------------------------------------------------
// --set overrides

const char* const kTwoPasses = R"(model: m
data:
  eval: {tokens: t.bin}
passes:
  - eval: {kl: true}
  - eval
outputs:
  - {format: onnx, path: out/m.onnx}
)";

TEST(RecipeOverrides, SetAParameterByIndex) {
  Recipe recipe = parse(kTwoPasses, {"passes.0.eval.kl=false", "passes.1.eval.batch_size=4"});
  EXPECT_FALSE(recipe.passes[0].params.get_bool("kl"));
  EXPECT_EQ(recipe.passes[1].params.get_int("batch_size"), 4);
  // The pass written as a bare name keeps its place in the file.
  EXPECT_EQ(recipe.passes[1].where.str(), "r.yaml:6:5");
  EXPECT_EQ(recipe.passes[0].where.str(), "r.yaml:5:5");
}

TEST(RecipeOverrides, SetAParameterByPassName) {
  Recipe recipe = parse("model: m\npasses:\n  - eval\n", {"passes.eval.kl=false", "passes.eval.label=after"});
  EXPECT_FALSE(recipe.passes[0].params.get_bool("kl"));
  EXPECT_EQ(recipe.passes[0].params.get_string("label"), "after");
  EXPECT_EQ(error_of(kTwoPasses, {"passes.eval.kl=false"}),
            "--set passes.eval.kl=false: pass \"eval\" appears 2 times in passes (at 0, 1); choose one by index, "
            "e.g. passes.0.eval.kl");
  EXPECT_EQ(error_of(kTwoPasses, {"passes.quantize.bits=4"}),
            "--set passes.quantize.bits=4: no pass \"quantize\" in passes");
}

TEST(RecipeOverrides, ValuesAreYaml) {
  Recipe recipe = parse(kTwoPasses, {"passes.1.eval={kl: false, label: 'a b'}",
                                     "outputs=[{format: safetensors, path: o}]", "data.eval.seq_len=64"});
  EXPECT_FALSE(recipe.passes[1].params.get_bool("kl"));
  EXPECT_EQ(recipe.passes[1].params.get_string("label"), "a b");
  ASSERT_EQ(recipe.outputs.size(), 1u);
  EXPECT_EQ(recipe.outputs[0].format, "safetensors");
  EXPECT_EQ(recipe.data.at("eval").seq_len, 64);
}

TEST(RecipeOverrides, CreatesMissingKeysAndAppends) {
  Recipe recipe = parse(kTwoPasses, {"gates.max_kl=0.1", "data.calibration.text=c.txt",
                                     "outputs.1={format: safetensors, path: out/m}", "passes.2=eval"});
  EXPECT_EQ(recipe.gates.max_kl, 0.1);
  EXPECT_EQ(recipe.gates.where.str(), "--set gates.max_kl=0.1");
  EXPECT_EQ(recipe.data.at("calibration").path, "c.txt");
  EXPECT_EQ(recipe.data.at("calibration").where.str(), "--set data.calibration.text=c.txt");
  ASSERT_EQ(recipe.outputs.size(), 2u);
  EXPECT_EQ(recipe.outputs[1].path, "out/m");
  ASSERT_EQ(recipe.passes.size(), 3u);
  EXPECT_EQ(recipe.passes[2].where.str(), "--set passes.2=eval");
}

TEST(RecipeOverrides, ReplaceTheModel) {
  Recipe recipe = parse(kTwoPasses, {"model={path: other, family: gpt2}"});
  EXPECT_EQ(recipe.model.path, "other");
  EXPECT_EQ(recipe.model.family, "gpt2");
  EXPECT_EQ(recipe.model.where.str(), "--set model={path: other, family: gpt2}");
}

TEST(RecipeOverrides, AnEmptyRecipeCanBeWrittenWholeByOverrides) {
  Recipe recipe = parse("", {"model=m", "passes=[eval]"});
  EXPECT_EQ(recipe.model.path, "m");
  ASSERT_EQ(recipe.passes.size(), 1u);
}

TEST(RecipeOverrides, TheLastOverrideWins) {
  Recipe recipe = parse(kTwoPasses, {"passes.0.eval.batch_size=2", "passes.0.eval.batch_size=3"});
  EXPECT_EQ(recipe.passes[0].params.get_int("batch_size"), 3);
}

TEST(RecipeOverrides, ErrorsInOverriddenValuesNameTheOverride) {
  EXPECT_EQ(error_of(kTwoPasses, {"passes.1.eval.kl=maybe"}),
            "--set passes.1.eval.kl=maybe: parameter \"kl\" of pass eval must be a bool, got \"maybe\"");
  EXPECT_TRUE(starts_with(error_of(kTwoPasses, {"passes.0.eval.kll=true"}),
                          "--set passes.0.eval.kll=true: unknown parameter \"kll\" of pass eval; valid parameters: "));
  EXPECT_EQ(error_of(kTwoPasses, {"data.eval.seq_len=-1"}),
            "--set data.eval.seq_len=-1: key \"seq_len\" in data.eval must be >= 0, got -1");
  EXPECT_TRUE(starts_with(error_of(kTwoPasses, {"gates.max_kll=0.1"}),
                          "--set gates.max_kll=0.1: unknown key \"max_kll\" in gates; valid keys: "));
  EXPECT_EQ(error_of(kTwoPasses, {"passes.0.eval={kl: maybe}"}),
            "--set passes.0.eval={kl: maybe}: parameter \"kl\" of pass eval must be a bool, got \"maybe\"");
  EXPECT_EQ(error_of(kTwoPasses, {"outputs.1={format: onnx, path: ./out/m.onnx}"}),
            "--set outputs.1={format: onnx, path: ./out/m.onnx}: duplicate output path \"./out/m.onnx\"; already "
            "written by the output at r.yaml:8:26");
  // Values the override did not touch keep their lines.
  EXPECT_EQ(error_of("model: m\npasses:\n  - eval: {kl: maybe}\n", {"passes.0.eval.batch_size=2"}),
            "r.yaml:3:16: parameter \"kl\" of pass eval must be a bool, got \"maybe\"");
}

TEST(RecipeOverrides, MalformedOverrides) {
  EXPECT_EQ(error_of(kTwoPasses, {"gates.max_kl"}), "--set gates.max_kl: expected key.path=value");
  EXPECT_EQ(error_of(kTwoPasses, {"=1"}), "--set =1: missing the key path before \"=\"");
  EXPECT_EQ(error_of(kTwoPasses, {"gates..max_kl=1"}),
            "--set gates..max_kl=1: empty name in key path \"gates..max_kl\"");
  EXPECT_EQ(error_of(kTwoPasses, {"gates.=1"}), "--set gates.=1: empty name in key path \"gates.\"");
  EXPECT_EQ(error_of(kTwoPasses, {"passes.5.eval.kl=false"}),
            "--set passes.5.eval.kl=false: index 5 is out of range: passes has 2 entries");
  EXPECT_EQ(error_of(kTwoPasses, {"outputs.first.path=x"}),
            "--set outputs.first.path=x: \"first\" is not an index into outputs, which is a sequence");
  EXPECT_EQ(error_of(kTwoPasses, {"outputs.-1.path=x"}),
            "--set outputs.-1.path=x: \"-1\" is not an index into outputs, which is a sequence");
  EXPECT_EQ(error_of(kTwoPasses, {"model.path=x"}),
            "--set model.path=x: cannot set \"path\" inside model, which is the value \"m\"");
  EXPECT_EQ(error_of(kTwoPasses, {"passes.1.quantize.bits=4"}),
            "--set passes.1.quantize.bits=4: passes.1 is pass \"eval\", not \"quantize\"");
  EXPECT_EQ(error_of(kTwoPasses, {"gates.max_kl=[0.1"}),
            "--set gates.max_kl=[0.1: the value is not valid YAML: end of sequence flow not found");
  EXPECT_EQ(error_of("- a\n", {"model=m"}), "--set model=m: the recipe is not a map");
}

// ---------------------------------------------------------------------------------------
// recipe_to_yaml

TEST(RecipeRoundTrip, FullRecipeReadsBackTheSame) {
  Recipe recipe = parse(kFullRecipe);
  std::string yaml = recipe_to_yaml(recipe);
  Recipe again = parse(yaml);
  expect_same_recipe(recipe, again);
  EXPECT_EQ(recipe_to_yaml(again), yaml);
}

TEST(RecipeRoundTrip, NormalizedTextHasEveryDefault) {
  Recipe recipe = parse(
      "model: m\ndata:\n  eval: {tokens: t.bin}\n  calibration: {text: c.txt}\n"
      "outputs:\n  - {format: onnx, path: out/m.onnx}\n  - {format: safetensors, path: out/m}\ngates: {max_kl: 0.2}\n");
  EXPECT_EQ(recipe_to_yaml(recipe),
            "model: m\n"
            "data:\n"
            "  calibration: {text: c.txt, split: paragraphs, bos: true, eos: false, pack: true, seq_len: 0, "
            "max_tokens: 0, batch_size: 8}\n"
            "  eval: {tokens: t.bin, dtype: u16, seq_len: 0, max_tokens: 0, batch_size: 8}\n"
            "passes: []\n"
            "outputs:\n"
            "  - {format: onnx, path: out/m.onnx, external_data: false}\n"
            "  - {format: safetensors, path: out/m, dtype: source, max_shard_size: 2000000000}\n"
            "gates:\n"
            "  max_kl: 0.2\n");
}

TEST(RecipeRoundTrip, PassParametersInDeclarationOrder) {
  Recipe recipe = parse("model: m\npasses:\n  - eval: {label: x}\n");
  std::string line = "  - eval: {";
  const PassInfo* info = find_pass("eval");
  for (size_t i = 0; i < info->params.size(); ++i) {
    const ParamSpec& spec = info->params[i];
    std::string value = spec.name == "label" ? "x" : param_value_to_string(spec.default_value);
    if (is_list_type(spec.type) && spec.type != ParamType::IdRange) {
      value = "[" + value + "]";  // lists as flow sequences
    } else if (value.empty()) {
      value = "\"\"";
    }
    line += (i == 0 ? "" : ", ") + spec.name + ": " + value;
  }
  line += "}\n";
  EXPECT_NE(recipe_to_yaml(recipe).find("passes:\n" + line), std::string::npos) << recipe_to_yaml(recipe);
}

TEST(RecipeRoundTrip, StringsThatLookLikeOtherThings) {
  Recipe recipe = parse("model: m\npasses:\n  - eval: {label: 'x'}\n");
  for (const std::string label : {"", "true", "null", "~", "123", "0.5", "a: b", "#x", " padded ", "- x", "[x]", "it's",
                                  "say \"hi\"", "two\nlines"}) {
    SCOPED_TRACE(label);
    recipe.passes[0].params.set("label", label);
    recipe.model.path = "dir with spaces/" + label;
    recipe.model.family = label.empty() ? std::string("llama") : label;
    Recipe again = parse(recipe_to_yaml(recipe));
    expect_same_recipe(recipe, again);
  }
}

TEST(RecipeRoundTrip, NumbersKeepTheirValue) {
  Recipe recipe = parse("model: m\n");
  recipe.gates.max_kl = 1e-5;
  recipe.gates.max_loss_increase = -0.1;
  recipe.gates.max_perplexity_increase = 3.0;
  recipe.gates.min_top1_agreement = 0.1 + 0.2;
  expect_same_recipe(recipe, parse(recipe_to_yaml(recipe)));
}

// ---------------------------------------------------------------------------------------
// load_recipe

TEST(RecipeLoad, ReadsAFileAndNamesItInErrors) {
  testing::TemporaryFolder folder;
  std::filesystem::path path = folder / "recipe.yaml";
  std::ofstream(path) << "model: m\npasses:\n  - eval: {kl: maybe}\n";
  try {
    load_recipe(path);
    FAIL() << "no error";
  } catch (const InputError& error) {
    EXPECT_EQ(std::string(error.what()),
              path.string() + ":3:16: parameter \"kl\" of pass eval must be a bool, got \"maybe\"");
  }
  std::ofstream(path) << "model: m\n";
  Recipe recipe = load_recipe(path, {"gates.max_kl=0.5"});
  EXPECT_EQ(recipe.source, path.string());
  EXPECT_EQ(recipe.gates.max_kl, 0.5);
}

TEST(RecipeLoad, MissingFileOrFolder) {
  testing::TemporaryFolder folder;
  try {
    load_recipe(folder / "absent.yaml");
    FAIL() << "no error";
  } catch (const InputError& error) {
    EXPECT_EQ(std::string(error.what()),
              (folder / "absent.yaml").string() + ": does not exist");
  }
  try {
    load_recipe(folder.path());
    FAIL() << "no error";
  } catch (const InputError& error) {
    EXPECT_EQ(std::string(error.what()), folder.path().string() + ": is a folder, expected a recipe");
  }
}

TEST(RecipeLoad, ShippedRecipesAreValid) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(testing::source_path("recipes"))) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    Recipe recipe = load_recipe(entry.path());
    expect_same_recipe(recipe, parse(recipe_to_yaml(recipe)));
    ++count;
  }
  EXPECT_GE(count, 1);
}

}  // namespace
}  // namespace lathe
