#include "onnx_runtime.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/model.h"
#include "executor/executor.h"

namespace lathe::testing {

namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

namespace {

std::string quoted(const fs::path& path) {
  std::string text = "'";
  for (char c : path.string()) text += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return text + "'";
}

// Runs a shell command with stdout and stderr into `log`; the exit status and what it said.
std::pair<int, std::string> run_command(const std::string& command, const fs::path& log) {
  const int status = std::system((command + " > " + quoted(log) + " 2>&1").c_str());
  return {status, read_text(log)};
}

}  // namespace

void expect_pass_onnx_checker(const std::vector<fs::path>& model_paths, const TemporaryFolder& folder) {
  // Debian's python has onnx 1.12; the python3 first on PATH has no onnx. One process for all
  // the files: starting python and importing onnx costs most of the time.
  std::string command = "/usr/bin/python3 -c \"import onnx, sys; [onnx.checker.check_model(path, full_check=True) "
                        "for path in sys.argv[1:]]\"";
  for (const auto& path : model_paths) command.append(" ").append(quoted(path));
  auto [status, output] = run_command(command, folder / "checker.log");
  EXPECT_EQ(status, 0) << "onnx.checker rejects one of the exported files:\n" << output;
}

at::Tensor random_ids(std::int64_t vocab, std::int64_t batch, std::int64_t length, std::uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::uniform_int_distribution<std::int64_t> id(0, vocab - 1);
  std::vector<std::int64_t> ids(batch * length);
  for (auto& value : ids) value = id(generator);
  return at::tensor(ids, at::kLong).view({batch, length});
}

namespace {

// Writes ids [B, T] for a runner script, runs `command INPUT B T OUTPUT options` and reads the
// logits [B, T, vocab] it wrote; undefined (and a test failure) on error.
at::Tensor run_logits_script(const std::string& command, const std::string& options, const at::Tensor& ids,
                             std::int64_t vocab, const TemporaryFolder& folder, const std::string& what) {
  const auto input = folder / "input_ids.bin", output = folder / "logits.bin";
  {
    auto contiguous = ids.contiguous();
    std::ofstream out(input, std::ios::binary);
    out.write(static_cast<const char*>(contiguous.data_ptr()), static_cast<std::streamsize>(contiguous.nbytes()));
  }
  fs::remove(output);
  std::ostringstream line;
  line << command << " " << quoted(input) << " " << ids.size(0) << " " << ids.size(1) << " " << quoted(output) << options;
  auto [status, log] = run_command(line.str(), folder / "runner.log");
  if (status != 0) {
    ADD_FAILURE() << what << " failed:\n" << log;
    return {};
  }
  auto bytes = read_text(output);
  const auto expected_bytes = ids.numel() * vocab * static_cast<std::int64_t>(sizeof(float));
  if (static_cast<std::int64_t>(bytes.size()) != expected_bytes) {
    ADD_FAILURE() << output << " holds " << bytes.size() << " bytes, expected " << expected_bytes;
    return {};
  }
  return at::from_blob(bytes.data(), {ids.size(0), ids.size(1), vocab}, at::kFloat).clone();
}

}  // namespace

at::Tensor run_in_onnx_runtime(const fs::path& model_path, const at::Tensor& ids, std::int64_t vocab,
                               const TemporaryFolder& folder, const std::string& optimization) {
  return run_logits_script("node " + quoted(source_path("tests/node/run_onnx.js")) + " " + quoted(model_path),
                           " --threads 1 --optimization " + optimization, ids, vocab, folder,
                           "ONNX Runtime on " + model_path.string());
}

namespace {

std::string exact_reference_command() { return "/usr/bin/python3 " + quoted(source_path("tests/python/onnx_exact.py")); }

}  // namespace

at::Tensor run_exact_reference(const fs::path& model_path, const at::Tensor& ids, std::int64_t vocab,
                               const TemporaryFolder& folder) {
  return run_logits_script(exact_reference_command() + " " + quoted(model_path), "", ids, vocab, folder,
                           "the exact evaluation of " + model_path.string());
}

double expect_int8_logits_agree(const at::Tensor& from_onnx, const Model& quantized, const at::Tensor& ids, double scale,
                              const std::string& what) {
  at::NoGradGuard no_grad;
  const Model in_double = with_float64_values(quantized);
  struct Agreement {
    double median, off_fraction, max;
  };
  auto agreement = [&](const Model& model) {
    auto reference = Executor(model).forward(ids).to(at::kFloat);
    auto rows = (from_onnx - reference).abs().amax(-1).flatten();
    return Agreement{rows.median().item<double>(), (rows > 1e-3 * scale).to(at::kDouble).mean().item<double>(),
                     rows.max().item<double>()};
  };
  const auto with_float = agreement(quantized), with_double = agreement(in_double);
  const auto& closer = with_float.off_fraction <= with_double.off_fraction ? with_float : with_double;
  EXPECT_LE(closer.median, 1e-4 * scale) << what;
  EXPECT_LE(closer.off_fraction, 0.25) << what << ": positions off by more than " << 1e-3 * scale << ": "
                                       << with_float.off_fraction << " against float (max " << with_float.max << "), "
                                       << with_double.off_fraction << " against double (max " << with_double.max << ")";
  return std::min(with_float.max, with_double.max);
}

bool cpu_has_vnni() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream flags(line.substr(line.find(':') + 1));
    std::string flag;
    while (flags >> flag)
      if (flag == "avx512_vnni" || flag == "avx_vnni") return true;
    return false;
  }
  return false;
}

void expect_int8_onnx_computes_its_graph(const fs::path& model_path, const Model& quantized, const at::Tensor& ids,
                                         const TemporaryFolder& folder, const std::string& what,
                                         const std::string& optimization) {
  at::NoGradGuard no_grad;
  // lathe: the executor, in double, computes what the file specifies (the same quantizer
  // decisions, as both evaluate in double), at every position.
  const auto exact = run_exact_reference(model_path, ids, quantized.config.vocab, folder);
  ASSERT_TRUE(exact.defined());
  // In double, with int8 weights dequantized in double too (the executor's float32 values
  // are q x scale rounded to float32; the graph's dequantization is exact here).
  const auto executor = Executor(with_float64_values(quantized)).forward(ids);
  const double scale = exact.abs().max().item<double>();
  const double largest = (executor - exact.to(at::kDouble)).abs().max().item<double>();
  EXPECT_LE(largest, 1e-5 * scale) << what << ": the executor differs from the exact evaluation of the exported graph";

  // ONNX Runtime: every quantized step follows the graph, given ONNX Runtime's own inputs to it.
  const auto report_path = folder / "runtime_steps.json";
  std::ostringstream command;
  command << exact_reference_command() << " --check-runtime "
          << quoted(model_path) << " " << quoted(folder / "input_ids.bin") << " " << ids.size(0) << " " << ids.size(1)
          << " " << quoted(report_path) << " " << optimization;
  auto [status, log] = run_command(command.str(), folder / "check.log");
  ASSERT_EQ(status, 0) << what << ": the step-by-step check failed:\n" << log;
  const auto steps = nlohmann::json::parse(read_text(report_path));
  ASSERT_FALSE(steps.empty()) << what;
  double worst = 0;
  std::string worst_step;
  for (const auto& step : steps) {
    const double relative = step["max_difference"].get<double>() / std::max(step["max_magnitude"].get<double>(), 1e-30);
    if (relative > worst) {
      worst = relative;
      worst_step = step["op"].get<std::string>() + " " + step["name"].get<std::string>();
    }
  }
  // Without VNNI, ONNX Runtime's u8 x s8 kernels add product pairs in 16 bits with saturation:
  // full-range weights are not promised to be exact there (that is what 7-bit weights are for),
  // so the expectation is that the model runs and gives finite logits.
  const bool exact_on_this_cpu = quantized.quantization.weight_limit <= weight_limit_for(TargetCpu::Avx2) || cpu_has_vnni();
  if (exact_on_this_cpu) {
    EXPECT_LE(worst, 1e-4) << what << ": ONNX Runtime departs from the graph at " << worst_step
                           << " (largest difference relative to the largest value)";
  } else {
    const auto from_onnx = run_in_onnx_runtime(model_path, ids, quantized.config.vocab, folder, optimization);
    ASSERT_TRUE(from_onnx.defined());
    EXPECT_TRUE(at::isfinite(from_onnx).all().item<bool>()) << what;
    std::cerr << what << ": 8-bit weights on a CPU without VNNI; largest step difference " << worst << " at "
              << worst_step << "\n";
  }
}

}  // namespace lathe::testing
