/// \file
/// AVX2+FMA and AVX-512F kernels for x86-64, compiled with function-level target attributes so that a
/// baseline (SSE2) build carries them; core/simd.hpp decides at run time which one runs. The kernels
/// themselves (packed matrix product, the attention core's row passes, one-row products) are written
/// once in gemm.inl, kernels.inl and rowvec.inl and instantiated here per instruction set, with the
/// register types below; gemm.inl also on SSE2 registers (`baseline`), the generic level's product.
#pragma once

#include "attn/core/simd.hpp"

#if ATTN_SIMD_DISPATCH

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "attn/core/tensor.hpp"

#define ATTN_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define ATTN_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))

namespace attn::ops::x86 {

/// The packed product on the baseline instruction set of x86-64 (SSE2: 4 floats or 2 doubles a
/// register, multiply then add): the generic level's product in a build with run-time dispatch.
namespace baseline {

template <class T>
struct Vec;

template <>
struct Vec<float> {
  using P = __m128;
  static constexpr int W = 4;
  static P zero() { return _mm_setzero_ps(); }
  static P set1(float x) { return _mm_set1_ps(x); }
  static P load(const float* p) { return _mm_loadu_ps(p); }
  static void store(float* p, P x) { _mm_storeu_ps(p, x); }
  static P add(P a, P b) { return _mm_add_ps(a, b); }
  static P fmadd(P a, P b, P c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
};

template <>
struct Vec<double> {
  using P = __m128d;
  static constexpr int W = 2;
  static P zero() { return _mm_setzero_pd(); }
  static P set1(double x) { return _mm_set1_pd(x); }
  static P load(const double* p) { return _mm_loadu_pd(p); }
  static void store(double* p, P x) { _mm_storeu_pd(p, x); }
  static P add(P a, P b) { return _mm_add_pd(a, b); }
  static P fmadd(P a, P b, P c) { return _mm_add_pd(_mm_mul_pd(a, b), c); }
};

inline constexpr int kMR = 6;  // 6 x 2 registers of accumulators: 12 of the 16 xmm registers
inline constexpr int kNV = 2;
inline constexpr bool kTranspose8x8 = false;
#define ATTN_KTARGET
#include "attn/ops/simd/gemm.inl"
#undef ATTN_KTARGET

}  // namespace baseline

namespace avx2 {

template <class T>
struct Vec;

template <>
struct Vec<float> {
  using P = __m256;
  static constexpr int W = 8;
  ATTN_TARGET_AVX2 static P zero() { return _mm256_setzero_ps(); }
  ATTN_TARGET_AVX2 static P set1(float x) { return _mm256_set1_ps(x); }
  ATTN_TARGET_AVX2 static P load(const float* p) { return _mm256_loadu_ps(p); }
  ATTN_TARGET_AVX2 static void store(float* p, P x) { _mm256_storeu_ps(p, x); }
  ATTN_TARGET_AVX2 static P add(P a, P b) { return _mm256_add_ps(a, b); }
  ATTN_TARGET_AVX2 static P sub(P a, P b) { return _mm256_sub_ps(a, b); }
  ATTN_TARGET_AVX2 static P mul(P a, P b) { return _mm256_mul_ps(a, b); }
  /// lanewise max; where either is NaN, b (the instruction's rule)
  ATTN_TARGET_AVX2 static P max(P a, P b) { return _mm256_max_ps(a, b); }
  /// a·b + c, one rounding
  ATTN_TARGET_AVX2 static P fmadd(P a, P b, P c) { return _mm256_fmadd_ps(a, b, c); }
  ATTN_TARGET_AVX2 static float hsum(P x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  /// out[0, 4) = the lane sums of a0, a1, a2, a3 (one shuffle tree for the four)
  ATTN_TARGET_AVX2 static void hsum4(P a0, P a1, P a2, P a3, float* out) {
    const P t0 = _mm256_add_ps(_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
    const P t1 = _mm256_add_ps(_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
    const P u = _mm256_add_ps(_mm256_shuffle_ps(t0, t1, 0x44), _mm256_shuffle_ps(t0, t1, 0xEE));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1)));
  }
  ATTN_TARGET_AVX2 static float hmax(P x) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  /// e where x != lim (NaN included), else 0
  ATTN_TARGET_AVX2 static P keep_unless(P e, P x, P lim) { return _mm256_and_ps(e, _mm256_cmp_ps(x, lim, _CMP_NEQ_UQ)); }
  /// y · 2^n where n = bits(t) - bits(shifter) (t = x/ln2 + shifter, see exp_nonpositive)
  ATTN_TARGET_AVX2 static P times_pow2(P y, P t, P shifter) {
    const __m256i n = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(shifter));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
  }
};

template <>
struct Vec<double> {
  using P = __m256d;
  static constexpr int W = 4;
  ATTN_TARGET_AVX2 static P zero() { return _mm256_setzero_pd(); }
  ATTN_TARGET_AVX2 static P set1(double x) { return _mm256_set1_pd(x); }
  ATTN_TARGET_AVX2 static P load(const double* p) { return _mm256_loadu_pd(p); }
  ATTN_TARGET_AVX2 static void store(double* p, P x) { _mm256_storeu_pd(p, x); }
  ATTN_TARGET_AVX2 static P add(P a, P b) { return _mm256_add_pd(a, b); }
  ATTN_TARGET_AVX2 static P fmadd(P a, P b, P c) { return _mm256_fmadd_pd(a, b, c); }
};

inline constexpr int kMR = 6;  // 6 x 2 registers of accumulators: 12 of the 16 ymm registers
inline constexpr int kNV = 2;
#define ATTN_KTARGET ATTN_TARGET_AVX2
inline constexpr bool kTranspose8x8 = true;
#include "attn/ops/simd/kernels.inl"
#include "attn/ops/simd/gemm.inl"
#include "attn/ops/simd/rowvec.inl"
#undef ATTN_KTARGET

}  // namespace avx2

namespace avx512 {

template <class T>
struct Vec;

// GCC 12 warns (-Wmaybe-uninitialized, GCC bug 105593) inside its own intrinsics that pass
// _mm512_undefined_*() as the unused source of an unmasked operation (_mm512_max_ps, _mm512_slli_epi32,
// _mm512_extractf64x4_pd, _mm512_castps512_ps256), even from system headers; the masked forms with an
// all-ones mask compute the same and do not trip it.
template <>
struct Vec<float> {
  using P = __m512;
  static constexpr int W = 16;
  ATTN_TARGET_AVX512 static P zero() { return _mm512_setzero_ps(); }
  ATTN_TARGET_AVX512 static P set1(float x) { return _mm512_set1_ps(x); }
  ATTN_TARGET_AVX512 static P load(const float* p) { return _mm512_loadu_ps(p); }
  ATTN_TARGET_AVX512 static void store(float* p, P x) { _mm512_storeu_ps(p, x); }
  ATTN_TARGET_AVX512 static P add(P a, P b) { return _mm512_add_ps(a, b); }
  ATTN_TARGET_AVX512 static P sub(P a, P b) { return _mm512_sub_ps(a, b); }
  ATTN_TARGET_AVX512 static P mul(P a, P b) { return _mm512_mul_ps(a, b); }
  ATTN_TARGET_AVX512 static P max(P a, P b) { return _mm512_mask_max_ps(a, 0xFFFF, a, b); }
  ATTN_TARGET_AVX512 static P fmadd(P a, P b, P c) { return _mm512_fmadd_ps(a, b, c); }
  ATTN_TARGET_AVX512 static float hsum(P x) {
    return avx2::Vec<float>::hsum(_mm256_add_ps(half(x, 0), half(x, 1)));
  }
  ATTN_TARGET_AVX512 static float hmax(P x) {
    return avx2::Vec<float>::hmax(_mm256_max_ps(half(x, 0), half(x, 1)));
  }
  /// out[0, 4) = the lane sums of a0, a1, a2, a3 (one shuffle tree for the four; masked forms, see above)
  ATTN_TARGET_AVX512 static void hsum4(P a0, P a1, P a2, P a3, float* out) {
    const P t0 = _mm512_add_ps(_mm512_mask_unpacklo_ps(a0, 0xFFFF, a0, a1), _mm512_mask_unpackhi_ps(a0, 0xFFFF, a0, a1));
    const P t1 = _mm512_add_ps(_mm512_mask_unpacklo_ps(a2, 0xFFFF, a2, a3), _mm512_mask_unpackhi_ps(a2, 0xFFFF, a2, a3));
    const P u = _mm512_add_ps(_mm512_mask_shuffle_ps(t0, 0xFFFF, t0, t1, 0x44), _mm512_mask_shuffle_ps(t0, 0xFFFF, t0, t1, 0xEE));
    const __m256 v = _mm256_add_ps(half(u, 0), half(u, 1));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
  }
  /// the low (i = 0) or high (i = 1) 8 lanes
  ATTN_TARGET_AVX512 static __m256 half(P x, int i) {
    const __m512d d = _mm512_castps_pd(x);
    return _mm256_castpd_ps(i == 0 ? _mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xFF, d, 0)
                                   : _mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xFF, d, 1));
  }
  ATTN_TARGET_AVX512 static P keep_unless(P e, P x, P lim) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lim, _CMP_NEQ_UQ), e);
  }
  ATTN_TARGET_AVX512 static P times_pow2(P y, P t, P shifter) {
    const __m512i n = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_castps_si512(shifter));
    const __m512i e = _mm512_add_epi32(n, _mm512_set1_epi32(127));
    const __m512i bits = _mm512_mask_slli_epi32(e, 0xFFFF, e, 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
  }
};

template <>
struct Vec<double> {
  using P = __m512d;
  static constexpr int W = 8;
  ATTN_TARGET_AVX512 static P zero() { return _mm512_setzero_pd(); }
  ATTN_TARGET_AVX512 static P set1(double x) { return _mm512_set1_pd(x); }
  ATTN_TARGET_AVX512 static P load(const double* p) { return _mm512_loadu_pd(p); }
  ATTN_TARGET_AVX512 static void store(double* p, P x) { _mm512_storeu_pd(p, x); }
  ATTN_TARGET_AVX512 static P add(P a, P b) { return _mm512_add_pd(a, b); }
  ATTN_TARGET_AVX512 static P fmadd(P a, P b, P c) { return _mm512_fmadd_pd(a, b, c); }
};

inline constexpr int kMR = 8;  // 8 x 2 registers of accumulators: 16 of the 32 zmm registers
inline constexpr int kNV = 2;
#define ATTN_KTARGET ATTN_TARGET_AVX512
inline constexpr bool kTranspose8x8 = true;
#include "attn/ops/simd/kernels.inl"
#include "attn/ops/simd/gemm.inl"
#include "attn/ops/simd/rowvec.inl"
#undef ATTN_KTARGET

}  // namespace avx512

}  // namespace attn::ops::x86

#endif  // ATTN_SIMD_DISPATCH
