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

namespace lathe {

class Model;
class PassContext;

enum class ParamType { Bool, Int, Float, String };
const char* param_type_name(ParamType type);

using ParamValue = std::variant<bool, std::int64_t, double, std::string>;
std::string param_value_to_string(const ParamValue& value);

struct ParamSpec {
  std::string name;
  ParamType type;
  ParamValue default_value;
  std::string doc;
  std::vector<std::string> choices;  // for String parameters; empty means any string
  std::optional<double> min;          // inclusive bounds for Int and Float parameters
  std::optional<double> max;
};

// A pass's parameters after validation: every declared parameter has a value of its type.
class ParamValues {
 public:
  void set(const std::string& name, ParamValue value) { values_[name] = std::move(value); }
  bool get_bool(const std::string& name) const;
  std::int64_t get_int(const std::string& name) const;
  double get_float(const std::string& name) const;
  const std::string& get_string(const std::string& name) const;
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
  // validate): lists and ranges parse, ids and heads exist. InputError naming `where`.
  std::function<void(const ParamValues&, const Model&, const std::string& where)> check;

  const ParamSpec* find_param(const std::string& param) const;
};

}  // namespace lathe
