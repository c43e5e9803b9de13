#pragma once

// Parsing JSON input files with one-line errors that name the file, line and column.
// Header-only: shared by the safetensors, config, index and vocabulary readers.

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <iterator>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/bounded_file.h"
#include "support/errors.h"

namespace lathe {

// `text` as a JSON string literal, for quoting names in messages.
inline std::string quote(const std::string& text) {
  return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// "string", "number", "object", ... for "must be X, got Y" messages.
inline std::string json_type(const nlohmann::json& value) { return value.type_name(); }

// "line L, column C" of the byte at `index` (0-based) in `text`.
inline std::string json_location(std::string_view text, std::size_t index) {
  auto before = text.substr(0, std::min(index, text.size()));
  std::size_t line = 1 + static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
  std::size_t line_start = before.rfind('\n');
  std::size_t column = line_start == std::string_view::npos ? before.size() + 1 : before.size() - line_start;
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

// Finds duplicate object keys in one SAX pass over already-parsed text, in time linear in its
// size. (nlohmann's callback parser can reject them while parsing, but it scans the enclosing
// object at every nested object's end: a header of 30,000 tensors took 12 s.)
class DuplicateKeyFinder : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::optional<std::string> duplicate;

  bool start_object(std::size_t) override { open_objects_.emplace_back(); return true; }
  bool end_object() override { open_objects_.pop_back(); return true; }
  bool key(string_t& key) override {
    if (open_objects_.back().insert(key).second) return true;
    duplicate = key;
    return false;
  }
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  std::vector<std::set<std::string>> open_objects_;
};

// Parses `text` as JSON. A syntax error is an InputError naming `origin`:
// "<origin>: invalid <what> at line L, column C: <detail>". Duplicate object keys are an error
// too: readers would otherwise silently keep only one of the values.
inline nlohmann::json parse_json(std::string_view text, const std::string& origin,
                                 const std::string& what = "JSON") {
  // nlohmann stops at a NUL byte as if the input ended there: refuse it instead.
  if (auto nul = text.find('\0'); nul != std::string_view::npos)
    throw InputError(origin, "invalid " + what + " at " + json_location(text, nul) + ": NUL byte");
  nlohmann::json parsed;
  try {
    parsed = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& error) {
    // error.byte is 1-based and points one past the end for an unexpected end of input.
    std::size_t index = error.byte == 0 ? 0 : error.byte - 1;
    // what() is "[json.exception.parse_error.101] parse error at ...: <detail>".
    std::string detail = error.what();
    auto separator = detail.find(": ", detail.find("parse error"));
    if (separator != std::string::npos) detail = detail.substr(separator + 2);
    throw InputError(origin, "invalid " + what + " at " + json_location(text, index) + ": " + detail);
  } catch (const nlohmann::json::out_of_range& error) {  // a number beyond a double, such as 1e400
    std::string detail = error.what();
    if (auto bracket = detail.find("] "); bracket != std::string::npos) detail = detail.substr(bracket + 2);
    throw InputError(origin, "invalid " + what + ": " + detail);
  }
  DuplicateKeyFinder finder;
  nlohmann::json::sax_parse(text.begin(), text.end(), &finder);
  if (finder.duplicate) throw InputError(origin, "duplicate key " + quote(*finder.duplicate) + " in the " + what);
  return parsed;
}

// Reads and parses a whole JSON file of at most kind.limit bytes.
inline nlohmann::json read_json_file(const std::filesystem::path& path, const FileKind& kind = kConfigFile) {
  return parse_json(read_bounded_file(path, kind), path.string());
}

}  // namespace lathe
