/// \file
/// 2-D convolution (cross-correlation, as Keras's Conv2D and PyTorch's conv2d) on channels-last images,
/// general grouped and depthwise, in float and double.
///
///   conv2d:           x `[B, H, W, C_in]`, kernel `[kh, kw, C_in/groups, C_out]` (Keras layout),
///                     bias `[C_out]` or none  →  y `[B, H_out, W_out, C_out]`
///   depthwise_conv2d: x `[B, H, W, C]`, kernel `[kh, kw, C, mult]` (Keras DepthwiseConv2D layout,
///                     depth multiplier `mult`), bias `[C·mult]` or none  →  y `[B, H_out, W_out, C·mult]`,
///                     output channel `c·mult + m` = input channel `c` convolved with kernel[:, :, c, m]
///
///   y[b, oy, ox, o] = bias[o] + Σ_{i, j, ci} x[b, oy·sh − top + i·dh, ox·sw − left + j·dw, g·C_in/groups + ci]
///                                              · kernel[i, j, ci, o]      (g = o / (C_out/groups))
/// with zeros outside the image. Padding (`valid`, Keras `same`, KCAM's `torch_same`, explicit pairs),
/// strides and dilation follow ops/padding.hpp (spec kcam_attention_layers.md §1.2 and its errata).
/// With `groups`, input and output channels are cut into `groups` contiguous chunks and output chunk g
/// sees input chunk g only. A grouped conv with groups == C_in has the depthwise kernel layout
/// (`[kh, kw, 1, C_in·mult]` is `[kh, kw, C_in, mult]` in memory) and runs on the depthwise kernel.
///
/// Algorithm. Dense and grouped convolutions are implicit matrix products (no im2col buffer) on the AVX-512
/// / AVX2 tile kernels of ops/simd/conv.inl: a register tile of 6 or 14 output pixels x 2 or 4 registers of
/// output channels sums over the im2col columns k = (i, j, ci), broadcasting each input value from the
/// image itself (a pointer per pixel and tap; a zero row for taps in the padding). The Keras layout is the
/// im2col column order, (i, j, ci): the kernel is read in place when its rows are exactly one block of
/// output channels, else each block is first copied into a contiguous panel [K, block] (with rows C_out
/// apart a block falls on a few cache sets). A tile sums over all its columns at once, the panel streaming
/// from L2 and the pixel rows staying in L1 (the columns are cut into chunks only past 512 KiB of weights,
/// the partial sums waiting in y). Below 256 output pixels, too few to repay the copy, full blocks are read
/// in place, in chunks of 32 KiB of weights that stay in L1 over the few tiles of a task. A tap's
/// products are skipped for a whole tile when every pixel of it sees the padding through that tap (the
/// top and bottom output rows of a 'same' convolution), and for the first or last pixel when it alone
/// does (a tile that is one output row, at its left and right edges): at 14x14, 3x3 'same' with the
/// 14-pixel tiles, 9.3% of the products are such zeros, all of them skipped. Every output element is one
/// chain of fused multiply-adds in k order from zero, then the bias, whatever the tiling (a skipped product
/// is a zero, which changes no sum; with an infinite or NaN weight the padding's 0·inf is therefore absent
/// at the AVX levels, as in PyTorch's oneDNN convolution, and present at the generic level). At
/// the generic level (no AVX, or ATTN_SIMD=generic) the output rows are cut into tiles of a fixed height;
/// per tile and group the im2col rows are gathered into a per-thread scratch buffer and multiplied through
/// attn's GEMM (ops/kernels.hpp); a 1×1, stride-1, unpadded, ungrouped convolution reads the input in
/// place. Depthwise convolutions run a direct kernel per output row, vectorised over channels
/// (ops/simd/depthwise.inl; generic C++ otherwise): at stride 1 and dilation 1 with kernels 3, 5 or 7 wide,
/// blocks of 7 outputs share their input columns, so that each input vector loaded feeds up to kw fused
/// multiply-adds. A depth multiplier above 1 first repeats every input channel `mult` times (one temporary
/// of `mult`× the input). Tiles and rows are tasks on attn's pool (core/parallel.hpp); a task computes the
/// same values on any thread, so results are bit-identical for every thread count.
///
/// Speed: `REPS=5 WHAT=conv bash benchmarks/compare.sh` prints attn against libtorch 1.13's conv2d
/// (oneDNN) and attn's GEMM of the same size (benchmarks/bench_conv.cpp), alternating the two in REPS
/// rounds and keeping the best. On a 2-core AVX-512 host (Zen 5; a loop of independent fused
/// multiply-adds peaks at 270-285 GFLOP/s fp32 per core, with the clock), idle but for the benchmark,
/// B = 8, eight runs: conv 3x3 56x56x64→64 at 1 thread 262-272 GFLOP/s, libtorch / attn 0.99-1.04x; at
/// 14x14x256→256 292-303 GFLOP/s (counting the padding's products, which both skip), 1.00-1.04x; the
/// depthwise 7x7 at 56x56x96 125-132 GFLOP/s, 1.00-1.05x. attn's GEMM of the same size reaches 205-250
/// GFLOP/s. Two threads: 1.21-1.30x, 1.23-1.47x and 1.00-1.12x, except 0.97-1.01x (56x56) and 0.99x
/// (14x14) in runs where libtorch's two-thread time was at its best (it moves between 3.3 and 4.8 ms
/// from run to run, attn's within 2%).
///
/// Errors: ShapeError for a non-rank-4 input or kernel, a kernel whose input channels do not match, a
/// bias of the wrong length, or a kernel larger than the padded image; ConfigError for strides or
/// dilation below 1, `groups` below 1 or not dividing C_in and C_out, negative explicit pads. Messages
/// start with `Conv2dOptions::layer` (default "conv2d" / "depthwise_conv2d").
///
/// Sources: Keras Conv2D / DepthwiseConv2D; the im2col lowering of Chellapilla et al. (2006) and its
/// implicit form (the matrix product gathers its operand from the image as it goes).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/simd.hpp"
#include "attn/core/tensor.hpp"
#include "attn/ops/kernels.hpp"
#include "attn/ops/padding.hpp"

#if ATTN_SIMD_DISPATCH
namespace attn::ops::x86 {
namespace avx2 {
#define ATTN_KTARGET ATTN_TARGET_AVX2
#include "attn/ops/simd/depthwise.inl"
#include "attn/ops/simd/conv.inl"
#undef ATTN_KTARGET
}  // namespace avx2
namespace avx512 {
#define ATTN_KTARGET ATTN_TARGET_AVX512
#include "attn/ops/simd/depthwise.inl"
#include "attn/ops/simd/conv.inl"
#undef ATTN_KTARGET
}  // namespace avx512
}  // namespace attn::ops::x86
#endif

namespace attn::ops {

/// Options of conv2d / depthwise_conv2d.
struct Conv2dOptions {
  std::array<Index, 2> strides{1, 1};        ///< (height, width)
  std::array<Index, 2> dilation_rate{1, 1};  ///< (height, width)
  Index groups = 1;                          ///< conv2d only; must divide C_in and C_out
  Padding2d padding = Padding2d::valid();
  std::string_view layer{};  ///< named in error messages; empty: "conv2d" / "depthwise_conv2d"
};

namespace detail {

/// Portable depthwise row kernel (see ops/simd/depthwise.inl for the contract).
template <class T>
void depthwise_row_generic(const T* xb, Index wi, Index c, const T* kernel, Index kw, const Index* ti,
                           const Index* tiy, Index nt, Index wo, Index sw, Index dw, Index pl, const T* bias,
                           T* yrow) {
  for (Index ox = 0; ox < wo; ++ox) {
    const Index ix0 = ox * sw - pl;
    const Index j0 = ix0 >= 0 ? 0 : (-ix0 + dw - 1) / dw;
    const Index j1 = wi - 1 - ix0 < 0 ? 0 : std::min<Index>(kw, (wi - 1 - ix0) / dw + 1);
    const Index nj = std::max<Index>(0, j1 - j0);
    const Index xoff = nj > 0 ? (ix0 + j0 * dw) * c : 0;
    const Index jk = nj > 0 ? j0 : 0;
    T* yo = yrow + ox * c;
    if (bias != nullptr) std::copy(bias, bias + c, yo);
    else std::fill(yo, yo + c, T(0));
    for (Index t = 0; t < nt; ++t) {
      const T* xr = xb + tiy[t] * wi * c + xoff;
      const T* kr = kernel + (ti[t] * kw + jk) * c;
      for (Index j = 0; j < nj; ++j) {
        const T* xp = xr + j * dw * c;
        const T* kp = kr + j * c;
        for (Index ch = 0; ch < c; ++ch) yo[ch] += xp[ch] * kp[ch];
      }
    }
  }
}

template <class T>
using DepthwiseRow = void (*)(const T*, Index, Index, const T*, Index, const Index*, const Index*, Index, Index,
                              Index, Index, Index, const T*, T*);

template <class T>
DepthwiseRow<T> depthwise_row_kernel() {
#if ATTN_SIMD_DISPATCH
  switch (simd()) {
    case Simd::avx512: return &x86::avx512::depthwise_row<T>;
    case Simd::avx2: return &x86::avx2::depthwise_row<T>;
    case Simd::generic: break;
  }
#endif
  return &depthwise_row_generic<T>;
}

/// Depthwise convolution with multiplier 1 on contiguous data: x [B, H, W, C], kernel [kh, kw, C],
/// y [B, oh, ow, C]. One task per output row.
template <class T>
void depthwise_run(const T* x, Index batch, Index c, const Geometry2d& g, const T* kernel, const T* bias, T* y) {
  const DepthwiseRow<T> row = depthwise_row_kernel<T>();
  const Index rows = batch * g.out_h;
  parallel_for_dynamic(rows, [&](std::int64_t task) {
    const Index b = static_cast<Index>(task) / g.out_h, oy = static_cast<Index>(task) % g.out_h;
    Index ti[64], tiy[64];  // valid kernel rows of this output row (chunks of 64 for huge kernels)
    const T* xb = x + b * g.in_h * g.in_w * c;
    T* yrow = y + (b * g.out_h + oy) * g.out_w * c;
    Index nt = 0;
    bool first = true;
    const auto flush = [&] {
      // later chunks accumulate onto the row written by the first one (bias counted once)
      if (first) {
        row(xb, g.in_w, c, kernel, g.kw, ti, tiy, nt, g.out_w, g.sw, g.dw, g.left, bias, yrow);
        first = false;
      } else {
        ScratchFrame frame;
        T* part = frame.get<T>(g.out_w * c);
        row(xb, g.in_w, c, kernel, g.kw, ti, tiy, nt, g.out_w, g.sw, g.dw, g.left, nullptr, part);
        for (Index q = 0; q < g.out_w * c; ++q) yrow[q] += part[q];
      }
      nt = 0;
    };
    for (Index i = 0; i < g.kh; ++i) {
      const Index iy = oy * g.sh - g.top + i * g.dh;
      if (iy < 0 || iy >= g.in_h) continue;
      ti[nt] = i;
      tiy[nt] = iy;
      if (++nt == 64) flush();
    }
    if (nt > 0 || first) flush();
  });
}

/// A dense-convolution tile kernel (ops/simd/conv.inl) with its tile: `mr` pixels x `nr` channels.
template <class T>
struct ConvTileKernel {
  void (*fn)(Index k0, Index k1, Index cg, const T* const* rows, const T* zero, const T* b, Index ldb, const T* bias,
             bool first, bool last, T* y, Index ldy, Index mr, Index nr) = nullptr;
  Index mr = 0, nr = 0;
};

/// The tile kernel of the SIMD level in use for `cg` input channels per group; none (fn null) at the
/// generic level. AVX-512 has two tiles of 24 and 28 accumulators (of 32 registers): 6 pixels x 4
/// registers of channels, and 14 pixels x 2 registers when the input rows are long (cg >= 128: then
/// the narrower block of weights per task stays in L2 next to the streaming input, measured faster at
/// 14x14x256; 6 x 4 is faster at 56x56x64).
template <class T>
ConvTileKernel<T> conv_tile_kernel([[maybe_unused]] Index cg) {
#if ATTN_SIMD_DISPATCH
  switch (simd()) {
    case Simd::avx512:
      if (cg >= 128) return {&x86::avx512::conv_tile<T, 14, 2>, 14, 2 * x86::avx512::Vec<T>::W};
      return {&x86::avx512::conv_tile<T, 6, 4>, 6, 4 * x86::avx512::Vec<T>::W};
    // 6 x 2 registers of accumulators (12 of 16), 2 of weights and a broadcast
    case Simd::avx2: return {&x86::avx2::conv_tile<T, 6, 2>, 6, 2 * x86::avx2::Vec<T>::W};
    case Simd::generic: break;
  }
#endif
  return {};
}

/// Dense / grouped convolution as an implicit GEMM on the tile kernel `tk`: output pixels in tiles of
/// tk.mr, output channels of a group in blocks of tk.nr. The kernel (Keras layout: row k = (i, j, ci) of
/// the im2col product) is read in place when it is one panel [K, NR] already (one group of exactly NR
/// output channels); otherwise every (group, channel block) is first copied into a contiguous panel [K, NR]
/// (zero columns past a short last block): read in place, rows C_out apart, a block's weights fall on a few
/// cache sets and do not stay in cache. Below 256 output pixels the copy would cost more than it saves:
/// full blocks are read in place and only a short last block is copied. Per tile the kernel gets, for every
/// tap, a pointer per pixel to the input channels it sees (or to a zero row in the padding; set once per
/// run of tiles for all channel blocks of a single group): no im2col buffer. Tasks are (group, channel
/// block, run of tiles), weights-major so that the threads share one panel in cache. From 256 pixels, each
/// tile sums over all K at once while its panel streams from L2 and its pixel rows stay in L1 (K is cut
/// into chunks only past 512 KiB of weights); below 256 pixels, K goes in chunks of 32 KiB of weights, each
/// over every tile of the run (the chunk stays in L1). A partial sum waits in y and continues the same
/// chain of fused multiply-adds; the chunks depend on the shape alone: results are the same for every
/// thread count.
template <class T>
void conv_implicit(const ConvTileKernel<T>& tk, const T* x, Index cin, Index cout, Index groups, const Geometry2d& g,
                   Index batch, const T* kernel, const T* bias, T* y) {
  const Index MR = tk.mr, NR = tk.nr;
  const Index cg = cin / groups, og = cout / groups, taps = g.kh * g.kw, K = taps * cg;
  const Index per_image = g.out_h * g.out_w, M = batch * per_image;
  const Index blocks = (og + NR - 1) / NR;
  // The weights of a (group, channel block) as a contiguous panel [K, NR] (zero columns past a short
  // last block). The kernel is that panel when it has one group of exactly NR channels. Otherwise its
  // blocks are rows C_out apart, which puts a block on a few cache sets: with enough output pixels to
  // repay the copy, every block is copied into a panel; with few, full blocks are read in place and
  // only a short last block is copied.
  const Index ragged = og % NR;
  const bool many = M >= 256;  // output pixels enough to repay the copy
  const bool pack_all = many && !(groups == 1 && cout == NR);
  const Index npanels = pack_all ? groups * blocks : (ragged > 0 ? groups : 0);
  ScratchFrame panel_frame;
  T* panels = npanels > 0 ? panel_frame.get<T>(npanels * K * NR) : nullptr;
  parallel_for(npanels, [&](std::int64_t task) {
    const Index grp = pack_all ? static_cast<Index>(task) / blocks : static_cast<Index>(task);
    const Index nb = pack_all ? static_cast<Index>(task) % blocks : blocks - 1;
    const Index n0 = grp * og + nb * NR, nr = std::min(NR, og - nb * NR);
    T* dst = panels + static_cast<Index>(task) * K * NR;
    for (Index k = 0; k < K; ++k, dst += NR) {
      std::copy_n(kernel + k * cout + n0, nr, dst);
      std::fill(dst + nr, dst + NR, T(0));
    }
  });
  const std::vector<T> zeros(static_cast<std::size_t>(std::max<Index>(cg, 1)), T(0));
  // im2col columns in chunks, the partial sums waiting in y. From 256 pixels, chunks of 512 KiB of
  // weights: the usual kernels in one piece, streaming from L2 while the tile's pixel rows stay in L1
  // (measured faster than chunks that stay in L1 at 56x56x64 and 14x14x256, B = 8). Below, chunks of
  // 32 KiB, which stay in L1 over the few tiles of a run (measured faster at 7x7x512, B = 1).
  const Index kc_bytes = many ? Index(512) << 10 : Index(32) << 10;
  const Index kc = std::max<Index>(1, kc_bytes / static_cast<Index>(NR * sizeof(T)));
  // the geometry in locals (the task below reads them per pixel and tap), and the offset of every tap
  // from a pixel's first tap when no tap falls in the padding
  const Index kh = g.kh, kw = g.kw, dh = g.dh, dw = g.dw, sh = g.sh, sw = g.sw, top = g.top, left = g.left;
  const Index in_h = g.in_h, in_w = g.in_w, out_w = g.out_w;
  const Index span_h = (kh - 1) * dh, span_w = (kw - 1) * dw;
  std::vector<Index> tap_offset(static_cast<std::size_t>(taps));
  for (Index ki = 0; ki < kh; ++ki)
    for (Index kj = 0; kj < kw; ++kj)
      tap_offset[static_cast<std::size_t>(ki * kw + kj)] = (ki * dh * in_w + kj * dw) * cin;
  // a run of 8 tiles per task (the pixel order of the output)
  const Index tiles_per_run = 8, run = tiles_per_run * MR, runs = (M + run - 1) / run;
  // The tap pointers of run q of group grp: per tile, taps x MR pointers.
  const auto fill_rows = [&](Index q, Index grp, const T** rows) {
    const Index r_begin = q * run, r_end = std::min(M, r_begin + run);
    const Index ntiles = (r_end - r_begin + MR - 1) / MR;
    for (Index tile = 0; tile < ntiles; ++tile) {
      const Index r0 = r_begin + tile * MR, mr = std::min(MR, r_end - r0);
      const T** tr = rows + tile * taps * MR;
      for (Index i = 0; i < MR; ++i) {
        const Index r = r0 + std::min(i, mr - 1);
        const Index bi = r / per_image, p = r % per_image, oy = p / out_w, ox = p % out_w;
        const T* xb = x + bi * in_h * in_w * cin + grp * cg;
        const Index iy0 = oy * sh - top, ix0 = ox * sw - left;
        if (iy0 >= 0 && iy0 + span_h < in_h && ix0 >= 0 && ix0 + span_w < in_w) {  // no tap in the padding
          const T* base = xb + (iy0 * in_w + ix0) * cin;
          for (Index t = 0; t < taps; ++t) tr[t * MR + i] = base + tap_offset[static_cast<std::size_t>(t)];
          continue;
        }
        for (Index ki = 0; ki < kh; ++ki) {
          const Index iy = iy0 + ki * dh;
          for (Index kj = 0; kj < kw; ++kj) {
            const Index ix = ix0 + kj * dw;
            const bool inside = iy >= 0 && iy < in_h && ix >= 0 && ix < in_w;
            tr[(ki * kw + kj) * MR + i] = inside ? xb + (iy * in_w + ix) * cin : zeros.data();
          }
        }
      }
    }
  };
  // One group in several channel blocks: the pointers of every run once, for all blocks (up to 4 MiB
  // of them), rather than once per block.
  const Index run_rows = tiles_per_run * taps * MR;
  const bool shared_rows = groups == 1 && blocks > 1 && runs * run_rows * Index(sizeof(T*)) <= (Index(4) << 20);
  const T** all_rows = shared_rows ? panel_frame.get<const T*>(runs * run_rows) : nullptr;
  if (shared_rows) parallel_for_dynamic(runs, [&](std::int64_t q) { fill_rows(q, 0, all_rows + q * run_rows); });
  parallel_for_dynamic(groups * blocks * runs, [&](std::int64_t task) {
    const Index gb = static_cast<Index>(task) / runs, q = static_cast<Index>(task) % runs;
    const Index grp = gb / blocks, nb = gb % blocks;
    const Index n0 = grp * og + nb * NR, nr = std::min(NR, og - nb * NR);
    const T* panel = pack_all ? panels + gb * K * NR : nr < NR ? panels + grp * K * NR : nullptr;
    const T* b = panel != nullptr ? panel : kernel + n0;
    const Index ldb = panel != nullptr ? NR : cout;
    const T* bb = bias != nullptr ? bias + n0 : nullptr;
    ScratchFrame frame;
    const T** rows = all_rows != nullptr ? all_rows + q * run_rows : frame.get<const T*>(run_rows);
    if (all_rows == nullptr) fill_rows(q, grp, rows);
    const Index r_begin = q * run, r_end = std::min(M, r_begin + run);
    const Index ntiles = (r_end - r_begin + MR - 1) / MR;
    for (Index k0 = 0; k0 < std::max<Index>(K, 1); k0 += kc) {
      const Index k1 = std::min(K, k0 + kc);
      for (Index tile = 0; tile < ntiles; ++tile) {
        const Index r0 = r_begin + tile * MR, mr = std::min(MR, r_end - r0);
        tk.fn(k0, k1, cg, rows + tile * taps * MR, zeros.data(), b, ldb, bb, k0 == 0, k1 == K, y + r0 * cout + n0,
              cout, mr, nr);
      }
    }
  });
}

/// im2col rows [r0, r1) of group `grp` into a (row-major, K = kh·kw·cg columns).
template <class T>
void im2col_rows(const T* x, Index cin, Index cg, Index grp, const Geometry2d& g, Index r0, Index r1, T* a) {
  const Index K = g.kh * g.kw * cg;
  const Index per_image = g.out_h * g.out_w;
  for (Index r = r0; r < r1; ++r) {
    const Index b = r / per_image, p = r % per_image;
    const Index oy = p / g.out_w, ox = p % g.out_w;
    T* dst = a + (r - r0) * K;
    for (Index i = 0; i < g.kh; ++i) {
      const Index iy = oy * g.sh - g.top + i * g.dh;
      if (iy < 0 || iy >= g.in_h) {
        std::fill_n(dst, g.kw * cg, T(0));
        dst += g.kw * cg;
        continue;
      }
      const T* xrow = x + ((b * g.in_h + iy) * g.in_w) * cin + grp * cg;
      for (Index j = 0; j < g.kw; ++j, dst += cg) {
        const Index ix = ox * g.sw - g.left + j * g.dw;
        if (ix < 0 || ix >= g.in_w) std::fill_n(dst, cg, T(0));
        else std::copy_n(xrow + ix * cin, cg, dst);
      }
    }
  }
}

inline std::string_view conv_layer(const Conv2dOptions& o, std::string_view fallback) {
  return o.layer.empty() ? fallback : o.layer;
}

}  // namespace detail

/// Geometry of conv2d on `x_shape` `[B, H, W, C_in]` with `kernel_shape` `[kh, kw, C_in/groups, C_out]`:
/// checks everything conv2d checks and returns the resolved padding and output size.
inline Geometry2d conv2d_geometry(const Shape& x_shape, const Shape& kernel_shape, const Conv2dOptions& o) {
  const std::string_view layer = detail::conv_layer(o, "conv2d");
  check_image(layer, "input", x_shape);
  if (kernel_shape.size() != 4)
    throw ShapeError(fmt::format("{}: kernel must have rank 4 [kh, kw, in_channels/groups, out_channels], got "
                                 "shape {}",
                                 layer, shape_str(kernel_shape)));
  const Index cin = x_shape[3], cout = kernel_shape[3];
  if (o.groups < 1)
    throw ConfigError(fmt::format("{}: groups must be positive, got {}", layer, o.groups), std::string(layer),
                      "groups");
  if (cin % o.groups != 0 || cout % o.groups != 0)
    throw ConfigError(fmt::format("{}: groups ({}) must divide the input channels ({}) and the output channels "
                                  "({})",
                                  layer, o.groups, cin, cout),
                      std::string(layer), "groups");
  if (kernel_shape[2] != cin / o.groups)
    throw ShapeError(fmt::format("{}: kernel must have shape [{}, {}, {}, {}] (in_channels / groups = {} / {}), "
                                 "got {}",
                                 layer, kernel_shape[0], kernel_shape[1], cin / o.groups, cout, cin, o.groups,
                                 shape_str(kernel_shape)));
  const Geometry2d g = window_geometry(layer, x_shape[1], x_shape[2], kernel_shape[0], kernel_shape[1], o.strides,
                                       o.dilation_rate, o.padding);
  check_output(layer, x_shape[0], g, cout);
  return g;
}

/// Depthwise convolution on raw row-major data (shapes as in the file comment); y must hold
/// `[B, out_h, out_w, C·mult]` and must not alias x. Returns the geometry.
template <class T>
Geometry2d depthwise_conv2d(const T* x, const Shape& x_shape, const T* kernel, const Shape& kernel_shape,
                            const T* bias, Index bias_size, T* y, const Conv2dOptions& o) {
  const std::string_view layer = detail::conv_layer(o, "depthwise_conv2d");
  check_image(layer, "input", x_shape);
  if (kernel_shape.size() != 4 || kernel_shape[2] != x_shape[3])
    throw ShapeError(fmt::format("{}: kernel must have shape [kh, kw, {}, depth_multiplier] (input channels {}), "
                                 "got {}",
                                 layer, x_shape[3], x_shape[3], shape_str(kernel_shape)));
  const Index B = x_shape[0], C = x_shape[3], mult = kernel_shape[3], co = checked_mul(C, mult).value_or(-1);
  const Geometry2d g = window_geometry(layer, x_shape[1], x_shape[2], kernel_shape[0], kernel_shape[1], o.strides,
                                       o.dilation_rate, o.padding);
  check_output(layer, B, g, co);
  if (bias != nullptr && bias_size != co)
    throw ShapeError(fmt::format("{}: bias must have shape [{}], got [{}]", layer, co, bias_size));
  if (B == 0 || co == 0) return g;
  if (mult == 1) {
    detail::depthwise_run(x, B, C, g, kernel, bias, y);
    return g;
  }
  // repeat each input channel `mult` times: channel c·mult + m of xr is channel c of x
  std::vector<T> xr(static_cast<std::size_t>(B * g.in_h * g.in_w * co));
  const Index pixels = B * g.in_h * g.in_w;
  parallel_for((pixels + 1023) / 1024, [&](std::int64_t t) {
    const Index p0 = static_cast<Index>(t) * 1024, p1 = std::min(pixels, p0 + 1024);
    for (Index p = p0; p < p1; ++p)
      for (Index c = 0; c < C; ++c) std::fill_n(xr.data() + p * co + c * mult, mult, x[p * C + c]);
  });
  detail::depthwise_run(xr.data(), B, co, g, kernel, bias, y);
  return g;
}

/// Convolution on raw row-major data (shapes as in the file comment); y must hold
/// `[B, out_h, out_w, C_out]` and must not alias x. Returns the geometry.
template <class T>
Geometry2d conv2d(const T* x, const Shape& x_shape, const T* kernel, const Shape& kernel_shape, const T* bias,
                  Index bias_size, T* y, const Conv2dOptions& o) {
  const std::string_view layer = detail::conv_layer(o, "conv2d");
  const Geometry2d g = conv2d_geometry(x_shape, kernel_shape, o);
  const Index B = x_shape[0], cin = x_shape[3], cout = kernel_shape[3];
  if (bias != nullptr && bias_size != cout)
    throw ShapeError(fmt::format("{}: bias must have shape [{}], got [{}]", layer, cout, bias_size));
  const Index groups = o.groups, cg = cin / groups, og = cout / groups;
  const Index M = B * g.out_h * g.out_w;
  if (M == 0 || cout == 0) return g;
  if (groups > 1 && groups == cin) {  // the depthwise layout: [kh, kw, 1, C·mult] == [kh, kw, C, mult]
    Conv2dOptions od = o;
    od.layer = layer;
    od.groups = 1;
    return depthwise_conv2d(x, x_shape, kernel, {kernel_shape[0], kernel_shape[1], cin, og}, bias, bias_size, y, od);
  }
  if (const detail::ConvTileKernel<T> tk = detail::conv_tile_kernel<T>(cg); tk.fn != nullptr) {
    detail::conv_implicit(tk, x, cin, cout, groups, g, B, kernel, bias, y);
    return g;
  }
  const Index K = g.kh * g.kw * cg;
  const Kernels<T>& kern = kernels<T>();
  // Bias first, then C += A·B: every element is bias + the kernel's k-ordered sum, whatever the tiling.
  const auto init_rows = [&](Index r0, Index r1, Index grp) {
    for (Index r = r0; r < r1; ++r) {
      T* yr = y + r * cout + grp * og;
      if (bias != nullptr) std::copy_n(bias + grp * og, og, yr);
      else std::fill_n(yr, og, T(0));
    }
  };
  const bool in_place = groups == 1 && g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.top == 0 &&
                        g.bottom == 0 && g.left == 0 && g.right == 0;
  // Tile height from the shape only: an im2col tile of about 256 KiB, 48..384 rows (a multiple of the
  // register tiles of every level).
  const Index budget = (Index(256) << 10) / static_cast<Index>(sizeof(T));
  const Index tile = std::clamp<Index>(budget / std::max<Index>(K, 1) / 48 * 48, 48, 384);
  const Index tiles = (M + tile - 1) / tile;
  parallel_for_dynamic(tiles * groups, [&](std::int64_t task) {
    const Index t = static_cast<Index>(task) / groups, grp = static_cast<Index>(task) % groups;
    const Index r0 = t * tile, r1 = std::min(M, r0 + tile);
    init_rows(r0, r1, grp);
    if (K == 0) return;
    T* c = y + r0 * cout + grp * og;
    if (in_place) {
      kern.gemm(r1 - r0, og, K, x + r0 * cin, cin, kernel, cout, false, c, cout, true, false);
      return;
    }
    ScratchFrame frame;
    T* a = frame.get<T>((r1 - r0) * K);
    detail::im2col_rows(x, cin, cg, grp, g, r0, r1, a);
    kern.gemm(r1 - r0, og, K, a, K, kernel + grp * og, cout, false, c, cout, true, false);
  });
  return g;
}

/// conv2d on tensors: x `[B, H, W, C_in]`, kernel `[kh, kw, C_in/groups, C_out]`, bias `[C_out]` or null.
template <class T, class X, class K>
  requires TensorOf<X, T, 4> && TensorOf<K, T, 4>
Tensor<T, 4> conv2d(const X& x, const K& kernel, const T* bias, Index bias_size, const Conv2dOptions& o = {}) {
  const Shape xs = shape_of(x), ks = shape_of(kernel);
  const Geometry2d g = conv2d_geometry(xs, ks, o);
  Tensor<T, 4> y(xs[0], g.out_h, g.out_w, ks[3]);
  conv2d<T>(x.data(), xs, kernel.data(), ks, bias, bias_size, y.data(), o);
  return y;
}

/// depthwise_conv2d on tensors: x `[B, H, W, C]`, kernel `[kh, kw, C, mult]`, bias `[C·mult]` or null.
template <class T, class X, class K>
  requires TensorOf<X, T, 4> && TensorOf<K, T, 4>
Tensor<T, 4> depthwise_conv2d(const X& x, const K& kernel, const T* bias, Index bias_size,
                              const Conv2dOptions& o = {}) {
  const Shape xs = shape_of(x), ks = shape_of(kernel);
  const std::string_view layer = detail::conv_layer(o, "depthwise_conv2d");
  check_image(layer, "input", xs);
  if (ks.size() != 4)
    throw ShapeError(fmt::format("{}: kernel must have rank 4, got {}", layer, shape_str(ks)));
  const Geometry2d g = window_geometry(layer, xs[1], xs[2], ks[0], ks[1], o.strides, o.dilation_rate, o.padding);
  const Index co = checked_mul(xs[3], ks[3]).value_or(-1);
  check_output(layer, xs[0], g, co);
  Tensor<T, 4> y(xs[0], g.out_h, g.out_w, co);
  depthwise_conv2d<T>(x.data(), xs, kernel.data(), ks, bias, bias_size, y.data(), o);
  return y;
}

}  // namespace attn::ops

/// Declares (EXTERN = extern) or defines (EXTERN empty) the raw-pointer conv2d and depthwise_conv2d
/// for scalar T (at namespace scope). Under ATTN_PRECOMPILED_LAYERS they come compiled from attn::layers
/// (src/precompiled_ops.cpp): every translation unit that runs a convolution would otherwise compile the
/// tile kernels of every SIMD level again.
#define ATTN_CONV_INSTANCES(EXTERN, T)                                                                        \
  EXTERN template attn::ops::Geometry2d attn::ops::conv2d<T>(const T*, const attn::Shape&, const T*,          \
                                                             const attn::Shape&, const T*, attn::Index, T*,   \
                                                             const attn::ops::Conv2dOptions&);                \
  EXTERN template attn::ops::Geometry2d attn::ops::depthwise_conv2d<T>(const T*, const attn::Shape&, const T*, \
                                                                       const attn::Shape&, const T*,           \
                                                                       attn::Index, T*,                        \
                                                                       const attn::ops::Conv2dOptions&);
#ifdef ATTN_PRECOMPILED_LAYERS
ATTN_CONV_INSTANCES(extern, float)
ATTN_CONV_INSTANCES(extern, double)
#endif
