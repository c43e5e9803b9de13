// The same recipe run twice writes the same bytes: every output file and the report (its timings,
// memory and thread count aside), at 1 and at 2 threads. Every random choice (calibration
// subsamples, needles, haystacks) follows the recipe's seeds.
//
// Across thread counts that holds where OpenBLAS's float products do: with its SkylakeX,
// Cooperlake and Sandybridge kernels a product gives the same bits at 1 and 2 threads, with its
// Haswell and Zen kernels (AMD EPYC, OpenBLAS 0.3.21) it does not. Debian's python3-torch, on the
// same OpenBLAS and kernels, says which: where products follow the thread count, two runs at 2
// threads must be byte-identical and the run at 1 thread must write the same files and a report
// of the same shape.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_runner.h"

namespace lathe::testing {
namespace {

namespace fs = std::filesystem;

// The report without what measures the machine rather than the result.
nlohmann::json without_measurements(nlohmann::json report) {
  if (report.is_object()) {
    for (const char* key : {"wall_seconds", "peak_rss_bytes", "threads"}) report.erase(key);
    for (auto& [key, value] : report.items()) value = without_measurements(value);
  } else if (report.is_array()) {
    for (auto& value : report) value = without_measurements(value);
  }
  return report;
}

// Every file under `folder`, by relative path, with its bytes.
std::map<std::string, std::string> files_under(const fs::path& folder) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(folder))
    if (entry.is_regular_file()) files[fs::relative(entry.path(), folder).string()] = read_text(entry.path());
  return files;
}

// Whether a float32 product in python3-torch, with OpenBLAS's `kernels`, gives other bits at 2
// threads than at 1.
bool blas_products_follow_thread_count(const std::string& kernels) {
  static std::map<std::string, bool> answers;
  if (auto known = answers.find(kernels); known != answers.end()) return known->second;
  ScratchFolder scratch;
  write_text(scratch / "probe.py",
             "import torch\n"
             "torch.manual_seed(0)\n"
             "a, b = torch.randn(512, 64), torch.randn(64, 172)\n"
             "products = []\n"
             "for threads in (1, 2):\n"
             "    torch.set_num_threads(threads)\n"
             "    products.append(a @ b)\n"
             "print('same' if torch.equal(products[0], products[1]) else 'different')\n");
  const auto answer = scratch / "answer.txt";
  const std::string command = "OPENBLAS_CORETYPE='" + kernels + "' /usr/bin/python3 '" + (scratch / "probe.py").string() +
                              "' > '" + answer.string() + "'";
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  return answers[kernels] = read_text(answer) == "different\n";
}

// The same keys, kinds and list lengths, with any values: rounding that differs in the last bit
// grows through fine-tuning and int8 rounding into other numbers, even other counts.
void expect_same_shape(const nlohmann::json& a, const nlohmann::json& b, const std::string& path) {
  ASSERT_EQ(a.is_number(), b.is_number()) << path;
  if (a.is_number()) return;
  ASSERT_EQ(a.type(), b.type()) << path;
  if (a.is_object()) {
    ASSERT_EQ(a.size(), b.size()) << path;
    for (const auto& [key, value] : a.items()) {
      ASSERT_TRUE(b.contains(key)) << path << "." << key;
      expect_same_shape(value, b[key], path + "." + key);
    }
  } else if (a.is_array()) {
    ASSERT_EQ(a.size(), b.size()) << path;
    for (std::size_t i = 0; i < a.size(); ++i) expect_same_shape(a[i], b[i], path + "[" + std::to_string(i) + "]");
  }
}

// Runs `recipe_text` (outputs under OUT, which it names) at 1 and at 2 threads in the same folder
// and compares all it wrote.
void expect_same_bytes_twice(const std::string& recipe_text, const std::vector<std::string>& overrides = {}) {
  ScratchFolder scratch;
  const auto recipe_path = scratch / "recipe.yaml";
  std::string text = recipe_text;
  for (auto at = text.find("OUT"); at != std::string::npos; at = text.find("OUT")) text.replace(at, 3, (scratch / "out").string());
  write_text(recipe_path, text);
  std::vector<std::map<std::string, std::string>> runs;
  std::vector<std::string> thread_counts = {"1", "2"};
  for (std::size_t run = 0; run < thread_counts.size(); ++run) {
    const auto& threads = thread_counts[run];
    std::vector<std::string> arguments = {"run", recipe_path.string(), "--threads", threads};
    for (const auto& value : overrides) arguments.insert(arguments.end(), {"--set", value});
    const auto result = run_lathe(arguments, LATHE_SOURCE_DIR);
    ASSERT_EQ(result.exit_code, 0) << result.err << result.out;
    auto files = files_under(scratch / "out");
    ASSERT_EQ(files.count("report.json"), 1u);
    const auto report = nlohmann::json::parse(files["report.json"]);
    if (run == 0 && blas_products_follow_thread_count(report["blas"]["kernels"].get<std::string>()))
      thread_counts.push_back("2");
    files["report.json"] = without_measurements(report).dump(1);
    runs.push_back(std::move(files));
    fs::remove_all(scratch / "out");
  }
  const bool across_threads = runs.size() == 2;
  const auto& first = runs[across_threads ? 0 : 1];
  const auto& second = runs[across_threads ? 1 : 2];
  ASSERT_EQ(first.size(), second.size());
  for (const auto& [name, bytes] : first) {
    ASSERT_EQ(second.count(name), 1u) << name;
    EXPECT_TRUE(bytes == second.at(name)) << name << " differs between the runs at " << (across_threads ? "1 and 2 threads" : "2 threads");
  }
  if (!across_threads) {
    ASSERT_EQ(runs[0].size(), runs[1].size());
    for (const auto& [name, bytes] : runs[0]) EXPECT_EQ(runs[1].count(name), 1u) << name;
    expect_same_shape(nlohmann::json::parse(runs[0]["report.json"]), nlohmann::json::parse(runs[1]["report.json"]), "report");
  }
}

// The built-in recipes, with their outputs moved to a scratch folder and their sizes cut so the
// suite stays fast; every pass and random choice they make is kept.
std::string built_in_recipe(const std::string& name) {
  auto text = read_text(fs::path(LATHE_SOURCE_DIR) / "recipes" / name);
  for (const std::string folder : {"path: out/int8/", "path: out/retrieval/", "path: out/"})
    for (auto at = text.find(folder); at != std::string::npos; at = text.find(folder)) text.replace(at, folder.size(), "path: OUT/");
  return text;
}

TEST(Determinism, DefaultRecipe) {
  expect_same_bytes_twice(built_in_recipe("default.yaml"), {"data.eval.max_tokens=4096", "passes.0.retrieval-heads.tests_per_cell=1",
                                                            "passes.1.eval.tests_per_cell=1"});
}

TEST(Determinism, Int8Recipe) {
  expect_same_bytes_twice(built_in_recipe("int8.yaml"),
                          {"passes.2.finetune.steps=4", "data.calibration.max_tokens=4096", "data.eval.max_tokens=4096"});
}

TEST(Determinism, RetrievalHeadsRecipe) {
  expect_same_bytes_twice(built_in_recipe("retrieval-heads.yaml"), {"data.eval.max_tokens=4096", "passes.0.retrieval-heads.tests_per_cell=1",
                                                                   "passes.1.eval.tests_per_cell=1"});
}

// Percentile and MSE ranges subsample activations; moving averages depend on batch order.
TEST(Determinism, EveryCalibrationRange) {
  const auto tokens = shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string();
  for (const char* range : {"minmax", "moving-average", "percentile", "mse"}) {
    SCOPED_TRACE(range);
    expect_same_bytes_twice("model: " + shared_path("models/stories260K/hf").string() + "\ndata:\n  calibration: {tokens: " +
                            tokens + ", seq_len: 256, batch_size: 4, max_tokens: 4096}\npasses:\n  - quantize: {mode: w8a8, range: " +
                            range + "}\noutputs:\n  - {format: onnx, path: OUT/model.onnx}\n  - {format: safetensors, path: OUT/model}\n");
  }
}

}  // namespace
}  // namespace lathe::testing
