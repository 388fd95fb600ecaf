// The wide depthwise-convolution row kernel, written once. ops/conv.hpp includes this file once per
// instruction set inside attn::ops::x86::<set>, where ops/simd/x86.hpp defines Vec<T>, and with
// ATTN_KTARGET set to that set's function attribute. It is not a header of its own (no include guard,
// no includes). Contract: ops::detail::depthwise_row_generic in ops/conv.hpp.

/// One output ox of a depthwise row, channels [from, c): 4, then 1 register at a time, then scalars.
template <class T>
ATTN_KTARGET inline void depthwise_output(const T* xb, Index wi, Index c, const T* kernel, Index kw, const Index* ti,
                                          const Index* tiy, Index nt, Index ox, Index sw, Index dw, Index pl,
                                          const T* bias, T* yrow, Index from) {
  using V = Vec<T>;
  using P = typename V::P;
  constexpr Index W = V::W;
  {
    const Index ix0 = ox * sw - pl;
    const Index j0 = ix0 >= 0 ? 0 : (-ix0 + dw - 1) / dw;
    const Index j1 = wi - 1 - ix0 < 0 ? 0 : std::min<Index>(kw, (wi - 1 - ix0) / dw + 1);
    const Index nj = std::max<Index>(0, j1 - j0);
    const Index xoff = nj > 0 ? (ix0 + j0 * dw) * c : 0;  // first valid column: no pointer leaves the image
    const Index jk = nj > 0 ? j0 : 0;
    T* yo = yrow + ox * c;
    Index c0 = from;
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

/// Four interior outputs ox .. ox + 3 of a depthwise row (every kernel column inside the image), channels
/// [0, c0) in blocks of 2 registers; returns c0 (the caller finishes [c0, c) output by output).
template <class T>
ATTN_KTARGET inline Index depthwise_interior4(const T* xb, Index wi, Index c, const T* kernel, Index kw,
                                              const Index* ti, const Index* tiy, Index nt, Index ox, Index sw,
                                              Index dw, Index pl, const T* bias, T* yrow) {
  using V = Vec<T>;
  using P = typename V::P;
  constexpr Index W = V::W;
  const Index ix0 = ox * sw - pl;
  T* yo = yrow + ox * c;
  const Index xs = sw * c;  // next output's input column
  Index c0 = 0;
  for (; c0 + 2 * W <= c; c0 += 2 * W) {
    P a[4][2];
    for (int q = 0; q < 4; ++q)
      for (int v = 0; v < 2; ++v) a[q][v] = bias ? V::load(bias + c0 + v * W) : V::zero();
    for (Index t = 0; t < nt; ++t) {
      const T* xr = xb + (tiy[t] * wi + ix0) * c + c0;
      const T* kr = kernel + ti[t] * kw * c + c0;
      for (Index j = 0; j < kw; ++j) {
        const T* xp = xr + j * dw * c;
        const P k0 = V::load(kr + j * c), k1 = V::load(kr + j * c + W);
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
          a[q][0] = V::fmadd(V::load(xp + q * xs), k0, a[q][0]);
          a[q][1] = V::fmadd(V::load(xp + q * xs + W), k1, a[q][1]);
        }
      }
    }
    for (int q = 0; q < 4; ++q)
      for (int v = 0; v < 2; ++v) V::store(yo + q * c + c0 + v * W, a[q][v]);
  }
  return c0;
}

/// R outputs ox .. ox + R − 1 of a depthwise row at stride 1 and dilation 1 with a kernel KW wide, NC
/// registers of channels from c0. Neighbouring outputs share input columns: per kernel row, the KW
/// weights stay in registers and each of the R + KW − 1 input columns ox − pl + s (s in [s_lo, s_hi),
/// the ones inside the image) is loaded once and feeds every output that sees it, so the loop runs on
/// fused multiply-adds instead of loads. Columns in the padding are skipped, as depthwise_output skips
/// them: an output's chain is still bias, then rows t, then its valid columns j in order.
template <class T, int KW, int R, int NC>
ATTN_KTARGET inline void depthwise_block_s1(const T* xb, Index wi, Index c, const T* kernel, const Index* ti,
                                            const Index* tiy, Index nt, Index ox, Index pl, int s_lo, int s_hi,
                                            const T* bias, T* yrow, Index c0) {
  using V = Vec<T>;
  using P = typename V::P;
  constexpr Index W = V::W;
  const Index ix0 = ox - pl;
  T* yo = yrow + ox * c + c0;
  P a[R][NC];
#pragma GCC unroll 4
  for (int v = 0; v < NC; ++v) {
    const P b0 = bias ? V::load(bias + c0 + v * W) : V::zero();
#pragma GCC unroll 32
    for (int q = 0; q < R; ++q) a[q][v] = b0;
  }
  for (Index t = 0; t < nt; ++t) {
    const T* xr = xb + tiy[t] * wi * c + c0;  // the row; column ix0 + s is read only for s >= s_lo
    const T* kr = kernel + ti[t] * KW * c + c0;
    P k[KW][NC];
#pragma GCC unroll 16
    for (int j = 0; j < KW; ++j)
#pragma GCC unroll 4
      for (int v = 0; v < NC; ++v) k[j][v] = V::load(kr + j * c + v * W);
#pragma GCC unroll 64
    for (int s = 0; s < R + KW - 1; ++s) {
      if (s < s_lo || s >= s_hi) continue;
#pragma GCC unroll 4
      for (int v = 0; v < NC; ++v) {
        const P xv = V::load(xr + (ix0 + s) * c + v * W);
#pragma GCC unroll 16
        for (int j = KW - 1; j >= 0; --j) {
          const int q = s - j;  // output q sees column s through kernel column j
          if (q >= 0 && q < R) a[q][v] = V::fmadd(xv, k[j][v], a[q][v]);
        }
      }
    }
  }
#pragma GCC unroll 32
  for (int q = 0; q < R; ++q)
#pragma GCC unroll 4
    for (int v = 0; v < NC; ++v) V::store(yo + q * c + v * W, a[q][v]);
}

/// A whole depthwise row at stride 1 and dilation 1 with a kernel KW wide (wo >= R) in blocks of R
/// outputs (the last block ends at the row's end: it may overlap the one before it and then writes the
/// same values again); channels NC2 registers at a time, then one, then output by output.
template <class T, int KW, int R, int NC2>
ATTN_KTARGET inline void depthwise_row_s1(const T* xb, Index wi, Index c, const T* kernel, const Index* ti,
                                          const Index* tiy, Index nt, Index wo, Index pl, const T* bias, T* yrow) {
  constexpr Index W = Vec<T>::W;
  for (Index b0 = 0; b0 < wo; b0 += R) {
    const Index ox = std::min<Index>(b0, wo - R), ix0 = ox - pl;
    // columns ix0 + s inside the image: s in [s_lo, s_hi)
    const int s_lo = static_cast<int>(std::clamp<Index>(-ix0, 0, R + KW - 1));
    const int s_hi = static_cast<int>(std::clamp<Index>(wi - ix0, 0, R + KW - 1));
    Index c0 = 0;
    for (; c0 + NC2 * W <= c; c0 += NC2 * W)
      depthwise_block_s1<T, KW, R, NC2>(xb, wi, c, kernel, ti, tiy, nt, ox, pl, s_lo, s_hi, bias, yrow, c0);
    if constexpr (NC2 > 1)
      for (; c0 + W <= c; c0 += W)
        depthwise_block_s1<T, KW, R, 1>(xb, wi, c, kernel, ti, tiy, nt, ox, pl, s_lo, s_hi, bias, yrow, c0);
    if (c0 < c)
      for (Index q = ox; q < ox + R; ++q)
        depthwise_output(xb, wi, c, kernel, KW, ti, tiy, nt, q, 1, 1, pl, bias, yrow, c0);
  }
}

/// One output row of a depthwise convolution: y[ox, c] = bias[c] + Σ_taps x[iy_t, ox·sw − pl + j·dw, c] ·
/// k[i_t, j, c], channels vectorised. Every element is the same chain of fused multiply-adds in tap order
/// (rows t, then columns j) starting from the bias, whichever thread runs the row and whichever path
/// (interior block of 4 outputs, or per output) computes it.
template <class T>
ATTN_KTARGET inline void depthwise_row(const T* xb, Index wi, Index c, const T* kernel, Index kw, const Index* ti,
                                       const Index* tiy, Index nt, Index wo, Index sw, Index dw, Index pl,
                                       const T* bias, T* yrow) {
  // Interior outputs (every kernel column inside the image) four at a time: one kernel load feeds four
  // fused multiply-adds (2 registers of channels x 4 outputs = 8 accumulators).
  const Index ox_lo = std::min<Index>(wo, (pl + sw - 1) / sw);  // first ox with ox·sw − pl >= 0
  const Index last = wi - 1 - (kw - 1) * dw + pl;              // ox·sw <= last: last column inside
  const Index ox_hi = last < 0 ? ox_lo : std::max<Index>(ox_lo, std::min<Index>(wo, last / sw + 1));
  // Stride 1, dilation 1, kernel 3, 5 or 7 wide: blocks of 7 outputs (7 divides the widths of the
  // usual stages, 112 to 7) sharing their input columns, on 2 registers of channels where there are 32
  // registers (14 accumulators + 2·kw weights + 2 inputs), 1 with 16 (7 + kw + 1).
  constexpr int R = 7, NC2 = Vec<T>::W * static_cast<int>(sizeof(T)) >= 64 ? 2 : 1;
  if (sw == 1 && dw == 1 && wo >= R && c >= Vec<T>::W) {
    switch (kw) {
      case 3: return depthwise_row_s1<T, 3, R, NC2>(xb, wi, c, kernel, ti, tiy, nt, wo, pl, bias, yrow);
      case 5: return depthwise_row_s1<T, 5, R, NC2>(xb, wi, c, kernel, ti, tiy, nt, wo, pl, bias, yrow);
      case 7: return depthwise_row_s1<T, 7, R, NC2>(xb, wi, c, kernel, ti, tiy, nt, wo, pl, bias, yrow);
      default: break;
    }
  }
  for (Index ox = 0; ox < wo; ++ox) {
    Index done = 0;
    if (ox >= ox_lo && ox + 4 <= ox_hi) {
      done = depthwise_interior4(xb, wi, c, kernel, kw, ti, tiy, nt, ox, sw, dw, pl, bias, yrow);
      if (done == c) {
        ox += 3;
        continue;
      }
    }
    // the rest of this output (and, after an interior block, of the next three) channel by channel
    const Index ox_end = done > 0 ? ox + 4 : ox + 1;
    for (; ox < ox_end; ++ox) depthwise_output(xb, wi, c, kernel, kw, ti, tiy, nt, ox, sw, dw, pl, bias, yrow, done);
    --ox;
  }
}

