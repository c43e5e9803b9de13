#pragma once

// Numbers for report lines: printf-formatted, "%.4g" unless told otherwise; sizes in MB or GB.

#include <cstdint>
#include <cstdio>
#include <string>

namespace lathe {

inline std::string number_text(double value, const char* format = "%.4g") {
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

inline std::string byte_size(std::int64_t bytes) {
  char text[32];
  if (bytes >= 1'000'000'000)
    std::snprintf(text, sizeof text, "%.2f GB", static_cast<double>(bytes) / 1e9);
  else
    std::snprintf(text, sizeof text, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return text;
}

}  // namespace lathe
