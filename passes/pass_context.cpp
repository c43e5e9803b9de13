#include "passes/pass_context.h"

#include "support/atomic_file.h"

namespace lathe {

std::filesystem::path PassContext::write_artifact(const std::string& name, const std::string& text) {
  if (artifacts_dir.empty()) return {};
  const auto path = artifacts_dir / name;
  write_file_atomically(path, [&](std::ostream& out) { out << text; });
  artifacts.push_back(path.string());
  return path;
}

}  // namespace lathe
