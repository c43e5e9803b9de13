// Real-size behaviour on mid-size models made here (hidden 512, float16, sharded; 24 layers: 80 M
// parameters): a W8A8 run holds about one layer at a time, so its peak memory does not grow with
// the number of layers, and a run under a small --memory-limit refuses a whole-model pass before
// any work starts.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "cli_runner.h"

namespace lathe::testing {
namespace {

namespace fs = std::filesystem;

// bench/random_checkpoint.py's "mid" shape.
constexpr std::int64_t kHidden = 512, kLayers = 24, kKvWidth = 256, kFfn = 1536, kVocab = 4096;
constexpr std::int64_t kLayerParameters = 2 * kHidden * kHidden + 2 * kHidden * kKvWidth + 3 * kHidden * kFfn + 2 * kHidden;
constexpr std::int64_t kLayerFloatBytes = 4 * kLayerParameters;  // 12.6 MB
constexpr std::int64_t kModelFloatBytes = 4 * (kLayers * kLayerParameters + 2 * kVocab * kHidden + kHidden);
constexpr std::int64_t kFewLayers = 4;

class MemoryBound : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    folder_ = new ScratchFolder();
    for (auto layers : {kLayers, kFewLayers}) {
      const auto command = "/usr/bin/python3 " + (fs::path(LATHE_SOURCE_DIR) / "bench/random_checkpoint.py").string() +
                           " " + model_path(layers).string() + " --shape mid --layers " + std::to_string(layers) +
                           " --max-shard-bytes 60000000 > /dev/null";
      ASSERT_EQ(std::system(command.c_str()), 0) << command;
    }
  }
  static void TearDownTestSuite() { delete folder_; }

  static fs::path model_path(std::int64_t layers) { return folder_->path() / ("mid" + std::to_string(layers)); }

  static std::string recipe(const std::string& passes, const std::string& outputs, std::int64_t layers = kLayers) {
    const auto tokens = shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string();
    return "model: " + model_path(layers).string() + "\ndata:\n  calibration: {tokens: " + tokens +
           ", seq_len: 128, batch_size: 4, max_tokens: 512}\n  eval: {tokens: " + tokens +
           ", seq_len: 128, batch_size: 4, max_tokens: 512}\npasses:\n" + passes + "outputs:\n" + outputs;
  }

  static ScratchFolder* folder_;
};

ScratchFolder* MemoryBound::folder_ = nullptr;

TEST_F(MemoryBound, AW8a8RunsPeakMemoryDoesNotGrowWithTheLayers) {
  // The same recipe on 24 and on 4 layers: the peak of every stage (measured from a reset at its
  // start) may differ by a few layers' float32 weights, while holding the model would add 20
  // layers: 252 MB of float32, 63 MB even as int8.
  std::map<std::int64_t, nlohmann::json> reports;
  for (auto layers : {kLayers, kFewLayers}) {
    const auto name = "w8a8_" + std::to_string(layers);
    const auto out = folder_->path() / ("out" + std::to_string(layers));
    write_text(folder_->path() / (name + ".yaml"),
               recipe("  - smooth: {alpha: 0.5}\n  - quantize: {mode: w8a8, max_tokens: 512}\n  - eval: {kl: true}\n",
                      "  - {format: onnx, path: " + (out / "model.onnx").string() + ", external_data: true}\n  - {format: safetensors, path: " +
                          (out / "model").string() + ", max_shard_size: 20000000}\n",
                      layers));
    const auto report_path = folder_->path() / (name + ".json");
    auto result = run_lathe({"run", (folder_->path() / (name + ".yaml")).string(), "--threads", "2", "--report",
                             report_path.string()});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    reports[layers] = nlohmann::json::parse(read_text(report_path));
  }
  const auto& many = reports[kLayers];
  const auto& few = reports[kFewLayers];
  const std::int64_t bound = 3 * kLayerFloatBytes;
  auto growth = [&](const nlohmann::json& a, const nlohmann::json& b) {
    return a["peak_rss_bytes"].get<std::int64_t>() - b["peak_rss_bytes"].get<std::int64_t>();
  };
  EXPECT_LT(growth(many, few), bound) << "24 layers: " << many["peak_rss_bytes"] << ", 4: " << few["peak_rss_bytes"];
  for (std::size_t i = 0; i < many["passes"].size(); ++i)
    EXPECT_LT(growth(many["passes"][i], few["passes"][i]), bound) << many["passes"][i]["name"];
  for (std::size_t i = 0; i < many["outputs"].size(); ++i)
    EXPECT_LT(growth(many["outputs"][i], few["outputs"][i]), bound) << many["outputs"][i]["format"];
  // And well below the float32 model: what is resident beyond the process itself (LibTorch,
  // OpenBLAS's buffers: measured ~100 MB) is about the layer being worked on.
  EXPECT_LT(many["passes"][2]["peak_rss_bytes"].get<std::int64_t>() - many["load"]["peak_rss_bytes"].get<std::int64_t>(),
            kModelFloatBytes / 2);
  const auto out = folder_->path() / ("out" + std::to_string(kLayers));
  EXPECT_TRUE(fs::exists(out / "model.onnx.data"));
  EXPECT_TRUE(fs::exists(out / "model/model.safetensors.index.json"));
  const auto config = nlohmann::json::parse(read_text(out / "model/config.json"));
  EXPECT_EQ(config["torch_dtype"], "float16");
}

TEST_F(MemoryBound, NeedleTestsUnderASmallLimitHoldAboutOneLayer) {
  // Under a 40 MB limit neither model's float32 weights fit (24 layers: 320 MB, 4 layers: 67 MB),
  // so both convert one layer per pass over the layers. What may grow with the layers is a
  // layer or two and the tests' KV caches (24 layers x 2 x 256 floats per position: 4 batches
  // of 4 prompts of up to 100 positions in waves of a quarter of the limit).
  std::map<std::int64_t, nlohmann::json> reports;
  const std::string needles = "lengths: \"48, 96\", depths: \"0, 1\", tests_per_cell: 2";
  for (auto layers : {kLayers, kFewLayers}) {
    const auto name = "needles_" + std::to_string(layers);
    write_text(folder_->path() / (name + ".yaml"),
               recipe("  - retrieval-heads: {mode: teacher-forced, " + needles + "}\n  - eval: {kl: false, niah: true, " +
                          needles + "}\n",
                      "  []\n", layers));
    const auto report_path = folder_->path() / (name + ".json");
    auto result = run_lathe({"run", (folder_->path() / (name + ".yaml")).string(), "--threads", "2", "--memory-limit",
                             "40M", "--report", report_path.string()});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    reports[layers] = nlohmann::json::parse(read_text(report_path));
  }
  const auto& many = reports[kLayers];
  const auto& few = reports[kFewLayers];
  constexpr std::int64_t kCacheBytes = 4 * 4 * 100 * (kLayers - kFewLayers) * 2 * kKvWidth;
  for (std::size_t i = 0; i < many["passes"].size(); ++i) {
    const auto growth = many["passes"][i]["peak_rss_bytes"].get<std::int64_t>() - few["passes"][i]["peak_rss_bytes"].get<std::int64_t>();
    EXPECT_LT(growth, 3 * kLayerFloatBytes + kCacheBytes) << many["passes"][i]["name"];
  }
  EXPECT_EQ(many["passes"][0]["statistics"]["tests"], 8);
  EXPECT_EQ(many["metrics"]["eval"]["niah"]["tests"], 8);
}

TEST_F(MemoryBound, AWholeModelPassIsRefusedUnderTheLimitBeforeWorkStarts) {
  const auto out = folder_->path() / "refused";
  write_text(folder_->path() / "finetune.yaml",
             recipe("  - eval: {kl: false}\n  - finetune: {steps: 1}\n", "  - {format: onnx, path: " + (out / "m.onnx").string() + "}\n"));
  auto result = run_lathe({"run", (folder_->path() / "finetune.yaml").string(), "--memory-limit", "200M"});
  EXPECT_EQ(result.exit_code, 2) << result.err;
  EXPECT_NE(result.err.find("finetune.yaml:"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("finetune holds the whole model in float32 at once and needs about 637.7 MB"), std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find("memory limit of 209.7 MB"), std::string::npos) << result.err;
  EXPECT_FALSE(fs::exists(out / "m.onnx"));
  EXPECT_EQ(nlohmann::json::parse(read_text(out / "report.json"))["status"], "bad_input");
  EXPECT_EQ(run_lathe({"run", (folder_->path() / "finetune.yaml").string(), "--memory-limit", "lots"}).exit_code, 2);
}

TEST_F(MemoryBound, AMissingTemporaryFolderIsBadInput) {
  // Under a 64 KB limit the hidden states must go to a temporary file, and $TMPDIR is not there.
  write_text(folder_->path() / "eval.yaml", recipe("  - eval: {kl: false}\n", "  []\n", kFewLayers));
  auto result = run_lathe({"run", (folder_->path() / "eval.yaml").string(), "--memory-limit", "64K"}, LATHE_SOURCE_DIR,
                          {"TMPDIR=" + (folder_->path() / "no-such-folder").string()});
  EXPECT_EQ(result.exit_code, 2) << result.err;
  EXPECT_NE(result.err.find("no-such-folder: the folder for temporary files ($TMPDIR) does not exist"), std::string::npos)
      << result.err;
}

}  // namespace
}  // namespace lathe::testing
