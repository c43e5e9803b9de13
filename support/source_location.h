#pragma once

#include <string>

namespace lathe {

// Where a value came from: a line of the recipe file, or a `--set` override, which has no
// line (file is "--set key=value", line 0).
struct SourceLocation {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based
  std::string str() const;  // "file:line:col", or just "file" when line is 0
};

}  // namespace lathe
