#include "passes/pass_registry.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <stdexcept>
#include <system_error>
#include <type_traits>

// One header per pass in pass_registry.def, for its info function.
#include "passes/clipped_softmax_pass.h"
#include "passes/eval_pass.h"
#include "passes/finetune_pass.h"
#include "passes/gated_attention_pass.h"
#include "passes/head_importance_pass.h"
#include "passes/head_prune_pass.h"
#include "passes/outlier_stats_pass.h"
#include "passes/quantize_pass.h"
#include "passes/retrieval_heads_pass.h"
#include "passes/smooth_pass.h"

namespace lathe {

const char* param_type_name(ParamType type) {
  switch (type) {
    case ParamType::Bool:
      return "bool";
    case ParamType::Int:
      return "int";
    case ParamType::Float:
      return "float";
    case ParamType::String:
      return "string";
  }
  return "unknown";
}

namespace {

// The shortest text that reads back as the same double ("0.05", not "0.050000000000000003").
std::string shortest_double(double value) {
  std::array<char, 64> buffer;
  auto [end, error] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  if (error != std::errc()) throw std::logic_error("cannot format a double");
  return std::string(buffer.data(), end);
}

std::string with_article(ParamType type) {
  return std::string(type == ParamType::Int ? "an " : "a ") + param_type_name(type);
}

// The variant's alternatives are in ParamType order, which the getters' messages rely on.
template <ParamType type, typename T>
constexpr bool holds_at = std::is_same_v<std::variant_alternative_t<static_cast<size_t>(type), ParamValue>, T>;
static_assert(holds_at<ParamType::Bool, bool> && holds_at<ParamType::Int, std::int64_t> &&
              holds_at<ParamType::Float, double> && holds_at<ParamType::String, std::string>);

template <typename T>
const T& get_as(const ParamValue& value, const std::string& name, ParamType wanted) {
  if (const T* typed = std::get_if<T>(&value)) return *typed;
  throw std::logic_error("pass parameter \"" + name + "\" holds " +
                         with_article(static_cast<ParamType>(value.index())) + ", not " + with_article(wanted));
}

}  // namespace

std::string param_value_to_string(const ParamValue& value) {
  struct Printer {
    std::string operator()(bool v) const { return v ? "true" : "false"; }
    std::string operator()(std::int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const { return shortest_double(v); }
    std::string operator()(const std::string& v) const { return v; }
  };
  return std::visit(Printer{}, value);
}

const ParamValue& ParamValues::at(const std::string& name) const {
  auto found = values_.find(name);
  if (found == values_.end()) throw std::logic_error("pass parameter \"" + name + "\" has no value");
  return found->second;
}

bool ParamValues::get_bool(const std::string& name) const { return get_as<bool>(at(name), name, ParamType::Bool); }

std::int64_t ParamValues::get_int(const std::string& name) const {
  return get_as<std::int64_t>(at(name), name, ParamType::Int);
}

double ParamValues::get_float(const std::string& name) const {
  return get_as<double>(at(name), name, ParamType::Float);
}

const std::string& ParamValues::get_string(const std::string& name) const {
  return get_as<std::string>(at(name), name, ParamType::String);
}

bool PreservedAnalyses::preserved(const std::string& analysis) const {
  return all_ || std::find(kept_.begin(), kept_.end(), analysis) != kept_.end();
}

const char* pass_kind_name(PassKind kind) {
  switch (kind) {
    case PassKind::Analysis:
      return "analysis";
    case PassKind::Transform:
      return "transform";
    case PassKind::Evaluation:
      return "evaluation";
  }
  return "unknown";
}

const ParamSpec* PassInfo::find_param(const std::string& param) const {
  for (const ParamSpec& spec : params) {
    if (spec.name == param) return &spec;
  }
  return nullptr;
}

const std::vector<PassInfo>& pass_registry() {
  static const std::vector<PassInfo> registry = {
#define LATHE_PASS(info_function) info_function(),
#include "passes/pass_registry.def"
#undef LATHE_PASS
  };
  return registry;
}

const PassInfo* find_pass(const std::string& name) {
  for (const PassInfo& info : pass_registry()) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

std::string pass_names() {
  std::string names;
  for (const PassInfo& info : pass_registry()) {
    if (!names.empty()) names += ", ";
    names += info.name;
  }
  return names;
}

}  // namespace lathe
