/// \file
/// 2-D average and max pooling and global pooling on channels-last images, in float and double, with
/// Keras's padding semantics (spec kcam_attention_layers.md §1.2):
///
///   avg_pool2d / max_pool2d: x `[B, H, W, C]` → y `[B, H_out, W_out, C]`, window `pool_size` (kh, kw),
///   `strides` (Keras's default for strides is the pool size; here both default to 2), output geometry as
///   ops/padding.hpp (no dilation: Keras pooling has none).
///
/// | padding | padded cells | average divides by | max over |
/// |---|---|---|---|
/// | `valid` | none | kh·kw | the window |
/// | `same` (Keras AvgPool2D / MaxPool2D "same") | excluded | the count of valid cells in the window | valid cells |
/// | `explicit_pads`, `torch_same` (= Keras ZeroPadding2D, then valid pooling) | zeros, counted | kh·kw | the window, zeros included |
///
/// `Pool2dOptions::count_pad` overrides the rule of the last two rows (true: padded cells are zeros and
/// count; false: they are excluded, like PyTorch's `count_include_pad=False` with -inf padding for max).
///
///   global_avg_pool2d / global_max_pool2d: x `[B, H, W, C]` → `[B, C]` (mean / max over H·W, which must be
///   at least 1).
///
/// Rows of the output are tasks on attn's pool; results are bit-identical for any thread count.
/// Errors: ConfigError for pool sizes or strides below 1 and negative explicit pads; ShapeError for a
/// non-rank-4 input, a window larger than the padded input, or an empty image in global pooling.
/// Messages start with `Pool2dOptions::layer` (default "avg_pool2d", "max_pool2d").
#pragma once

#include <algorithm>
#include <array>
#include <limits>
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/tensor.hpp"
#include "attn/ops/padding.hpp"

namespace attn::ops {

/// Options of avg_pool2d / max_pool2d.
struct Pool2dOptions {
  std::array<Index, 2> pool_size{2, 2};  ///< (height, width)
  std::array<Index, 2> strides{2, 2};    ///< (height, width)
  Padding2d padding = Padding2d::valid();
  std::optional<bool> count_pad{};  ///< unset: the Keras rule of the file comment
  std::string_view layer{};         ///< named in error messages
};

namespace detail {

enum class PoolKind { avg, max };

template <class T>
void pool2d_run(PoolKind kind, const T* x, const Shape& xs, T* y, const Pool2dOptions& o, const Geometry2d& g) {
  const Index B = xs[0], C = xs[3];
  const bool count_pad = o.count_pad.value_or(o.padding.mode != Padding2d::Mode::same);
  const Index rows = B * g.out_h;
  if (rows == 0 || g.out_w == 0 || C == 0) return;
  parallel_for_dynamic(rows, [&](std::int64_t task) {
    const Index b = static_cast<Index>(task) / g.out_h, oy = static_cast<Index>(task) % g.out_h;
    const T* xb = x + b * g.in_h * g.in_w * C;
    const Index iy0 = oy * g.sh - g.top;
    const Index i0 = std::max<Index>(0, -iy0), i1 = std::min<Index>(g.kh, g.in_h - iy0);
    for (Index ox = 0; ox < g.out_w; ++ox) {
      const Index ix0 = ox * g.sw - g.left;
      const Index j0 = std::max<Index>(0, -ix0), j1 = std::min<Index>(g.kw, g.in_w - ix0);
      T* yo = y + ((b * g.out_h + oy) * g.out_w + ox) * C;
      const Index valid = std::max<Index>(0, i1 - i0) * std::max<Index>(0, j1 - j0);
      const bool padded_in_window = valid < g.kh * g.kw;
      if (kind == PoolKind::avg) {
        std::fill_n(yo, C, T(0));
        for (Index i = i0; i < i1; ++i)
          for (Index j = j0; j < j1; ++j) {
            const T* xp = xb + ((iy0 + i) * g.in_w + ix0 + j) * C;
            for (Index c = 0; c < C; ++c) yo[c] += xp[c];
          }
        const T div = static_cast<T>(count_pad ? g.kh * g.kw : valid);
        for (Index c = 0; c < C; ++c) yo[c] = div > 0 ? yo[c] / div : T(0);
      } else {
        // padded cells are zeros (count_pad) or excluded; a window of padding only (possible with large
        // explicit pads) is 0 with zeros, else -inf as in TensorFlow
        const T init = count_pad && padded_in_window ? T(0) : -std::numeric_limits<T>::infinity();
        std::fill_n(yo, C, init);
        for (Index i = i0; i < i1; ++i)
          for (Index j = j0; j < j1; ++j) {
            const T* xp = xb + ((iy0 + i) * g.in_w + ix0 + j) * C;
            for (Index c = 0; c < C; ++c) yo[c] = std::max(yo[c], xp[c]);
          }
      }
    }
  });
}

template <class T>
Geometry2d pool2d(PoolKind kind, const T* x, const Shape& xs, T* y, const Pool2dOptions& o) {
  const std::string_view layer = !o.layer.empty() ? o.layer : kind == PoolKind::avg ? "avg_pool2d" : "max_pool2d";
  check_image(layer, "input", xs);
  if (o.pool_size[0] < 1 || o.pool_size[1] < 1)
    throw ConfigError(
        fmt::format("{}: pool_size must be positive, got [{}, {}]", layer, o.pool_size[0], o.pool_size[1]),
        std::string(layer), "pool_size");
  const Geometry2d g = window_geometry(layer, xs[1], xs[2], o.pool_size[0], o.pool_size[1], o.strides, {1, 1},
                                       o.padding);
  pool2d_run(kind, x, xs, y, o, g);
  return g;
}

}  // namespace detail

/// Output geometry of a pooling op over `x_shape` (all checks of avg_pool2d/max_pool2d).
inline Geometry2d pool2d_geometry(const Shape& x_shape, const Pool2dOptions& o, std::string_view layer = "pool2d") {
  if (!o.layer.empty()) layer = o.layer;
  check_image(layer, "input", x_shape);
  if (o.pool_size[0] < 1 || o.pool_size[1] < 1)
    throw ConfigError(
        fmt::format("{}: pool_size must be positive, got [{}, {}]", layer, o.pool_size[0], o.pool_size[1]),
        std::string(layer), "pool_size");
  const Geometry2d g =
      window_geometry(layer, x_shape[1], x_shape[2], o.pool_size[0], o.pool_size[1], o.strides, {1, 1}, o.padding);
  check_output(layer, x_shape[0], g, x_shape[3]);
  return g;
}

/// Average pooling on raw data: y must hold `[B, out_h, out_w, C]`. Returns the geometry.
template <class T>
Geometry2d avg_pool2d(const T* x, const Shape& x_shape, T* y, const Pool2dOptions& o = {}) {
  return detail::pool2d(detail::PoolKind::avg, x, x_shape, y, o);
}
/// Max pooling on raw data: y must hold `[B, out_h, out_w, C]`. Returns the geometry.
template <class T>
Geometry2d max_pool2d(const T* x, const Shape& x_shape, T* y, const Pool2dOptions& o = {}) {
  return detail::pool2d(detail::PoolKind::max, x, x_shape, y, o);
}

/// Average pooling on a tensor `[B, H, W, C]`.
template <class T, class X>
  requires TensorOf<X, T, 4>
Tensor<T, 4> avg_pool2d(const X& x, const Pool2dOptions& o = {}) {
  const Shape xs = shape_of(x);
  const Geometry2d g = pool2d_geometry(xs, o, "avg_pool2d");
  Tensor<T, 4> y(xs[0], g.out_h, g.out_w, xs[3]);
  avg_pool2d<T>(x.data(), xs, y.data(), o);
  return y;
}
/// Max pooling on a tensor `[B, H, W, C]`.
template <class T, class X>
  requires TensorOf<X, T, 4>
Tensor<T, 4> max_pool2d(const X& x, const Pool2dOptions& o = {}) {
  const Shape xs = shape_of(x);
  const Geometry2d g = pool2d_geometry(xs, o, "max_pool2d");
  Tensor<T, 4> y(xs[0], g.out_h, g.out_w, xs[3]);
  max_pool2d<T>(x.data(), xs, y.data(), o);
  return y;
}

namespace detail {
template <bool Max, class T>
void global_pool2d(const T* x, const Shape& xs, T* y, std::string_view layer) {
  check_image(layer, "input", xs);
  if (xs[1] < 1 || xs[2] < 1)
    throw ShapeError(fmt::format("{}: global pooling needs height and width >= 1, got input shape {}", layer,
                                 shape_str(xs)));
  const Index B = xs[0], P = xs[1] * xs[2], C = xs[3];
  parallel_for(B, [&](std::int64_t b) {
    const T* xb = x + b * P * C;
    T* yb = y + b * C;
    std::copy_n(xb, C, yb);
    for (Index p = 1; p < P; ++p)
      for (Index c = 0; c < C; ++c) yb[c] = Max ? std::max(yb[c], xb[p * C + c]) : yb[c] + xb[p * C + c];
    if (!Max)
      for (Index c = 0; c < C; ++c) yb[c] /= static_cast<T>(P);
  });
}
}  // namespace detail

/// Mean over space: x `[B, H, W, C]` (H, W >= 1) → y `[B, C]`.
template <class T>
void global_avg_pool2d(const T* x, const Shape& x_shape, T* y, std::string_view layer = "global_avg_pool2d") {
  detail::global_pool2d<false>(x, x_shape, y, layer);
}
/// Max over space: x `[B, H, W, C]` (H, W >= 1) → y `[B, C]`.
template <class T>
void global_max_pool2d(const T* x, const Shape& x_shape, T* y, std::string_view layer = "global_max_pool2d") {
  detail::global_pool2d<true>(x, x_shape, y, layer);
}

}  // namespace attn::ops
