#pragma once

// What the harnesses share: lathe's readers take paths, so each input is written to a file in
// a private folder on tmpfs first, as a user's file would be.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

namespace lathe::fuzz {

// A folder of this process under /dev/shm (else the temporary folder), made on first use and
// removed at exit.
const std::filesystem::path& scratch_folder();

// Writes `size` bytes to `name` inside the scratch folder and returns its path.
std::filesystem::path write_input(std::string_view name, const std::uint8_t* data, std::size_t size);

}  // namespace lathe::fuzz
