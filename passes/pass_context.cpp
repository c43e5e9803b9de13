#include "passes/pass_context.h"

#include <algorithm>

#include "support/atomic_file.h"

namespace lathe {

std::filesystem::path PassContext::write_artifact(const std::string& name, const std::string& text) {
  if (artifacts_dir.empty()) return {};
  // A second pass of the same kind in one run writes name.2.csv, name.3.csv, ...
  auto path = artifacts_dir / name;
  for (int n = 2; std::find(artifacts.begin(), artifacts.end(), path.string()) != artifacts.end(); ++n)
    path = artifacts_dir / (std::filesystem::path(name).stem().string() + "." + std::to_string(n) +
                            std::filesystem::path(name).extension().string());
  write_file_atomically(path, [&](std::ostream& out) { out << text; });
  artifacts.push_back(path.string());
  return path;
}

}  // namespace lathe
