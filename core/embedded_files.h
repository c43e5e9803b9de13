#pragma once

#include <string>
#include <vector>

namespace lathe {

struct EmbeddedFile {
  std::string name;
  std::string text;
};

// Generated at build time from configs/*.yaml and recipes/default.yaml.
const std::vector<EmbeddedFile>& embedded_family_files();
const EmbeddedFile& embedded_default_recipe();

}  // namespace lathe
