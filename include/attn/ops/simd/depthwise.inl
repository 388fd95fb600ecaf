// The wide depthwise-convolution row kernel, written once. ops/conv.hpp includes this file once per
// instruction set inside attn::ops::x86::<set>, where ops/simd/x86.hpp defines Vec<T>, and with
// ATTN_KTARGET set to that set's function attribute. It is not a header of its own (no include guard,
// no includes). Contract: ops::detail::depthwise_row_generic in ops/conv.hpp.

/// One output row of a depthwise convolution: y[ox, c] = bias[c] + Σ_taps x[iy_t, ox·sw − pl + j·dw, c] ·
/// k[i_t, j, c], channels vectorised (4, then 1 register at a time, then a scalar tail). Every element
/// is the same chain of fused multiply-adds in tap order (rows t, then columns j) whichever thread runs
/// the row.
template <class T>
ATTN_KTARGET inline void depthwise_row(const T* xb, Index wi, Index c, const T* kernel, Index kw, const Index* ti,
                                       const Index* tiy, Index nt, Index wo, Index sw, Index dw, Index pl,
                                       const T* bias, T* yrow) {
  using V = Vec<T>;
  using P = typename V::P;
  constexpr Index W = V::W;
  for (Index ox = 0; ox < wo; ++ox) {
    const Index ix0 = ox * sw - pl;
    const Index j0 = ix0 >= 0 ? 0 : (-ix0 + dw - 1) / dw;
    const Index j1 = wi - 1 - ix0 < 0 ? 0 : std::min<Index>(kw, (wi - 1 - ix0) / dw + 1);
    const Index nj = std::max<Index>(0, j1 - j0);
    const Index xoff = nj > 0 ? (ix0 + j0 * dw) * c : 0;  // first valid column: no pointer leaves the image
    const Index jk = nj > 0 ? j0 : 0;
    T* yo = yrow + ox * c;
    Index c0 = 0;
    for (; c0 + 4 * W <= c; c0 += 4 * W) {
      P a0 = bias ? V::load(bias + c0) : V::zero(), a1 = bias ? V::load(bias + c0 + W) : V::zero();
      P a2 = bias ? V::load(bias + c0 + 2 * W) : V::zero(), a3 = bias ? V::load(bias + c0 + 3 * W) : V::zero();
      for (Index t = 0; t < nt; ++t) {
        const T* xr = xb + tiy[t] * wi * c + xoff + c0;
        const T* kr = kernel + (ti[t] * kw + jk) * c + c0;
        for (Index j = 0; j < nj; ++j) {
          const T* xp = xr + j * dw * c;
          const T* kp = kr + j * c;
          a0 = V::fmadd(V::load(xp), V::load(kp), a0);
          a1 = V::fmadd(V::load(xp + W), V::load(kp + W), a1);
          a2 = V::fmadd(V::load(xp + 2 * W), V::load(kp + 2 * W), a2);
          a3 = V::fmadd(V::load(xp + 3 * W), V::load(kp + 3 * W), a3);
        }
      }
      V::store(yo + c0, a0);
      V::store(yo + c0 + W, a1);
      V::store(yo + c0 + 2 * W, a2);
      V::store(yo + c0 + 3 * W, a3);
    }
    for (; c0 + W <= c; c0 += W) {
      P a0 = bias ? V::load(bias + c0) : V::zero();
      for (Index t = 0; t < nt; ++t) {
        const T* xr = xb + tiy[t] * wi * c + xoff + c0;
        const T* kr = kernel + (ti[t] * kw + jk) * c + c0;
        for (Index j = 0; j < nj; ++j) a0 = V::fmadd(V::load(xr + j * dw * c), V::load(kr + j * c), a0);
      }
      V::store(yo + c0, a0);
    }
    for (; c0 < c; ++c0) {
      T a = bias ? bias[c0] : T(0);
      for (Index t = 0; t < nt; ++t) {
        const T* xr = xb + tiy[t] * wi * c + xoff + c0;
        const T* kr = kernel + (ti[t] * kw + jk) * c + c0;
        for (Index j = 0; j < nj; ++j) a = std::fma(xr[j * dw * c], kr[j * c], a);
      }
      yo[c0] = a;
    }
  }
}
