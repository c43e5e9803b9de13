#pragma once

#include <string>

namespace lathe {

// One rewritten status line on stderr while stderr is a terminal; silent otherwise, so logs
// of scripts and CI jobs stay clean.
class Progress {
 public:
  Progress();
  explicit Progress(bool enabled) : enabled_(enabled) {}
  ~Progress() { finish(); }
  void update(const std::string& line);
  void finish();
  bool enabled() const { return enabled_; }

 private:
  bool enabled_;
  bool shown_ = false;
};

}  // namespace lathe
