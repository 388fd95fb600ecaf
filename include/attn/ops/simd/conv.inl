// The wide dense-convolution tile kernel (implicit GEMM), written once. ops/conv.hpp includes this file
// once per instruction set inside attn::ops::x86::<set>, where ops/simd/x86.hpp defines Vec<T>, and with
// ATTN_KTARGET set to that set's function attribute. It is not a header of its own (no include guard,
// no includes).

/// One register tile of a convolution, MR output pixels x NV registers of output channels, over the
/// im2col columns [k0, k1) (k = tap·cg + ci):
///   y[i, j] (+)= Σ_{k0 <= k < k1} rows[(k / cg)·MR + i][k % cg] · b[k·ldb + j]   (+ bias[j] when `last`)
/// for i < mr, j < nr; `first`: the sum starts from zero, else from y (a partial sum an earlier call left).
/// `rows[t·MR + i]` points at the cg input channels that pixel i sees through tap t (a zero row where
/// the tap falls in the padding), so the im2col matrix is never written out; rows past mr repeat a valid
/// row (computed, not stored). b holds full NV·W columns (packed with zero columns when nr is short).
/// Every element is one chain of fused multiply-adds in k order from zero, then the bias: a partial sum
/// stored in y and loaded back continues the same chain, so the value of an element does not depend on
/// how k is cut into calls, on the tile it sits in, on mr or on nr.
template <class T, int MR, int NV>
ATTN_KTARGET inline void conv_tile(Index k0, Index k1, Index cg, const T* const* rows, const T* b, Index ldb,
                                   const T* bias, bool first, bool last, T* y, Index ldy, Index mr, Index nr) {
  using V = Vec<T>;
  using P = typename V::P;
  constexpr int W = V::W, NR = NV * W;
  const bool full = mr == MR && nr == NR;
  alignas(64) T tmp[MR * NR];
  P acc[MR][NV];
  if (first) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
  } else if (full) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = V::load(y + i * ldy + v * W);
  } else {
    std::fill_n(tmp, MR * NR, T(0));
    for (Index i = 0; i < mr; ++i) std::copy_n(y + i * ldy, nr, tmp + i * NR);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = V::load(tmp + i * NR + v * W);
  }
  for (Index k = k0; k < k1;) {
    const Index t = k / cg, ci0 = k % cg, ci1 = std::min(cg, ci0 + (k1 - k));
    const T* a[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) a[i] = rows[t * MR + i];
    const T* bp = b + k * ldb;
    for (Index ci = ci0; ci < ci1; ++ci, bp += ldb) {
      P bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = V::load(bp + v * W);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const P av = V::set1(a[i][ci]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = V::fmadd(av, bv[v], acc[i][v]);
      }
    }
    k += ci1 - ci0;
  }
  if (full) {
    if (last && bias != nullptr) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const P bb = V::load(bias + v * W);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) acc[i][v] = V::add(acc[i][v], bb);
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) V::store(y + i * ldy + v * W, acc[i][v]);
    return;
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) V::store(tmp + i * NR + v * W, acc[i][v]);
  const bool add_bias = last && bias != nullptr;
  for (Index i = 0; i < mr; ++i)
    for (Index j = 0; j < nr; ++j) y[i * ldy + j] = add_bias ? tmp[i * NR + j] + bias[j] : tmp[i * NR + j];
}
