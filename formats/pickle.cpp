#include "formats/pickle.h"

#include <cstring>

#include "support/errors.h"

namespace lathe {
namespace {

class PickleMachine {
 public:
  PickleMachine(const std::string& bytes, const PickleCallbacks& callbacks, const std::string& origin)
      : bytes_(bytes), callbacks_(callbacks), origin_(origin) {}

  PickleValue run() {
    while (true) {
      const auto opcode = static_cast<std::uint8_t>(next_bytes(1)[0]);
      switch (opcode) {
        case 0x80: next_bytes(1); break;  // PROTO
        case 0x95: next_bytes(8); break;  // FRAME
        case '.': return pop();           // STOP
        case '(': push(mark()); break;
        case ')': push(tuple({})); break;
        case ']': push(list({})); break;
        case '}': push(PickleValue::dict()); break;
        case 'N': push(PickleValue::none()); break;
        case 0x88: push(boolean(true)); break;
        case 0x89: push(boolean(false)); break;
        case 'K': push(integer(unsigned_le(1))); break;
        case 'M': push(integer(unsigned_le(2))); break;
        case 'J': push(integer(static_cast<std::int32_t>(unsigned_le(4)))); break;
        case 0x8a: push(integer(long1())); break;
        case 'G': push(float64()); break;
        case 'X': push(PickleValue::string(next_bytes(unsigned_le(4)))); break;
        case 0x8c: push(PickleValue::string(next_bytes(unsigned_le(1)))); break;
        case 'U': push(PickleValue::string(next_bytes(unsigned_le(1)))); break;
        case 'T': push(PickleValue::string(next_bytes(unsigned_le(4)))); break;
        case 'c': push(global()); break;
        case 'q': memo_[unsigned_le(1)] = top(); break;
        case 'r': memo_[unsigned_le(4)] = top(); break;
        case 0x94: memo_[memo_.size()] = top(); break;  // MEMOIZE
        case 'h': push(memo(unsigned_le(1))); break;
        case 'j': push(memo(unsigned_le(4))); break;
        case 't': push(tuple(pop_to_mark())); break;
        case 0x85: { auto a = pop(); push(tuple({a})); break; }
        case 0x86: { auto b = pop(), a = pop(); push(tuple({a, b})); break; }
        case 0x87: { auto c = pop(), b = pop(), a = pop(); push(tuple({a, b, c})); break; }
        case 'a': { auto item = pop(); container(top(), PickleValue::Kind::List).items->push_back(item); break; }
        case 'e': { auto items = pop_to_mark(); auto& list = container(top(), PickleValue::Kind::List);
                    list.items->insert(list.items->end(), items.begin(), items.end()); break; }
        case 's': { auto value = pop(), key = pop(); container(top(), PickleValue::Kind::Dict).entries->emplace_back(key, value); break; }
        case 'u': { auto items = pop_to_mark(); auto& dict = container(top(), PickleValue::Kind::Dict);
                    if (items.size() % 2 != 0) fail("SETITEMS with an odd number of items");
                    for (std::size_t i = 0; i < items.size(); i += 2) dict.entries->emplace_back(items[i], items[i + 1]);
                    break; }
        case 'b': pop(); break;  // BUILD: state for objects lathe does not keep (a state dict's _metadata)
        case 'R': { auto arguments = pop(), callable = pop(); push(reduce(callable, arguments)); break; }
        case 'Q': { auto id = pop(); push(callbacks_.persistent_load(id)); break; }
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", opcode);
          fail(std::string("unsupported pickle opcode ") + hex);
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const {
    throw InputError(origin_, problem + " at byte " + std::to_string(position_) + " of the pickle");
  }

  std::string next_bytes(std::size_t count) {
    if (count > bytes_.size() - position_) fail("truncated pickle");
    auto out = bytes_.substr(position_, count);
    position_ += count;
    return out;
  }

  std::uint64_t unsigned_le(std::size_t count) {
    const auto raw = next_bytes(count);
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < count; ++i) value |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(raw[i])) << (8 * i);
    return value;
  }

  std::int64_t long1() {
    const auto count = unsigned_le(1);
    if (count > 8) fail("integer wider than 64 bits");
    if (count == 0) return 0;
    auto value = unsigned_le(count);
    if (count < 8 && (value >> (8 * count - 1)) & 1) value |= ~std::uint64_t{0} << (8 * count);  // sign-extend
    return static_cast<std::int64_t>(value);
  }

  PickleValue float64() {
    const auto raw = next_bytes(8);
    std::uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<std::uint8_t>(raw[i]);  // big-endian
    PickleValue value;
    value.kind = PickleValue::Kind::Float;
    std::memcpy(&value.number, &bits, 8);
    return value;
  }

  std::string line() {
    const auto end = bytes_.find('\n', position_);
    if (end == std::string::npos) fail("truncated GLOBAL");
    auto text = bytes_.substr(position_, end - position_);
    position_ = end + 1;
    return text;
  }

  PickleValue global() {
    PickleValue value;
    value.kind = PickleValue::Kind::Global;
    value.global.module = line();
    value.global.name = line();
    return value;
  }

  static PickleValue mark() { PickleValue value; value.kind = PickleValue::Kind::Mark; return value; }
  static PickleValue boolean(bool b) { PickleValue value; value.kind = PickleValue::Kind::Bool; value.boolean = b; return value; }
  static PickleValue integer(std::int64_t i) { PickleValue value; value.kind = PickleValue::Kind::Int; value.integer = i; return value; }
  static PickleValue sequence(PickleValue::Kind kind, PickleList items) {
    PickleValue value;
    value.kind = kind;
    value.items = std::make_shared<PickleList>(std::move(items));
    return value;
  }
  static PickleValue tuple(PickleList items) { return sequence(PickleValue::Kind::Tuple, std::move(items)); }
  static PickleValue list(PickleList items) { return sequence(PickleValue::Kind::List, std::move(items)); }

  PickleValue reduce(const PickleValue& callable, const PickleValue& arguments) {
    if (callable.kind != PickleValue::Kind::Global) fail(std::string("REDUCE of a ") + callable.kind_name());
    if (arguments.kind != PickleValue::Kind::Tuple) fail("REDUCE arguments are not a tuple");
    if (callable.global.module == "collections" && callable.global.name == "OrderedDict") return PickleValue::dict();
    return callbacks_.reduce(callable.global, arguments);
  }

  PickleValue& container(PickleValue& value, PickleValue::Kind kind) {
    if (value.kind != kind)
      fail(std::string(kind == PickleValue::Kind::List ? "APPEND" : "SETITEM") + " on a " + value.kind_name());
    return value;
  }

  void push(PickleValue value) {
    if (stack_.size() > 1'000'000) fail("pickle stack too deep");
    stack_.push_back(std::move(value));
  }
  PickleValue& top() {
    if (stack_.empty() || stack_.back().kind == PickleValue::Kind::Mark) fail("pickle stack underflow");
    return stack_.back();
  }
  PickleValue pop() {
    auto value = top();
    stack_.pop_back();
    return value;
  }
  PickleList pop_to_mark() {
    PickleList items;
    while (!stack_.empty() && stack_.back().kind != PickleValue::Kind::Mark) {
      items.insert(items.begin(), std::move(stack_.back()));
      stack_.pop_back();
    }
    if (stack_.empty()) fail("no MARK on the pickle stack");
    stack_.pop_back();
    return items;
  }
  PickleValue memo(std::uint64_t key) {
    auto found = memo_.find(key);
    if (found == memo_.end()) fail("memo entry " + std::to_string(key) + " was never stored");
    return found->second;
  }

  const std::string& bytes_;
  const PickleCallbacks& callbacks_;
  const std::string& origin_;
  std::size_t position_ = 0;
  std::vector<PickleValue> stack_;
  std::map<std::uint64_t, PickleValue> memo_;
};

}  // namespace

PickleValue PickleValue::string(std::string value) {
  PickleValue result;
  result.kind = Kind::String;
  result.text = std::move(value);
  return result;
}

PickleValue PickleValue::dict() {
  PickleValue result;
  result.kind = Kind::Dict;
  result.entries = std::make_shared<std::vector<std::pair<PickleValue, PickleValue>>>();
  return result;
}

PickleValue PickleValue::make_object(std::any value) {
  PickleValue result;
  result.kind = Kind::Object;
  result.object = std::move(value);
  return result;
}

const char* PickleValue::kind_name() const {
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "string";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Object: return "object";
    case Kind::Mark: return "mark";
  }
  return "?";
}

PickleValue read_pickle(const std::string& bytes, const PickleCallbacks& callbacks, const std::string& origin) {
  return PickleMachine(bytes, callbacks, origin).run();
}

}  // namespace lathe
