#pragma once

// A small, strict reader for the subset of Python's pickle format (protocols 2 to 4) that
// torch.save writes for state dicts. It knows no Python classes itself: REDUCE of a global and
// persistent ids are handed to the caller, which builds tensors from them. Anything outside the
// subset is an InputError, never arbitrary code execution.

#include <any>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lathe {

struct PickleValue;
using PickleList = std::vector<PickleValue>;

struct PickleGlobal {
  std::string module;
  std::string name;
  std::string qualified() const { return module + "." + name; }
};

struct PickleValue {
  enum class Kind { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Object, Mark };
  Kind kind = Kind::None;
  bool boolean = false;
  std::int64_t integer = 0;
  double number = 0;
  std::string text;
  std::shared_ptr<PickleList> items;  // Tuple and List
  std::shared_ptr<std::vector<std::pair<PickleValue, PickleValue>>> entries;  // Dict, in order
  PickleGlobal global;
  std::any object;  // what the caller's callbacks made (a tensor, a storage)

  static PickleValue none() { return {}; }
  static PickleValue string(std::string value);
  static PickleValue dict();
  static PickleValue make_object(std::any value);
  const char* kind_name() const;
};

struct PickleCallbacks {
  // REDUCE: `callable` applied to the tuple `arguments`.
  std::function<PickleValue(const PickleGlobal& callable, const PickleValue& arguments)> reduce;
  // BINPERSID: the object for a persistent id.
  std::function<PickleValue(const PickleValue& persistent_id)> persistent_load;
};

// Runs the pickle program in `bytes` and returns the value STOP leaves. `origin` names the
// file in error messages.
PickleValue read_pickle(const std::string& bytes, const PickleCallbacks& callbacks, const std::string& origin);

}  // namespace lathe
