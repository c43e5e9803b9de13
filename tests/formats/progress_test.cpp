// `lathe run --progress`: what each style writes.

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "support/progress.h"

namespace lathe {
namespace {

// Runs `body` with a Progress writing to a temporary file; returns what it wrote.
template <typename Body>
std::string written(ProgressStyle style, std::chrono::milliseconds interval, Body&& body) {
  std::FILE* file = std::tmpfile();
  {
    Progress progress(style, file, interval);
    body(progress);
  }
  std::string text;
  std::rewind(file);
  for (int c = std::fgetc(file); c != EOF; c = std::fgetc(file)) text.push_back(static_cast<char>(c));
  std::fclose(file);
  return text;
}

TEST(Progress, PlainLinesAtMostOnePerInterval) {
  auto steps = [](Progress& progress) {
    progress.update("loading m");
    progress.heartbeat("eval: layer 1/2");
  };
  EXPECT_EQ(written(ProgressStyle::Plain, std::chrono::milliseconds(0), steps), "lathe: loading m\nlathe: eval: layer 1/2\n");
  EXPECT_EQ(written(ProgressStyle::Plain, std::chrono::hours(1), steps), "");
}

TEST(Progress, LiveRewritesOneLineAndClearsIt) {
  EXPECT_EQ(written(ProgressStyle::Live, std::chrono::hours(1),
                    [](Progress& progress) {
                      progress.update("a");
                      progress.heartbeat("b");
                    }),
            "\r\033[Ka\r\033[Kb\r\033[K");
}

TEST(Progress, NoneWritesNothing) {
  EXPECT_EQ(written(ProgressStyle::None, std::chrono::milliseconds(0), [](Progress& progress) { progress.update("a"); }), "");
}

TEST(Progress, AutoIsPlainWhereTheOutputIsNotATerminal) {
  std::FILE* file = std::tmpfile();
  Progress progress(ProgressStyle::Auto, file);
  EXPECT_EQ(progress.style(), ProgressStyle::Plain);
  std::fclose(file);
}

}  // namespace
}  // namespace lathe
