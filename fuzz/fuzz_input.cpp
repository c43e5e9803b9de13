#include "fuzz_input.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

namespace lathe::fuzz {
namespace {

std::filesystem::path make_scratch_folder() {
  std::error_code error;
  std::filesystem::path base = std::filesystem::is_directory("/dev/shm", error) ? std::filesystem::path("/dev/shm")
                                                                                 : std::filesystem::temp_directory_path();
  auto folder = base / ("lathe-fuzz-" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  static const std::filesystem::path removed_at_exit = folder;
  std::atexit([] {
    std::error_code ignored;
    std::filesystem::remove_all(removed_at_exit, ignored);
  });
  return folder;
}

}  // namespace

const std::filesystem::path& scratch_folder() {
  static const std::filesystem::path folder = make_scratch_folder();
  return folder;
}

std::filesystem::path write_input(std::string_view name, const std::uint8_t* data, std::size_t size) {
  auto path = scratch_folder() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) throw std::runtime_error("cannot write the fuzz input " + path.string());
  return path;
}

}  // namespace lathe::fuzz
