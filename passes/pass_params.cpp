// Pass parameter values: their types' names, their text forms and the typed getters.

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <stdexcept>
#include <system_error>
#include <type_traits>

#include "passes/pass.h"
#include "support/number_parse.h"

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
    case ParamType::IntList:
      return "int list";
    case ParamType::FloatList:
      return "float list";
    case ParamType::HeadList:
      return "head list";
    case ParamType::IdRange:
      return "id range";
    case ParamType::PatternList:
      return "pattern list";
  }
  return "unknown";
}

bool is_list_type(ParamType type) {
  return type == ParamType::IntList || type == ParamType::FloatList || type == ParamType::HeadList ||
         type == ParamType::IdRange || type == ParamType::PatternList;
}

bool HeadList::has_role(const std::string& role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

namespace {

// The variant's alternatives are in ParamType order, which the getters' messages rely on.
template <ParamType type, typename T>
constexpr bool holds_at = std::is_same_v<std::variant_alternative_t<static_cast<size_t>(type), ParamValue>, T>;
static_assert(holds_at<ParamType::Bool, bool> && holds_at<ParamType::Int, std::int64_t> &&
              holds_at<ParamType::Float, double> && holds_at<ParamType::String, std::string> &&
              holds_at<ParamType::IntList, std::vector<std::int64_t>> &&
              holds_at<ParamType::FloatList, std::vector<double>> && holds_at<ParamType::HeadList, HeadList> &&
              holds_at<ParamType::IdRange, IdRange> && holds_at<ParamType::PatternList, std::vector<std::string>>);

// The shortest text that reads back as the same double ("0.05", not "0.050000000000000003").
std::string shortest_double(double value) {
  std::array<char, 64> buffer;
  auto [end, error] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  if (error != std::errc()) throw std::logic_error("cannot format a double");
  return std::string(buffer.data(), end);
}

std::string with_article(ParamType type) {
  return std::string(type == ParamType::Int || type == ParamType::IntList || type == ParamType::IdRange ? "an "
                                                                                                          : "a ") +
         param_type_name(type);
}

template <typename T>
const T& get_as(const ParamValue& value, const std::string& name, ParamType wanted) {
  if (const T* typed = std::get_if<T>(&value)) return *typed;
  throw std::logic_error("pass parameter \"" + name + "\" holds " +
                         with_article(static_cast<ParamType>(value.index())) + ", not " + with_article(wanted));
}

bool read_int(std::string_view text, std::int64_t* value) { return parse_int(text, value) == NumberParse::Ok; }

bool read_float(std::string_view text, double* value) { return parse_float(text, value) == NumberParse::Ok; }

// "" when `number` is within the spec's bounds, else what is wrong.
std::string out_of_bounds(const ParamSpec& spec, double number, const std::string& text) {
  return param_in_bounds(spec, number) ? "" : "\"" + text + "\" must be " + param_bounds_text(spec);
}

bool is_pattern(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' || c == '*' || c == '?';
  });
}

}  // namespace

namespace {

struct ListItems {
  std::vector<std::string> operator()(const std::vector<std::int64_t>& v) const {
    std::vector<std::string> items;
    for (auto n : v) items.push_back(std::to_string(n));
    return items;
  }
  std::vector<std::string> operator()(const std::vector<double>& v) const {
    std::vector<std::string> items;
    for (auto n : v) items.push_back(shortest_double(n));
    return items;
  }
  std::vector<std::string> operator()(const HeadList& v) const {
    std::vector<std::string> items = v.roles;
    for (const auto& head : v.heads) items.push_back(head.str());
    return items;
  }
  std::vector<std::string> operator()(const IdRange& v) const {
    if (v.empty()) return {};
    return {std::to_string(v.first) + "-" + std::to_string(v.last)};
  }
  std::vector<std::string> operator()(const std::vector<std::string>& v) const { return v; }
  template <typename Single>
  std::vector<std::string> operator()(const Single&) const {
    throw std::logic_error("a single value has no list items");
  }
};

struct ValueText {
  std::string operator()(bool v) const { return v ? "true" : "false"; }
  std::string operator()(std::int64_t v) const { return std::to_string(v); }
  std::string operator()(double v) const { return shortest_double(v); }
  std::string operator()(const std::string& v) const { return v; }
  template <typename List>
  std::string operator()(const List& list) const {
    std::string text;
    for (const auto& item : ListItems{}(list)) text += (text.empty() ? "" : ", ") + item;
    return text;
  }
};

}  // namespace

std::vector<std::string> param_list_items(const ParamValue& value) { return std::visit(ListItems{}, value); }

std::string param_value_to_string(const ParamValue& value) { return std::visit(ValueText{}, value); }

bool param_in_bounds(const ParamSpec& spec, double number) {
  return !(spec.min && number < *spec.min) && !(spec.max && number > *spec.max);
}

std::string param_bounds_text(const ParamSpec& spec) {
  if (spec.min && spec.max) return "between " + shortest_double(*spec.min) + " and " + shortest_double(*spec.max);
  if (spec.min) return ">= " + shortest_double(*spec.min);
  if (spec.max) return "<= " + shortest_double(*spec.max);
  return "any value";
}

ParamValue empty_list_value(ParamType type) {
  switch (type) {
    case ParamType::IntList:
      return std::vector<std::int64_t>{};
    case ParamType::FloatList:
      return std::vector<double>{};
    case ParamType::HeadList:
      return HeadList{};
    case ParamType::IdRange:
      return IdRange{};
    case ParamType::PatternList:
      return std::vector<std::string>{};
    default:
      throw std::logic_error(std::string("a ") + param_type_name(type) + " is not a list");
  }
}

std::string append_param_item(const ParamSpec& spec, const std::string& item, ParamValue& value) {
  const std::string quoted = "\"" + item + "\"";
  switch (spec.type) {
    case ParamType::IntList: {
      std::int64_t number = 0;
      if (!read_int(item, &number)) return quoted + " is not an integer";
      if (auto problem = out_of_bounds(spec, static_cast<double>(number), item); !problem.empty()) return problem;
      std::get<std::vector<std::int64_t>>(value).push_back(number);
      return "";
    }
    case ParamType::FloatList: {
      double number = 0;
      if (!read_float(item, &number)) return quoted + " is not a number";
      if (auto problem = out_of_bounds(spec, number, item); !problem.empty()) return problem;
      std::get<std::vector<double>>(value).push_back(number);
      return "";
    }
    case ParamType::HeadList: {
      auto& heads = std::get<HeadList>(value);
      if (std::find(spec.choices.begin(), spec.choices.end(), item) != spec.choices.end()) {
        if (!heads.has_role(item)) heads.roles.push_back(item);
        return "";
      }
      const auto dot = item.find('.');
      std::int64_t layer = -1, head = -1;
      constexpr std::int64_t kMost = 1 << 30;
      if (dot == std::string::npos || !read_int(std::string_view(item).substr(0, dot), &layer) ||
          !read_int(std::string_view(item).substr(dot + 1), &head) || layer < 0 || head < 0 || layer > kMost ||
          head > kMost) {
        std::string roles;
        for (const auto& role : spec.choices) roles += (roles.empty() ? "" : ", ") + role;
        return quoted + " is not a head; give layer.head pairs like \"1.0, 1.3\"" + (roles.empty() ? "" : " or " + roles);
      }
      heads.heads.push_back({static_cast<int>(layer), static_cast<int>(head)});
      return "";
    }
    case ParamType::IdRange: {
      auto& range = std::get<IdRange>(value);
      const auto dash = item.find('-', 1);
      IdRange read;
      if (!range.empty() || dash == std::string::npos ||
          !read_int(std::string_view(item).substr(0, dash), &read.first) ||
          !read_int(std::string_view(item).substr(dash + 1), &read.last))
        return quoted + " is not a range of ids FIRST-LAST, e.g. 259-511";
      for (auto end : {read.first, read.last})
        if (auto problem = out_of_bounds(spec, static_cast<double>(end), std::to_string(end)); !problem.empty())
          return problem;
      if (read.last < read.first) return quoted + " ends before it starts";
      range = read;
      return "";
    }
    case ParamType::PatternList:
      if (!is_pattern(item))
        return quoted + " is not a pattern; give tensor names with * and ? wildcards, e.g. \"lm_head.weight, layers.0.*\"";
      std::get<std::vector<std::string>>(value).push_back(item);
      return "";
    default:
      throw std::logic_error(std::string("a ") + param_type_name(spec.type) + " has no items");
  }
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

const std::vector<std::int64_t>& ParamValues::get_int_list(const std::string& name) const {
  return get_as<std::vector<std::int64_t>>(at(name), name, ParamType::IntList);
}

const std::vector<double>& ParamValues::get_float_list(const std::string& name) const {
  return get_as<std::vector<double>>(at(name), name, ParamType::FloatList);
}

const HeadList& ParamValues::get_heads(const std::string& name) const {
  return get_as<HeadList>(at(name), name, ParamType::HeadList);
}

const IdRange& ParamValues::get_id_range(const std::string& name) const {
  return get_as<IdRange>(at(name), name, ParamType::IdRange);
}

const std::vector<std::string>& ParamValues::get_patterns(const std::string& name) const {
  return get_as<std::vector<std::string>>(at(name), name, ParamType::PatternList);
}

}  // namespace lathe
