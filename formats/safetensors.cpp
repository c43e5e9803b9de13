#include "formats/safetensors.h"

#include <algorithm>
#include <array>
#include <optional>
#include <string_view>
#include <tuple>

#include <nlohmann/json.hpp>

#include "formats/json_reader.h"
#include "support/atomic_file.h"
#include "support/errors.h"

namespace lathe {
namespace {

using nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";
// The reference implementation refuses larger headers too; a corrupt length must not make
// us parse gigabytes of tensor data as JSON.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeInfo {
  DType dtype;
  const char* name;
  std::size_t size;
};

constexpr std::array<DTypeInfo, 7> kDTypes = {{
    {DType::F32, "F32", 4},
    {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},
    {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},
    {DType::I32, "I32", 4},
    {DType::I64, "I64", 8},
}};

const DTypeInfo& info(DType dtype) {
  for (const auto& entry : kDTypes)
    if (entry.dtype == dtype) return entry;
  return kDTypes[0];  // unreachable: every enumerator is in the table
}

std::optional<DType> lookup_dtype(const std::string& name) {
  for (const auto& entry : kDTypes)
    if (name == entry.name) return entry.dtype;
  return std::nullopt;
}

std::string unknown_dtype_message(const std::string& name) {
  std::string known;
  for (const auto& entry : kDTypes) {
    if (!known.empty()) known += ", ";
    known += entry.name;
  }
  return "unknown dtype " + quote(name) + " (lathe reads " + known + ")";
}

template <typename Int>
std::string format_list(const std::vector<Int>& values) {
  std::string text = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) text += ',';
    text += std::to_string(values[i]);
  }
  return text + "]";
}

// prod(shape) * element size, or nullopt when a dimension is negative or the product
// does not fit in 64 bits.
std::optional<std::uint64_t> byte_count(const std::vector<std::int64_t>& shape, DType dtype) {
  if (std::any_of(shape.begin(), shape.end(), [](std::int64_t dim) { return dim < 0; }))
    return std::nullopt;
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  std::uint64_t bytes = dtype_size(dtype);
  for (auto dim : shape) {
    if (__builtin_mul_overflow(bytes, static_cast<std::uint64_t>(dim), &bytes)) return std::nullopt;
  }
  return bytes;
}

std::uint64_t read_u64_le(const std::byte* bytes) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | std::to_integer<std::uint64_t>(bytes[i]);
  return value;
}

std::string u64_le(std::uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// A header entry before its bytes are located in the file.
struct HeaderEntry {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin;
  std::uint64_t end;
};

class HeaderParser {
 public:
  explicit HeaderParser(std::string file) : file_(std::move(file)) {}

  HeaderEntry parse_entry(const std::string& name, const json& entry) const {
    if (!entry.is_object())
      fail(name, "expected an object with dtype, shape and data_offsets, got " + json_type(entry));
    HeaderEntry result{name, parse_dtype_field(name, entry), parse_shape(name, entry), 0, 0};
    std::tie(result.begin, result.end) = parse_offsets(name, entry);

    auto needed = byte_count(result.shape, result.dtype);
    if (!needed)
      fail(name, "shape " + format_list(result.shape) + " of " + dtype_name(result.dtype) +
                     " is too large (more than 2^64 bytes)");
    if (*needed != result.end - result.begin)
      fail(name, "shape " + format_list(result.shape) + " of " + dtype_name(result.dtype) +
                     " needs " + std::to_string(*needed) + " bytes but data_offsets give " +
                     std::to_string(result.end - result.begin));
    return result;
  }

  Metadata parse_metadata(const json& value) const {
    if (!value.is_object())
      throw InputError(file_, "__metadata__ must be an object mapping strings to strings, got " +
                                  json_type(value));
    Metadata metadata;
    for (const auto& [key, item] : value.items()) {
      if (!item.is_string())
        throw InputError(file_, "__metadata__ must map strings to strings, but " + quote(key) +
                                    " is a " + json_type(item));
      metadata.emplace(key, item.get<std::string>());
    }
    return metadata;
  }

  // Entries sorted by offset must tile [0, data_size) exactly.
  void check_layout(const std::vector<HeaderEntry>& entries, std::uint64_t data_size) const {
    std::uint64_t cursor = 0;
    const HeaderEntry* previous = nullptr;
    for (const auto& entry : entries) {
      std::string offsets = format_list(std::vector<std::uint64_t>{entry.begin, entry.end});
      if (entry.end > data_size)
        fail(entry.name, "data_offsets " + offsets + " run past the end of the file (" +
                             std::to_string(data_size) +
                             " bytes of data follow the header; is the file truncated?)");
      if (entry.begin < cursor)
        fail(entry.name, "data_offsets " + offsets + " overlap tensor " + quote(previous->name) +
                             " " +
                             format_list(std::vector<std::uint64_t>{previous->begin, previous->end}));
      if (entry.begin > cursor)
        fail(entry.name, "data_offsets " + offsets + " leave a gap of " +
                             std::to_string(entry.begin - cursor) + " unused bytes " +
                             (previous ? "after tensor " + quote(previous->name)
                                       : std::string("at the start of the data")));
      cursor = entry.end;
      previous = &entry;
    }
    if (cursor != data_size)
      throw InputError(file_, "the header describes " + std::to_string(cursor) +
                                  " bytes of tensor data but " + std::to_string(data_size) +
                                  " follow it (" + std::to_string(data_size - cursor) +
                                  " trailing bytes)");
  }

 private:
  [[noreturn]] void fail(const std::string& tensor, const std::string& problem) const {
    throw InputError(file_, "tensor " + quote(tensor) + ": " + problem);
  }

  const json& field(const std::string& name, const json& entry, const char* key) const {
    auto it = entry.find(key);
    if (it == entry.end()) fail(name, std::string("\"") + key + "\" is missing");
    return *it;
  }

  DType parse_dtype_field(const std::string& name, const json& entry) const {
    const json& value = field(name, entry, "dtype");
    if (!value.is_string()) fail(name, "\"dtype\" must be a string, got " + json_type(value));
    auto dtype = lookup_dtype(value.get<std::string>());
    if (!dtype) fail(name, unknown_dtype_message(value.get<std::string>()));
    return *dtype;
  }

  std::vector<std::int64_t> parse_shape(const std::string& name, const json& entry) const {
    const json& value = field(name, entry, "shape");
    if (!value.is_array())
      fail(name, "\"shape\" must be an array of integers, got " + json_type(value));
    std::vector<std::int64_t> shape;
    for (const auto& dim : value) {
      if (dim.is_number_unsigned()) {
        if (dim.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
          fail(name, "dimension " + std::to_string(shape.size()) + " of \"shape\" is too large");
        shape.push_back(dim.get<std::int64_t>());
      } else if (dim.is_number_integer()) {
        shape.push_back(dim.get<std::int64_t>());
      } else {
        fail(name, "dimension " + std::to_string(shape.size()) +
                       " of \"shape\" must be an integer, got " + dim.dump());
      }
    }
    for (std::size_t i = 0; i < shape.size(); ++i)
      if (shape[i] < 0)
        fail(name, "dimension " + std::to_string(i) + " of shape " + format_list(shape) +
                       " is negative");
    return shape;
  }

  std::pair<std::uint64_t, std::uint64_t> parse_offsets(const std::string& name,
                                                        const json& entry) const {
    const json& value = field(name, entry, "data_offsets");
    bool valid = value.is_array() && value.size() == 2 &&
                 std::all_of(value.begin(), value.end(),
                             [](const json& offset) { return offset.is_number_unsigned(); });
    if (!valid)
      fail(name, "\"data_offsets\" must be two non-negative integers [begin, end], got " +
                     value.dump());
    auto begin = value[0].get<std::uint64_t>();
    auto end = value[1].get<std::uint64_t>();
    if (end < begin)
      fail(name, "data_offsets " + value.dump() + " end before they begin");
    return {begin, end};
  }

  std::string file_;
};

void check_tensor_for_writing(const std::string& file, const TensorView& tensor,
                              std::optional<std::uint64_t> given = std::nullopt) {
  if (tensor.name.empty()) throw InputError(file, "cannot write a tensor with an empty name");
  if (tensor.name == kMetadataKey)
    throw InputError(file, "cannot write a tensor named \"__metadata__\": the name is reserved");
  auto needed = byte_count(tensor.shape, tensor.dtype);
  if (!needed)
    throw InputError(file, "cannot write tensor " + quote(tensor.name) + ": shape " +
                               format_list(tensor.shape) + " is negative or too large");
  if (*needed != given.value_or(tensor.bytes.size()))
    throw InputError(file, "cannot write tensor " + quote(tensor.name) + ": shape " +
                               format_list(tensor.shape) + " of " + dtype_name(tensor.dtype) +
                               " needs " + std::to_string(*needed) + " bytes but " +
                               std::to_string(given.value_or(tensor.bytes.size())) + " were given");
}

// A JSON string literal; InputError if `text` is not valid UTF-8.
std::string json_string(const std::string& file, const std::string& text, const char* what) {
  try {
    return json(text).dump();
  } catch (const json::exception&) {
    throw InputError(file, std::string("cannot write ") + what + " " + quote(text) +
                               ": not valid UTF-8");
  }
}

// A tensor as the writer states it in the header.
struct WrittenEntry {
  const std::string* name;
  DType dtype;
  const std::vector<std::int64_t>* shape;
  std::uint64_t bytes;
};

std::string header_json(const std::string& file, const std::vector<WrittenEntry>& order, const Metadata& metadata) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) header += ',';
      header += json_string(file, key, "metadata key") + ":" +
                json_string(file, value, "metadata value");
      first = false;
    }
    header += "}";
  }
  std::uint64_t offset = 0;
  for (const auto& tensor : order) {
    std::uint64_t end = offset + tensor.bytes;
    if (header.size() > 1) header += ',';
    header += json_string(file, *tensor.name, "tensor name") + ":{\"dtype\":\"" + dtype_name(tensor.dtype) + "\",\"shape\":" +
              format_list(*tensor.shape) + ",\"data_offsets\":" +
              format_list(std::vector<std::uint64_t>{offset, end}) + "}";
    offset = end;
  }
  header += "}";
  // Data starts right after the 8-byte length and the header: pad so that it is 8-aligned.
  header.append((8 - header.size() % 8) % 8, ' ');
  return header;
}

}  // namespace

const char* dtype_name(DType dtype) { return info(dtype).name; }

std::size_t dtype_size(DType dtype) { return info(dtype).size; }

DType parse_dtype(const std::string& name, const std::string& file) {
  auto dtype = lookup_dtype(name);
  if (!dtype) throw InputError(file, unknown_dtype_message(name));
  return *dtype;
}

std::int64_t TensorView::element_count() const {
  // Checked shapes fit once no dimension is zero: their bytes lie inside a file.
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  std::int64_t count = 1;
  for (auto dim : shape) count *= dim;
  return count;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile result;
  result.mapping_ = MappedFile::open(path);
  const std::string file = path.string();
  auto bytes = result.mapping_->bytes();

  if (bytes.size() < 8)
    throw InputError(file, "file is " + std::to_string(bytes.size()) +
                               " bytes, too short to hold the 8-byte header length");
  std::uint64_t header_size = read_u64_le(bytes.data());
  if (header_size > bytes.size() - 8)
    throw InputError(file, "header length " + std::to_string(header_size) +
                               " runs past the end of the file (" + std::to_string(bytes.size()) +
                               " bytes)");
  if (header_size > kMaxHeaderBytes)
    throw InputError(file, "header length " + std::to_string(header_size) + " exceeds the " +
                               std::to_string(kMaxHeaderBytes) + "-byte limit");

  std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + 8), header_size);
  json header = parse_json(header_text, file, "JSON header");
  if (!header.is_object())
    throw InputError(file, "JSON header must be an object, got " + json_type(header));

  HeaderParser parser(file);
  std::vector<HeaderEntry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey)
      result.metadata_ = parser.parse_metadata(value);
    else
      entries.push_back(parser.parse_entry(key, value));
  }
  std::sort(entries.begin(), entries.end(), [](const HeaderEntry& a, const HeaderEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  auto data = bytes.subspan(8 + header_size);
  parser.check_layout(entries, data.size());

  result.tensors_.reserve(entries.size());
  for (auto& entry : entries) {
    result.index_.emplace(entry.name, result.tensors_.size());
    result.tensors_.push_back(TensorView{std::move(entry.name), entry.dtype, std::move(entry.shape),
                                         data.subspan(entry.begin, entry.end - entry.begin)});
  }
  return result;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

constexpr const char* kSingleFileName = "model.safetensors";
constexpr const char* kIndexFileName = "model.safetensors.index.json";

// The index's weight_map: tensor name -> shard file name, relative to the index's folder.
std::map<std::string, std::string> read_weight_map(const std::filesystem::path& index_path) {
  const std::string file = index_path.string();
  json index = read_json_file(index_path, kIndexFile);
  if (!index.is_object()) throw InputError(file, "must be a JSON object, got " + json_type(index));
  auto weight_map = index.find("weight_map");
  if (weight_map == index.end()) throw InputError(file, "\"weight_map\" is missing");
  if (!weight_map->is_object())
    throw InputError(file, "\"weight_map\" must be an object mapping tensor names to shard files, got " +
                               json_type(*weight_map));
  if (weight_map->empty()) throw InputError(file, "\"weight_map\" lists no tensors");
  std::map<std::string, std::string> result;
  for (const auto& [name, shard] : weight_map->items()) {
    if (!shard.is_string() || shard.get_ref<const std::string&>().empty())
      throw InputError(file, "\"weight_map\" entry of tensor " + quote(name) +
                                 " must be a shard file name, got " + shard.dump());
    const auto& shard_name = shard.get_ref<const std::string&>();
    // Shards live beside the index: a path elsewhere ("../../etc/passwd", "/data/x") is refused.
    if (shard_name.find('/') != std::string::npos || shard_name.find('\\') != std::string::npos ||
        shard_name == "." || shard_name == "..")
      throw InputError(file, "\"weight_map\" entry of tensor " + quote(name) + " names " + shard.dump() +
                                 "; a shard must be a file name in the index's folder");
    result.emplace(name, shard_name);
  }
  return result;
}

// Opens every shard the index names and checks that the index and the shards agree exactly.
std::vector<SafetensorsFile> open_shards(const std::filesystem::path& index_path) {
  const std::string file = index_path.string();
  auto weight_map = read_weight_map(index_path);
  std::map<std::string, std::string> first_tensor_of_shard;
  for (const auto& [name, shard] : weight_map) first_tensor_of_shard.emplace(shard, name);

  std::vector<SafetensorsFile> shards;
  std::vector<std::string> shard_names;
  for (const auto& [shard, first_tensor] : first_tensor_of_shard) {
    auto shard_path = index_path.parent_path() / shard;
    std::error_code ec;
    if (!std::filesystem::exists(shard_path, ec))
      throw InputError(file, "shard " + quote(shard) + " (listed for tensor " + quote(first_tensor) +
                                 ") does not exist");
    shards.push_back(SafetensorsFile::open(shard_path));
    shard_names.push_back(shard);
  }

  for (const auto& [name, shard] : weight_map) {
    auto position = std::find(shard_names.begin(), shard_names.end(), shard) - shard_names.begin();
    if (shards[position].find(name) == nullptr)
      throw InputError(file, "tensor " + quote(name) + " is listed in shard " + quote(shard) +
                                 ", which does not hold it");
  }
  for (std::size_t i = 0; i < shards.size(); ++i) {
    for (const auto& tensor : shards[i].tensors()) {
      auto listed = weight_map.find(tensor.name);
      if (listed == weight_map.end())
        throw InputError(file, "shard " + quote(shard_names[i]) + " holds tensor " +
                                   quote(tensor.name) + ", which \"weight_map\" does not list");
      if (listed->second != shard_names[i])
        throw InputError(file, "tensor " + quote(tensor.name) + " is in both shard " +
                                   quote(listed->second) + " and shard " + quote(shard_names[i]));
    }
  }
  return shards;
}

}  // namespace

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::filesystem::path& path) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) throw InputError(path.string(), "does not exist");

  SafetensorsCheckpoint result;
  if (std::filesystem::is_directory(status)) {
    if (std::filesystem::exists(path / kIndexFileName, ec))
      result.shards_ = open_shards(path / kIndexFileName);
    else if (std::filesystem::exists(path / kSingleFileName, ec))
      result.shards_.push_back(SafetensorsFile::open(path / kSingleFileName));
    else
      throw InputError(path.string(), std::string("folder holds neither ") + kSingleFileName +
                                          " nor " + kIndexFileName);
  } else if (path.extension() == ".json") {
    result.shards_ = open_shards(path);
  } else {
    result.shards_.push_back(SafetensorsFile::open(path));
  }
  result.rebuild_index();
  return result;
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const SafetensorsCheckpoint& other)
    : shards_(other.shards_) {
  rebuild_index();
}

SafetensorsCheckpoint& SafetensorsCheckpoint::operator=(const SafetensorsCheckpoint& other) {
  if (this != &other) {
    shards_ = other.shards_;
    rebuild_index();
  }
  return *this;
}

void SafetensorsCheckpoint::rebuild_index() {
  by_name_.clear();
  for (const auto& shard : shards_)
    for (const auto& tensor : shard.tensors()) by_name_.emplace(tensor.name, &tensor);
}

std::vector<const TensorView*> SafetensorsCheckpoint::tensors() const {
  std::vector<const TensorView*> all;
  for (const auto& shard : shards_)
    for (const auto& tensor : shard.tensors()) all.push_back(&tensor);
  return all;
}

const TensorView* SafetensorsCheckpoint::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const Metadata& SafetensorsCheckpoint::metadata() const {
  static const Metadata kEmpty;
  return shards_.empty() ? kEmpty : shards_.front().metadata();
}

std::uintmax_t SafetensorsCheckpoint::bytes_on_disk() const {
  std::uintmax_t total = 0;
  for (const auto& shard : shards_) total += shard.mapping()->bytes().size();
  return total;
}

namespace {

// Larger elements first: every byte count is a multiple of its element size and the data
// starts 8-aligned, so each tensor's offset is a multiple of its own element size.
template <typename Tensor>
std::vector<std::size_t> aligned_order(const std::string& file, const std::vector<Tensor>& tensors) {
  std::vector<std::size_t> order(tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    auto a_size = dtype_size(tensors[a].dtype), b_size = dtype_size(tensors[b].dtype);
    return a_size != b_size ? a_size > b_size : tensors[a].name < tensors[b].name;
  });
  std::vector<std::string_view> names;
  for (const auto& tensor : tensors) names.push_back(tensor.name);
  std::sort(names.begin(), names.end());
  auto duplicate = std::adjacent_find(names.begin(), names.end());
  if (duplicate != names.end()) throw InputError(file, "cannot write two tensors named " + quote(std::string(*duplicate)));
  return order;
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorView>& tensors,
                       const Metadata& metadata) {
  const std::string file = path.string();
  for (const auto& tensor : tensors) check_tensor_for_writing(file, tensor);
  const auto order = aligned_order(file, tensors);
  std::vector<WrittenEntry> entries;
  for (auto i : order) entries.push_back({&tensors[i].name, tensors[i].dtype, &tensors[i].shape, tensors[i].bytes.size()});
  std::string header = header_json(file, entries, metadata);
  write_file_atomically(path, [&](std::ostream& out) {
    out << u64_le(header.size()) << header;
    for (auto i : order)
      out.write(reinterpret_cast<const char*>(tensors[i].bytes.data()), static_cast<std::streamsize>(tensors[i].bytes.size()));
  });
}

std::uint64_t TensorHeader::byte_count() const {
  auto bytes = ::lathe::byte_count(shape, dtype);
  if (!bytes) throw InputError(name, "shape " + format_list(shape) + " is negative or too large");
  return *bytes;
}

void write_safetensors_streamed(const std::filesystem::path& path, const std::vector<TensorHeader>& tensors,
                                const Metadata& metadata,
                                const std::function<void(std::size_t index, std::ostream& out)>& write_data) {
  const std::string file = path.string();
  for (const auto& tensor : tensors) check_tensor_for_writing(file, TensorView{tensor.name, tensor.dtype, tensor.shape, {}}, tensor.byte_count());
  const auto order = aligned_order(file, tensors);
  std::vector<WrittenEntry> entries;
  for (auto i : order) entries.push_back({&tensors[i].name, tensors[i].dtype, &tensors[i].shape, tensors[i].byte_count()});
  std::string header = header_json(file, entries, metadata);
  write_file_atomically(path, [&](std::ostream& out) {
    out << u64_le(header.size()) << header;
    for (auto i : order) {
      const auto before = out.tellp();
      write_data(i, out);
      if (out && static_cast<std::uint64_t>(out.tellp() - before) != tensors[i].byte_count())
        throw std::logic_error("safetensors writer: tensor " + tensors[i].name + " was given the wrong number of bytes");
    }
  });
}

}  // namespace lathe
