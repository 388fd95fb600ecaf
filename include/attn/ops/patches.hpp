/// \file
/// Patch extraction (unfold) and its overlap-add inverse (fold) on channels-last images, float and double,
/// as KCAM's `CompatibleExtractPatches` and `fold_by_conv2d_transpose` (spec kcam_attention_layers.md
/// §2.3, §2.4):
///
/// - extract_patches(x `[B, H, W, C]`, k, s, rates (r_h, r_w), same): with `same`, zero-pad ⌊k/2⌋ on all
///   four sides (symmetric, whatever the stride and dilation: the reference's rule, not TF's "same");
///   then VALID geometry: output (i, j) covers padded rows `i·s + a·r_h` and columns `j·s + b·r_w`,
///   a, b ∈ [0, k). `Ho = ⌊(Hp − r_h(k − 1) − 1)/s⌋ + 1`. Output `[B, Ho, Wo, k·k·C]`, inner order
///   (a, b, c): element `(a·k + b)·C + c` (`compressed=False` is the same memory seen as
///   `[B, Ho, Wo, k, k, C]`). Equal to PyTorch `F.unfold` on the padded NCHW input, permuted.
/// - fold_patches(p `[B, hh, ww, k·k·C]`, k, s, r, pad, out_h, out_w): start from zeros of
///   `[(hh − 1)·s + r(k − 1) + 1 + pad]` per axis, add patch value (i, j, a, b, c) at
///   `(i·s + a·r, j·s + b·r, c)`, keep rows/columns `[pad, pad + out)`; out_h / out_w < 0 (the reference's
///   `output_shape=None`) keep `[pad, size − pad)`. KCAM's `pad` is ⌊k/2⌋ whenever its `padding` argument
///   is truthy (any non-empty string, "valid" included) and 0 otherwise. Equal to PyTorch
///   `F.fold(output_size, k, dilation=r, padding=pad, stride=s)`. Implemented as a direct scatter-add
///   (per output row, so no two threads write the same value): unlike the reference's Conv2DTranspose,
///   it has no `pad < s` restriction.
///
/// Errors: ConfigError for k, s or a rate below 1 (naming `layer`); ShapeError for a non-rank-4 input, a
/// window larger than the padded image, patches whose last axis is not k·k·C, or a crop beyond the
/// overlap-add canvas. Bit-identical for any thread count.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/tensor.hpp"
#include "attn/ops/padding.hpp"

namespace attn::ops {

/// extract_patches (see the file comment).
template <class T>
Tensor<T, 4> extract_patches(const ConstTensorView<T, 4>& x, Index k, Index s, std::array<Index, 2> rates = {1, 1},
                             bool same = true, std::string_view layer = "extract_patches") {
  const Shape xs{x.dimension(0), x.dimension(1), x.dimension(2), x.dimension(3)};
  const Padding2d pad = same ? Padding2d::explicit_pads(k / 2, k / 2, k / 2, k / 2) : Padding2d::valid();
  const Geometry2d g = window_geometry(layer, xs[1], xs[2], k, k, {s, s}, rates, pad);
  const Index B = xs[0], H = xs[1], W = xs[2], C = xs[3];
  const std::optional<Index> kk = checked_mul(k, k);
  const Index kkc = kk ? checked_mul(*kk, C).value_or(-1) : -1;
  check_output(layer, B, g, kkc);
  Tensor<T, 4> y(B, g.out_h, g.out_w, kkc);
  parallel_for(B * g.out_h, [&](std::int64_t task) {
    const Index b = static_cast<Index>(task) / g.out_h, i = static_cast<Index>(task) % g.out_h;
    for (Index j = 0; j < g.out_w; ++j) {
      T* dst = y.data() + ((b * g.out_h + i) * g.out_w + j) * kkc;
      for (Index a = 0; a < k; ++a) {
        const Index iy = i * s + a * g.dh - g.top;
        for (Index bb = 0; bb < k; ++bb, dst += C) {
          const Index ix = j * s + bb * g.dw - g.left;
          if (iy < 0 || iy >= H || ix < 0 || ix >= W) std::fill_n(dst, C, T(0));
          else std::copy_n(x.data() + ((b * H + iy) * W + ix) * C, C, dst);
        }
      }
    }
  });
  return y;
}

/// fold_patches: overlap-add of `[B, hh, ww, k·k·C]` patches (see the file comment). out_h, out_w < 0:
/// crop `pad` on both sides.
template <class T>
Tensor<T, 4> fold_patches(const ConstTensorView<T, 4>& p, Index k, Index s, Index r, Index pad, Index out_h = -1,
                          Index out_w = -1, std::string_view layer = "fold_patches") {
  if (k < 1 || s < 1 || r < 1)
    throw ConfigError(fmt::format("{}: kernel_size, strides and dilation_rate must be positive, got {}, {}, {}", layer,
                                  k, s, r),
                      std::string(layer), k < 1 ? "kernel_size" : (s < 1 ? "strides" : "dilation_rate"));
  if (pad < 0)
    throw ConfigError(fmt::format("{}: padding must be non-negative, got {}", layer, pad), std::string(layer), "padding");
  const Index B = p.dimension(0), hh = p.dimension(1), ww = p.dimension(2), kkc = p.dimension(3);
  const std::optional<Index> kk = checked_mul(k, k);
  if (!kk || kkc % *kk != 0)
    throw ShapeError(fmt::format("{}: patches must have k·k·C = {}·{}·C values per position, got {}", layer, k, k,
                                 kkc));
  const Index C = kkc / *kk;
  // the overlap-add canvas, (n − 1)·s + r·(k − 1) + 1 + pad, in range of Index
  const auto canvas = [&](Index n) -> Index {
    if (n == 0) return 0;
    const std::optional<Index> a = checked_mul(n - 1, s), b = checked_mul(r, k - 1);
    const std::optional<Index> ab = a && b ? checked_add(*a, *b) : std::nullopt;
    const std::optional<Index> abp = ab ? checked_add(*ab, pad) : std::nullopt;
    const std::optional<Index> c = abp ? checked_add(*abp, 1) : std::nullopt;
    if (!c)
      throw ConfigError(fmt::format("{}: the overlap-add canvas of {} patches (kernel_size {}, strides {}, "
                                    "dilation_rate {}, padding {}) overflows a 64-bit index",
                                    layer, n, k, s, r, pad),
                        std::string(layer), "kernel_size");
    return *c;
  };
  const Index ch = canvas(hh), cw = canvas(ww);
  if (out_h < 0) out_h = std::max<Index>(0, ch - pad - pad);  // pad <= ch when ch > 0
  if (out_w < 0) out_w = std::max<Index>(0, cw - pad - pad);
  if (pad > ch || out_h > ch - pad || pad > cw || out_w > cw - pad)
    throw ShapeError(fmt::format("{}: output {}x{} from offset {} does not fit the overlap-add canvas {}x{}", layer,
                                 out_h, out_w, pad, ch, cw));
  auto y = checked_tensor<T>(layer, "output", B, out_h, out_w, C);
  y.setZero();
  // output row oy (canvas row oy + pad) receives patch rows i with i·s + a·r = oy + pad
  parallel_for(B * out_h, [&](std::int64_t task) {
    const Index b = static_cast<Index>(task) / out_h, oy = static_cast<Index>(task) % out_h;
    const Index cy = oy + pad;
    T* yrow = y.data() + (b * out_h + oy) * out_w * C;
    for (Index a = 0; a < k; ++a) {
      const Index t = cy - a * r;
      if (t < 0 || t % s != 0 || t / s >= hh) continue;
      const Index i = t / s;
      for (Index j = 0; j < ww; ++j)
        for (Index bb = 0; bb < k; ++bb) {
          const Index ox = j * s + bb * r - pad;
          if (ox < 0 || ox >= out_w) continue;
          const T* src = p.data() + ((b * hh + i) * ww + j) * kkc + (a * k + bb) * C;
          T* dst = yrow + ox * C;
          for (Index c = 0; c < C; ++c) dst[c] += src[c];
        }
    }
  });
  return y;
}

}  // namespace attn::ops
