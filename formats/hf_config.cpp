#include "formats/hf_config.h"

#include <cmath>
#include <limits>

#include "formats/json_reader.h"
#include "support/errors.h"

namespace lathe {
namespace {

using nlohmann::json;

bool is_integral(const json& value) {
  if (value.is_number_integer()) return true;  // also true for unsigned
  if (!value.is_number_float()) return false;
  double number = value.get<double>();
  return std::isfinite(number) && number == std::trunc(number);
}

}  // namespace

HfConfig HfConfig::load(const std::filesystem::path& path) {
  return from_json(read_json_file(path), path);
}

HfConfig HfConfig::from_json(nlohmann::json json, std::filesystem::path origin) {
  if (!json.is_object())
    throw InputError(origin.string(), "top level must be a JSON object, got " + json_type(json));
  HfConfig config;
  config.json_ = std::move(json);
  config.origin_ = std::move(origin);
  return config;
}

// A key whose value is null ("pad_token_id": null) counts as absent.
bool HfConfig::has(const std::string& key) const {
  auto it = json_.find(key);
  return it != json_.end() && !it->is_null();
}

std::optional<std::int64_t> HfConfig::find_int(const std::string& key) const {
  auto it = json_.find(key);
  if (it == json_.end() || it->is_null()) return std::nullopt;
  auto fail = [&] {
    return InputError(origin_.string(), "key " + quote(key) + " must be an integer, got " +
                                            (it->is_number() ? it->dump() : json_type(*it)));
  };
  if (!is_integral(*it)) throw fail();
  if (it->is_number_unsigned()) {
    if (it->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      throw fail();
    return it->get<std::int64_t>();
  }
  if (it->is_number_float()) {
    // 2^63 is exactly representable; anything at or beyond it does not fit.
    double number = it->get<double>();
    if (number < -9223372036854775808.0 || number >= 9223372036854775808.0) throw fail();
    return static_cast<std::int64_t>(number);
  }
  return it->get<std::int64_t>();
}

std::optional<double> HfConfig::find_double(const std::string& key) const {
  auto it = json_.find(key);
  if (it == json_.end() || it->is_null()) return std::nullopt;
  if (!it->is_number())
    throw InputError(origin_.string(), "key " + quote(key) + " must be a number, got " + json_type(*it));
  return it->get<double>();
}

std::optional<bool> HfConfig::find_bool(const std::string& key) const {
  auto it = json_.find(key);
  if (it == json_.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean())
    throw InputError(origin_.string(),
                     "key " + quote(key) + " must be true or false, got " + json_type(*it));
  return it->get<bool>();
}

std::optional<std::string> HfConfig::find_string(const std::string& key) const {
  auto it = json_.find(key);
  if (it == json_.end() || it->is_null()) return std::nullopt;
  if (!it->is_string())
    throw InputError(origin_.string(), "key " + quote(key) + " must be a string, got " + json_type(*it));
  return it->get<std::string>();
}

namespace {

template <typename T>
T required(const std::optional<T>& value, const nlohmann::json& json, const std::string& key,
           const std::filesystem::path& origin) {
  if (value) return *value;
  bool is_null = json.contains(key);
  throw InputError(origin.string(), "key " + quote(key) + (is_null ? " is null" : " is missing"));
}

}  // namespace

std::int64_t HfConfig::get_int(const std::string& key) const {
  return required(find_int(key), json_, key, origin_);
}

double HfConfig::get_double(const std::string& key) const {
  return required(find_double(key), json_, key, origin_);
}

bool HfConfig::get_bool(const std::string& key) const {
  return required(find_bool(key), json_, key, origin_);
}

std::string HfConfig::get_string(const std::string& key) const {
  return required(find_string(key), json_, key, origin_);
}

}  // namespace lathe
