// The wide one-row kernels (a matrix times one vector, one vector times a matrix), written once: a KV
// cache's decode step (one query row against a block of cached keys) and a dense layer on one token.
// ops/simd/x86.hpp includes this file once per instruction set inside attn::ops::x86::<set>, after
// defining Vec<T> and ATTN_KTARGET there. It is not a header of its own (no include guard, no
// includes). Contract: ops::matvec and ops::vecmat_acc in ops/kernels.hpp.

/// Rows ahead that these kernels ask for: they stream their matrix from DRAM once, and the hardware
/// prefetchers alone left a third of the bandwidth unused (a KV cache's decode step, measured with
/// benchmarks/bench_decode.cpp). A prefetch past the end of the storage is harmless (it never faults).
inline constexpr Index kPrefetchRows = 16;
inline constexpr Index kLineFloats = 64 / sizeof(float);
/// Asks for the cache line `rows` rows of stride d past p (address arithmetic only: no pointer is formed
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

/// z[c] = K[c, :]·q for c < cols; K row-major [cols, d]. Four rows at a time, a register per row.
ATTN_KTARGET inline void matvec(const float* K, Index cols, Index d, const float* q, float* z) {
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
    float sums[4];
    V::hsum4(a0, a1, a2, a3, sums);
    float s0 = sums[0], s1 = sums[1], s2 = sums[2], s3 = sums[3];
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

/// o[0, d) += Σ_c z[c]·Vm[c, 0, d) for c < cols; Vm row-major with row stride ld >= d. Four registers
/// of o stay in registers across all rows; each element is one chain of fused multiply-adds in c order.
ATTN_KTARGET inline void vecmat_acc(const float* z, const float* Vm, Index cols, Index d, Index ld, float* o) {
  using V = Vec<float>;
  using P = V::P;
  constexpr Index W = V::W;
  static_assert(4 * W * sizeof(float) % 64 == 0, "a block of four registers is whole cache lines");
  Index e0 = 0;
  for (; e0 + 4 * W <= d; e0 += 4 * W) {
    P o0 = V::load(o + e0), o1 = V::load(o + e0 + W), o2 = V::load(o + e0 + 2 * W), o3 = V::load(o + e0 + 3 * W);
    for (Index c = 0; c < cols; ++c) {
      const float* v = Vm + c * ld + e0;
      for (Index e = 0; e < 4 * W; e += kLineFloats) prefetch(v + e, kPrefetchRows, ld);
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
    for (Index c = 0; c < cols; ++c) o0 = V::fmadd(V::set1(z[c]), V::load(Vm + c * ld + e0), o0);
    V::store(o + e0, o0);
  }
  for (; e0 < d; ++e0) {
    float s = o[e0];
    for (Index c = 0; c < cols; ++c) s = std::fma(z[c], Vm[c * ld + e0], s);
    o[e0] = s;
  }
}
