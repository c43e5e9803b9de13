#include "cli_runner.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <future>
#include <iterator>
#include <random>

namespace lathe::testing {

std::filesystem::path shared_path(const std::string& relative) {
  return std::filesystem::path(LATHE_SHARED_DIR) / relative;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

ScratchFolder::ScratchFolder() {
  std::random_device entropy;
  path_ = std::filesystem::temp_directory_path() /
          ("lathe-cli-test-" + std::to_string(::getpid()) + "-" + std::to_string(entropy()));
  std::filesystem::create_directories(path_);
}

ScratchFolder::~ScratchFolder() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

namespace {

CommandResult run(const std::vector<std::string>& arguments, const std::filesystem::path& working_directory,
                  const std::vector<std::string>& environment, std::uint64_t file_size_limit) {
  ScratchFolder capture;
  const auto out_path = capture / "out", err_path = capture / "err";
  std::vector<std::string> argv_text = {LATHE_BINARY};
  argv_text.insert(argv_text.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (auto& argument : argv_text) argv.push_back(argument.data());
  argv.push_back(nullptr);

  // The environment is built here: between fork and exec only async-signal-safe calls.
  std::vector<std::string> environment_text;
  for (char** variable = environ; *variable != nullptr; ++variable) {
    const std::string text = *variable;
    const auto name = text.substr(0, text.find('=') + 1);
    bool replaced = false;
    for (const auto& added : environment) replaced = replaced || added.rfind(name, 0) == 0;
    if (!replaced) environment_text.push_back(text);
  }
  environment_text.insert(environment_text.end(), environment.begin(), environment.end());
  std::vector<char*> envp;
  for (auto& variable : environment_text) envp.push_back(variable.data());
  envp.push_back(nullptr);

  const pid_t child = ::fork();
  if (child == 0) {
    // Only async-signal-safe calls until exec.
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0 ||
        ::chdir(working_directory.c_str()) != 0)
      ::_exit(127);
    if (file_size_limit > 0) {
      ::signal(SIGXFSZ, SIG_IGN);
      const rlimit limit{file_size_limit, file_size_limit};
      ::setrlimit(RLIMIT_FSIZE, &limit);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  CommandResult result;
  if (child < 0) return result;
  int status = 0;
  rusage usage{};
  while (::wait4(child, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = read_text(out_path);
  result.err = read_text(err_path);
  auto seconds = [](const timeval& time) { return static_cast<double>(time.tv_sec) + 1e-6 * static_cast<double>(time.tv_usec); };
  result.cpu_seconds = seconds(usage.ru_utime) + seconds(usage.ru_stime);
  result.max_rss_bytes = usage.ru_maxrss * 1024L;
  return result;
}

}  // namespace

CommandResult run_lathe(const std::vector<std::string>& arguments, const std::filesystem::path& working_directory,
                        const std::vector<std::string>& environment) {
  return run(arguments, working_directory, environment, 0);
}

std::vector<CommandResult> run_lathe_each(const std::vector<std::vector<std::string>>& argument_lists) {
  std::vector<CommandResult> results(argument_lists.size());
  for (std::size_t first = 0; first < argument_lists.size(); first += 2) {
    auto second = std::async(std::launch::async, [&, first] {
      if (first + 1 < argument_lists.size()) results[first + 1] = run_lathe(argument_lists[first + 1]);
    });
    results[first] = run_lathe(argument_lists[first]);
    second.get();
  }
  return results;
}

CommandResult run_lathe_on_a_small_disk(const std::vector<std::string>& arguments, std::uint64_t file_size_limit) {
  return run(arguments, LATHE_SOURCE_DIR, {}, file_size_limit);
}

}  // namespace lathe::testing
