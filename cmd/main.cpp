// lathe: compiles transformer checkpoints into smaller models, driven by a YAML recipe.

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <vector>

#include "cmd/commands.h"
#include "support/allocator.h"
#include "support/blas_core.h"
#include "support/errors.h"

namespace {

int run(int argc, char** argv) {
  CLI::App app{"lathe: a compiler for transformer checkpoints. A YAML recipe names a checkpoint, data and a\n"
               "pipeline of passes; lathe runs them and writes a compressed model and a report.\n"
               "Exit codes: 0 done, 1 internal error, 2 bad input, 3 a quality gate failed."};
  app.set_version_flag("--version", "lathe " LATHE_VERSION);
  app.require_subcommand(1);

  lathe::RunCommand run_options;
  auto* run = app.add_subcommand("run", "Run a recipe (the embedded default when none is given)");
  run->add_option("recipe", run_options.recipe, "recipe YAML file")->check(CLI::ExistingFile);
  run->add_option("--set", run_options.overrides, "override a recipe value: key.path=value (repeatable)")
      ->allow_extra_args(false);
  run->add_flag("--dry-run", run_options.dry_run, "check the recipe, model and data; run nothing, write nothing");
  run->add_option("--threads", run_options.threads,
                  "threads for tensor math (default: the CPUs this process may use: affinity, cgroup quota)")
      ->check(CLI::Range(1, 1024));
  run->add_option("--report", run_options.report, "write the JSON report here (default: beside the first output)");
  run->add_option("--junit", run_options.junit, "also write the report as JUnit XML here: a test case per pass, gate and the run");
  run->add_option("--memory-limit", run_options.memory_limit,
                  "memory the run may use, e.g. 16G or 512M (default: what the machine has available); passes "
                  "that hold the whole model refuse to start above it, layer-streamed passes keep hidden states "
                  "beyond a quarter of it in temporary files");
  run->add_option("--progress", run_options.progress,
                  "how long passes show progress on stderr: auto (a live line on a terminal, else plain), plain "
                  "(a \"lathe: ...\" line at most every 10 s) or none")
      ->check(CLI::IsMember({"auto", "plain", "none"}));

  lathe::InspectCommand inspect_options;
  auto* inspect = app.add_subcommand("inspect", "Print a checkpoint's family, structure and size");
  inspect->add_option("model", inspect_options.model, "model folder or checkpoint file")->required();
  inspect->add_option("--config", inspect_options.config, "config.json for checkpoints without one beside them");
  inspect->add_option("--family", inspect_options.family, "model family instead of the config's model_type");
  inspect->add_flag("--json", inspect_options.json, "print JSON");
  inspect->add_flag("--tensors", inspect_options.tensors, "also list every tensor");

  lathe::PassesCommand passes_options;
  auto* passes = app.add_subcommand("passes", "List the passes with their parameters");
  auto* passes_json = passes->add_flag("--json", passes_options.json, "print JSON");
  passes->add_flag("--markdown", passes_options.markdown, "print the Markdown tables of the README")->excludes(passes_json);

  lathe::ValidateCommand validate_options;
  auto* validate = app.add_subcommand("validate", "Check a recipe and print it with every default filled in");
  validate->add_option("recipe", validate_options.recipe, "recipe YAML file (default: the embedded default)")
      ->check(CLI::ExistingFile);
  validate->add_option("--set", validate_options.overrides, "override a recipe value: key.path=value")
      ->allow_extra_args(false);
  validate->add_flag("--json", validate_options.json, "print the recipe and the model's summary as JSON");

  // A mistake on the command line is bad input like any other: one line, prefixed, exit 2.
  if (argc >= 2 && argv[1][0] != '-' && app.get_subcommands([&](CLI::App* command) { return command->get_name() == argv[1]; }).empty()) {
    std::fprintf(stderr, "lathe: error: unknown command \"%s\"; commands: run, inspect, passes, validate (lathe --help)\n", argv[1]);
    return lathe::kExitBadInput;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& success) {
    return app.exit(success);
  } catch (const CLI::ParseError& error) {
    std::string message = error.what();
    if (argc < 2) message = "a command is required: run, inspect, passes or validate (lathe --help)";
    std::fprintf(stderr, "lathe: error: %s\n", message.c_str());
    return lathe::kExitBadInput;
  }
  if (run->parsed()) return lathe::run_command(run_options);
  if (inspect->parsed()) return lathe::inspect_command(inspect_options);
  if (passes->parsed()) return lathe::passes_command(passes_options);
  return lathe::validate_command(validate_options);
}

}  // namespace

// Settings the math libraries read only when they load, before main.
//
// OpenMP threads that finished their share busy-wait for the next one; on a shared CI runner
// that spinning fights the other processes for the cores (a 2-thread matrix product measured
// 5x slower beside one busy process), so `lathe run` uses the passive policy unless the user
// chose one. libgomp reads OMP_WAIT_POLICY in its initializer, so the process must start with
// it. Functions in an executable's .preinit_array run before any shared library's initializer:
// lathe starts itself again from there, before LibTorch's initializers (about a second of CPU)
// have run. Setting the variable there is not enough: libc's own initializer, which runs after,
// resets the environment to the one the process started with.
void start_with_passive_wait_policy(int argc, char** argv, char** envp) {
  if (argc < 2 || std::strcmp(argv[1], "run") != 0) return;
  std::vector<char*> environment;
  for (char** variable = envp; *variable != nullptr; ++variable) {
    if (std::strncmp(*variable, "OMP_WAIT_POLICY=", 16) == 0) return;  // the user chose
    environment.push_back(*variable);
  }
  static char passive[] = "OMP_WAIT_POLICY=passive";
  environment.push_back(passive);
  environment.push_back(nullptr);
  ::execve("/proc/self/exe", argv, environment.data());  // returns only on failure: then run as things are
}
__attribute__((section(".preinit_array"), used)) void (*const kStartWithPassiveWaitPolicy)(int, char**, char**) =
    &start_with_passive_wait_policy;

// OpenBLAS's kernels for this CPU when OpenBLAS did not recognize it (support/blas_core.h):
// only OpenBLAS itself can say so, once it has loaded, so `lathe run` then starts itself again
// with OPENBLAS_CORETYPE set.
void start_with_openblas_kernels(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "run") != 0) return;
  if (const auto core = lathe::openblas_core_for_unrecognized_cpu()) {
    ::setenv(lathe::kOpenBlasCoreVariable, core->c_str(), 0);
    ::setenv(lathe::kOpenBlasCoreChosenVariable, "1", 1);
    ::execv("/proc/self/exe", argv);  // returns only on failure: then run as things are
  }
}

int main(int argc, char** argv) {
  start_with_openblas_kernels(argc, argv);
  lathe::keep_freed_memory_for_reuse();
  try {
    return run(argc, argv);
  } catch (const lathe::InputError& error) {
    std::fprintf(stderr, "lathe: error: %s\n", error.what());
    return lathe::kExitBadInput;
  } catch (const lathe::GateFailure& error) {
    std::fprintf(stderr, "lathe: gate failed: %s\n", error.what());
    return lathe::kExitGateFailed;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "lathe: internal error: %s\n", error.what());
    return lathe::kExitInternalError;
  }
}
