#pragma once

// Reading and writing the safetensors format without LibTorch: a little-endian u64 header
// length, a JSON header mapping names to {dtype, shape, data_offsets} plus an optional
// "__metadata__" string map, then the raw little-endian bytes.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <ostream>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "support/mapped_file.h"

namespace lathe {

enum class DType { F32, F16, BF16, I8, U8, I32, I64 };

// The safetensors spelling ("F32", "BF16", ...).
const char* dtype_name(DType dtype);
std::size_t dtype_size(DType dtype);
// Throws InputError naming `file` for a dtype lathe does not read.
DType parse_dtype(const std::string& name, const std::string& file);

// One tensor's bytes inside a file (or inside a caller's buffer when writing).
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> bytes;

  std::int64_t element_count() const;
};

using Metadata = std::map<std::string, std::string>;

// A memory-mapped, validated safetensors file. Every check happens in open(): header length
// inside the file, valid JSON, known dtypes, shape x element size == byte count, offsets
// contiguous from 0, non-overlapping and ending exactly at the end of the file.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);

  // Tensors in the order of their data offsets. Files from other writers may leave a
  // tensor's bytes unaligned to its element size; files from write_safetensors never do.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  const Metadata& metadata() const { return metadata_; }
  const std::shared_ptr<const MappedFile>& mapping() const { return mapping_; }
  const std::filesystem::path& path() const { return mapping_->path(); }

 private:
  std::shared_ptr<const MappedFile> mapping_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::size_t> index_;  // name -> position in tensors_
  Metadata metadata_;
};

// A checkpoint that may be split into shards listed by `model.safetensors.index.json`.
// `path` is a .safetensors file, an index file, or a folder holding either.
class SafetensorsCheckpoint {
 public:
  static SafetensorsCheckpoint open(const std::filesystem::path& path);

  // by_name_ points into shards_: a copy re-points it at its own shards.
  SafetensorsCheckpoint(const SafetensorsCheckpoint& other);
  SafetensorsCheckpoint& operator=(const SafetensorsCheckpoint& other);
  SafetensorsCheckpoint(SafetensorsCheckpoint&&) = default;
  SafetensorsCheckpoint& operator=(SafetensorsCheckpoint&&) = default;

  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  // All tensors of all shards; a name in two shards, or a tensor the index lists but its
  // shard lacks, is an InputError.
  std::vector<const TensorView*> tensors() const;
  const TensorView* find(const std::string& name) const;
  // Metadata of the first shard (writers put the same metadata in every shard).
  const Metadata& metadata() const;
  // Sum of the shard file sizes.
  std::uintmax_t bytes_on_disk() const;

 private:
  SafetensorsCheckpoint() = default;
  void rebuild_index();

  std::vector<SafetensorsFile> shards_;
  std::map<std::string, const TensorView*> by_name_;
};

// A tensor's entry in a header: what a streaming writer needs before the bytes exist.
struct TensorHeader {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;

  std::uint64_t byte_count() const;
};

// Writes a file tensor by tensor: write_data(i, out) must write exactly tensors[i]'s bytes
// when the file reaches it (in the same aligned order as write_safetensors), so only one
// tensor needs to exist at a time.
void write_safetensors_streamed(const std::filesystem::path& path, const std::vector<TensorHeader>& tensors,
                                const Metadata& metadata,
                                const std::function<void(std::size_t index, std::ostream& out)>& write_data);

// Writes tensors (larger element types first, so every tensor stays aligned; the header is
// padded with spaces so data starts 8-byte aligned) through write_file_atomically.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorView>& tensors,
                       const Metadata& metadata);

}  // namespace lathe
