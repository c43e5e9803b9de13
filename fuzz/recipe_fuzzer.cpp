// A recipe, read as `lathe validate` reads it (against the pass registry), and written back:
// whatever it accepts must print as a recipe that reads back to the same text.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "pipeline/recipe.h"
#include "support/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  lathe::Recipe recipe;
  try {
    recipe = lathe::parse_recipe(text, "fuzz.yaml");
  } catch (const lathe::InputError&) {
    return 0;
  }
  const auto printed = lathe::recipe_to_yaml(recipe);
  try {
    const auto again = lathe::recipe_to_yaml(lathe::parse_recipe(printed, "printed.yaml"));
    if (again != printed) {
      std::fprintf(stderr, "the normalized recipe does not read back to itself:\n%s\n---\n%s\n", printed.c_str(), again.c_str());
      std::abort();
    }
  } catch (const lathe::InputError& error) {
    std::fprintf(stderr, "the normalized recipe is refused: %s\n%s\n", error.what(), printed.c_str());
    std::abort();
  }
  (void)lathe::recipe_to_json(recipe);
  return 0;
}
