#pragma once

#include <optional>
#include <string>

namespace lathe {

// The CPU kernel set the loaded OpenBLAS uses (its openblas_get_corename(), e.g. "Haswell",
// "SkylakeX"), or empty when the BLAS is not OpenBLAS.
std::string openblas_core();

// OpenBLAS 0.3.21 (Debian 12) does not recognize CPUs newer than it, such as Sapphire Rapids, and
// falls back to its SSE3 "Prescott" kernels: matrix products then run about 4.5x slower than the
// CPU's AVX-512 kernels (measured 56 vs 250-280 GFLOP/s at 2 threads on an AVX-512 Xeon). Returns
// the kernel set for this CPU in OpenBLAS's names when that happened and the user did not choose
// one (OPENBLAS_CORETYPE unset); nothing otherwise.
std::optional<std::string> openblas_core_for_unrecognized_cpu();

// The environment variable that names the kernel set; OpenBLAS reads it when it loads, so a
// process that wants another set starts itself again (see cmd/main.cpp).
inline constexpr const char* kOpenBlasCoreVariable = "OPENBLAS_CORETYPE";
// Set beside it when lathe chose the kernel set, so the restarted process can say so.
inline constexpr const char* kOpenBlasCoreChosenVariable = "LATHE_CHOSE_OPENBLAS_CORETYPE";

// Who chose the kernel set in use: "OpenBLAS" (its own detection), "OPENBLAS_CORETYPE" (the
// user's environment) or "lathe" (openblas_core_for_unrecognized_cpu); empty without OpenBLAS.
std::string openblas_core_chosen_by();

}  // namespace lathe
