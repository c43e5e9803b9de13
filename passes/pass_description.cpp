#include "passes/pass_description.h"

#include <sstream>

#include "passes/pass_registry.h"

namespace lathe {
namespace {

struct ValueJson {
  nlohmann::json operator()(const HeadList& heads) const { return param_list_items(heads); }
  nlohmann::json operator()(const IdRange& range) const {
    return range.empty() ? nlohmann::json() : nlohmann::json::array({range.first, range.last});
  }
  template <typename Plain>
  nlohmann::json operator()(const Plain& plain) const {
    return plain;
  }
};

// Markdown table cells: a | would end the cell.
std::string cell(const std::string& text) {
  std::string escaped;
  for (char c : text) escaped += c == '|' ? std::string("\\|") : std::string(1, c);
  return escaped;
}

}  // namespace

nlohmann::json param_value_json(const ParamValue& value) { return std::visit(ValueJson{}, value); }

nlohmann::json param_values_json(const ParamValues& values) {
  auto json = nlohmann::json::object();
  for (const auto& [name, value] : values.values()) json[name] = param_value_json(value);
  return json;
}

nlohmann::json pass_registry_json() {
  auto passes = nlohmann::json::array();
  for (const PassInfo& info : pass_registry()) {
    auto params = nlohmann::json::array();
    for (const ParamSpec& spec : info.params) {
      nlohmann::json param = {{"name", spec.name},
                              {"type", param_type_name(spec.type)},
                              {"default", param_value_json(spec.default_value)},
                              {"doc", spec.doc}};
      if (!spec.choices.empty()) param[spec.type == ParamType::HeadList ? "roles" : "choices"] = spec.choices;
      if (spec.min) param["min"] = *spec.min;
      if (spec.max) param["max"] = *spec.max;
      params.push_back(std::move(param));
    }
    passes.push_back({{"name", info.name},
                      {"kind", pass_kind_name(info.kind)},
                      {"summary", info.summary},
                      {"params", std::move(params)},
                      {"exclusive_params", info.exclusive_params}});
  }
  return passes;
}

std::string pass_registry_markdown() {
  std::ostringstream out;
  for (const PassInfo& info : pass_registry()) {
    out << "#### `" << info.name << "` (" << pass_kind_name(info.kind) << ")\n\n" << info.summary << ".";
    for (const auto& group : info.exclusive_params) {
      out << " Give at most one of";
      for (std::size_t i = 0; i < group.size(); ++i) out << (i == 0 ? " `" : i + 1 == group.size() ? "` or `" : "`, `") << group[i];
      out << "`.";
    }
    out << "\n\n| parameter | type | default | values | meaning |\n| --- | --- | --- | --- | --- |\n";
    for (const ParamSpec& spec : info.params) {
      std::string values = spec.min || spec.max ? param_bounds_text(spec) : "";
      for (const auto& choice : spec.choices) values += (values.empty() ? "" : ", ") + choice;
      const auto default_text = param_value_to_string(spec.default_value);
      out << "| `" << spec.name << "` | " << param_type_name(spec.type) << " | "
          << (default_text.empty() ? "" : "`" + cell(default_text) + "`") << " | " << cell(values) << " | "
          << cell(spec.doc) << " |\n";
    }
    out << "\n";
  }
  return out.str();
}

}  // namespace lathe
