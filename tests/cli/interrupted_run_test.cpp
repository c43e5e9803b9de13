// kill -9 at any moment: no output path ever holds an incomplete model, and the next run
// leaves no temporary files behind.

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli_runner.h"

namespace lathe::testing {
namespace {

namespace fs = std::filesystem;

// Starts lathe with `arguments` and kills it with SIGKILL after `delay`; returns whether it
// was still running then.
bool run_and_kill(const std::vector<std::string>& arguments, std::chrono::milliseconds delay) {
  const pid_t child = ::fork();
  if (child == 0) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(LATHE_BINARY));
    for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
    argv.push_back(nullptr);
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execv(LATHE_BINARY, argv.data());
    ::_exit(127);
  }
  std::this_thread::sleep_for(delay);
  const bool running = ::waitpid(child, nullptr, WNOHANG) == 0;
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  return running;
}

// Names under `folder` that are lathe's temporary files or staging folders.
std::vector<std::string> temporaries_under(const fs::path& folder) {
  std::vector<std::string> found;
  for (const auto& entry : fs::recursive_directory_iterator(folder))
    if (entry.path().filename().string().find(".tmp-") != std::string::npos) found.push_back(entry.path().string());
  return found;
}

TEST(InterruptedRun, KilledAtRandomMomentsLeavesOnlyCompleteOutputs) {
  ScratchFolder scratch;
  const auto out = scratch / "out";
  const auto tokens = shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string();
  const auto recipe = scratch / "recipe.yaml";
  write_text(recipe, "model: " + shared_path("models/stories260K/hf").string() + "\ndata:\n  calibration: {tokens: " + tokens +
                         ", max_tokens: 2048}\n  eval: {tokens: " + tokens +
                         ", max_tokens: 2048}\npasses:\n  - quantize: {mode: w8a8}\n  - eval: {kl: true}\noutputs:\n"
                         "  - {format: safetensors, path: " + (out / "model").string() + "}\n"
                         "  - {format: onnx, path: " + (out / "model.onnx").string() + ", external_data: true}\n");
  // How long a whole run takes here, so the kills spread over all of it.
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(run_lathe({"run", recipe.string(), "--threads", "1"}).exit_code, 0);
  const auto whole = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  fs::remove_all(out);

  std::mt19937 random(7);
  int killed_running = 0;
  for (int i = 0; i < 10; ++i) {
    const auto delay = std::chrono::milliseconds(std::uniform_int_distribution<long>(0, whole.count())(random));
    SCOPED_TRACE("killed after " + std::to_string(delay.count()) + " ms of a " + std::to_string(whole.count()) + " ms run");
    killed_running += run_and_kill({"run", recipe.string(), "--threads", "1"}, delay);
    // Whatever is at an output path is a whole model.
    if (fs::exists(out / "model")) {
      const auto inspected = run_lathe({"inspect", (out / "model").string()});
      EXPECT_EQ(inspected.exit_code, 0) << inspected.err;
      EXPECT_TRUE(fs::exists(out / "model/tokenizer.model"));
    }
    if (fs::exists(out / "model.onnx")) EXPECT_TRUE(fs::exists(out / "model.onnx.data"));
  }
  EXPECT_GE(killed_running, 5) << "most kills should land while the run works";
  // The next run completes and cleans up what the killed ones left.
  ASSERT_EQ(run_lathe({"run", recipe.string(), "--threads", "1"}).exit_code, 0);
  EXPECT_EQ(temporaries_under(out), std::vector<std::string>{});
  EXPECT_EQ(nlohmann::json::parse(read_text(out / "report.json"))["status"], "ok");
}

}  // namespace
}  // namespace lathe::testing
