// The wide one-row kernels (a matrix times one vector, one vector times a matrix), written once: a KV
// cache's decode step (one query row against a block of cached keys) and a dense layer on one token.
// ops/simd/x86.hpp includes this file once per instruction set inside attn::ops::x86::<set>, after
// defining Vec<T> and ATTN_KTARGET there. It is not a header of its own (no include guard, no
// includes). Contract: ops::matvec and ops::vecmat_acc in ops/kernels.hpp.

/// Rows ahead that the one-row kernels (matvec, vecmat_acc) and the several-row decode kernels
/// (matvec_rows, vecmat_acc_rows) ask for: they stream their matrix from DRAM once, and the hardware
/// prefetchers alone left a third of the bandwidth unused (a KV cache's decode step,
/// benchmarks/bench_decode.cpp). A multi_head decode step (one query row per head, E = 512, 8 heads,
/// 1 thread) took 0.81-0.86 ms at 8k keys and 3.5-4.1 ms at 32k with 16 rows ahead, 0.71-0.81 and
/// 3.2-3.7 ms with 32 (alternated runs); a group_query step at 32k keys 1.1-1.2 ms with 16,
/// 0.87-0.95 ms with 32 (64: no better). 32 rows of 64 floats are 8 KiB in flight. The widening of
/// 16-bit storage asks for the same bytes ahead (twice the rows). A prefetch past the end of the
/// storage is harmless (it never faults).
inline constexpr Index kStreamAhead = 32;
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
/// asks for the storage 2·kStreamAhead rows of width d ahead (the bytes the float kernels ask ahead).
ATTN_KTARGET inline Index widen_bf16(const void* bits, Index n, Index d, float* dst) {
  const auto* src = static_cast<const std::uint16_t*>(bits);
  Index i = 0;
  for (; i + 8 <= n; i += 8) {  // 8 at a time in both sets (the widening is not the bottleneck)
    if (i % 32 == 0) prefetch(src + i, 2 * kStreamAhead, d);
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
    for (Index e = 0; e < 4 * d; e += kLineFloats) prefetch(k0 + e, kStreamAhead, d);
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
      for (Index e = 0; e < 4 * W; e += kLineFloats) prefetch(v + e, kStreamAhead, ld);
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

// ---- Several query rows against one block of keys (a decode step's query heads of one kv head), each
// key and value row loaded once for all of them; and a stream of blocks that does not stall between
// passes: while a kernel reads its matrix it asks for the rows the caller reads NEXT (`next`) once
// its own end is within kStreamAhead rows, so the memory stays busy from the keys of a block to its
// values and on to the next block's keys.


/// Asks for the cache lines of floats [e0, e1) of row `row` of the stream "A's rows [0, cols), then
/// next's rows" (A's rows continue past cols when next is null: a harmless prefetch past the end).
/// Address arithmetic only.
ATTN_KTARGET __attribute__((always_inline)) inline void prefetch_stream(const float* A, Index cols, const float* next, Index row, Index d, Index e0,
                                         Index e1) {
  const std::uintptr_t base = row < cols || next == nullptr
                                  ? reinterpret_cast<std::uintptr_t>(A) + static_cast<std::uintptr_t>(row * d) * sizeof(float)
                                  : reinterpret_cast<std::uintptr_t>(next) +
                                        static_cast<std::uintptr_t>((row - cols) * d) * sizeof(float);
  for (Index e = e0; e < e1; e += kLineFloats)
    _mm_prefetch(reinterpret_cast<const char*>(base + static_cast<std::uintptr_t>(e) * sizeof(float)), _MM_HINT_T0);
}

/// z[r·ldz + j] = k[j·d, +d)·q[r·d, +d) for j < KC keys, r < RC query rows: KC·RC registers of
/// products, reduced four at a time by one shuffle tree (the same tree for every slot, so a dot
/// product does not depend on its neighbours), then the scalar tail e >= dv.
template <int KC, int RC>
ATTN_KTARGET __attribute__((always_inline)) inline void dot_tile(const float* k, Index d, Index dv, const float* q, float* z, Index ldz) {
  using V = Vec<float>;
  using P = V::P;
  constexpr Index W = V::W;
  constexpr int N = KC * RC;
  P acc[N];
#pragma GCC unroll 16
  for (int i = 0; i < N; ++i) acc[i] = V::zero();
  for (Index e = 0; e < dv; e += W) {
    P kv[KC];
#pragma GCC unroll 4
    for (int j = 0; j < KC; ++j) kv[j] = V::load(k + j * d + e);
#pragma GCC unroll 4
    for (int r = 0; r < RC; ++r) {
      const P qe = V::load(q + r * d + e);
#pragma GCC unroll 4
      for (int j = 0; j < KC; ++j) acc[j * RC + r] = V::fmadd(kv[j], qe, acc[j * RC + r]);
    }
  }
  float s[N];
  if constexpr (N % 4 == 0) {
#pragma GCC unroll 4
    for (int i = 0; i < N; i += 4) V::hsum4(acc[i], acc[i + 1], acc[i + 2], acc[i + 3], s + i);
  } else {
#pragma GCC unroll 4
    for (int i = 0; i < N; ++i) s[i] = V::hsum(acc[i]);
  }
  for (Index e = dv; e < d; ++e)
    for (int j = 0; j < KC; ++j)
      for (int r = 0; r < RC; ++r) s[j * RC + r] += k[j * d + e] * q[r * d + e];
  for (int j = 0; j < KC; ++j)
    for (int r = 0; r < RC; ++r) z[r * ldz + j] = s[j * RC + r];
}

/// One pass of matvec_rows over K for RC query rows, KC keys at a time; asks for the stream ahead
/// when `fetch`.
template <int KC, int RC>
ATTN_KTARGET inline void dot_rows_pass(const float* K, Index cols, Index d, const float* q, float* z, Index ldz,
                                       const float* next, bool fetch) {
  const Index dv = d / Vec<float>::W * Vec<float>::W;
  Index c = 0;
  for (; c + KC <= cols; c += KC) {
    if (fetch)
      for (int j = 0; j < KC; ++j) prefetch_stream(K, cols, next, c + j + kStreamAhead, d, 0, d);
    dot_tile<KC, RC>(K + c * d, d, dv, q, z + c, ldz);
  }
  for (; c < cols; ++c) {
    if (fetch) prefetch_stream(K, cols, next, c + kStreamAhead, d, 0, d);
    dot_tile<1, RC>(K + c * d, d, dv, q, z + c, ldz);
  }
}

/// Z[r·ldz + c] = K[c, :]·Q[r, :] for r < rows, c < cols; K row-major [cols, d], Q [rows, d]; `next`
/// (nullable) the rows the caller reads after K (same width d). Query rows in groups of four (two keys
/// a register tile), then two, then one (four keys a tile: ops::matvec's tile, with the same sums);
/// the first group streams K, the others find it in cache.
ATTN_KTARGET inline void matvec_rows(const float* K, Index cols, Index d, const float* Q, Index rows, float* Z,
                                     Index ldz, const float* next) {
  Index r = 0;
  for (; r + 4 <= rows; r += 4) dot_rows_pass<2, 4>(K, cols, d, Q + r * d, Z + r * ldz, ldz, next, r == 0);
  if (r + 2 <= rows) {
    dot_rows_pass<4, 2>(K, cols, d, Q + r * d, Z + r * ldz, ldz, next, r == 0);
    r += 2;
  }
  if (r < rows) dot_rows_pass<4, 1>(K, cols, d, Q + r * d, Z + r * ldz, ldz, next, r == 0);
}

/// One pass of vecmat_acc_rows over V for R rows of O: blocks of EB registers of every row stay in
/// registers across all keys (EB = 4, or 2 for four rows in the 16 registers of AVX2).
template <int R>
ATTN_KTARGET inline void acc_rows_pass(const float* Z, Index ldz, const float* Vm, Index cols, Index d, float* O,
                                       const float* next, bool fetch) {
  using V = Vec<float>;
  using P = V::P;
  constexpr Index W = V::W;
  constexpr int EB = W == 8 && R == 4 ? 2 : 4;
  Index e0 = 0;
  for (; e0 + EB * W <= d; e0 += EB * W) {
    P o[R][EB];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int b = 0; b < EB; ++b) o[r][b] = V::load(O + r * d + e0 + b * W);
    for (Index c = 0; c < cols; ++c) {
      if (fetch) prefetch_stream(Vm, cols, next, c + kStreamAhead, d, e0, e0 + EB * W);
      const float* v = Vm + c * d + e0;
      P vv[EB];
#pragma GCC unroll 4
      for (int b = 0; b < EB; ++b) vv[b] = V::load(v + b * W);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const P zc = V::set1(Z[r * ldz + c]);
#pragma GCC unroll 4
        for (int b = 0; b < EB; ++b) o[r][b] = V::fmadd(zc, vv[b], o[r][b]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int b = 0; b < EB; ++b) V::store(O + r * d + e0 + b * W, o[r][b]);
  }
  for (; e0 + W <= d; e0 += W) {
    P o[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) o[r] = V::load(O + r * d + e0);
    for (Index c = 0; c < cols; ++c) {
      if (fetch) prefetch_stream(Vm, cols, next, c + kStreamAhead, d, e0, e0 + W);
      const P vv = V::load(Vm + c * d + e0);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) o[r] = V::fmadd(V::set1(Z[r * ldz + c]), vv, o[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) V::store(O + r * d + e0, o[r]);
  }
  for (; e0 < d; ++e0)
    for (int r = 0; r < R; ++r) {
      float s = O[r * d + e0];
      for (Index c = 0; c < cols; ++c) s = std::fma(Z[r * ldz + c], Vm[c * d + e0], s);
      O[r * d + e0] = s;
    }
}

/// O[r, e] += Σ_c Z[r·ldz + c]·Vm[c, e] for r < rows, e < d; Vm row-major [cols, d], O [rows, d];
/// `next` as for matvec_rows. Each output element is one chain of fused multiply-adds in c order (the
/// values of ops::vecmat_acc row by row). Rows in groups of four, then two, then one; the first group
/// streams Vm.
ATTN_KTARGET inline void vecmat_acc_rows(const float* Z, Index ldz, const float* Vm, Index cols, Index d, Index rows,
                                         float* O, const float* next) {
  Index r = 0;
  for (; r + 4 <= rows; r += 4) acc_rows_pass<4>(Z + r * ldz, ldz, Vm, cols, d, O + r * d, next, r == 0);
  if (r + 2 <= rows) {
    acc_rows_pass<2>(Z + r * ldz, ldz, Vm, cols, d, O + r * d, next, r == 0);
    r += 2;
  }
  if (r < rows) acc_rows_pass<1>(Z + r * ldz, ldz, Vm, cols, d, O + r * d, next, r == 0);
}
