// Recipe parsing: YAML text -> `--set` overrides applied to the tree -> strict validation
// against the pass registry -> Recipe. Nothing is read or resolved beyond the recipe itself;
// the pipeline opens the files and reports problems at the SourceLocation recorded here.

#include "pipeline/recipe.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <sstream>
#include <system_error>
#include <utility>

#include "passes/pass_registry.h"
#include "support/bounded_file.h"
#include "support/errors.h"
#include "support/number_parse.h"

namespace lathe {

namespace {

const std::vector<std::string> kTopLevelKeys = {"model", "data", "passes", "outputs", "gates"};
const std::vector<std::string> kDataNames = {"eval", "calibration"};
const std::vector<std::string> kOutputFormats = {"onnx", "safetensors"};

ParamSpec string_field(std::string name, std::vector<std::string> choices = {}) {
  return {std::move(name), ParamType::String, std::string(), "", std::move(choices), {}, {}};
}
ParamSpec bool_field(std::string name) { return {std::move(name), ParamType::Bool, false, "", {}, {}, {}}; }
ParamSpec int_field(std::string name, double min) {
  return {std::move(name), ParamType::Int, std::int64_t{0}, "", {}, min, {}};
}
ParamSpec float_field(std::string name, std::optional<double> min = {}, std::optional<double> max = {}) {
  return {std::move(name), ParamType::Float, 0.0, "", {}, min, max};
}

// The keys of the maps that are not pass parameters, declared like pass parameters so one
// routine checks all of them. Their defaults are those of the Recipe structs, not these.
const std::vector<ParamSpec>& model_fields() {
  static const std::vector<ParamSpec> fields = {string_field("path"), string_field("config"), string_field("family")};
  return fields;
}

const std::vector<ParamSpec>& data_fields() {
  static const std::vector<ParamSpec> fields = {
      string_field("tokens"),
      string_field("text"),
      string_field("dtype", {"u16", "u32"}),
      string_field("split", {"paragraphs", "lines"}),
      bool_field("bos"),
      bool_field("eos"),
      bool_field("pack"),
      int_field("seq_len", 0),
      int_field("max_tokens", 0),
      int_field("batch_size", 1),
  };
  return fields;
}
const std::vector<std::string> kTextOnlyDataKeys = {"split", "bos", "eos", "pack"};
const std::vector<std::string> kTokensOnlyDataKeys = {"dtype"};

const std::vector<ParamSpec>& output_fields() {
  static const std::vector<ParamSpec> fields = {string_field("format"), string_field("path"),
                                                string_field("dtype", {"source", "float32", "float16", "bfloat16"}),
                                                int_field("max_shard_size", 1 << 20), bool_field("external_data")};
  return fields;
}

const std::vector<ParamSpec>& gate_fields() {
  static const std::vector<ParamSpec> fields = {
      float_field("max_perplexity_increase"),
      float_field("max_loss_increase"),
      float_field("max_kl", 0.0),
      float_field("min_top1_agreement", 0.0, 1.0),
  };
  return fields;
}

// ---------------------------------------------------------------------------------------
// Small text helpers. Error messages are one line, so values are escaped and shortened.

std::string join(const std::vector<std::string>& items, const char* separator = ", ") {
  std::string joined;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) joined += separator;
    joined += items[i];
  }
  return joined;
}

std::string param_names(const std::vector<ParamSpec>& specs) {
  std::vector<std::string> names;
  for (const ParamSpec& spec : specs) names.push_back(spec.name);
  return join(names);
}

bool contains(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

std::string trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

std::string one_line(const std::string& text) {
  std::string escaped;
  for (char c : text) {
    if (c == '\n') {
      escaped += "\\n";
    } else if (c == '\r') {
      escaped += "\\r";
    } else if (c == '\t') {
      escaped += "\\t";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

std::string in_quotes(const std::string& text) {
  constexpr size_t kMaxShown = 80;
  std::string shown = one_line(text);
  if (shown.size() > kMaxShown) shown = shown.substr(0, kMaxShown) + "...";
  return "\"" + shown + "\"";
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return in_quotes(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "an empty value";
}

std::string child_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

// "the recipe" for the root, else the dotted path: "data.eval", "passes.0".
std::string path_name(const std::string& path) { return path.empty() ? "the recipe" : path; }

// ---------------------------------------------------------------------------------------
// Scalars as typed values. YAML's own typing is looser than lathe wants (yes/no, 1.5 read as
// an int by truncation), so the rules are here: a bool is true or false; an int has no
// fraction or exponent; a float is any finite decimal number; quoted text is always a string.

bool is_plain(const YAML::Node& scalar) { return scalar.Tag() == "?"; }

std::optional<bool> parse_bool(const std::string& text) {
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  return std::nullopt;
}

const char* expected_type(ParamType type) {
  switch (type) {
    case ParamType::Bool:
      return "a bool";
    case ParamType::Int:
      return "an integer";
    case ParamType::Float:
      return "a number";
    case ParamType::String:
      return "a string";
    case ParamType::IntList:
      return "a list of integers (a sequence or \"64, 128\")";
    case ParamType::FloatList:
      return "a list of numbers (a sequence or \"0, 0.5, 1\")";
    case ParamType::HeadList:
      return "a list of heads (a sequence or \"1.0, 1.3\")";
    case ParamType::IdRange:
      return "a range of ids FIRST-LAST";
    case ParamType::PatternList:
      return "a list of tensor-name patterns (a sequence or \"lm_head.weight, layers.0.*\")";
  }
  return "a value";
}

// ---------------------------------------------------------------------------------------
// Overridden parts of the tree. Nodes put there by `--set` have no line in the recipe, so
// errors about them name the override instead.

class OverrideTable {
 public:
  void add(const std::vector<std::string>& path, const std::string& text) {
    entries_.emplace_back(join(path, "."), text);
  }

  // The `--set` text that wrote `path` or one of its ancestors; the last one wins.
  const std::string* find(const std::string& path) const {
    for (auto entry = entries_.rbegin(); entry != entries_.rend(); ++entry) {
      const std::string& written = entry->first;
      if (path == written || (path.size() > written.size() && path.compare(0, written.size(), written) == 0 &&
                              path[written.size()] == '.')) {
        return &entry->second;
      }
    }
    return nullptr;
  }

  // Where a node that an override reshaped (a pass written as a bare name, turned into a
  // map to hold a parameter) stood in the recipe.
  void remember_mark(const std::string& path, const YAML::Mark& mark) { marks_.emplace(path, mark); }
  const YAML::Mark* mark(const std::string& path) const {
    auto found = marks_.find(path);
    return found == marks_.end() ? nullptr : &found->second;
  }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
  std::map<std::string, YAML::Mark> marks_;
};

[[noreturn]] void override_error(const std::string& text, const std::string& problem) {
  throw InputError("--set " + one_line(text) + ": " + problem);
}

std::optional<size_t> parse_index(const std::string& segment) {
  if (segment.empty() || segment.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  size_t index = 0;
  auto [end, error] = std::from_chars(segment.data(), segment.data() + segment.size(), index);
  if (error != std::errc() || end != segment.data() + segment.size()) return std::nullopt;
  return index;
}

// The name of the pass a `passes` entry names, or "" when the entry is not a pass.
std::string pass_entry_name(const YAML::Node& entry) {
  if (entry.IsScalar()) return entry.Scalar();
  if (entry.IsMap() && entry.size() == 1 && entry.begin()->first.IsScalar()) return entry.begin()->first.Scalar();
  return "";
}

// Applies one `--set key.path=value` to the YAML tree and records what it wrote.
class OverrideApplier {
 public:
  OverrideApplier(YAML::Node& root, OverrideTable& table) : root_(root), table_(table) {}

  void apply(const std::string& text) {
    text_ = text;
    size_t equals = text.find('=');
    if (equals == std::string::npos) fail("expected key.path=value");
    std::string key = text.substr(0, equals);
    if (key.empty()) fail("missing the key path before \"=\"");
    segments_.clear();
    std::stringstream key_stream(key);
    for (std::string segment; std::getline(key_stream, segment, '.');) segments_.push_back(segment);
    if (key.back() == '.') segments_.push_back("");
    for (const std::string& segment : segments_) {
      if (segment.empty()) fail("empty name in key path \"" + one_line(key) + "\"");
    }
    YAML::Node value;
    try {
      value = YAML::Load(text.substr(equals + 1));
    } catch (const YAML::Exception& error) {
      fail("the value is not valid YAML: " + error.msg);
    }
    if (!root_.IsDefined() || root_.IsNull()) root_.reset(YAML::Node(YAML::NodeType::Map));
    if (!root_.IsMap()) fail("the recipe is not a map");
    walk(value);
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const { override_error(text_, problem); }

  std::string here() const { return path_name(join(path_, ".")); }

  // yaml-cpp nodes are handles: assigning to one that refers into the tree overwrites that
  // part of the tree, so walking uses reset() to rebind and `value` is fresh for each call.
  void walk(const YAML::Node& value) {
    path_.clear();
    YAML::Node current = root_;
    size_t i = 0;
    while (true) {
      const std::string& segment = segments_[i];
      bool last = i + 1 == segments_.size();
      if (current.IsMap()) {
        path_.push_back(segment);
        if (last) {
          current[segment] = value;
          table_.add(path_, text_);
          return;
        }
        const YAML::Node& lookup = current;
        YAML::Node existing = lookup[segment];
        if (!existing.IsDefined() || existing.IsNull()) {
          current[segment] = YAML::Node(YAML::NodeType::Map);
          table_.add(path_, text_);
        }
        current.reset(current[segment]);
        ++i;
      } else if (current.IsSequence()) {
        bool by_name = false;
        size_t index = 0;
        if (std::optional<size_t> parsed = parse_index(segment)) {
          index = *parsed;
        } else if (path_ == std::vector<std::string>{"passes"}) {
          // passes.eval.kl: the one entry of that pass; the name is walked into next.
          index = find_pass_entry(current, segment);
          by_name = true;
        } else {
          fail(in_quotes(segment) + " is not an index into " + here() + ", which is a sequence");
        }
        if (index > current.size()) {
          fail("index " + segment + " is out of range: " + here() + " has " + std::to_string(current.size()) +
               " entries");
        }
        path_.push_back(std::to_string(index));
        if (!by_name) ++i;
        if (i == segments_.size()) {
          if (index == current.size()) {
            current.push_back(value);
          } else {
            current[index] = value;
          }
          table_.add(path_, text_);
          return;
        }
        if (index == current.size()) {
          current.push_back(YAML::Node(YAML::NodeType::Map));
          table_.add(path_, text_);
        } else if (current[index].IsNull()) {
          current[index] = YAML::Node(YAML::NodeType::Map);
          table_.add(path_, text_);
        }
        if (path_.size() == 2 && path_[0] == "passes") prepare_pass_entry(current, index, segments_[i]);
        current.reset(current[index]);
      } else {
        fail("cannot set " + in_quotes(segment) + " inside " + here() + ", which is the value " + describe(current));
      }
    }
  }

  size_t find_pass_entry(const YAML::Node& passes, const std::string& name) const {
    std::vector<size_t> matches;
    for (size_t index = 0; index < passes.size(); ++index) {
      if (pass_entry_name(passes[index]) == name) matches.push_back(index);
    }
    if (matches.empty()) fail("no pass " + in_quotes(name) + " in passes");
    if (matches.size() > 1) {
      std::vector<std::string> indices;
      for (size_t index : matches) indices.push_back(std::to_string(index));
      std::vector<std::string> example = segments_;
      example.insert(example.begin() + 1, indices.front());
      fail("pass " + in_quotes(name) + " appears " + std::to_string(matches.size()) + " times in passes (at " +
           join(indices) + "); choose one by index, e.g. " + join(example, "."));
    }
    return matches.front();
  }

  // Going into passes.N by a pass name: the entry must be that pass, and a bare name
  // ("- eval") becomes a map ("- eval: {}") that can hold parameters.
  void prepare_pass_entry(YAML::Node& passes, size_t index, const std::string& name) {
    YAML::Node entry = passes[index];
    std::string entry_name = pass_entry_name(entry);
    if (entry_name.empty() || entry_name == name) {
      if (entry.IsScalar()) {
        table_.remember_mark(join(path_, "."), entry.Mark());
        YAML::Node replacement(YAML::NodeType::Map);
        replacement[name] = YAML::Node(YAML::NodeType::Null);
        passes[index] = replacement;
      }
      return;
    }
    fail(here() + " is pass " + in_quotes(entry_name) + ", not " + in_quotes(name));
  }

  YAML::Node& root_;
  OverrideTable& table_;
  std::string text_;
  std::vector<std::string> segments_;
  std::vector<std::string> path_;
};

// ---------------------------------------------------------------------------------------
// Validation: the YAML tree to a Recipe, stopping at the first problem.

struct MapEntry {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
  std::string path;
  SourceLocation key_where;
  SourceLocation value_where;
};

struct Field {
  ParamValue value;
  SourceLocation where;
};
using Fields = std::map<std::string, Field>;

// How messages name the entries of a map: `key "seq_len" in data.eval`, `parameter "kl" of
// pass eval`.
struct FieldNaming {
  std::string noun;   // "key" or "parameter"
  std::string owner;  // "in data.eval" or "of pass eval"
};

class RecipeReader {
 public:
  RecipeReader(std::string source, const OverrideTable& overrides, const std::string& text)
      : source_(std::move(source)), overrides_(overrides) {
    std::stringstream lines(text);
    for (std::string line; std::getline(lines, line);) lines_.push_back(line);
  }

  Recipe read(const YAML::Node& root) {
    Recipe recipe;
    recipe.source = source_;
    SourceLocation root_where = locate(root, "", SourceLocation{source_, 1, 1});
    if (!root.IsDefined() || root.IsNull()) {
      fail(root_where, "the recipe is empty; expected a map with keys " + join(kTopLevelKeys));
    }
    if (!root.IsMap()) {
      fail(root_where, "a recipe is a map with keys " + join(kTopLevelKeys) + "; got " + describe(root));
    }
    bool has_model = false;
    for (const MapEntry& entry : map_entries(root, "", root_where, "the recipe", "a map")) {
      if (entry.key == "model") {
        recipe.model = read_model(entry);
        has_model = true;
      } else if (entry.key == "data") {
        recipe.data = read_data(entry);
      } else if (entry.key == "passes") {
        recipe.passes = read_passes(entry);
      } else if (entry.key == "outputs") {
        recipe.outputs = read_outputs(entry);
      } else if (entry.key == "gates") {
        recipe.gates = read_gates(entry);
      } else {
        fail(entry.key_where, "unknown top-level key " + in_quotes(entry.key) + "; valid keys: " + join(kTopLevelKeys));
      }
    }
    if (!has_model) {
      fail(root_where, "missing key \"model\": the checkpoint to compile, as a path or {path, config, family}");
    }
    return recipe;
  }

 private:
  [[noreturn]] void fail(const SourceLocation& where, const std::string& problem) const {
    throw InputError(where.str() + ": " + problem);
  }

  SourceLocation locate(const YAML::Node& node, const std::string& path, const SourceLocation& fallback) const {
    if (const std::string* text = overrides_.find(path)) return SourceLocation{"--set " + one_line(*text), 0, 0};
    if (node.IsDefined() && !node.Mark().is_null()) {
      return SourceLocation{source_, node.Mark().line + 1, node.Mark().column + 1};
    }
    if (const YAML::Mark* mark = overrides_.mark(path))
      return SourceLocation{source_, mark->line + 1, mark->column + 1};
    return fallback;
  }

  // The entries of a map in order, after checking that its keys are distinct names. An
  // empty value ("gates:") counts as an empty map.
  std::vector<MapEntry> map_entries(const YAML::Node& node, const std::string& path, const SourceLocation& where,
                                    const std::string& what, const std::string& expected) const {
    std::vector<MapEntry> entries;
    if (!node.IsDefined() || node.IsNull()) return entries;
    if (!node.IsMap()) fail(where, what + " must be " + expected + ", got " + describe(node));
    for (auto it = node.begin(); it != node.end(); ++it) {
      MapEntry entry;
      entry.key_node = it->first;
      entry.value = it->second;
      SourceLocation key_where = locate(it->first, path, where);
      if (!it->first.IsScalar()) fail(key_where, "keys in " + what + " must be names, got " + describe(it->first));
      entry.key = it->first.Scalar();
      entry.path = child_path(path, entry.key);
      entry.key_where = locate(it->first, entry.path, where);
      // yaml-cpp marks an empty value at the next token, often on the next line.
      entry.value_where = entry.value.IsNull() ? entry.key_where : locate(entry.value, entry.path, entry.key_where);
      for (const MapEntry& earlier : entries) {
        if (earlier.key == entry.key) {
          fail(entry.key_where,
               "duplicate key " + in_quotes(entry.key) + " in " + what + "; first given at " + earlier.key_where.str());
        }
      }
      entries.push_back(std::move(entry));
    }
    return entries;
  }

  // A map whose keys are declared by `specs`, each value checked against its spec.
  Fields read_fields(const YAML::Node& node, const std::string& path, const SourceLocation& where,
                     const std::vector<ParamSpec>& specs, const FieldNaming& naming, const std::string& what,
                     const std::string& expected) const {
    Fields fields;
    for (const MapEntry& entry : map_entries(node, path, where, what, expected)) {
      const ParamSpec* spec = nullptr;
      for (const ParamSpec& candidate : specs) {
        if (candidate.name == entry.key) spec = &candidate;
      }
      if (spec == nullptr) {
        std::string valid = specs.empty() ? "there are none" : param_names(specs);
        fail(entry.key_where, "unknown " + naming.noun + " " + in_quotes(entry.key) + " " + naming.owner + "; valid " +
                                  naming.noun + "s: " + valid);
      }
      std::string subject = naming.noun + " " + in_quotes(entry.key) + " " + naming.owner;
      fields[entry.key] = Field{read_value(entry.value, *spec, subject, entry.value_where), entry.value_where};
    }
    return fields;
  }

  ParamValue read_value(const YAML::Node& node, const ParamSpec& spec, const std::string& subject,
                        const SourceLocation& where) const {
    if (is_list_type(spec.type)) return read_list(node, spec, subject, where);
    if (!node.IsScalar()) fail_type(node, spec, subject, where);
    const std::string& text = node.Scalar();
    if (spec.type == ParamType::String) {
      if (!spec.choices.empty() && !contains(spec.choices, text)) {
        fail(where, subject + " must be one of " + join(spec.choices) + "; got " + in_quotes(text));
      }
      return text;
    }
    if (!is_plain(node)) fail_type(node, spec, subject, where);
    switch (spec.type) {
      case ParamType::Bool: {
        std::optional<bool> value = parse_bool(text);
        if (!value) fail_type(node, spec, subject, where);
        return *value;
      }
      case ParamType::Int: {
        std::int64_t value = 0;
        NumberParse parsed = parse_int(text, &value);
        if (parsed == NumberParse::OutOfRange) fail(where, subject + " is out of range: " + in_quotes(text));
        if (parsed != NumberParse::Ok) fail_type(node, spec, subject, where);
        check_bounds(static_cast<double>(value), spec, subject, where, text);
        return value;
      }
      case ParamType::Float: {
        double value = 0;
        NumberParse parsed = parse_float(text, &value);
        if (parsed == NumberParse::OutOfRange) fail(where, subject + " is out of range: " + in_quotes(text));
        if (parsed != NumberParse::Ok) fail_type(node, spec, subject, where);
        check_bounds(value, spec, subject, where, text);
        return value;
      }
      case ParamType::String:
        break;
    }
    return text;
  }

  // A list or range: a sequence of scalars, or one scalar of comma-separated items. Each
  // item's problem is reported at the item: its own node, or its column inside the scalar.
  ParamValue read_list(const YAML::Node& node, const ParamSpec& spec, const std::string& subject,
                       const SourceLocation& where) const {
    ParamValue value = empty_list_value(spec.type);
    auto append = [&](const std::string& item, const SourceLocation& item_where) {
      if (auto problem = append_param_item(spec, item, value); !problem.empty())
        fail(item_where, subject + ": " + problem);
    };
    if (node.IsSequence()) {
      if (spec.type == ParamType::IdRange) fail_type(node, spec, subject, where);
      for (std::size_t index = 0; index < node.size(); ++index) {
        const YAML::Node& item = node[index];
        SourceLocation item_where = item.Mark().is_null() || where.line == 0
                                        ? where
                                        : SourceLocation{source_, item.Mark().line + 1, item.Mark().column + 1};
        if (!item.IsScalar()) fail(item_where, subject + ": items must be scalars, got " + describe(item));
        append(trimmed(item.Scalar()), item_where);
      }
      return value;
    }
    if (!node.IsScalar()) fail_type(node, spec, subject, where);
    const std::string& text = node.Scalar();
    if (trimmed(text).empty()) return value;
    if (spec.type == ParamType::IdRange) {
      append(trimmed(text), where);
      return value;
    }
    // Columns inside the scalar are exact for one-line text without escapes; a quoted
    // scalar's mark is its opening quote.
    const bool columns_exact = where.line > 0 && text.find_first_of("\\\n") == std::string::npos;
    const int first_column = where.column + (is_plain(node) ? 0 : 1);
    std::size_t start = 0;
    while (start <= text.size()) {
      std::size_t end = std::min(text.find(',', start), text.size());
      std::string item = text.substr(start, end - start);
      std::size_t lead = item.find_first_not_of(" \t");
      SourceLocation item_where = where;
      if (columns_exact) item_where.column = first_column + static_cast<int>(start + (lead == std::string::npos ? 0 : lead));
      append(trimmed(item), item_where);
      start = end + 1;
    }
    return value;
  }

  [[noreturn]] void fail_type(const YAML::Node& node, const ParamSpec& spec, const std::string& subject,
                              const SourceLocation& where) const {
    std::string got = describe(node);
    if (node.IsScalar() && !is_plain(node) && spec.type != ParamType::String) got += " (quoted, so a string)";
    fail(where, subject + " must be " + expected_type(spec.type) + ", got " + got);
  }

  void check_bounds(double value, const ParamSpec& spec, const std::string& subject, const SourceLocation& where,
                    const std::string& text) const {
    if (param_in_bounds(spec, value)) return;
    fail(where, subject + " must be " + param_bounds_text(spec) + ", got " + text);
  }

  const std::string& required_path(const Fields& fields, const std::string& key, const SourceLocation& where,
                                   const std::string& what) const {
    auto found = fields.find(key);
    if (found == fields.end()) fail(where, "missing key \"" + key + "\" in " + what);
    const std::string& path = std::get<std::string>(found->second.value);
    if (path.empty()) fail(found->second.where, "key \"" + key + "\" in " + what + " must not be empty");
    check_path_text(path, found->second.where, "key \"" + key + "\" in " + what);
    return path;
  }

  // A quoted path that does not end on its own line is almost always a quote left open: YAML
  // then runs the path on through the lines after it, folding them into spaces.
  void check_path_text(const std::string& path, const SourceLocation& where, const std::string& what) const {
    if (where.line <= 0 || where.line > static_cast<int>(lines_.size()) || where.column <= 0) return;
    const std::string& line = lines_[where.line - 1];
    const auto open = static_cast<std::size_t>(where.column - 1);
    if (open >= line.size() || (line[open] != '"' && line[open] != '\'')) return;
    // The closing quote on the same line, past escaped ones ('' inside single quotes, \" inside double).
    for (std::size_t i = open + 1; i < line.size(); ++i) {
      if (line[open] == '"' && line[i] == '\\') {
        ++i;
      } else if (line[i] == line[open]) {
        if (line[open] == '\'' && i + 1 < line.size() && line[i + 1] == '\'') {
          ++i;
        } else {
          return;
        }
      }
    }
    fail(where, what + " " + in_quotes(one_line(path)) + " starts a quote that this line does not close; a path is one "
                "line (is a quote left open?)");
  }

  ModelSpec read_model(const MapEntry& entry) const {
    ModelSpec model;
    if (entry.value.IsScalar()) {
      if (entry.value.Scalar().empty()) fail(entry.value_where, "model must not be empty");
      check_path_text(entry.value.Scalar(), entry.value_where, "model");
      model.path = entry.value.Scalar();
      model.where = entry.value_where;
      return model;
    }
    if (!entry.value.IsMap()) {
      fail(entry.value_where, "model must be a path or a map {path, config, family}, got " + describe(entry.value));
    }
    Fields fields = read_fields(entry.value, entry.path, entry.value_where, model_fields(), {"key", "in model"},
                                "model", "a path or a map {path, config, family}");
    model.path = required_path(fields, "path", entry.value_where, "model");
    model.where = fields.at("path").where;
    if (auto config = fields.find("config"); config != fields.end()) {
      const std::string& config_path = std::get<std::string>(config->second.value);
      if (config_path.empty()) fail(config->second.where, "key \"config\" in model must not be empty");
      model.config = config_path;
    }
    if (auto family = fields.find("family"); family != fields.end()) {
      model.family = std::get<std::string>(family->second.value);
      if (model.family->empty()) fail(family->second.where, "key \"family\" in model must not be empty");
    }
    return model;
  }

  std::map<std::string, DataSpec> read_data(const MapEntry& section) const {
    std::map<std::string, DataSpec> data;
    for (const MapEntry& entry : map_entries(section.value, section.path, section.value_where, "data",
                                             "a map of data entries (eval, calibration)")) {
      if (!contains(kDataNames, entry.key)) {
        fail(entry.key_where, "unknown key " + in_quotes(entry.key) + " in data; valid keys: " + join(kDataNames));
      }
      data[entry.key] = read_data_entry(entry);
    }
    return data;
  }

  DataSpec read_data_entry(const MapEntry& entry) const {
    const std::string what = "data." + entry.key;
    Fields fields = read_fields(entry.value, entry.path, entry.value_where, data_fields(), {"key", "in " + what}, what,
                                "a map {tokens: file, ...} or {text: file, ...}");
    bool tokens = fields.count("tokens") > 0;
    bool text = fields.count("text") > 0;
    if (tokens && text) {
      fail(fields.at("text").where, what + " has both \"tokens\" and \"text\"; give one");
    }
    if (!tokens && !text) {
      fail(entry.key_where, what + " needs \"tokens\" (a token file) or \"text\" (a text file)");
    }
    const std::vector<std::string>& misplaced = tokens ? kTextOnlyDataKeys : kTokensOnlyDataKeys;
    for (const std::string& key : misplaced) {
      if (auto found = fields.find(key); found != fields.end()) {
        fail(found->second.where, "key \"" + key + "\" in " + what + " applies only to " +
                                      (tokens ? "text data" : "token files") + ", and this entry reads " +
                                      (tokens ? "tokens" : "text"));
      }
    }

    DataSpec spec;
    spec.format = tokens ? DataFormat::Tokens : DataFormat::Text;
    const char* path_key = tokens ? "tokens" : "text";
    spec.path = required_path(fields, path_key, entry.key_where, what);
    spec.where = fields.at(path_key).where;
    auto string_or = [&](const char* key, const char* fallback) {
      auto found = fields.find(key);
      return found == fields.end() ? std::string(fallback) : std::get<std::string>(found->second.value);
    };
    auto bool_or = [&](const char* key, bool fallback) {
      auto found = fields.find(key);
      return found == fields.end() ? fallback : std::get<bool>(found->second.value);
    };
    auto int_or = [&](const char* key, std::int64_t fallback) {
      auto found = fields.find(key);
      return found == fields.end() ? fallback : std::get<std::int64_t>(found->second.value);
    };
    spec.token_type = string_or("dtype", "u16") == "u32" ? TokenFileType::U32 : TokenFileType::U16;
    spec.split = string_or("split", "paragraphs") == "lines" ? TextSplit::Lines : TextSplit::Paragraphs;
    spec.bos = bool_or("bos", spec.bos);
    spec.eos = bool_or("eos", spec.eos);
    spec.pack = bool_or("pack", spec.pack);
    spec.seq_len = int_or("seq_len", spec.seq_len);
    spec.max_tokens = int_or("max_tokens", spec.max_tokens);
    spec.batch_size = int_or("batch_size", spec.batch_size);
    return spec;
  }

  std::vector<PassInvocation> read_passes(const MapEntry& section) const {
    std::vector<PassInvocation> passes;
    const YAML::Node& list = section.value;
    if (!list.IsDefined() || list.IsNull()) return passes;
    if (!list.IsSequence()) {
      fail(section.value_where, "passes must be a sequence (- name: {param: value}), got " + describe(list));
    }
    for (size_t index = 0; index < list.size(); ++index) {
      passes.push_back(read_pass(list[index], child_path(section.path, std::to_string(index)), section.value_where));
    }
    return passes;
  }

  PassInvocation read_pass(const YAML::Node& item, const std::string& path, const SourceLocation& list_where) const {
    SourceLocation where = locate(item, path, list_where);
    PassInvocation pass;
    YAML::Node params;
    std::string params_path;
    SourceLocation params_where;
    if (item.IsScalar()) {
      pass.name = item.Scalar();
      pass.where = where;
    } else if (item.IsMap()) {
      std::vector<MapEntry> entries = map_entries(item, path, where, path, "a map");
      if (entries.size() != 1) {
        std::vector<std::string> keys;
        for (const MapEntry& entry : entries) keys.push_back(entry.key);
        std::string problem =
            "a pass is a map with one key, the pass name; this one has " + std::to_string(entries.size()) + " keys";
        if (!keys.empty()) {
          problem += " (" + join(keys) + "); indent the parameters under the pass name or write - " + keys[0] + ": {" +
                     keys[1] + ": ...}";
        }
        fail(where, problem);
      }
      const MapEntry& entry = entries.front();
      pass.name = entry.key;
      // The name's location is the entry's, so an override of the parameters does not move it.
      pass.where = locate(entry.key_node, path, where);
      params = entry.value;
      params_path = entry.path;
      params_where = entry.value_where;
    } else {
      fail(where, "each entry of passes must be a pass name or a map {name: {param: value}}, got " + describe(item));
    }

    const PassInfo* info = find_pass(pass.name);
    if (info == nullptr) fail(pass.where, "unknown pass " + in_quotes(pass.name) + "; known passes: " + pass_names());
    Fields fields = read_fields(params, params_path, params_where, info->params, {"parameter", "of pass " + pass.name},
                                "the parameters of pass " + pass.name, "a map {param: value}");
    for (const auto& group : info->exclusive_params) {
      const Field* first = nullptr;
      std::string first_name;
      for (const auto& name : group) {
        auto given = fields.find(name);
        if (given == fields.end()) continue;
        if (first == nullptr) {
          first = &given->second;
          first_name = name;
          continue;
        }
        fail(given->second.where, "parameters " + in_quotes(first_name) + " (at " + first->where.str() + ") and " +
                                      in_quotes(name) + " of pass " + pass.name + " exclude each other; give one of " +
                                      join(group));
      }
    }
    for (const auto& [name, field] : fields) pass.given.insert(name);
    for (const ParamSpec& spec : info->params) {
      auto found = fields.find(spec.name);
      pass.params.set(spec.name, found == fields.end() ? spec.default_value : found->second.value);
    }
    return pass;
  }

  std::vector<OutputSpec> read_outputs(const MapEntry& section) const {
    std::vector<OutputSpec> outputs;
    const YAML::Node& list = section.value;
    if (!list.IsDefined() || list.IsNull()) return outputs;
    if (!list.IsSequence()) {
      fail(section.value_where,
           "outputs must be a sequence (- {format: onnx|safetensors, path: ...}), got " + describe(list));
    }
    std::map<std::string, SourceLocation> written;  // normalized path -> where
    for (size_t index = 0; index < list.size(); ++index) {
      std::string path = child_path(section.path, std::to_string(index));
      SourceLocation where = locate(list[index], path, section.value_where);
      Fields fields = read_fields(list[index], path, where, output_fields(), {"key", "in " + path}, path,
                                  "a map {format: onnx|safetensors, path: ...}");
      OutputSpec output;
      auto format = fields.find("format");
      if (format == fields.end()) {
        fail(where, "missing key \"format\" in " + path + "; valid formats: " + join(kOutputFormats));
      }
      output.format = std::get<std::string>(format->second.value);
      if (!contains(kOutputFormats, output.format)) {
        fail(format->second.where,
             "unknown output format " + in_quotes(output.format) + "; valid formats: " + join(kOutputFormats));
      }
      output.path = required_path(fields, "path", where, path);
      output.where = fields.at("path").where;
      for (const char* key : {"dtype", "max_shard_size"})
        if (auto found = fields.find(key); found != fields.end() && output.format != "safetensors")
          fail(found->second.where, std::string(key) + " applies to safetensors outputs; ONNX files hold float32 and int8");
      if (auto found = fields.find("external_data"); found != fields.end()) {
        if (output.format != "onnx") fail(found->second.where, "external_data applies to ONNX outputs");
        output.external_data = std::get<bool>(found->second.value);
      }
      if (auto dtype = fields.find("dtype"); dtype != fields.end()) output.dtype = std::get<std::string>(dtype->second.value);
      if (auto size = fields.find("max_shard_size"); size != fields.end())
        output.max_shard_size = std::get<std::int64_t>(size->second.value);
      std::filesystem::path normalized = output.path.lexically_normal();
      if (!normalized.has_filename() && normalized.has_parent_path()) normalized = normalized.parent_path();
      auto [earlier, inserted] = written.emplace(normalized.string(), output.where);
      if (!inserted) {
        fail(output.where, "duplicate output path " + in_quotes(output.path.string()) +
                               "; already written by the output at " + earlier->second.str());
      }
      outputs.push_back(std::move(output));
    }
    return outputs;
  }

  Gates read_gates(const MapEntry& section) const {
    Gates gates;
    gates.where = section.key_where;
    Fields fields = read_fields(section.value, section.path, section.value_where, gate_fields(), {"key", "in gates"},
                                "gates", "a map {max_kl: 0.2, ...}");
    auto value = [&](const char* key) -> std::optional<double> {
      auto found = fields.find(key);
      if (found == fields.end()) return std::nullopt;
      return std::get<double>(found->second.value);
    };
    gates.max_perplexity_increase = value("max_perplexity_increase");
    gates.max_loss_increase = value("max_loss_increase");
    gates.max_kl = value("max_kl");
    gates.min_top1_agreement = value("min_top1_agreement");
    return gates;
  }

  std::string source_;
  const OverrideTable& overrides_;
  std::vector<std::string> lines_;  // of the recipe file, to find where a quoted scalar ends
};

// Where each YAML document starts, and nothing else.
class DocumentStarts : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

YAML::Node load_document(const std::string& yaml_text, const std::string& source) {
  YAML::Node document;
  DocumentStarts documents;
  try {
    document = YAML::Load(yaml_text);
    // Not YAML::LoadAll: on some malformed input (found by fuzz/recipe_fuzzer) yaml-cpp 0.7's
    // parser returns empty documents forever without reading on, and LoadAll collects them
    // until memory runs out. Two are all it takes to know there is more than one.
    std::istringstream stream(yaml_text);
    YAML::Parser parser(stream);
    while (documents.starts.size() < 2 && parser.HandleNextDocument(documents)) {
    }
  } catch (const YAML::Exception& error) {
    SourceLocation where{source, 0, 0};
    if (!error.mark.is_null()) where = SourceLocation{source, error.mark.line + 1, error.mark.column + 1};
    throw InputError(where.str() + ": invalid YAML: " + one_line(error.msg));
  }
  if (documents.starts.size() > 1) {
    const YAML::Mark& mark = documents.starts[1];
    SourceLocation where{source, mark.is_null() ? 0 : mark.line + 1, mark.is_null() ? 0 : mark.column + 1};
    throw InputError(where.str() + ": the recipe has more than one YAML document; expected one");
  }
  return document;
}

// ---------------------------------------------------------------------------------------
// Writing a recipe back.

void emit_value(YAML::Emitter& out, const ParamValue& value) {
  if (const bool* flag = std::get_if<bool>(&value)) {
    out << *flag;
  } else if (is_list_type(static_cast<ParamType>(value.index())) && !std::holds_alternative<IdRange>(value)) {
    out << YAML::Flow << YAML::BeginSeq;
    for (const auto& item : param_list_items(value)) out << item;
    out << YAML::EndSeq;
  } else {
    // Numbers as their shortest exact text; strings as they are (the emitter quotes them
    // where YAML would misread them).
    out << param_value_to_string(value);
  }
}

void emit_params(YAML::Emitter& out, const PassInvocation& pass) {
  out << YAML::Flow << YAML::BeginMap;
  const PassInfo* info = find_pass(pass.name);
  std::vector<std::string> order;
  if (info != nullptr) {
    for (const ParamSpec& spec : info->params) order.push_back(spec.name);
  }
  for (const auto& [name, value] : pass.params.values()) {
    if (!contains(order, name)) order.push_back(name);
  }
  // Of parameters that exclude each other, only the one given (or, with none given, the first).
  auto excluded = [&](const std::string& name) {
    if (info == nullptr) return false;
    for (const auto& group : info->exclusive_params) {
      if (!contains(group, name)) continue;
      const bool any_given = std::any_of(group.begin(), group.end(), [&](const auto& member) { return pass.given.count(member) > 0; });
      return any_given ? pass.given.count(name) == 0 : name != group.front();
    }
    return false;
  };
  for (const std::string& name : order) {
    auto found = pass.params.values().find(name);
    if (found == pass.params.values().end() || excluded(name)) continue;
    out << YAML::Key << name << YAML::Value;
    emit_value(out, found->second);
  }
  out << YAML::EndMap;
}

void emit_data(YAML::Emitter& out, const DataSpec& spec) {
  out << YAML::Flow << YAML::BeginMap;
  if (spec.format == DataFormat::Tokens) {
    out << YAML::Key << "tokens" << YAML::Value << spec.path.string();
    out << YAML::Key << "dtype" << YAML::Value << (spec.token_type == TokenFileType::U32 ? "u32" : "u16");
  } else {
    out << YAML::Key << "text" << YAML::Value << spec.path.string();
    out << YAML::Key << "split" << YAML::Value << (spec.split == TextSplit::Lines ? "lines" : "paragraphs");
    out << YAML::Key << "bos" << YAML::Value << spec.bos;
    out << YAML::Key << "eos" << YAML::Value << spec.eos;
    out << YAML::Key << "pack" << YAML::Value << spec.pack;
  }
  out << YAML::Key << "seq_len" << YAML::Value << spec.seq_len;
  out << YAML::Key << "max_tokens" << YAML::Value << spec.max_tokens;
  out << YAML::Key << "batch_size" << YAML::Value << spec.batch_size;
  out << YAML::EndMap;
}

}  // namespace

Recipe parse_recipe(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  YAML::Node root = load_document(yaml_text, source);
  OverrideTable table;
  OverrideApplier applier(root, table);
  for (const std::string& text : overrides) applier.apply(text);
  return RecipeReader(source, table, yaml_text).read(root);
}

Recipe load_recipe(const std::filesystem::path& path, const std::vector<std::string>& overrides) {
  return parse_recipe(read_bounded_file(path, kRecipeFile), path.string(), overrides);
}

std::string recipe_to_yaml(const Recipe& recipe) {
  YAML::Emitter out;
  out << YAML::BeginMap;

  out << YAML::Key << "model" << YAML::Value;
  if (recipe.model.config || recipe.model.family) {
    out << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "path" << YAML::Value << recipe.model.path.string();
    if (recipe.model.config) out << YAML::Key << "config" << YAML::Value << recipe.model.config->string();
    if (recipe.model.family) out << YAML::Key << "family" << YAML::Value << *recipe.model.family;
    out << YAML::EndMap;
  } else {
    out << recipe.model.path.string();
  }

  out << YAML::Key << "data" << YAML::Value;
  if (recipe.data.empty()) out << YAML::Flow;
  out << YAML::BeginMap;
  for (const auto& [name, spec] : recipe.data) {
    out << YAML::Key << name << YAML::Value;
    emit_data(out, spec);
  }
  out << YAML::EndMap;

  out << YAML::Key << "passes" << YAML::Value;
  if (recipe.passes.empty()) out << YAML::Flow;
  out << YAML::BeginSeq;
  for (const PassInvocation& pass : recipe.passes) {
    if (pass.params.values().empty()) {
      out << pass.name;
      continue;
    }
    out << YAML::BeginMap << YAML::Key << pass.name << YAML::Value;
    emit_params(out, pass);
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;

  out << YAML::Key << "outputs" << YAML::Value;
  if (recipe.outputs.empty()) out << YAML::Flow;
  out << YAML::BeginSeq;
  for (const OutputSpec& output : recipe.outputs) {
    out << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "format" << YAML::Value << output.format;
    out << YAML::Key << "path" << YAML::Value << output.path.string();
    if (output.format == "onnx") out << YAML::Key << "external_data" << YAML::Value << output.external_data;
    if (output.format == "safetensors") {
      out << YAML::Key << "dtype" << YAML::Value << output.dtype;
      out << YAML::Key << "max_shard_size" << YAML::Value << output.max_shard_size;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;

  const std::pair<const char*, const std::optional<double>*> gates[] = {
      {"max_perplexity_increase", &recipe.gates.max_perplexity_increase},
      {"max_loss_increase", &recipe.gates.max_loss_increase},
      {"max_kl", &recipe.gates.max_kl},
      {"min_top1_agreement", &recipe.gates.min_top1_agreement},
  };
  out << YAML::Key << "gates" << YAML::Value;
  bool any_gate = false;
  for (const auto& [name, value] : gates) any_gate = any_gate || value->has_value();
  if (!any_gate) out << YAML::Flow;
  out << YAML::BeginMap;
  for (const auto& [name, value] : gates) {
    if (*value) out << YAML::Key << name << YAML::Value << param_value_to_string(**value);
  }
  out << YAML::EndMap;

  out << YAML::EndMap;
  if (!out.good()) throw std::logic_error("cannot write the recipe as YAML: " + out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

}  // namespace lathe

namespace lathe {
namespace {

// recipe_to_yaml's text typed again: its plain scalars are numbers, bools or names, and the
// emitter quotes every string that YAML would read as something else.
nlohmann::json yaml_to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      auto json = nlohmann::json::object();
      for (auto it = node.begin(); it != node.end(); ++it) json[it->first.Scalar()] = yaml_to_json(it->second);
      return json;
    }
    case YAML::NodeType::Sequence: {
      auto json = nlohmann::json::array();
      for (const auto& item : node) json.push_back(yaml_to_json(item));
      return json;
    }
    case YAML::NodeType::Scalar: {
      const std::string& text = node.Scalar();
      if (!is_plain(node)) return text;
      if (auto flag = parse_bool(text)) return *flag;
      std::int64_t integer = 0;
      if (parse_int(text, &integer) == NumberParse::Ok) return integer;
      double number = 0;
      if (parse_float(text, &number) == NumberParse::Ok) return number;
      return text;
    }
    default:
      return nullptr;
  }
}

}  // namespace

nlohmann::json recipe_to_json(const Recipe& recipe) { return yaml_to_json(YAML::Load(recipe_to_yaml(recipe))); }

}  // namespace lathe
