#include "onnx_runtime.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

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

// Logits [B, T, vocab] from ONNX Runtime for ids [B, T].
at::Tensor run_in_onnx_runtime(const fs::path& model_path, const at::Tensor& ids, std::int64_t vocab,
                               const TemporaryFolder& folder, const std::string& optimization) {
  const auto input = folder / "input_ids.bin", output = folder / "logits.bin";
  {
    auto contiguous = ids.contiguous();
    std::ofstream out(input, std::ios::binary);
    out.write(static_cast<const char*>(contiguous.data_ptr()), static_cast<std::streamsize>(contiguous.nbytes()));
  }
  fs::remove(output);
  std::ostringstream command;
  command << "node " << quoted(source_path("tests/node/run_onnx.js")) << " " << quoted(model_path) << " "
          << quoted(input) << " " << ids.size(0) << " " << ids.size(1) << " " << quoted(output) << " --threads 1 --optimization " << optimization;
  auto [status, log] = run_command(command.str(), folder / "node.log");
  if (status != 0) {
    ADD_FAILURE() << "ONNX Runtime failed on " << model_path << ":\n" << log;
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

double expect_int8_logits_agree(const at::Tensor& from_onnx, const Model& quantized, const at::Tensor& ids, double scale,
                              const std::string& what) {
  at::NoGradGuard no_grad;
  Model in_double = quantized.clone();
  for (auto& [name, tensor] : in_double.tensors) tensor = tensor.to(at::kDouble);
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

}  // namespace lathe::testing
