// The command line end to end: inspect, passes, validate, run with outputs, reports and gates.

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "formats/safetensors.h"

namespace lathe::testing {
namespace {

void expect_same_tensor_bytes(const std::filesystem::path& expected_file, const std::filesystem::path& actual_file) {
  auto expected = SafetensorsFile::open(expected_file);
  auto actual = SafetensorsFile::open(actual_file);
  ASSERT_EQ(expected.tensors().size(), actual.tensors().size());
  for (const auto& view : expected.tensors()) {
    const auto* other = actual.find(view.name);
    ASSERT_NE(other, nullptr) << view.name;
    EXPECT_EQ(other->dtype, view.dtype) << view.name;
    EXPECT_EQ(other->shape, view.shape) << view.name;
    EXPECT_TRUE(std::equal(view.bytes.begin(), view.bytes.end(), other->bytes.begin(), other->bytes.end())) << view.name;
  }
}

TEST(Cli, VersionAndHelp) {
  auto version = run_lathe({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.out.find("lathe "), std::string::npos);
  auto help = run_lathe({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* command : {"run", "inspect", "passes", "validate"})
    EXPECT_NE(help.out.find(command), std::string::npos) << command;
  EXPECT_EQ(run_lathe({"frobnicate"}).exit_code, 2);
}

// Every bad input ends as an exception caught in main; an FDE that covers no code but starts
// where a function starts can be found instead of that function's own, and an exception
// thrown there ends in std::terminate (lld 14 left ten of them in this binary).
TEST(Cli, EveryFunctionFindsItsOwnUnwindTable) {
  ScratchFolder scratch;
  const auto frames = scratch / "frames.txt";
  const std::string command = "readelf --debug-dump=frames '" + std::string(LATHE_BINARY) + "' > '" + frames.string() + "' 2>/dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  std::istringstream lines(read_text(frames));
  std::string line;
  int fdes = 0;
  while (std::getline(lines, line)) {
    const auto at = line.find(" FDE cie=");
    const auto range = line.find("pc=");
    if (at == std::string::npos || range == std::string::npos) continue;
    ++fdes;
    const auto dots = line.find("..", range);
    ASSERT_NE(dots, std::string::npos) << line;
    EXPECT_NE(line.substr(range + 3, dots - range - 3), line.substr(dots + 2)) << "an empty FDE: " << line;
  }
  EXPECT_GT(fdes, 1000);
}

TEST(Cli, PassesListsEveryPassWithItsParameters) {
  auto result = run_lathe({"passes"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("eval (evaluation)"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("kl: bool = true"), std::string::npos) << result.out;
}

TEST(Cli, PassesAsJsonForScripts) {
  auto result = run_lathe({"passes", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto passes = nlohmann::json::parse(result.out);
  ASSERT_TRUE(passes.is_array());
  const nlohmann::json* prune = nullptr;
  for (const auto& pass : passes)
    if (pass["name"] == "head-prune") prune = &pass;
  ASSERT_NE(prune, nullptr);
  EXPECT_EQ((*prune)["kind"], "transform");
  EXPECT_EQ((*prune)["exclusive_params"], nlohmann::json::parse(R"([["keep", "heads", "budget"]])"));
  bool saw_protect = false;
  for (const auto& param : (*prune)["params"]) {
    if (param["name"] != "protect") continue;
    saw_protect = true;
    EXPECT_EQ(param["type"], "head list");
    EXPECT_EQ(param["roles"], nlohmann::json::parse(R"(["retrieval"])"));
    EXPECT_EQ(param["default"], nlohmann::json::array());
  }
  EXPECT_TRUE(saw_protect);
  EXPECT_EQ(run_lathe({"passes", "--json", "--markdown"}).exit_code, 2);
}

// The README's parameter tables are what the registry says.
TEST(Cli, ReadmeParameterTablesComeFromTheRegistry) {
  auto result = run_lathe({"passes", "--markdown"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto readme = read_text(std::filesystem::path(LATHE_SOURCE_DIR) / "README.md");
  const std::string begin = "<!-- lathe passes --markdown: begin -->\n", end = "<!-- lathe passes --markdown: end -->";
  const auto from = readme.find(begin), to = readme.find(end);
  ASSERT_NE(from, std::string::npos);
  ASSERT_NE(to, std::string::npos);
  EXPECT_EQ(readme.substr(from + begin.size(), to - from - begin.size()), result.out)
      << "run: build/lathe passes --markdown, and paste it between the markers in README.md";
}

TEST(Cli, InspectStories260K) {
  auto result = run_lathe({"inspect", shared_path("models/stories260K/hf").string()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  for (const char* line : {"family       llama", "layers       5\n", "heads        8\n", "kv heads     4\n",
                           "ffn width    172\n", "parameters   260,032\n"})
    EXPECT_NE(result.out.find(line), std::string::npos) << line << " not in:\n" << result.out;
}

TEST(Cli, InspectMakemoreFromBothCheckpoints) {
  const auto hf = run_lathe({"inspect", shared_path("models/makemore-names-gpt/hf").string()});
  const auto pt = run_lathe({"inspect", shared_path("models/makemore-names-gpt/original/model.pt").string(), "--config",
                             shared_path("models/makemore-names-gpt/hf/config.json").string()});
  for (const auto* result : {&hf, &pt}) {
    ASSERT_EQ(result->exit_code, 0) << result->err;
    for (const char* line : {"family       gpt2", "layers       4\n", "heads        4\n", "kv heads     4\n",
                             "ffn width    256\n", "parameters   204,544\n"})
      EXPECT_NE(result->out.find(line), std::string::npos) << line << " not in:\n" << result->out;
  }
  EXPECT_NE(pt.out.find("format       pytorch"), std::string::npos) << pt.out;
}

TEST(Cli, InspectJson) {
  auto result = run_lathe({"inspect", shared_path("models/stories260K/hf").string(), "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto json = nlohmann::json::parse(result.out);
  EXPECT_EQ(json["parameters"], 260032);
  EXPECT_EQ(json["layers"].size(), 5u);
  EXPECT_EQ(json["layers"][0]["kv_heads"], 4);
}

TEST(Cli, ValidatePrintsTheRecipeWithDefaults) {
  auto result = run_lathe({"validate", "--set", "passes.eval.kl=false"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("kl: false"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("batch_size"), std::string::npos) << result.out;
}

TEST(Cli, ValidateJsonHasTheTypedRecipeAndTheModel) {
  ScratchFolder scratch;
  write_text(scratch / "r.yaml", "model: " + shared_path("models/stories260K/hf").string() +
                                     "\npasses:\n  - retrieval-heads: {depths: \"0, 0.5\", needle_ids: 259-511}\n");
  auto result = run_lathe({"validate", (scratch / "r.yaml").string(), "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  auto json = nlohmann::json::parse(result.out);
  const auto& params = json["recipe"]["passes"][0]["retrieval-heads"];
  EXPECT_EQ(params["depths"], nlohmann::json::parse("[0, 0.5]"));
  EXPECT_EQ(params["needle_ids"], "259-511");
  EXPECT_EQ(params["insert_needle"], true);
  EXPECT_EQ(params["tests_per_cell"], 4);
  EXPECT_EQ(json["model"]["parameters"], 260032);
}

TEST(Cli, Int8RecipeValidates) {
  auto result = run_lathe({"validate", "recipes/int8.yaml"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  for (const char* pass : {"gated-attention", "finetune", "quantize"})
    EXPECT_NE(result.out.find(pass), std::string::npos) << pass << " not in:\n" << result.out;
}

// What coreutils' sha256sum says of the bytes `command` prints: the independent reference for
// the report's fingerprints.
std::string sha256sum_of(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen((command + " | sha256sum").c_str(), "r");
  if (pipe == nullptr) return "";
  char buffer[256];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  ::pclose(pipe);
  return output.substr(0, output.find(' '));
}

// Every input and output file of the report has the sha256 sha256sum gives for the bytes the
// report says it hashed.
void expect_fingerprints_match(const nlohmann::json& report, const std::vector<std::string>& roles) {
  std::vector<std::string> seen;
  for (const auto& input : report["inputs"]) {
    seen.push_back(input["role"]);
    const auto path = input["path"].get<std::string>();
    SCOPED_TRACE(path);
    EXPECT_EQ(input["bytes"].get<std::uintmax_t>(), std::filesystem::file_size(path));
    std::string bytes = "cat '" + path + "'";
    if (input["of"] == "header")
      bytes = "tail -c +" + std::to_string(input["hashed_from"].get<std::uint64_t>() + 1) + " '" + path + "' | head -c " +
              std::to_string(input["hashed_bytes"].get<std::uint64_t>());
    EXPECT_EQ(input["sha256"], sha256sum_of(bytes));
  }
  EXPECT_EQ(seen, roles);
  for (const auto& output : report["outputs"]) {
    std::uintmax_t total = 0;
    ASSERT_FALSE(output["files"].empty());
    for (const auto& file : output["files"]) {
      const auto path = file["path"].get<std::string>();
      EXPECT_EQ(file["sha256"], sha256sum_of("cat '" + path + "'")) << path;
      total += file["bytes"].get<std::uintmax_t>();
    }
    EXPECT_EQ(output["bytes"].get<std::uintmax_t>(), total);
  }
}

class RunRecipe : public ::testing::Test {
 protected:
  std::filesystem::path write_recipe(const std::string& model_lines, const std::string& data_lines,
                                     const std::string& gates = "") {
    const auto path = scratch_ / "recipe.yaml";
    write_text(path, model_lines + "\ndata:\n" + data_lines + "\npasses:\n  - eval: {kl: true}\noutputs:\n  - {format: onnx, path: " +
                         (scratch_ / "out/model.onnx").string() + "}\n  - {format: safetensors, path: " +
                         (scratch_ / "out/model").string() + "}\n" + gates);
    return path;
  }
  ScratchFolder scratch_;
};

TEST_F(RunRecipe, WritesModelsAndReportAndRoundTripsBitForBit) {
  auto recipe = write_recipe("model: " + shared_path("models/stories260K/hf").string(),
                             "  eval: {tokens: " + shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
                                 ", max_tokens: 2048}",
                             "gates: {max_perplexity_increase: 0.0}\n");
  auto result = run_lathe({"run", recipe.string(), "--threads", "1"});
  ASSERT_EQ(result.exit_code, 0) << result.err << result.out;
  EXPECT_TRUE(result.err.empty()) << "stderr is not a terminal, so lathe stays quiet: " << result.err;
  EXPECT_NE(result.out.find("status   ok"), std::string::npos) << result.out;

  auto report = nlohmann::json::parse(read_text(scratch_ / "out/report.json"));
  ASSERT_EQ(report["passes"].size(), 1u);
  EXPECT_GT(report["passes"][0]["wall_seconds"].get<double>(), 0.0);
  EXPECT_GT(report["passes"][0]["peak_rss_bytes"].get<double>(), 0.0);
  EXPECT_EQ(report["metrics"]["eval"]["tokens"], 2048);
  EXPECT_EQ(report["metrics"]["eval"]["parameters"], 260032);
  EXPECT_EQ(report["gates"][0]["passed"], true);
  EXPECT_EQ(report["outputs"].size(), 2u);
  expect_fingerprints_match(report, {"recipe", "config", "weights", "tokenizer", "data:eval"});
  EXPECT_EQ(report["inputs"][2]["of"], "header");
  EXPECT_EQ(report["outputs"][1]["files"].size(), 3u);  // model.safetensors, config.json, tokenizer.model

  EXPECT_TRUE(std::filesystem::exists(scratch_ / "out/model.onnx"));
  expect_same_tensor_bytes(shared_path("models/stories260K/hf/model.safetensors"), scratch_ / "out/model/model.safetensors");
  auto reread = run_lathe({"inspect", (scratch_ / "out/model").string()});
  ASSERT_EQ(reread.exit_code, 0) << reread.err;
  EXPECT_NE(reread.out.find("parameters   260,032"), std::string::npos) << reread.out;
  // No temporary files are left beside the outputs.
  for (const auto& entry : std::filesystem::recursive_directory_iterator(scratch_ / "out"))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
}

TEST_F(RunRecipe, Int8PipelineWritesModelsThatInspectShows) {
  const auto tokens = shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string();
  const auto recipe = scratch_ / "int8.yaml";
  write_text(recipe, "model: " + shared_path("models/stories260K/hf").string() + "\ndata:\n  calibration: {tokens: " + tokens +
                         ", seq_len: 128, batch_size: 4, max_tokens: 2048}\n  eval: {tokens: " + tokens +
                         ", max_tokens: 2048}\npasses:\n  - gated-attention: {}\n  - clipped-softmax: {alpha: 2}\n"
                         "  - finetune: {steps: 3}\n  - quantize: {}\n  - eval: {}\noutputs:\n  - {format: onnx, path: " +
                         (scratch_ / "out/int8.onnx").string() + "}\n  - {format: safetensors, path: " +
                         (scratch_ / "out/int8").string() + "}\n");
  auto result = run_lathe({"run", recipe.string(), "--threads", "1"});
  ASSERT_EQ(result.exit_code, 0) << result.err << result.out;
  for (const char* line : {"40 head gates", "trained gates", "KL to the loaded model", "w8a8: 35 int8 weights"})
    EXPECT_NE(result.out.find(line), std::string::npos) << line << " not in:\n" << result.out;
  auto report = nlohmann::json::parse(read_text(scratch_ / "out/report.json"));
  EXPECT_EQ(report["passes"][2]["statistics"]["history"].size(), 3u);
  auto inspected = run_lathe({"inspect", (scratch_ / "out/int8").string()});
  ASSERT_EQ(inspected.exit_code, 0) << inspected.err;
  for (const char* line : {"attention    gated heads, clipped softmax (gamma -0.00390625, zeta 1)",
                           "quantized    w8a8, 35 int8 weights (|q| <= 63, for any CPUs)"})
    EXPECT_NE(inspected.out.find(line), std::string::npos) << line << " not in:\n" << inspected.out;
}

TEST_F(RunRecipe, PyTorchStateDictBecomesTheSameSafetensors) {
  auto recipe = write_recipe("model: {path: " + shared_path("models/makemore-names-gpt/original/model.pt").string() +
                                 ", config: " + shared_path("models/makemore-names-gpt/hf/config.json").string() + "}",
                             "  eval: {text: " + shared_path("data/makemore-names/test.txt").string() +
                                 ", split: lines, eos: true, pack: false}");
  auto result = run_lathe({"run", recipe.string()});
  ASSERT_EQ(result.exit_code, 0) << result.err << result.out;
  auto report = nlohmann::json::parse(read_text(scratch_ / "out/report.json"));
  EXPECT_NEAR(report["metrics"]["eval"]["mean_loss"].get<double>(), 1.9711, 5e-4);
  // A .pt archive is fingerprinted by its central directory (every record's CRC-32).
  expect_fingerprints_match(report, {"recipe", "config", "weights", "tokenizer", "data:eval"});
  EXPECT_GT(report["inputs"][2]["hashed_from"].get<std::uint64_t>(), 0u);
  expect_same_tensor_bytes(shared_path("models/makemore-names-gpt/hf/model.safetensors"), scratch_ / "out/model/model.safetensors");
}

TEST_F(RunRecipe, FailedGateExitsThreeAndWritesNoModel) {
  auto recipe = write_recipe("model: " + shared_path("models/stories260K/hf").string(),
                             "  eval: {tokens: " + shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
                                 ", max_tokens: 1024}",
                             "gates: {max_loss_increase: -0.001}\n");
  auto result = run_lathe({"run", recipe.string()});
  EXPECT_EQ(result.exit_code, 3) << result.err << result.out;
  EXPECT_NE(result.err.find("gate"), std::string::npos) << result.err;
  EXPECT_FALSE(std::filesystem::exists(scratch_ / "out/model.onnx"));
  auto report = nlohmann::json::parse(read_text(scratch_ / "out/report.json"));
  EXPECT_EQ(report["status"], "gate_failed");
}

// libgomp takes its wait policy when it loads: `lathe run` makes it passive unless the user chose
// one, and libgomp itself says what it took (OMP_DISPLAY_ENV=verbose: idle threads spin 0 times
// when passive, 300,000 by default, 3e10 when active). Other commands leave it alone.
TEST_F(RunRecipe, RunWaitsPassivelyUnlessTheUserChose) {
  auto recipe = write_recipe("model: " + shared_path("models/stories260K/hf").string(),
                             "  eval: {tokens: " + shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
                                 ", max_tokens: 256}");
  auto spin_count = [&](const std::vector<std::string>& arguments, const std::vector<std::string>& environment) {
    auto result = run_lathe(arguments, LATHE_SOURCE_DIR, environment);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    const std::string key = "GOMP_SPINCOUNT = '";
    const auto at = result.err.rfind(key);  // the last process's, after any restart
    if (at == std::string::npos) return result.err;
    return result.err.substr(at + key.size(), result.err.find('\'', at + key.size()) - at - key.size());
  };
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) {  // the machine chose, and its choice stands
    EXPECT_EQ(spin_count({"run", recipe.string(), "--dry-run"}, {"OMP_DISPLAY_ENV=verbose"}),
              spin_count({"validate", recipe.string()}, {"OMP_DISPLAY_ENV=verbose"}));
    return;
  }
  EXPECT_EQ(spin_count({"run", recipe.string(), "--dry-run"}, {"OMP_DISPLAY_ENV=verbose"}), "0");
  EXPECT_EQ(spin_count({"run", recipe.string(), "--dry-run"}, {"OMP_DISPLAY_ENV=verbose", "OMP_WAIT_POLICY=active"}),
            "30000000000");
  EXPECT_EQ(spin_count({"validate", recipe.string()}, {"OMP_DISPLAY_ENV=verbose"}), "300000");
}

// OpenBLAS 0.3.21 does not recognize CPUs newer than it and then uses its SSE3 kernels, about
// 4.5x slower than the AVX-512 ones on the Xeon that showed it. lathe picks the kernels for the
// CPU unless the environment names them, and the report says which are used and who chose them.
TEST_F(RunRecipe, ReportNamesTheBlasKernelsWhichFitTheCpu) {
  auto recipe = write_recipe("model: " + shared_path("models/stories260K/hf").string(),
                             "  eval: {tokens: " + shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
                                 ", max_tokens: 256}");
  auto result = run_lathe({"run", recipe.string(), "--threads", "1"});
  ASSERT_EQ(result.exit_code, 0) << result.err << result.out;
  const auto blas = nlohmann::json::parse(read_text(scratch_ / "out/report.json"))["blas"];
  ASSERT_EQ(blas["library"], "OpenBLAS") << blas.dump();  // scripts/setup.sh installs libopenblas0-openmp
  const auto kernels = blas["kernels"].get<std::string>();
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) {
    EXPECT_EQ(blas["kernels_chosen_by"], "OPENBLAS_CORETYPE") << blas.dump();
    return;  // the machine's setting, whatever it names
  }
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    EXPECT_EQ(blas["kernels_chosen_by"], "OpenBLAS") << blas.dump();
    return;
  }
  EXPECT_NE(kernels, "Prescott") << "SSE3 kernels on a CPU with AVX2 and FMA";
  if (blas["kernels_chosen_by"] == "lathe") {
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    EXPECT_EQ(kernels, !avx512 ? "Haswell" : __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX");
  } else {
    EXPECT_EQ(blas["kernels_chosen_by"], "OpenBLAS") << blas.dump();
  }
}

// A CI job gets a machine-readable answer on every exit: the report names the status, the exit
// code and the message, and a failure never writes it over a file that is not a lathe report.
TEST_F(RunRecipe, AReportOnEveryExit) {
  const auto stories = shared_path("models/stories260K/hf").string();
  const auto tokens = shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string();
  auto ok = write_recipe("model: " + stories, "  eval: {tokens: " + tokens + ", max_tokens: 256}");
  ASSERT_EQ(run_lathe({"run", ok.string()}).exit_code, 0);
  auto report = nlohmann::json::parse(read_text(scratch_ / "out/report.json"));
  EXPECT_EQ(report["schema_version"], 1);
  EXPECT_EQ(report["status"], "ok");
  EXPECT_EQ(report["exit_code"], 0);

  // Bad input found after the recipe was read: the report goes where it would have gone.
  auto missing = write_recipe("model: " + stories, "  eval: {tokens: " + (scratch_ / "gone.bin").string() + "}");
  auto result = run_lathe({"run", missing.string()});
  ASSERT_EQ(result.exit_code, 2) << result.err;
  report = nlohmann::json::parse(read_text(scratch_ / "out/report.json"));
  EXPECT_EQ(report["status"], "bad_input");
  EXPECT_EQ(report["exit_code"], 2);
  EXPECT_EQ("lathe: error: " + report["message"].get<std::string>() + "\n", result.err);
  EXPECT_EQ(report["recipe"], missing.string());

  // A recipe that does not parse: only --report says where, and only a new file or an earlier
  // report is written.
  write_text(scratch_ / "broken.yaml", "model: [unclosed\n");
  result = run_lathe({"run", (scratch_ / "broken.yaml").string(), "--report", (scratch_ / "broken.json").string()});
  ASSERT_EQ(result.exit_code, 2) << result.err;
  report = nlohmann::json::parse(read_text(scratch_ / "broken.json"));
  EXPECT_EQ(report["status"], "bad_input");
  EXPECT_NE(report["message"].get<std::string>().find("broken.yaml"), std::string::npos) << report.dump();
  write_text(scratch_ / "notes.txt", "mine");
  result = run_lathe({"run", (scratch_ / "broken.yaml").string(), "--report", (scratch_ / "notes.txt").string()});
  EXPECT_EQ(result.exit_code, 2) << result.err;
  EXPECT_EQ(read_text(scratch_ / "notes.txt"), "mine");

  // A report path the output checks refuse is never written, not even with the failure.
  result = run_lathe({"run", ok.string(), "--report", shared_path("models/stories260K/hf/report.json").string()});
  EXPECT_EQ(result.exit_code, 2) << result.err;
  EXPECT_FALSE(std::filesystem::exists(shared_path("models/stories260K/hf/report.json")));

  // A failed gate: status gate_failed, exit code 3.
  auto gated = write_recipe("model: " + stories, "  eval: {tokens: " + tokens + ", max_tokens: 256}",
                            "gates: {max_loss_increase: -0.001}\n");
  ASSERT_EQ(run_lathe({"run", gated.string()}).exit_code, 3);
  report = nlohmann::json::parse(read_text(scratch_ / "out/report.json"));
  EXPECT_EQ(report["status"], "gate_failed");
  EXPECT_EQ(report["exit_code"], 3);
}

// Without --threads a run uses the CPUs it may use, not the machine's: under taskset, one.
// `--junit FILE` on every exit: valid against the JUnit schema the test ships, with a case per
// pass, per gate and for the run.
TEST_F(RunRecipe, AJUnitReportOnEveryExit) {
  const auto stories = shared_path("models/stories260K/hf").string();
  const auto tokens = shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string();
  const auto junit = scratch_ / "junit.xml";
  auto check = [&](const std::vector<std::string>& arguments, int exit_code, const std::vector<std::string>& expected) {
    std::filesystem::remove(junit);
    auto result = run_lathe(arguments);
    ASSERT_EQ(result.exit_code, exit_code) << result.err;
    const std::string validate = "xmllint --noout --schema '" + std::string(LATHE_SOURCE_DIR) + "/tests/cli/junit.xsd' '" +
                                 junit.string() + "' 2>/dev/null";
    EXPECT_EQ(std::system(validate.c_str()), 0) << read_text(junit);
    const auto xml = read_text(junit);
    for (const auto& text : expected) EXPECT_NE(xml.find(text), std::string::npos) << text << " not in\n" << xml;
  };
  auto ok = write_recipe("model: " + stories, "  eval: {tokens: " + tokens + ", max_tokens: 256}");
  check({"run", ok.string(), "--junit", junit.string()}, 0,
        {"<testsuites name=\"lathe\" tests=\"2\" failures=\"0\" errors=\"0\">", "name=\"1 eval\"",
         "<testcase classname=\"lathe.run\" name=\"run\""});
  auto gated = write_recipe("model: " + stories, "  eval: {tokens: " + tokens + ", max_tokens: 256}",
                            "gates: {max_loss_increase: -0.001, max_kl: 1}\n");
  check({"run", gated.string(), "--junit", junit.string()}, 3,
        {"tests=\"4\" failures=\"1\" errors=\"0\"", "name=\"max_loss_increase\"", "<failure type=\"gate_failed\"",
         "name=\"max_kl\" time=\"0.000\"/>"});
  auto missing = write_recipe("model: " + stories, "  eval: {tokens: " + (scratch_ / "gone.bin").string() + "}");
  check({"run", missing.string(), "--junit", junit.string()}, 2, {"<error type=\"bad_input\"", "gone.bin"});
  write_text(scratch_ / "broken.yaml", "model: [unclosed\n");
  check({"run", (scratch_ / "broken.yaml").string(), "--junit", junit.string()}, 2, {"invalid YAML"});
  // A JUnit path the output checks refuse is never written.
  auto over_input = run_lathe({"run", ok.string(), "--junit", (scratch_ / "recipe.yaml").string()});
  EXPECT_EQ(over_input.exit_code, 2);
  EXPECT_NE(read_text(scratch_ / "recipe.yaml").find("model:"), std::string::npos);
}

TEST_F(RunRecipe, DefaultThreadsFollowTheCpuAffinity) {
  auto recipe = write_recipe("model: " + shared_path("models/stories260K/hf").string(),
                             "  eval: {tokens: " + shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() +
                                 ", max_tokens: 256}");
  const std::string command = "cd " + scratch_.path().string() + " && taskset -c 0 " + LATHE_BINARY + " run " + recipe.string() +
                              " > /dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  EXPECT_EQ(nlohmann::json::parse(read_text(scratch_ / "out/report.json"))["threads"], 1);
}

TEST_F(RunRecipe, DryRunChecksEverythingAndWritesNothing) {
  auto recipe = write_recipe("model: " + shared_path("models/stories260K/hf").string(),
                             "  eval: {tokens: " + shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string() + "}");
  auto result = run_lathe({"run", recipe.string(), "--dry-run"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.out.find("dry run"), std::string::npos) << result.out;
  EXPECT_FALSE(std::filesystem::exists(scratch_ / "out"));
}

}  // namespace
}  // namespace lathe::testing
