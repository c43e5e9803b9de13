#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace lathe {

// How a long run shows that it is alive (`lathe run --progress`):
// - Auto: Live on a terminal, Plain otherwise;
// - Live: one status line, rewritten in place;
// - Plain: "lathe: <status>" lines, at most one per interval (10 s), so a CI log shows that a
//   job is alive while short runs stay quiet;
// - None: nothing.
enum class ProgressStyle { Auto, Live, Plain, None };

class Progress {
 public:
  explicit Progress(ProgressStyle style = ProgressStyle::Auto, std::FILE* out = stderr,
                    std::chrono::milliseconds interval = std::chrono::seconds(10));
  ~Progress() { finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // The current status; where lines are plain, shown only when the interval has passed.
  void update(const std::string& line);
  // The same, for the steady steps of long jobs (layer i of n, weight i of n).
  void heartbeat(const std::string& line) { update(line); }
  // Clears a live line.
  void finish();
  ProgressStyle style() const { return style_; }

 private:
  using Clock = std::chrono::steady_clock;
  ProgressStyle style_;
  std::FILE* out_;
  std::chrono::milliseconds interval_;
  bool shown_ = false;
  Clock::time_point last_line_ = Clock::now();
};

}  // namespace lathe
