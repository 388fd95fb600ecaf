/// \file
/// Which instruction set attn's hot kernels (matrix products, the attention core's row passes) run on.
///
/// attn is header-only and is usually compiled for the baseline of its platform (SSE2 on x86-64), so
/// the library carries kernels for wider x86 instruction sets compiled with function-level target
/// attributes, and picks one at run time from what the CPU reports:
/// - `Simd::avx512`: AVX-512F kernels (16 floats per register), when the CPU and the OS support them;
/// - `Simd::avx2`: AVX2 + FMA kernels (8 floats per register);
/// - `Simd::generic`: Eigen's products and packet math at whatever the build targets (SSE2 by default,
///   AVX2/AVX-512 with -march=native, NEON on ARM). Always available.
///
/// `attn::simd()` is the level in use: by default the best one supported (`simd_supported()`), or the
/// one named by the environment variable `ATTN_SIMD` (`generic`, `avx2`, `avx512`), read once at the
/// first call; a value that is unknown or not supported by the CPU is reported with a warning through
/// attn's log and the best supported level is used instead. `attn::set_simd(level)` changes it at run
/// time (ConfigError when the CPU does not support the level). Like the thread count, the level is
/// global and read once per kernel call.
///
/// Results differ between levels only by float rounding (fused multiply-adds, other summation
/// blocking); for a given level they are bit-identical for every thread count.
///
/// The wide kernels exist with GCC and Clang on x86-64; define ATTN_NO_SIMD_DISPATCH to compile them
/// out (then only `generic` exists).
#pragma once

#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/log.hpp"

#if !defined(ATTN_NO_SIMD_DISPATCH) && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define ATTN_SIMD_DISPATCH 1
#else
#define ATTN_SIMD_DISPATCH 0
#endif

namespace attn {

/// Instruction-set levels of attn's kernels, in increasing order.
enum class Simd { generic = 0, avx2 = 1, avx512 = 2 };

/// "generic", "avx2", "avx512"
constexpr std::string_view simd_name(Simd s) noexcept {
  switch (s) {
    case Simd::generic: return "generic";
    case Simd::avx2: return "avx2";
    case Simd::avx512: return "avx512";
  }
  return "?";
}

/// The best level this CPU (and this build) supports.
[[nodiscard]] inline Simd simd_supported() noexcept {
#if ATTN_SIMD_DISPATCH
  static const Simd best = [] {
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2 && __builtin_cpu_supports("avx512f")) return Simd::avx512;
    return avx2 ? Simd::avx2 : Simd::generic;
  }();
  return best;
#else
  return Simd::generic;
#endif
}

/// Whether the kernels of `level` can run here.
[[nodiscard]] inline bool simd_available(Simd level) noexcept {
  return static_cast<int>(level) <= static_cast<int>(simd_supported());
}

namespace detail {

/// The level named by ATTN_SIMD, or the best supported one (with a warning when the variable is
/// unusable).
inline Simd simd_from_environment() {
  const Simd best = simd_supported();
  const char* env = std::getenv("ATTN_SIMD");
  if (env == nullptr || *env == '\0') return best;
  const std::string_view v(env);
  for (Simd s : {Simd::generic, Simd::avx2, Simd::avx512}) {
    if (v != simd_name(s)) continue;
    if (simd_available(s)) return s;
    log(LogLevel::warning, "ATTN_SIMD={}: not supported by this CPU or build; using {}", v, simd_name(best));
    return best;
  }
  log(LogLevel::warning, "ATTN_SIMD={}: unknown level (expected generic, avx2 or avx512); using {}", v,
      simd_name(best));
  return best;
}

inline std::atomic<int>& simd_setting() {
  static std::atomic<int> level{static_cast<int>(simd_from_environment())};
  return level;
}

}  // namespace detail

/// The level attn's kernels use now.
[[nodiscard]] inline Simd simd() { return static_cast<Simd>(detail::simd_setting().load()); }

/// Makes attn's kernels use `level` from the next kernel call on. Throws ConfigError when this CPU or
/// build does not support it (see simd_supported()).
inline void set_simd(Simd level) {
  const int v = static_cast<int>(level);
  if (v < 0 || v > static_cast<int>(Simd::avx512))
    throw ConfigError(fmt::format("set_simd: unknown level {}", v), "", "simd");
  if (!simd_available(level))
    throw ConfigError(fmt::format("set_simd: {} is not supported here (best supported: {})", simd_name(level),
                                  simd_name(simd_supported())),
                      "", "simd");
  detail::simd_setting().store(v);
}

}  // namespace attn
