// Bad input must end in exit code 2 and one clear line naming the file and the problem, never
// a crash or a half-done run.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "formats/safetensors.h"

namespace lathe::testing {
namespace {

std::string u64_le(std::uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// A safetensors file from a header and `data` bytes.
std::string safetensors(const nlohmann::json& header, std::size_t data) {
  const auto text = header.dump();
  return u64_le(text.size()) + text + std::string(data, '\0');
}

class BadInput : public ::testing::Test {
 protected:
  // A model folder with stories260K's config.json and the given model.safetensors bytes.
  std::filesystem::path model_folder(const std::string& safetensors_bytes) {
    const auto folder = scratch_ / "model";
    std::filesystem::create_directories(folder);
    std::filesystem::copy_file(shared_path("models/stories260K/hf/config.json"), folder / "config.json",
                               std::filesystem::copy_options::overwrite_existing);
    write_text(folder / "model.safetensors", safetensors_bytes);
    return folder;
  }

  std::filesystem::path recipe(const std::string& text) {
    const auto path = scratch_ / "recipe.yaml";
    write_text(path, text);
    return path;
  }

  // Exit code 2, one line on stderr, naming `subject` and saying `problem`.
  void expect_bad_input(const CommandResult& result, const std::string& subject, const std::string& problem) {
    EXPECT_EQ(result.exit_code, 2) << result.err << result.out;
    ASSERT_FALSE(result.err.empty());
    EXPECT_EQ(result.err.find('\n'), result.err.size() - 1) << "not one line: " << result.err;
    EXPECT_EQ(result.err.rfind("lathe: error: ", 0), 0u) << result.err;
    EXPECT_NE(result.err.find(subject), std::string::npos) << "does not name " << subject << ": " << result.err;
    EXPECT_NE(result.err.find(problem), std::string::npos) << "does not say " << problem << ": " << result.err;
  }

  const std::string stories_ = shared_path("models/stories260K/hf").string();
  const std::string tokens_ = shared_path("data/tinystories-valid/tinystories_valid_head.tok512.u16.bin").string();
  ScratchFolder scratch_;
};

const nlohmann::json kTwoTensors = {{"a", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}},
                                    {"b", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {16, 32}}}}};

TEST_F(BadInput, TruncatedSafetensors) {
  auto bytes = read_text(shared_path("models/stories260K/hf/model.safetensors"));
  auto folder = model_folder(bytes.substr(0, bytes.size() - 1000));
  expect_bad_input(run_lathe({"inspect", folder.string()}), "model.safetensors", "bytes");
}

TEST_F(BadInput, HeaderLengthPastEndOfFile) {
  auto folder = model_folder(u64_le(1 << 20) + "{}");
  expect_bad_input(run_lathe({"inspect", folder.string()}), "model.safetensors", "header length");
}

TEST_F(BadInput, OverlappingOffsets) {
  auto header = kTwoTensors;
  header["b"]["data_offsets"] = {8, 24};
  expect_bad_input(run_lathe({"inspect", model_folder(safetensors(header, 32)).string()}), "model.safetensors", "overlap");
}

TEST_F(BadInput, GappedOffsets) {
  auto header = kTwoTensors;
  header["b"]["data_offsets"] = {20, 36};
  expect_bad_input(run_lathe({"inspect", model_folder(safetensors(header, 36)).string()}), "model.safetensors", "gap");
}

TEST_F(BadInput, UnknownDtype) {
  auto header = kTwoTensors;
  header["a"]["dtype"] = "F8_E9M9";
  expect_bad_input(run_lathe({"inspect", model_folder(safetensors(header, 32)).string()}), "model.safetensors", "F8_E9M9");
}

TEST_F(BadInput, ShapeDisagreesWithByteCount) {
  auto header = kTwoTensors;
  header["a"]["shape"] = {3, 2};
  expect_bad_input(run_lathe({"inspect", model_folder(safetensors(header, 32)).string()}), "model.safetensors", "24 bytes");
}

TEST_F(BadInput, HeaderIsNotJson) {
  auto folder = model_folder(u64_le(9) + "{\"a\": [1," + std::string(8, '\0'));
  expect_bad_input(run_lathe({"inspect", folder.string()}), "model.safetensors", "JSON");
}

TEST_F(BadInput, MissingTensor) {
  auto original = SafetensorsFile::open(shared_path("models/stories260K/hf/model.safetensors"));
  std::vector<TensorView> kept;
  for (const auto& view : original.tensors())
    if (view.name != "model.layers.2.mlp.up_proj.weight") kept.push_back(view);
  const auto folder = scratch_ / "model";
  std::filesystem::create_directories(folder);
  std::filesystem::copy_file(shared_path("models/stories260K/hf/config.json"), folder / "config.json");
  write_safetensors(folder / "model.safetensors", kept, {});
  expect_bad_input(run_lathe({"inspect", folder.string()}), "model.safetensors",
                   "missing tensor model.layers.2.mlp.up_proj.weight");
}

TEST_F(BadInput, TensorOfTheWrongShape) {
  auto original = SafetensorsFile::open(shared_path("models/stories260K/hf/model.safetensors"));
  std::vector<TensorView> views(original.tensors().begin(), original.tensors().end());
  for (auto& view : views)
    if (view.name == "model.layers.0.self_attn.q_proj.weight") view.shape = {32, 128};
  const auto folder = scratch_ / "model";
  std::filesystem::create_directories(folder);
  std::filesystem::copy_file(shared_path("models/stories260K/hf/config.json"), folder / "config.json");
  write_safetensors(folder / "model.safetensors", views, {});
  expect_bad_input(run_lathe({"inspect", folder.string()}), "model.safetensors", "layers.0.attn.q.weight has shape [32,128]");
}

TEST_F(BadInput, ConfigIsNotJson) {
  auto folder = model_folder(read_text(shared_path("models/stories260K/hf/model.safetensors")));
  write_text(folder / "config.json", "{\"model_type\": \"llama\",\n \"hidden_size\": 64,,}");
  expect_bad_input(run_lathe({"inspect", folder.string()}), "config.json", "line 2");
}

TEST_F(BadInput, ConfigOfAnUnknownFamily) {
  auto folder = model_folder(read_text(shared_path("models/stories260K/hf/model.safetensors")));
  auto config = nlohmann::json::parse(read_text(folder / "config.json"));
  config["model_type"] = "mamba";
  write_text(folder / "config.json", config.dump());
  expect_bad_input(run_lathe({"inspect", folder.string()}), "config.json", "\"mamba\"");
}

TEST_F(BadInput, StateDictWithoutConfig) {
  expect_bad_input(run_lathe({"inspect", shared_path("models/makemore-names-gpt/original/model.pt").string()}),
                   "model.pt", "config");
}

TEST_F(BadInput, ModelPathDoesNotExist) {
  expect_bad_input(run_lathe({"inspect", (scratch_ / "nowhere").string()}), "nowhere", "no such file");
}

TEST_F(BadInput, UnknownPass) {
  auto path = recipe("model: " + stories_ + "\npasses:\n  - evl: {}\n");
  expect_bad_input(run_lathe({"run", path.string()}), "recipe.yaml:3:", "eval");
}

TEST_F(BadInput, WrongParameterType) {
  auto path = recipe("model: " + stories_ + "\ndata:\n  eval: {tokens: " + tokens_ + "}\npasses:\n  - eval: {kl: maybe}\n");
  expect_bad_input(run_lathe({"run", path.string()}), "recipe.yaml:5:", "kl");
}

TEST_F(BadInput, UnknownParameter) {
  auto path = recipe("model: " + stories_ + "\ndata:\n  eval: {tokens: " + tokens_ + "}\npasses:\n  - eval: {kll: true}\n");
  expect_bad_input(run_lathe({"validate", path.string()}), "recipe.yaml:5:", "kl");
}

TEST_F(BadInput, UnknownRecipeKey) {
  auto path = recipe("model: " + stories_ + "\npases: []\n");
  expect_bad_input(run_lathe({"validate", path.string()}), "recipe.yaml:2:", "pases");
}

TEST_F(BadInput, MissingDataFile) {
  auto path = recipe("model: " + stories_ + "\ndata:\n  eval: {tokens: " + (scratch_ / "gone.bin").string() +
                     "}\npasses:\n  - eval\n");
  expect_bad_input(run_lathe({"run", path.string()}), "gone.bin", "no such file");
}

TEST_F(BadInput, DataEntryThatDoesNotExist) {
  auto path = recipe("model: " + stories_ + "\ndata:\n  eval: {tokens: " + tokens_ + "}\npasses:\n  - eval: {data: calibration}\n");
  expect_bad_input(run_lathe({"run", path.string()}), "recipe.yaml:5:", "calibration");
}

TEST_F(BadInput, TokenIdOutsideTheVocabulary) {
  write_text(scratch_ / "ids.bin", std::string("\x01\x00\xff\x7f", 4));
  auto path = recipe("model: " + stories_ + "\ndata:\n  eval: {tokens: " + (scratch_ / "ids.bin").string() +
                     "}\npasses:\n  - eval\n");
  expect_bad_input(run_lathe({"run", path.string()}), "ids.bin", "32767");
}

TEST_F(BadInput, WindowLongerThanTheModelSees) {
  auto path = recipe("model: " + stories_ + "\ndata:\n  eval: {tokens: " + tokens_ + ", seq_len: 4096}\npasses:\n  - eval\n");
  expect_bad_input(run_lathe({"run", path.string()}), "recipe.yaml:3:", "512");
}

TEST_F(BadInput, MalformedSetOverride) {
  auto path = recipe("model: " + stories_ + "\n");
  expect_bad_input(run_lathe({"validate", path.string(), "--set", "passes.0.eval"}), "--set passes.0.eval", "=");
}

TEST_F(BadInput, RecipeFileDoesNotExist) {
  auto result = run_lathe({"run", (scratch_ / "absent.yaml").string()});
  EXPECT_EQ(result.exit_code, 2) << result.err;
  EXPECT_NE(result.err.find("absent.yaml"), std::string::npos) << result.err;
}

TEST_F(BadInput, NothingIsWrittenWhenTheInputIsBad) {
  auto path = recipe("model: " + stories_ + "\ndata:\n  eval: {tokens: " + (scratch_ / "gone.bin").string() +
                     "}\npasses:\n  - eval\noutputs:\n  - {format: onnx, path: " + (scratch_ / "out/m.onnx").string() + "}\n");
  EXPECT_EQ(run_lathe({"run", path.string()}).exit_code, 2);
  EXPECT_FALSE(std::filesystem::exists(scratch_ / "out"));
}

}  // namespace
}  // namespace lathe::testing
