// The pickle program of a torch.save checkpoint (data.pkl), with callbacks that build stand-ins
// for tensors and storages as lathe's checkpoint reader does.

#include <cstddef>
#include <cstdint>
#include <string>

#include "formats/pickle.h"
#include "support/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  lathe::PickleCallbacks callbacks;
  callbacks.reduce = [](const lathe::PickleGlobal& callable, const lathe::PickleValue& arguments) {
    if (callable.qualified() == "collections.OrderedDict") return lathe::PickleValue::dict();
    if (arguments.kind != lathe::PickleValue::Kind::Tuple)
      throw lathe::InputError("data.pkl", "REDUCE of " + callable.qualified() + " takes a tuple");
    return lathe::PickleValue::make_object(arguments.items->size());
  };
  callbacks.persistent_load = [](const lathe::PickleValue& id) {
    if (id.kind != lathe::PickleValue::Kind::Tuple) throw lathe::InputError("data.pkl", "persistent id is not a tuple");
    return lathe::PickleValue::make_object(id.items->size());
  };
  try {
    const auto value = lathe::read_pickle(std::string(reinterpret_cast<const char*>(data), size), callbacks, "data.pkl");
    (void)value.kind_name();
  } catch (const lathe::InputError&) {
  }
  return 0;
}
