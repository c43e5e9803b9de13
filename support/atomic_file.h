#pragma once

#include <filesystem>
#include <functional>
#include <ostream>

namespace lathe {

// Writes `destination` through a temporary file in the same folder that is renamed over it
// only after `write` returned and the data reached the disk, so an interrupted run never
// leaves a half-written file behind. Creates missing parent folders.
void write_file_atomically(const std::filesystem::path& destination,
                           const std::function<void(std::ostream&)>& write);

}  // namespace lathe
