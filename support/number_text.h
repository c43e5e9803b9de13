#pragma once

// Numbers for report lines: printf-formatted, "%.4g" unless told otherwise.

#include <cstdio>
#include <string>

namespace lathe {

inline std::string number_text(double value, const char* format = "%.4g") {
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

}  // namespace lathe
