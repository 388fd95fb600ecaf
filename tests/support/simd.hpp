// SIMD levels in tests: guards that restore the process level, and a generator over every level of
// this machine (core/simd.hpp).
#pragma once

#include <attn/core/simd.hpp>
#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace attn_test {

/// Restores the SIMD level of the process when a test ends.
struct SimdGuard {
  attn::Simd saved = attn::simd();
  SimdGuard() = default;
  SimdGuard(const SimdGuard&) = delete;
  SimdGuard& operator=(const SimdGuard&) = delete;
  ~SimdGuard() { attn::set_simd(saved); }
};

/// Sets a SIMD level for a scope and restores the previous one.
struct SimdScope {
  attn::Simd saved = attn::simd();
  explicit SimdScope(attn::Simd level) { attn::set_simd(level); }
  SimdScope(const SimdScope&) = delete;
  SimdScope& operator=(const SimdScope&) = delete;
  ~SimdScope() { attn::set_simd(saved); }
};

/// Runs the rest of the enclosing test once per SIMD level of this machine (a Catch2 generator), with
/// the level named in failure messages and restored afterwards.
#define ATTN_FOR_EACH_SIMD_LEVEL()                                                                  \
  const attn_test::SimdScope attn_simd_scope(GENERATE(from_range(attn_test::simd_levels())));       \
  INFO("simd " << attn::simd_name(attn::simd()))

/// Every SIMD level this machine can run, lowest first.
inline std::vector<attn::Simd> simd_levels() {
  std::vector<attn::Simd> v;
  for (attn::Simd s : {attn::Simd::generic, attn::Simd::avx2, attn::Simd::avx512})
    if (attn::simd_available(s)) v.push_back(s);
  return v;
}
inline std::string simd_levels_string() {
  std::string out;
  for (attn::Simd s : simd_levels()) out += (out.empty() ? "" : ", ") + std::string(attn::simd_name(s));
  return out;
}

}  // namespace attn_test
