// The wide decode kernels of the KV cache (one query row against a block of cached keys), written once.
// kv_cache.hpp includes this file once per instruction set inside attn::ops::x86::<set>, where
// ops/simd/x86.hpp defines Vec<T>, with ATTN_KTARGET set to that set's function attribute. It is not a
// header of its own (no include guard, no includes). Contract: ops::detail::decode_scores_generic and
// decode_values_generic in kv_cache.hpp.

/// Rows ahead that the decode kernels ask the cache for: the step streams K and V from DRAM once, and
/// the hardware prefetchers alone left a third of the bandwidth unused (measured with
/// benchmarks/bench_decode.cpp). A prefetch past the end of the cache's storage is harmless (it never
/// faults).
inline constexpr Index kPrefetchRows = 16;
inline constexpr Index kLineFloats = 64 / sizeof(float);
/// Asks for the cache line `rows` rows of width d past p (address arithmetic only: no pointer is formed
/// past the end of the storage).
template <class S = float>
ATTN_KTARGET inline void prefetch(const S* p, Index rows, Index d) {
  const auto at = reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(rows * d) * sizeof(S);
  _mm_prefetch(reinterpret_cast<const char*>(at), _MM_HINT_T0);
}

/// dst[i] = float(src[i]) for the first n / 8 · 8 of n bfloat16 values (their bits at src, read with
/// vector loads only), one register at a time, and returns that count (the caller widens the rest);
/// asks for the storage kPrefetchRows rows of width d ahead, as the kernels below do for float storage.
ATTN_KTARGET inline Index widen_bf16(const void* bits, Index n, Index d, float* dst) {
  const auto* src = static_cast<const std::uint16_t*>(bits);
  Index i = 0;
  for (; i + 8 <= n; i += 8) {  // 8 at a time in both sets (the widening is not the bottleneck)
    if (i % 32 == 0) prefetch(src + i, kPrefetchRows, d);
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
  }
  return i;
}

/// z[c] = K[c, :]·q for c < cols; K row-major [cols, d]. Four keys at a time, a register per key.
ATTN_KTARGET inline void decode_scores(const float* K, Index cols, Index d, const float* q, float* z) {
  using V = Vec<float>;
  using P = V::P;
  constexpr Index W = V::W;
  const Index dv = d / W * W;
  Index c = 0;
  for (; c + 4 <= cols; c += 4) {
    const float* k0 = K + c * d;
    const float* k1 = k0 + d;
    const float* k2 = k1 + d;
    const float* k3 = k2 + d;
    P a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
    for (Index e = 0; e < 4 * d; e += kLineFloats) prefetch(k0 + e, kPrefetchRows, d);
    for (Index e = 0; e < dv; e += W) {
      const P qe = V::load(q + e);
      a0 = V::fmadd(V::load(k0 + e), qe, a0);
      a1 = V::fmadd(V::load(k1 + e), qe, a1);
      a2 = V::fmadd(V::load(k2 + e), qe, a2);
      a3 = V::fmadd(V::load(k3 + e), qe, a3);
    }
    float s0 = V::hsum(a0), s1 = V::hsum(a1), s2 = V::hsum(a2), s3 = V::hsum(a3);
    for (Index e = dv; e < d; ++e) {
      s0 += k0[e] * q[e];
      s1 += k1[e] * q[e];
      s2 += k2[e] * q[e];
      s3 += k3[e] * q[e];
    }
    z[c] = s0;
    z[c + 1] = s1;
    z[c + 2] = s2;
    z[c + 3] = s3;
  }
  for (; c < cols; ++c) {
    const float* k0 = K + c * d;
    P a0 = V::zero();
    for (Index e = 0; e < dv; e += W) a0 = V::fmadd(V::load(k0 + e), V::load(q + e), a0);
    float s0 = V::hsum(a0);
    for (Index e = dv; e < d; ++e) s0 += k0[e] * q[e];
    z[c] = s0;
  }
}

/// o[:] += Σ_c z[c]·Vm[c, :] for c < cols; Vm row-major [cols, d]. Up to four registers of o stay in
/// registers across the whole block.
ATTN_KTARGET inline void decode_values(const float* z, const float* Vm, Index cols, Index d, float* o) {
  using V = Vec<float>;
  using P = V::P;
  constexpr Index W = V::W;
  Index e0 = 0;
  for (; e0 + 4 * W <= d; e0 += 4 * W) {
    P o0 = V::load(o + e0), o1 = V::load(o + e0 + W), o2 = V::load(o + e0 + 2 * W), o3 = V::load(o + e0 + 3 * W);
    for (Index c = 0; c < cols; ++c) {
      const float* v = Vm + c * d + e0;
      if (e0 == 0)
        for (Index e = 0; e < d; e += kLineFloats) prefetch(Vm + c * d + e, kPrefetchRows, d);
      const P zc = V::set1(z[c]);
      o0 = V::fmadd(zc, V::load(v), o0);
      o1 = V::fmadd(zc, V::load(v + W), o1);
      o2 = V::fmadd(zc, V::load(v + 2 * W), o2);
      o3 = V::fmadd(zc, V::load(v + 3 * W), o3);
    }
    V::store(o + e0, o0);
    V::store(o + e0 + W, o1);
    V::store(o + e0 + 2 * W, o2);
    V::store(o + e0 + 3 * W, o3);
  }
  for (; e0 + W <= d; e0 += W) {
    P o0 = V::load(o + e0);
    for (Index c = 0; c < cols; ++c) o0 = V::fmadd(V::set1(z[c]), V::load(Vm + c * d + e0), o0);
    V::store(o + e0, o0);
  }
  for (; e0 < d; ++e0) {
    float s = o[e0];
    for (Index c = 0; c < cols; ++c) s += z[c] * Vm[c * d + e0];
    o[e0] = s;
  }
}
