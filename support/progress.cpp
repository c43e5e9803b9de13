#include "support/progress.h"

#include <unistd.h>

#include <cstdio>

namespace lathe {

Progress::Progress() : enabled_(::isatty(STDERR_FILENO) == 1), heartbeats_(!enabled_) {}

void Progress::heartbeat(const std::string& line) {
  if (enabled_) return update(line);
  if (!heartbeats_ || Clock::now() - last_line_ < std::chrono::seconds(10)) return;
  std::fprintf(stderr, "lathe: %s\n", line.c_str());
  std::fflush(stderr);
  last_line_ = Clock::now();
}

void Progress::update(const std::string& line) {
  if (!enabled_) return;
  std::fprintf(stderr, "\r\033[K%s", line.c_str());
  std::fflush(stderr);
  shown_ = true;
}

void Progress::finish() {
  if (!enabled_ || !shown_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  shown_ = false;
}

}  // namespace lathe
