/// \file
/// Window helpers of windowed attention (Swin, DaViT, ...) on channels-last images `[B, H, W, C]`, float
/// and double, as KCAM's davit.py / swin_transformer_v2.py (spec kcam_attention_layers.md §2.6, §2.7, §5.14):
///
/// - window_layout(H, W, ws_h, ws_w): `wh = min(ws_h, H)`, `ww = min(ws_w, W)`, `ph = ⌈H/wh⌉`, `pw = ⌈W/ww⌉`,
///   bottom/right pads `ph·wh − H`, `pw·ww − W` (`pad_to_divisible_by_window_size`).
/// - pad_bottom_right / crop_bottom_right: zero-pad rows at the bottom and columns at the right, and the
///   inverse crop (`reverse_padded_for_window_size`).
/// - window_partition: `[B, ph·wh, pw·ww, C]` → `[B·ph·pw, wh, ww, C]`, window index `(n·ph + i)·pw + j`,
///   window (i, j) holds rows `i·wh …` and columns `j·ww …`; window_reverse is its exact inverse.
/// - grid_window_partition / grid_window_reverse (`is_grid=True`): window (p, q) of sample n gathers the
///   pixels `(α·ph + p, β·pw + q)` as its token (α, β); window index `(n·ph + p)·pw + q`.
/// - cyclic_shift(x, sh, sw): `x'[y, x] = x[(y + sh) mod H, (x + sw) mod W]` — a roll by (−sh, −sw)
///   (`torch.roll(x, (-sh, -sw), (1, 2))`); shifting back is cyclic_shift(x, −sh, −sw).
/// - shifted_window_mask(Hp, Wp, wh, ww, sh, sw): Swin's `[nW, N, N]` additive mask (N = wh·ww,
///   nW = (Hp/wh)·(Wp/ww)): the label map splits rows at `[0, Hp − wh, Hp − sh, Hp]` and columns at
///   `[0, Wp − ww, Wp − sw, Wp]`, region (i, j) gets label 3i + j; `M[w, p, q] = −100` where the labels of
///   tokens p and q of window w differ, else 0 (the reference's −100, not −∞). Appendix B.4 is its test.
///
/// Copies only; no arithmetic. Errors: ConfigError for window sizes below 1 or shifts outside
/// [0, window) (naming `layer`); ShapeError for inputs whose extents are not multiples of the window or a
/// window batch not divisible by the window count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/limits.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/tensor.hpp"

namespace attn::ops {

/// The window grid of an `[H, W]` image for a requested window size.
struct WindowLayout {
  Index wh = 0, ww = 0;        ///< window extents (clipped to the image)
  Index ph = 0, pw = 0;        ///< windows per column / row
  Index pad_h = 0, pad_w = 0;  ///< zero rows at the bottom, columns at the right
};

inline WindowLayout window_layout(Index h, Index w, Index ws_h, Index ws_w, std::string_view layer = "window") {
  if (ws_h < 1 || ws_w < 1)
    throw ConfigError(fmt::format("{}: window_size must be positive, got [{}, {}]", layer, ws_h, ws_w),
                      std::string(layer), "window_size");
  if (h < 1 || w < 1)
    throw ShapeError(fmt::format("{}: windows need height and width >= 1, got {}x{}", layer, h, w));
  WindowLayout l;
  l.wh = std::min(ws_h, h);
  l.ww = std::min(ws_w, w);
  l.ph = (h + l.wh - 1) / l.wh;
  l.pw = (w + l.ww - 1) / l.ww;
  l.pad_h = l.ph * l.wh - h;
  l.pad_w = l.pw * l.ww - w;
  return l;
}

namespace detail {
template <class T>
Shape dims4(const ConstTensorView<T, 4>& x) {
  return {x.dimension(0), x.dimension(1), x.dimension(2), x.dimension(3)};
}
}  // namespace detail

/// Zero-pads `pad_h` rows at the bottom and `pad_w` columns at the right.
template <class T>
Tensor<T, 4> pad_bottom_right(const ConstTensorView<T, 4>& x, Index pad_h, Index pad_w) {
  const Index B = x.dimension(0), H = x.dimension(1), W = x.dimension(2), C = x.dimension(3);
  if (pad_h < 0 || pad_w < 0)
    throw ShapeError(fmt::format("pad_bottom_right: the padding must be non-negative, got {}x{}", pad_h, pad_w));
  auto y = checked_tensor<T>("pad_bottom_right", "output", B, checked_add(H, pad_h).value_or(-1),
                             checked_add(W, pad_w).value_or(-1), C);
  y.setZero();
  for (Index b = 0; b < B; ++b)
    for (Index r = 0; r < H; ++r) std::copy_n(x.data() + ((b * H + r) * W) * C, W * C, y.data() + ((b * (H + pad_h) + r) * (W + pad_w)) * C);
  return y;
}

/// Keeps the top-left `[h, w]` of every image (the inverse of pad_bottom_right).
template <class T>
Tensor<T, 4> crop_bottom_right(const ConstTensorView<T, 4>& x, Index h, Index w) {
  const Index B = x.dimension(0), H = x.dimension(1), W = x.dimension(2), C = x.dimension(3);
  if (h > H || w > W || h < 0 || w < 0)
    throw ShapeError(fmt::format("crop_bottom_right: cannot crop {}x{} out of {}", h, w, shape_str(detail::dims4(x))));
  Tensor<T, 4> y(B, h, w, C);
  for (Index b = 0; b < B; ++b)
    for (Index r = 0; r < h; ++r) std::copy_n(x.data() + ((b * H + r) * W) * C, w * C, y.data() + ((b * h + r) * w) * C);
  return y;
}

namespace detail {
/// window (n, i, j) token (a, b) <-> image pixel: block windows (grid = false) take pixel
/// (i·wh + a, j·ww + b), grid windows (grid = true) take (a·ph + i, b·pw + j).
template <class T>
void window_copy(const T* img, T* win, Index B, Index ph, Index pw, Index wh, Index ww, Index C, bool grid,
                 bool to_windows) {
  const Index H = ph * wh, W = pw * ww;
  parallel_for(B * ph * pw, [&](std::int64_t widx) {
    const Index n = static_cast<Index>(widx) / (ph * pw), i = static_cast<Index>(widx) / pw % ph,
                j = static_cast<Index>(widx) % pw;
    for (Index a = 0; a < wh; ++a)
      for (Index b = 0; b < ww; ++b) {
        const Index y = grid ? a * ph + i : i * wh + a, x = grid ? b * pw + j : j * ww + b;
        T* w = win + ((static_cast<Index>(widx) * wh + a) * ww + b) * C;
        T* p = const_cast<T*>(img) + ((n * H + y) * W + x) * C;
        if (to_windows) std::copy_n(p, C, w);
        else std::copy_n(w, C, p);
      }
  });
}

template <class T>
void check_windows_fit(std::string_view layer, const Shape& s, Index wh, Index ww) {
  if (wh < 1 || ww < 1)
    throw ConfigError(fmt::format("{}: window size must be positive, got [{}, {}]", layer, wh, ww), std::string(layer),
                      "window_size");
  if (s[1] % wh != 0 || s[2] % ww != 0)
    throw ShapeError(fmt::format("{}: input height and width must be multiples of the window {}x{} (pad first), got "
                                 "input shape {}",
                                 layer, wh, ww, shape_str(s)));
}
}  // namespace detail

/// `[B, ph·wh, pw·ww, C]` → `[B·ph·pw, wh, ww, C]` (block windows, or grid windows when `grid`).
template <class T>
Tensor<T, 4> window_partition(const ConstTensorView<T, 4>& x, Index wh, Index ww, bool grid = false) {
  const Shape s = detail::dims4(x);
  detail::check_windows_fit<T>(grid ? "grid_window_partition" : "window_partition", s, wh, ww);
  const Index ph = s[1] / wh, pw = s[2] / ww;
  Tensor<T, 4> y(s[0] * ph * pw, wh, ww, s[3]);
  detail::window_copy(x.data(), y.data(), s[0], ph, pw, wh, ww, s[3], grid, true);
  return y;
}

/// `[B·ph·pw, wh, ww, C]` → `[B, ph·wh, pw·ww, C]`: the inverse of window_partition (same `grid`).
template <class T>
Tensor<T, 4> window_reverse(const ConstTensorView<T, 4>& w, Index ph, Index pw, bool grid = false) {
  const Index nw = w.dimension(0), wh = w.dimension(1), ww = w.dimension(2), C = w.dimension(3);
  const std::string_view name = grid ? "grid_window_reverse" : "window_reverse";
  const std::optional<Index> grids = checked_mul(ph, pw);
  if (ph < 1 || pw < 1 || !grids || nw % *grids != 0)
    throw ShapeError(fmt::format("{}: {} windows are not a whole number of {}x{} window grids", name, nw, ph, pw));
  const Index B = nw / *grids;
  auto y = checked_tensor<T>(name, "output", B, checked_mul(ph, wh).value_or(-1), checked_mul(pw, ww).value_or(-1), C);
  detail::window_copy(static_cast<const T*>(y.data()), const_cast<T*>(w.data()), B, ph, pw, wh, ww, C, grid, false);
  return y;
}

/// x'[y, x] = x[(y + sh) mod H, (x + sw) mod W] (negative shifts roll the other way).
template <class T>
Tensor<T, 4> cyclic_shift(const ConstTensorView<T, 4>& x, Index sh, Index sw) {
  const Index B = x.dimension(0), H = x.dimension(1), W = x.dimension(2), C = x.dimension(3);
  Tensor<T, 4> y(B, H, W, C);
  if (H == 0 || W == 0) return y;
  const auto mod = [](Index a, Index n) { return ((a % n) + n) % n; };
  for (Index b = 0; b < B; ++b)
    for (Index r = 0; r < H; ++r) {
      const Index sr = mod(r + sh, H);
      for (Index c = 0; c < W; ++c)
        std::copy_n(x.data() + ((b * H + sr) * W + mod(c + sw, W)) * C, C, y.data() + ((b * H + r) * W + c) * C);
    }
  return y;
}

/// Swin's shifted-window mask `[nW, N, N]` (0 or −100) for a padded `[Hp, Wp]` map (file comment).
template <class T>
Tensor<T, 3> shifted_window_mask(Index hp, Index wp, Index wh, Index ww, Index sh, Index sw,
                                 std::string_view layer = "shifted_window_mask") {
  if (wh < 1 || ww < 1 || hp % wh != 0 || wp % ww != 0)
    throw ShapeError(fmt::format("{}: the map {}x{} must be a positive multiple of the window {}x{}", layer, hp, wp, wh,
                                 ww));
  if (sh < 0 || sh >= wh || sw < 0 || sw >= ww)
    throw ConfigError(fmt::format("{}: the shift ({}, {}) must lie in [0, window) = [0, {}) x [0, {})", layer, sh, sw,
                                  wh, ww),
                      std::string(layer), "shift_size");
  const auto region = [](Index v, Index n, Index w, Index s) { return v < n - w ? 0 : (v < n - s ? 1 : 2); };
  const Index ph = hp / wh, pw = wp / ww;
  const std::optional<Index> n = checked_mul(wh, ww), windows = checked_mul(ph, pw);
  const Index N = n.value_or(-1);
  check_allocation(fmt::format("{}: parameter 'window_size' ([{}, {}]): the shifted-window mask [{}, {}, {}] of a "
                               "{}x{} map",
                               layer, wh, ww, windows.value_or(-1), N, N, hp, wp),
                   n && windows ? checked_shape_size({*windows, N, N}) : std::nullopt, sizeof(T), std::string(layer),
                   "window_size");
  Tensor<T, 3> m(*windows, N, N);
  std::vector<Index> label(static_cast<std::size_t>(N));
  for (Index i = 0; i < ph; ++i)
    for (Index j = 0; j < pw; ++j) {
      for (Index a = 0; a < wh; ++a)
        for (Index b = 0; b < ww; ++b)
          label[static_cast<std::size_t>(a * ww + b)] = 3 * region(i * wh + a, hp, wh, sh) + region(j * ww + b, wp, ww, sw);
      for (Index p = 0; p < N; ++p)
        for (Index q = 0; q < N; ++q)
          m(i * pw + j, p, q) = label[static_cast<std::size_t>(p)] == label[static_cast<std::size_t>(q)] ? T(0) : T(-100);
    }
  return m;
}

}  // namespace attn::ops
