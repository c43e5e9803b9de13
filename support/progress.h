#pragma once

#include <chrono>
#include <string>

namespace lathe {

// One rewritten status line on stderr while stderr is a terminal; otherwise silent, except
// that heartbeat() lines of long jobs are printed as plain lines at most every 10 seconds, so a
// CI log shows that a job is alive while short runs stay quiet.
class Progress {
 public:
  Progress();
  explicit Progress(bool enabled) : enabled_(enabled), heartbeats_(false) {}
  ~Progress() { finish(); }
  void update(const std::string& line);
  // Like update() on a terminal; elsewhere a plain line when 10 s have passed since the last.
  void heartbeat(const std::string& line);
  void finish();
  bool enabled() const { return enabled_; }

 private:
  using Clock = std::chrono::steady_clock;
  bool enabled_;
  bool heartbeats_;
  bool shown_ = false;
  Clock::time_point last_line_ = Clock::now();
};

}  // namespace lathe
