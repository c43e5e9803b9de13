// kill -9 at any moment: no output path ever holds an incomplete model, nor an ONNX graph
// beside data it was not written with, and the next run leaves no temporary files behind.

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
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

// "" when the ONNX graph at `graph` and its external data file belong together: the data file
// ends where the graph's last tensor does (lathe pads only between tensors). Read by Debian's
// python3-onnx, not by lathe.
std::string graph_and_data_mismatch(const fs::path& graph, const fs::path& scratch) {
  const auto script = scratch / "pair.py";
  write_text(script,
             "import onnx, os, sys\n"
             "m = onnx.load(sys.argv[1], load_external_data=False)\n"
             "ends = {}\n"
             "for t in m.graph.initializer:\n"
             "    if t.data_location == onnx.TensorProto.EXTERNAL:\n"
             "        d = {e.key: e.value for e in t.external_data}\n"
             "        ends[d['location']] = max(ends.get(d['location'], 0), int(d['offset']) + int(d['length']))\n"
             "for name, end in ends.items():\n"
             "    size = os.path.getsize(os.path.join(os.path.dirname(sys.argv[1]), name))\n"
             "    if size != end: print(name, 'holds', size, 'bytes; the graph reads up to', end)\n"
             "if not ends: print('no external data')\n");
  const auto command = "/usr/bin/python3 '" + script.string() + "' '" + graph.string() + "' 2>&1";
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "cannot start python3";
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  return ::pclose(pipe) == 0 ? output : "python3 failed: " + output;
}

TEST(InterruptedRun, KilledAtRandomMomentsLeavesOnlyCompleteOutputs) {
  ScratchFolder scratch;
  const auto out = scratch / "out";
  const auto tokens = shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string();
  // Two recipes that write different models to the same paths (int8 and float32 weights), run
  // in turn, so that a graph beside the other run's data would show.
  auto write_recipe = [&](const std::string& name, const std::string& passes) {
    const auto path = scratch / name;
    write_text(path, "model: " + shared_path("models/stories260K/hf").string() + "\ndata:\n  calibration: {tokens: " +
                         tokens + ", max_tokens: 2048}\n  eval: {tokens: " + tokens + ", max_tokens: 2048}\npasses:\n" +
                         passes + "  - eval: {kl: true}\noutputs:\n"
                         "  - {format: safetensors, path: " + (out / "model").string() + "}\n"
                         "  - {format: onnx, path: " + (out / "model.onnx").string() + ", external_data: true}\n");
    return path.string();
  };
  const std::string recipes[] = {write_recipe("int8.yaml", "  - quantize: {mode: w8a8}\n"),
                                 write_recipe("float.yaml", "  - outlier-stats\n")};
  // How long a whole run takes here, so the kills spread over all of it.
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(run_lathe({"run", recipes[0], "--threads", "1"}).exit_code, 0);
  const auto whole = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  ASSERT_EQ(graph_and_data_mismatch(out / "model.onnx", scratch.path()), "");

  std::mt19937 random(7);
  int killed_running = 0;
  for (int i = 0; i < 10; ++i) {
    const auto delay = std::chrono::milliseconds(std::uniform_int_distribution<long>(0, whole.count())(random));
    SCOPED_TRACE("killed after " + std::to_string(delay.count()) + " ms of a " + std::to_string(whole.count()) + " ms run");
    killed_running += run_and_kill({"run", recipes[(i + 1) % 2], "--threads", "1"}, delay);
    // Whatever is at an output path is a whole model.
    if (fs::exists(out / "model")) {
      const auto inspected = run_lathe({"inspect", (out / "model").string()});
      EXPECT_EQ(inspected.exit_code, 0) << inspected.err;
      EXPECT_TRUE(fs::exists(out / "model/tokenizer.model"));
    }
    if (fs::exists(out / "model.onnx")) EXPECT_EQ(graph_and_data_mismatch(out / "model.onnx", scratch.path()), "");
  }
  EXPECT_GE(killed_running, 5) << "most kills should land while the run works";
  // The next run completes and cleans up what the killed ones left.
  ASSERT_EQ(run_lathe({"run", recipes[0], "--threads", "1"}).exit_code, 0);
  EXPECT_EQ(temporaries_under(out), std::vector<std::string>{});
  EXPECT_EQ(nlohmann::json::parse(read_text(out / "report.json"))["status"], "ok");
}

}  // namespace
}  // namespace lathe::testing
