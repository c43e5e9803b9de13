#include "core/torch_checkpoint.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <c10/util/Exception.h>

#include <unistd.h>

#include <algorithm>
#include <tuple>
#include <utility>
#include <vector>

#include "formats/pickle.h"
#include "formats/zip_directory.h"
#include "support/bounded_file.h"
#include "support/errors.h"

namespace lathe {
namespace {

// LibTorch's own unpickler (torch::jit::pickle_load) turns collections.OrderedDict into None,
// so it cannot read the state dicts torch.save writes. lathe reads the archive with LibTorch's
// zip reader and runs the pickle with its own strict reader.

at::ScalarType storage_scalar_type(const std::string& storage_class, const std::string& file) {
  static const std::map<std::string, at::ScalarType> types = {
      {"FloatStorage", at::kFloat},  {"HalfStorage", at::kHalf},   {"BFloat16Storage", at::kBFloat16},
      {"DoubleStorage", at::kDouble}, {"LongStorage", at::kLong},  {"IntStorage", at::kInt},
      {"ShortStorage", at::kShort},  {"CharStorage", at::kChar},   {"ByteStorage", at::kByte},
      {"BoolStorage", at::kBool}};
  auto found = types.find(storage_class);
  if (found == types.end()) throw InputError(file, "unsupported storage type torch." + storage_class);
  return found->second;
}

std::int64_t as_int(const PickleValue& value, const std::string& file, const char* what) {
  if (value.kind != PickleValue::Kind::Int) throw InputError(file, std::string(what) + " is not an integer");
  return value.integer;
}

std::vector<std::int64_t> as_ints(const PickleValue& value, const std::string& file, const char* what) {
  if (value.kind != PickleValue::Kind::Tuple && value.kind != PickleValue::Kind::List)
    throw InputError(file, std::string(what) + " is not a tuple");
  std::vector<std::int64_t> ints;
  for (const auto& item : *value.items) ints.push_back(as_int(item, file, what));
  return ints;
}

at::Tensor as_tensor(const PickleValue& value, const std::string& file) {
  if (value.kind != PickleValue::Kind::Object || value.object.type() != typeid(at::Tensor))
    throw InputError(file, std::string("expected a tensor, found a ") + value.kind_name());
  return std::any_cast<at::Tensor>(value.object);
}

class StateDictReader {
 public:
  explicit StateDictReader(const std::filesystem::path& path)
      : file_(path.string()), archive_(file_) {
    // torch.save puts every record in one top-level folder, the archive's name; LibTorch's
    // reader names records without it.
    for (const auto& [name, crc] : read_zip_directory(path).crcs)
      if (const auto slash = name.find('/'); slash != std::string::npos) crcs_[name.substr(slash + 1)] = crc;
  }

  std::map<std::string, at::Tensor> read() {
    auto [data, size] = record("data.pkl");
    const std::string pickle(static_cast<const char*>(data.get()), size);
    PickleCallbacks callbacks;
    callbacks.persistent_load = [this](const PickleValue& id) { return load_storage(id); };
    callbacks.reduce = [this](const PickleGlobal& callable, const PickleValue& arguments) {
      return rebuild(callable, arguments);
    };
    auto root = read_pickle(pickle, callbacks, file_);
    if (root.kind != PickleValue::Kind::Dict)
      throw InputError(file_, std::string("holds a ") + root.kind_name() + ", not a state dict");
    for (const char* key : {"state_dict", "model"})
      for (const auto& [name, value] : *root.entries)
        if (name.kind == PickleValue::Kind::String && name.text == key && value.kind == PickleValue::Kind::Dict)
          return tensors_of(value);
    return tensors_of(root);
  }

 private:
  std::map<std::string, at::Tensor> tensors_of(const PickleValue& dict) {
    std::map<std::string, at::Tensor> tensors;
    for (const auto& [name, value] : *dict.entries) {
      if (name.kind != PickleValue::Kind::String) throw InputError(file_, "state dict has a key that is not a string");
      if (value.kind != PickleValue::Kind::Object)
        throw InputError(file_, "state dict entry \"" + name.text + "\" is a " + value.kind_name() + ", not a tensor");
      tensors[name.text] = as_tensor(value, file_);
    }
    return tensors;
  }

  // ('storage', torch.FloatStorage, key, location, numel)
  PickleValue load_storage(const PickleValue& id) {
    if (id.kind != PickleValue::Kind::Tuple || id.items->size() < 5 || (*id.items)[0].text != "storage" ||
        (*id.items)[1].kind != PickleValue::Kind::Global)
      throw InputError(file_, "unsupported persistent id in the pickle");
    const auto type = storage_scalar_type((*id.items)[1].global.name, file_);
    const auto& key = (*id.items)[2].text;
    const auto numel = as_int((*id.items)[4], file_, "storage size");
    if (auto found = storages_.find(key); found != storages_.end()) return PickleValue::make_object(found->second);
    const auto record = "data/" + key;
    if (!archive_.hasRecord(record)) throw InputError(file_, "storage " + record + " is missing from the archive");
    auto [data, size] = this->record(record);
    const auto element_size = static_cast<std::int64_t>(c10::elementSize(type));
    std::int64_t bytes = 0;
    // Checked before anything is allocated from the pickle's numbers.
    if (numel < 0 || __builtin_mul_overflow(numel, element_size, &bytes) || static_cast<std::uint64_t>(bytes) != size)
      throw InputError(file_, "storage " + record + " holds " + std::to_string(size) + " bytes, but the pickle says " +
                                  std::to_string(numel) + " elements of " + std::to_string(element_size) + " bytes");
    auto storage = at::empty({numel}, at::TensorOptions().dtype(type));
    std::memcpy(storage.data_ptr(), data.get(), size);
    storages_[key] = storage;
    return PickleValue::make_object(storage);
  }

  // A state dict's tensor must lie inside its storage and must not overlap itself: a stride of 0
  // (an expanded tensor) or strides that map two elements to one place would give a model whose
  // weights repeat, never one torch.save wrote from parameters.
  void check_view(const std::vector<std::int64_t>& sizes, const std::vector<std::int64_t>& strides, std::int64_t offset,
                  std::int64_t storage_numel) const {
    if (offset < 0) throw InputError(file_, "a tensor view has a negative storage offset");
    std::vector<std::pair<std::int64_t, std::int64_t>> dims;  // (stride, size) of dimensions longer than 1
    std::int64_t elements = 1;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] < 0 || strides[i] < 0) throw InputError(file_, "negative tensor size or stride");
      if (__builtin_mul_overflow(elements, sizes[i], &elements)) throw InputError(file_, "a tensor's size overflows");
      if (sizes[i] > 1) dims.emplace_back(strides[i], sizes[i]);
    }
    if (elements == 0) return;
    std::sort(dims.begin(), dims.end());
    std::int64_t reach = 0;  // the farthest element offset the smaller-stride dimensions reach
    for (const auto& [stride, size] : dims) {
      if (stride <= reach) throw InputError(file_, "a tensor view overlaps itself (stride " + std::to_string(stride) + ")");
      std::int64_t extent = 0;
      if (__builtin_mul_overflow(size - 1, stride, &extent) || __builtin_add_overflow(reach, extent, &reach))
        throw InputError(file_, "a tensor view reaches past the end of its storage");
    }
    std::int64_t last = 0;
    if (__builtin_add_overflow(offset, reach, &last) || last >= storage_numel)
      throw InputError(file_, "a tensor view reaches past the end of its storage");
  }

  PickleValue rebuild(const PickleGlobal& callable, const PickleValue& arguments) {
    const auto& args = *arguments.items;
    const auto name = callable.qualified();
    if (name == "torch._utils._rebuild_tensor_v2" && args.size() >= 4) {
      auto storage = as_tensor(args[0], file_);
      const auto offset = as_int(args[1], file_, "tensor offset");
      const auto sizes = as_ints(args[2], file_, "tensor size");
      const auto strides = as_ints(args[3], file_, "tensor stride");
      if (sizes.size() != strides.size()) throw InputError(file_, "tensor size and stride differ in length");
      check_view(sizes, strides, offset, storage.numel());
      return PickleValue::make_object(storage.as_strided(sizes, strides, offset));
    }
    if (name == "torch._utils._rebuild_parameter" && !args.empty()) return args[0];
    throw InputError(file_, "the checkpoint holds a " + name + ", which a state dict of tensors does not need");
  }

  // A record's bytes, checked against the CRC-32 the zip directory holds for it.
  std::tuple<at::DataPtr, std::size_t> record(const std::string& name) {
    auto [data, size] = archive_.getRecord(name);
    const auto found = crcs_.find(name);
    if (found == crcs_.end()) throw InputError(file_, "record " + name + " is missing from the zip directory");
    if (crc32_of({static_cast<const std::byte*>(data.get()), size}) != found->second)
      throw InputError(file_, "record " + name + " does not match its CRC-32: the file is corrupt");
    return {std::move(data), size};
  }

  std::string file_;
  caffe2::serialize::PyTorchStreamReader archive_;
  std::map<std::string, std::uint32_t> crcs_;
  std::map<std::string, at::Tensor> storages_;
};

}  // namespace

std::map<std::string, at::Tensor> read_torch_state_dict(const std::filesystem::path& path) {
  const auto file = path.string();
  {
    const int fd = open_regular_file(path, "PyTorch checkpoint");
    char magic[2] = {};
    const bool read = ::read(fd, magic, 2) == 2;
    ::close(fd);
    if (!read) throw InputError(file, "cannot read");
    if (magic[0] != 'P' || magic[1] != 'K')
      throw InputError(file, "not a PyTorch zip checkpoint (torch.save's default format since PyTorch 1.6)");
  }
  try {
    return StateDictReader(path).read();
  } catch (const c10::Error& error) {
    throw InputError(file, "cannot read the archive: " + std::string(error.what_without_backtrace()));
  }
}

}  // namespace lathe
