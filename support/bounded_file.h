#pragma once

// Reading the small files a run starts from (recipes, config.json, indexes, tokenizers, family
// descriptions) so that nothing a user points lathe at can hang it or exhaust its memory: only
// regular files are opened (a FIFO, /dev/zero or a socket is refused before it is opened), and
// a file larger than its kind's limit is refused before it is read.

#include <cstdint>
#include <filesystem>
#include <string>

namespace lathe {

// What a file holds and the most lathe reads of it. The limits are stated in the README.
struct FileKind {
  const char* name;     // "recipe", "config.json", ...
  std::uint64_t limit;  // bytes
};

inline constexpr FileKind kRecipeFile{"recipe", 1 << 20};
inline constexpr FileKind kFamilyFile{"family description", 1 << 20};
inline constexpr FileKind kConfigFile{"JSON config", 16 << 20};
inline constexpr FileKind kIndexFile{"safetensors index", 64 << 20};
inline constexpr FileKind kTokenizerFile{"tokenizer", 256 << 20};
inline constexpr FileKind kTextDataFile{"text data file", std::uint64_t{4} << 30};

// The whole file, or an InputError naming it: missing, a folder, not a regular file, larger
// than kind.limit, or unreadable.
std::string read_bounded_file(const std::filesystem::path& path, const FileKind& kind);

// Opens `path` for reading without blocking on a FIFO and refuses anything but a regular file
// (InputError naming it). Returns the descriptor; the caller closes it.
int open_regular_file(const std::filesystem::path& path, const char* what);

}  // namespace lathe
