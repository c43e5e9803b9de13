#pragma once

// What a pass is: a name, typed parameters declared once with their defaults and one-line
// docs, and a run function over the model. The registry (pass_registry.h) lists every pass;
// it is the single source for `lathe passes`, recipe validation and the docs.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/head_annotations.h"

namespace lathe {

class Model;
class PassContext;

enum class ParamType { Bool, Int, Float, String, IntList, FloatList, HeadList, IdRange, PatternList };
const char* param_type_name(ParamType type);
// Lists and ranges: a YAML sequence or one comma-separated scalar in a recipe.
bool is_list_type(ParamType type);

// Heads a recipe names: role words from the parameter's choices ("retrieval") and layer.head
// pairs (whether the model has them is the pass's header check).
struct HeadList {
  std::vector<std::string> roles;
  std::vector<HeadId> heads;
  bool empty() const { return roles.empty() && heads.empty(); }
  bool has_role(const std::string& role) const;
  bool operator==(const HeadList&) const = default;
};
// Token ids FIRST-LAST, both included; empty when the recipe gives none.
struct IdRange {
  std::int64_t first = 0;
  std::int64_t last = -1;
  bool empty() const { return last < first; }
  bool operator==(const IdRange&) const = default;
};

// Alternatives in ParamType order.
using ParamValue = std::variant<bool, std::int64_t, double, std::string, std::vector<std::int64_t>, std::vector<double>,
                                HeadList, IdRange, std::vector<std::string>>;
// Lists as "a, b, c", ranges as "first-last": the text a recipe may give.
std::string param_value_to_string(const ParamValue& value);
// The text of each item of a list or range ("259-511" is a range's one item; none when empty).
std::vector<std::string> param_list_items(const ParamValue& value);

struct ParamSpec {
  std::string name;
  ParamType type;
  ParamValue default_value;
  std::string doc;
  // String: the values allowed (empty: any string). HeadList: the role words allowed.
  std::vector<std::string> choices;
  // Inclusive bounds for Int and Float parameters, and for each number of a list or range.
  std::optional<double> min;
  std::optional<double> max;
};

// Whether `number` lies within the spec's bounds, and the bounds as a message says them:
// "between 0 and 1", ">= 3", "<= 100".
bool param_in_bounds(const ParamSpec& spec, double number);
std::string param_bounds_text(const ParamSpec& spec);

// The empty value of a list or range type.
ParamValue empty_list_value(ParamType type);
// Appends one item of a list (or, for IdRange, reads the whole "first-last") to `value`.
// Returns what is wrong with the item, without naming the parameter; empty when it is good.
std::string append_param_item(const ParamSpec& spec, const std::string& item, ParamValue& value);

// A pass's parameters after validation: every declared parameter has a value of its type.
class ParamValues {
 public:
  void set(const std::string& name, ParamValue value) { values_[name] = std::move(value); }
  bool get_bool(const std::string& name) const;
  std::int64_t get_int(const std::string& name) const;
  double get_float(const std::string& name) const;
  const std::string& get_string(const std::string& name) const;
  const std::vector<std::int64_t>& get_int_list(const std::string& name) const;
  const std::vector<double>& get_float_list(const std::string& name) const;
  const HeadList& get_heads(const std::string& name) const;
  const IdRange& get_id_range(const std::string& name) const;
  const std::vector<std::string>& get_patterns(const std::string& name) const;
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  const std::map<std::string, ParamValue>& values() const { return values_; }

 private:
  const ParamValue& at(const std::string& name) const;
  std::map<std::string, ParamValue> values_;
};

// The analyses a pass left valid. Transforms that change weights or structure return
// `none()`; analyses and evaluations return `all()`.
class PreservedAnalyses {
 public:
  static PreservedAnalyses all() { return PreservedAnalyses(true); }
  static PreservedAnalyses none() { return PreservedAnalyses(false); }
  PreservedAnalyses& preserve(const std::string& analysis) {
    kept_.push_back(analysis);
    return *this;
  }
  bool preserved(const std::string& analysis) const;
  bool preserves_all() const { return all_; }

 private:
  explicit PreservedAnalyses(bool all) : all_(all) {}
  bool all_;
  std::vector<std::string> kept_;
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual PreservedAnalyses run(Model& model, PassContext& context) = 0;
};

enum class PassKind { Analysis, Transform, Evaluation };
const char* pass_kind_name(PassKind kind);

// What the passes of a recipe have done to the model by some point of it, so that an order
// that cannot work is refused before any work. Each field names who did it ("the checkpoint",
// or "quantize at r.yaml:7:5"); empty when nothing has.
struct PlannedModel {
  std::string quantized;
  std::string gated_attention;
  std::string clipped_softmax;
  std::map<std::string, std::string> head_roles;  // "retrieval" -> who marked those heads
};

struct PassInfo {
  std::string name;
  PassKind kind;
  std::string summary;
  std::vector<ParamSpec> params;
  std::function<std::unique_ptr<Pass>(const ParamValues&)> create;
  // Passes that hold the whole model's values in memory at once (training, gradients, decoding
  // with a KV cache over every layer): the bytes they need for it. Unset or 0: the pass runs
  // the model one layer at a time.
  std::function<std::int64_t(const ParamValues&, const Model&)> whole_model_bytes;
  // Checks the parameters against the model's header before any work (run, --dry-run and
  // validate): ids are in the vocabulary, heads exist, lengths fit. InputError naming `where`.
  std::function<void(const ParamValues&, const Model&, const std::string& where)> check;
  // Refuses the model as the earlier passes leave it (InputError naming `where`) and records
  // what this pass does to it.
  std::function<void(PlannedModel&, const ParamValues&, const std::string& where)> plan;
  // Groups of parameters of which a recipe gives at most one.
  std::vector<std::vector<std::string>> exclusive_params;

  const ParamSpec* find_param(const std::string& param) const;
};

}  // namespace lathe
