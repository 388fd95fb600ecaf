/// \file
/// Deterministic, seeded weight initialisation with the Keras initializers the reference uses.
/// The generator is attn's own (SplitMix64 + Box-Muller), so a seed gives the same weights on every
/// compiler and standard library.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string_view>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/tensor.hpp"

namespace attn {

/// Names accepted wherever a config takes an initializer.
inline constexpr std::array<std::string_view, 8> initializer_names{
    "glorot_uniform", "glorot_normal", "he_normal", "he_uniform",
    "lecun_normal",   "lecun_uniform", "zeros",     "ones"};

/// SplitMix64: small, fast, and the same everywhere.
class Rng {
public:
  explicit constexpr Rng(std::uint64_t seed) noexcept : state_(seed) {}
  constexpr std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) noexcept { return lo + (hi - lo) * uniform(); }
  /// Standard normal (Box-Muller).
  double normal() noexcept {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = 0.0;
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * std::numbers::pi * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * std::numbers::pi * u2);
  }
  /// Normal(0, stddev) re-drawn outside +-2 stddev (Keras TruncatedNormal).
  double truncated_normal(double stddev) noexcept {
    for (;;) {
      const double z = normal();
      if (std::abs(z) <= 2.0) return z * stddev;
    }
  }

private:
  std::uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

/// FNV-1a of a string, to give every named parameter its own stream from one layer seed.
constexpr std::uint64_t hash_name(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

/// Keras fans: 1-D: both the length; 2-D (a, b): a, b; rank >= 3 (conv kernel): receptive field times
/// the last two extents.
struct Fans {
  double in;
  double out;
};
inline Fans compute_fans(const Shape& s) {
  if (s.empty()) return {1.0, 1.0};
  if (s.size() == 1) return {static_cast<double>(s[0]), static_cast<double>(s[0])};
  double receptive = 1.0;
  for (std::size_t i = 0; i + 2 < s.size(); ++i) receptive *= static_cast<double>(s[i]);
  return {static_cast<double>(s[s.size() - 2]) * receptive,
          static_cast<double>(s[s.size() - 1]) * receptive};
}

/// Fills `data` (with shape `shape`) by the named initializer, drawing from `rng`.
template <class T>
void initialize(std::string_view name, const Shape& shape, T* data, Rng& rng) {
  const Index n = shape_size(shape);
  const Fans f = compute_fans(shape);
  // Keras's truncated normal (cut at 2 sigma) has a smaller spread than the normal it is cut from;
  // the variance-scaling initializers divide by this factor to get the intended stddev.
  constexpr double trunc_correction = 0.87962566103423978;
  auto fill_uniform = [&](double limit) {
    for (Index i = 0; i < n; ++i) data[i] = static_cast<T>(rng.uniform(-limit, limit));
  };
  auto fill_truncated = [&](double stddev) {
    for (Index i = 0; i < n; ++i) data[i] = static_cast<T>(rng.truncated_normal(stddev));
  };
  if (name == "zeros") {
    for (Index i = 0; i < n; ++i) data[i] = T(0);
  } else if (name == "ones") {
    for (Index i = 0; i < n; ++i) data[i] = T(1);
  } else if (name == "glorot_uniform") {
    fill_uniform(std::sqrt(6.0 / (f.in + f.out)));
  } else if (name == "glorot_normal") {
    fill_truncated(std::sqrt(2.0 / (f.in + f.out)) / trunc_correction);
  } else if (name == "he_normal") {
    fill_truncated(std::sqrt(2.0 / f.in) / trunc_correction);
  } else if (name == "he_uniform") {
    fill_uniform(std::sqrt(6.0 / f.in));
  } else if (name == "lecun_normal") {
    fill_truncated(std::sqrt(1.0 / f.in) / trunc_correction);
  } else if (name == "lecun_uniform") {
    fill_uniform(std::sqrt(3.0 / f.in));
  } else {
    throw ConfigError(fmt::format("Unknown initializer '{}'; expected one of [{}]", name,
                                  fmt::join(initializer_names, ", ")));
  }
}

}  // namespace attn
