#include "support/blas_core.h"

#include <dlfcn.h>

#include <cstdlib>

namespace lathe {

std::string openblas_core() {
  using CoreName = const char* (*)();
  const auto core_name = reinterpret_cast<CoreName>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* name = core_name == nullptr ? nullptr : core_name();
  return name == nullptr ? std::string() : std::string(name);
}

std::string openblas_core_chosen_by() {
  if (openblas_core().empty()) return {};
  if (std::getenv(kOpenBlasCoreVariable) == nullptr) return "OpenBLAS";
  return std::getenv(kOpenBlasCoreChosenVariable) != nullptr ? "lathe" : kOpenBlasCoreVariable;
}

std::optional<std::string> openblas_core_for_unrecognized_cpu() {
#if defined(__x86_64__)
  if (std::getenv(kOpenBlasCoreVariable) != nullptr || openblas_core() != "Prescott") return std::nullopt;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return std::nullopt;  // Prescott is right
  // The newest kernel set whose instructions this CPU has, as OpenBLAS's own detection would pick.
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (avx512 && __builtin_cpu_supports("avx512bf16")) return "Cooperlake";
  if (avx512) return "SkylakeX";
  return "Haswell";
#else
  return std::nullopt;
#endif
}

}  // namespace lathe
