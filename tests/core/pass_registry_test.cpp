// The pass registry and the pass parameter types: every declared pass is consistent with
// itself, and the small value types behave as the recipe parser and the passes expect.

#include "passes/pass_registry.h"

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "test_paths.h"

namespace lathe {
namespace {

TEST(PassRegistry, HasOneEntryPerLineOfTheDefinitionFile) {
  std::ifstream def(testing::source_path("passes/pass_registry.def"));
  ASSERT_TRUE(def) << "cannot open passes/pass_registry.def";
  std::stringstream text;
  text << def.rdbuf();
  std::string contents = text.str();
  const std::regex entry(R"(^LATHE_PASS\(\w+\))", std::regex::multiline);
  auto count = std::distance(std::sregex_iterator(contents.begin(), contents.end(), entry), std::sregex_iterator());
  EXPECT_EQ(static_cast<size_t>(count), pass_registry().size());
}

TEST(PassRegistry, FindsPassesByName) {
  const PassInfo* eval = find_pass("eval");
  ASSERT_NE(eval, nullptr);
  EXPECT_EQ(eval->name, "eval");
  EXPECT_EQ(eval->kind, PassKind::Evaluation);
  EXPECT_EQ(find_pass("evl"), nullptr);
  EXPECT_EQ(find_pass(""), nullptr);
  EXPECT_EQ(find_pass("EVAL"), nullptr);
}

TEST(PassRegistry, PassNamesListsEveryPassInOrder) {
  std::string expected;
  for (const PassInfo& info : pass_registry()) expected += (expected.empty() ? "" : ", ") + info.name;
  EXPECT_EQ(pass_names(), expected);
  EXPECT_NE(pass_names().find("eval"), std::string::npos);
}

// Recipe validation and `lathe passes` trust these declarations, so check them all here.
TEST(PassRegistry, DeclarationsAreConsistent) {
  std::set<std::string> pass_names_seen;
  const std::regex name_pattern("[a-z][a-z0-9]*(-[a-z0-9]+)*");
  const std::regex param_pattern("[a-z][a-z0-9_]*");
  for (const PassInfo& info : pass_registry()) {
    SCOPED_TRACE("pass " + info.name);
    EXPECT_TRUE(std::regex_match(info.name, name_pattern));
    EXPECT_TRUE(pass_names_seen.insert(info.name).second) << "declared twice";
    EXPECT_FALSE(info.summary.empty());
    std::set<std::string> params_seen;
    for (const ParamSpec& spec : info.params) {
      SCOPED_TRACE("parameter " + spec.name);
      EXPECT_TRUE(std::regex_match(spec.name, param_pattern));
      EXPECT_TRUE(params_seen.insert(spec.name).second) << "declared twice";
      EXPECT_FALSE(spec.doc.empty());
      EXPECT_EQ(spec.default_value.index(), static_cast<size_t>(spec.type)) << "default of the wrong type";
      EXPECT_EQ(info.find_param(spec.name), &spec);
      if (!spec.choices.empty()) {
        ASSERT_TRUE(spec.type == ParamType::String || spec.type == ParamType::HeadList)
            << "choices are for string parameters and the role words of head lists";
        if (spec.type == ParamType::String) {
          const std::string& value = std::get<std::string>(spec.default_value);
          EXPECT_NE(std::find(spec.choices.begin(), spec.choices.end(), value), spec.choices.end())
              << "default \"" << value << "\" is not one of the choices";
        }
      }
      if (spec.min || spec.max) {
        std::vector<double> numbers;
        switch (spec.type) {
          case ParamType::Int:
            numbers = {static_cast<double>(std::get<std::int64_t>(spec.default_value))};
            break;
          case ParamType::Float:
            numbers = {std::get<double>(spec.default_value)};
            break;
          case ParamType::IntList:
            for (auto n : std::get<std::vector<std::int64_t>>(spec.default_value)) numbers.push_back(static_cast<double>(n));
            break;
          case ParamType::FloatList:
            numbers = std::get<std::vector<double>>(spec.default_value);
            break;
          case ParamType::IdRange:
            if (const auto& range = std::get<IdRange>(spec.default_value); !range.empty())
              numbers = {static_cast<double>(range.first), static_cast<double>(range.last)};
            break;
          default:
            FAIL() << "bounds are for numbers, lists of numbers and id ranges";
        }
        for (double value : numbers) {
          if (spec.min) {
            EXPECT_GE(value, *spec.min);
          }
          if (spec.max) {
            EXPECT_LE(value, *spec.max);
          }
        }
      }
      if (is_list_type(spec.type)) {
        // The default's text reads back as the default.
        ParamValue read = empty_list_value(spec.type);
        for (const auto& item : param_list_items(spec.default_value)) EXPECT_EQ(append_param_item(spec, item, read), "");
        EXPECT_EQ(read, spec.default_value);
      }
    }
    for (const auto& group : info.exclusive_params)
      for (const auto& name : group) EXPECT_NE(info.find_param(name), nullptr) << "exclusive parameter " << name;
  }
}

TEST(PassRegistry, FindParam) {
  const PassInfo* eval = find_pass("eval");
  ASSERT_NE(eval, nullptr);
  const ParamSpec* kl = eval->find_param("kl");
  ASSERT_NE(kl, nullptr);
  EXPECT_EQ(kl->type, ParamType::Bool);
  EXPECT_EQ(eval->find_param("kll"), nullptr);
}

TEST(PassRegistryTypes, TypeAndKindNames) {
  EXPECT_STREQ(param_type_name(ParamType::Bool), "bool");
  EXPECT_STREQ(param_type_name(ParamType::Int), "int");
  EXPECT_STREQ(param_type_name(ParamType::Float), "float");
  EXPECT_STREQ(param_type_name(ParamType::String), "string");
  EXPECT_STREQ(pass_kind_name(PassKind::Analysis), "analysis");
  EXPECT_STREQ(pass_kind_name(PassKind::Transform), "transform");
  EXPECT_STREQ(pass_kind_name(PassKind::Evaluation), "evaluation");
}

TEST(PassRegistryTypes, ValuesPrintAsTheyAreWrittenInRecipes) {
  EXPECT_EQ(param_value_to_string(true), "true");
  EXPECT_EQ(param_value_to_string(false), "false");
  EXPECT_EQ(param_value_to_string(std::int64_t{-42}), "-42");
  EXPECT_EQ(param_value_to_string(0.05), "0.05");
  EXPECT_EQ(param_value_to_string(0.75), "0.75");
  EXPECT_EQ(param_value_to_string(2.0), "2");
  EXPECT_EQ(param_value_to_string(1e-5), "1e-05");
  EXPECT_EQ(param_value_to_string(std::string("gradient")), "gradient");
}

TEST(PassRegistryTypes, ParamValuesGetters) {
  ParamValues values;
  values.set("flag", true);
  values.set("count", std::int64_t{7});
  values.set("ratio", 0.5);
  values.set("mode", std::string("fast"));
  EXPECT_TRUE(values.get_bool("flag"));
  EXPECT_EQ(values.get_int("count"), 7);
  EXPECT_DOUBLE_EQ(values.get_float("ratio"), 0.5);
  EXPECT_EQ(values.get_string("mode"), "fast");
  values.set("count", std::int64_t{8});
  EXPECT_EQ(values.get_int("count"), 8);
  EXPECT_EQ(values.values().size(), 4u);
}

TEST(PassRegistryTypes, ParamValuesMisuseIsALogicError) {
  ParamValues values;
  values.set("count", std::int64_t{7});
  EXPECT_THROW(values.get_int("missing"), std::logic_error);
  EXPECT_THROW(values.get_bool("count"), std::logic_error);
  EXPECT_THROW(values.get_float("count"), std::logic_error);
  EXPECT_THROW(values.get_string("count"), std::logic_error);
  try {
    values.get_bool("count");
  } catch (const std::logic_error& error) {
    EXPECT_STREQ(error.what(), "pass parameter \"count\" holds an int, not a bool");
  }
}

TEST(PassRegistryTypes, PreservedAnalyses) {
  EXPECT_TRUE(PreservedAnalyses::all().preserves_all());
  EXPECT_TRUE(PreservedAnalyses::all().preserved("head-importance"));
  PreservedAnalyses none = PreservedAnalyses::none();
  EXPECT_FALSE(none.preserves_all());
  EXPECT_FALSE(none.preserved("head-importance"));
  none.preserve("head-importance").preserve("activation-ranges");
  EXPECT_TRUE(none.preserved("head-importance"));
  EXPECT_TRUE(none.preserved("activation-ranges"));
  EXPECT_FALSE(none.preserved("retrieval-scores"));
}

}  // namespace
}  // namespace lathe
