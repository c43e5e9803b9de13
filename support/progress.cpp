#include "support/progress.h"

#include <unistd.h>

namespace lathe {

Progress::Progress(ProgressStyle style, std::FILE* out, std::chrono::milliseconds interval)
    : style_(style), out_(out), interval_(interval) {
  if (style_ == ProgressStyle::Auto) style_ = ::isatty(::fileno(out_)) == 1 ? ProgressStyle::Live : ProgressStyle::Plain;
}

void Progress::update(const std::string& line) {
  switch (style_) {
    case ProgressStyle::Live:
      std::fprintf(out_, "\r\033[K%s", line.c_str());
      shown_ = true;
      break;
    case ProgressStyle::Plain:
      if (Clock::now() - last_line_ < interval_) return;
      std::fprintf(out_, "lathe: %s\n", line.c_str());
      last_line_ = Clock::now();
      break;
    case ProgressStyle::Auto:
    case ProgressStyle::None:
      return;
  }
  std::fflush(out_);
}

void Progress::finish() {
  if (style_ != ProgressStyle::Live || !shown_) return;
  std::fprintf(out_, "\r\033[K");
  std::fflush(out_);
  shown_ = false;
}

}  // namespace lathe
