// The wide dense-convolution tile kernel (implicit GEMM), written once. ops/conv.hpp includes this file
// once per instruction set inside attn::ops::x86::<set>, where ops/simd/x86.hpp defines Vec<T>, and with
// ATTN_KTARGET set to that set's function attribute. It is not a header of its own (no include guard,
// no includes).

/// The products of one tap for pixel rows [I0, I1) of a tile (the others see the padding through it):
/// acc[i][v] += a[i][ci] · bp[(ci - ci0)·ldb + v·W] for ci0 <= ci < ci1.
template <class T, int MR, int NV, int I0, int I1>
ATTN_KTARGET __attribute__((always_inline)) inline void conv_tap(const T* const* a, const T* bp, Index ldb, Index ci0,
                                                                 Index ci1, typename Vec<T>::P (&acc)[MR][NV]) {
  using V = Vec<T>;
  using P = typename V::P;
  constexpr int W = V::W;
  for (Index ci = ci0; ci < ci1; ++ci, bp += ldb) {
    P bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = V::load(bp + v * W);
#pragma GCC unroll 16
    for (int i = I0; i < I1; ++i) {
      const P av = V::set1(a[i][ci]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fmadd(av, bv[v], acc[i][v]);
    }
  }
}

/// One register tile of a convolution, MR output pixels x NV registers of output channels, over the
/// im2col columns [k0, k1) (k = tap·cg + ci):
///   y[i, j] (+)= Σ_{k0 <= k < k1} rows[(k / cg)·MR + i][k % cg] · b[k·ldb + j]   (+ bias[j] when `last`)
/// for i < mr, j < nr; `first`: the sum starts from zero, else from y (a partial sum an earlier call left).
/// `rows[t·MR + i]` points at the cg input channels that pixel i sees through tap t (a zero row where
/// the tap falls in the padding: `zero`), so the im2col matrix is never written out; rows past mr repeat a
/// valid row (computed, not stored). b holds full NV·W columns (packed with zero columns when nr is short).
/// Every element is one chain of fused multiply-adds in k order from zero, then the bias: a partial sum
/// stored in y and loaded back continues the same chain, so the value of an element does not depend on
/// how k is cut into calls, on the tile it sits in, on mr or on nr. A tap's products are skipped for the
/// whole tile when it falls in the padding for every pixel (the top and bottom rows of a 'same'
/// convolution), and for the first or last pixel when only that one sees the padding (a tile that is an
/// output row, at its left and right edges). A skipped product is a zero, and adding a zero leaves the sum
/// as it is (a chain from +0 never holds -0): the skips change no value either, unless a weight is
/// infinite or NaN; then the padding's 0·inf is not there to make the output NaN, as in PyTorch's oneDNN
/// convolution, which skips padded taps too.
template <class T, int MR, int NV>
ATTN_KTARGET inline void conv_tile(Index k0, Index k1, Index cg, const T* const* rows, const T* zero, const T* b,
                                   Index ldb, const T* bias, bool first, bool last, T* y, Index ldy, Index mr,
                                   Index nr) {
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
    const T* bp = b + k * ldb;
    k += ci1 - ci0;
    const T* a[MR];
    int padded = 0;  // pixels of the tile that see the padding through tap t
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      a[i] = rows[t * MR + i];
      padded += a[i] == zero ? 1 : 0;
    }
    if (padded == MR) continue;  // top and bottom rows of a 'same' convolution: only zeros
    // the first or the last pixel alone: a tile that is one output row at its left or right edge
    if (padded == 1 && a[0] == zero)
      conv_tap<T, MR, NV, 1, MR>(a, bp, ldb, ci0, ci1, acc);
    else if (padded == 1 && a[MR - 1] == zero)
      conv_tap<T, MR, NV, 0, MR - 1>(a, bp, ldb, ci0, ci1, acc);
    else
      conv_tap<T, MR, NV, 0, MR>(a, bp, ldb, ci0, ci1, acc);
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
