#pragma once

// Helpers shared by the format tests: scratch folders, raw file writing, error matching.

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "support/errors.h"

namespace lathe::testing {

inline std::filesystem::path shared_dir() { return LATHE_SHARED_DIR; }

// A fresh folder under the system temporary folder, removed with its contents on destruction.
class ScratchDir {
 public:
  ScratchDir() {
    std::random_device entropy;
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "lathe-format-test-";
    if (test != nullptr) name += std::string(test->name()) + "-";
    path_ = std::filesystem::temp_directory_path() / (name + std::to_string(entropy()));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::string u64_le(std::uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// A safetensors file from a literal header and `data_size` bytes of data.
inline std::string safetensors_bytes(const std::string& header, std::size_t data_size) {
  return u64_le(header.size()) + header + std::string(data_size, '\x5a');
}

// Runs `action`, expecting an InputError whose message contains every phrase in `phrases`.
// Returns the message so tests can check more.
inline std::string expect_input_error(const std::function<void()>& action,
                                      const std::vector<std::string>& phrases) {
  try {
    action();
  } catch (const InputError& error) {
    std::string message = error.what();
    for (const auto& phrase : phrases)
      EXPECT_NE(message.find(phrase), std::string::npos)
          << "message: " << message << "\nlacks: " << phrase;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "message has several lines: " << message;
    return message;
  } catch (const std::exception& error) {
    ADD_FAILURE() << "expected InputError, got another exception: " << error.what();
    return {};
  }
  ADD_FAILURE() << "expected InputError, nothing was thrown";
  return {};
}

}  // namespace lathe::testing
