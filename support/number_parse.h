#pragma once

// Numbers as lathe's inputs spell them, stricter than YAML or strtod: an int is digits with an
// optional sign, no fraction or exponent; a float is a finite decimal number ("inf", "nan" and
// hexadecimal, which from_chars would read, are not numbers here).

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <system_error>

namespace lathe {

enum class NumberParse { Ok, NotANumber, OutOfRange };

inline NumberParse parse_int(std::string_view text, std::int64_t* value) {
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  if (text.empty() || text.front() == '+') return NumberParse::NotANumber;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  if (end != text.data() + text.size()) return NumberParse::NotANumber;
  if (error == std::errc::result_out_of_range) return NumberParse::OutOfRange;
  return error == std::errc() ? NumberParse::Ok : NumberParse::NotANumber;
}

inline NumberParse parse_float(std::string_view text, double* value) {
  if (text.find_first_not_of("0123456789.eE+-") != std::string_view::npos) return NumberParse::NotANumber;
  if (text.find_first_of("0123456789") == std::string_view::npos) return NumberParse::NotANumber;
  if (text.front() == '+') text.remove_prefix(1);
  if (text.empty() || text.front() == '+') return NumberParse::NotANumber;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  if (end != text.data() + text.size()) return NumberParse::NotANumber;
  if (error == std::errc::result_out_of_range || (error == std::errc() && !std::isfinite(*value)))
    return NumberParse::OutOfRange;
  return error == std::errc() ? NumberParse::Ok : NumberParse::NotANumber;
}

}  // namespace lathe
