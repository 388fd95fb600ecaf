/// \file
/// Image resize with TensorFlow 2 semantics (`tf.image.resize`, antialias=False), as KCAM's
/// `load_resized_weights` uses it for position-embedding tables (spec kcam_attention_layers.md §1.2 and
/// the errata), on `[B, H, W, C]`, float and double.
///
/// - resize_bilinear: half-pixel centres, separable. For output index i of an axis `in → out`:
///   `src = (i + 0.5)·in/out − 0.5`, `lo = ⌊src⌋`, `frac = src − lo`,
///   `v = v[clamp(lo)]·(1 − frac) + v[clamp(lo + 1)]·frac`, clamp to [0, in − 1]. Equal to PyTorch's
///   `F.interpolate(mode="bilinear", align_corners=False, antialias=False)` with an output size.
/// - resize_nearest: TF2's nearest with half-pixel centres, `src = min(⌊(i + 0.5)·in/out⌋, in − 1)` —
///   PyTorch's `nearest-exact`, not its `nearest`.
///
/// The source coordinates are computed in double for both scalar types. Output rows are tasks on attn's
/// pool (bit-identical for any thread count). Errors: ShapeError for a non-rank-4 input, an empty input
/// axis with a non-empty output, or a negative output size.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/tensor.hpp"

namespace attn::ops {

namespace detail {

/// Per output index: the two source indices and the weight of the second.
struct Taps {
  std::vector<Index> lo, hi;
  std::vector<double> frac;
};

inline Taps bilinear_taps(Index in, Index out) {
  Taps t;
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (Index i = 0; i < out; ++i) {
    const double src = (static_cast<double>(i) + 0.5) * scale - 0.5;
    const double fl = std::floor(src);
    const Index lo = static_cast<Index>(fl);
    t.lo.push_back(std::clamp<Index>(lo, 0, in - 1));
    t.hi.push_back(std::clamp<Index>(lo + 1, 0, in - 1));
    t.frac.push_back(src - fl);
  }
  return t;
}

inline void check_resize(std::string_view layer, const Shape& s, Index out_h, Index out_w) {
  if (s.size() != 4)
    throw ShapeError(fmt::format("{}: input must have rank 4 [batch, height, width, channels], got {}", layer,
                                 shape_str(s)));
  if (out_h < 0 || out_w < 0)
    throw ShapeError(fmt::format("{}: output size must be non-negative, got {}x{}", layer, out_h, out_w));
  if ((s[1] == 0 && out_h > 0) || (s[2] == 0 && out_w > 0))
    throw ShapeError(fmt::format("{}: cannot resize an empty input {} to {}x{}", layer, shape_str(s), out_h, out_w));
}

}  // namespace detail

/// Bilinear resize (TF2 half-pixel) of `[B, H, W, C]` to `[B, out_h, out_w, C]`.
template <class T>
Tensor<T, 4> resize_bilinear(const ConstTensorView<T, 4>& x, Index out_h, Index out_w,
                             std::string_view layer = "resize_bilinear") {
  const Shape s{x.dimension(0), x.dimension(1), x.dimension(2), x.dimension(3)};
  detail::check_resize(layer, s, out_h, out_w);
  const Index B = s[0], H = s[1], W = s[2], C = s[3];
  auto y = checked_tensor<T>(layer, "output", B, out_h, out_w, C);
  if (y.size() == 0) return y;
  const detail::Taps ty = detail::bilinear_taps(H, out_h), tx = detail::bilinear_taps(W, out_w);
  parallel_for(B * out_h, [&](std::int64_t task) {
    const Index b = static_cast<Index>(task) / out_h, i = static_cast<Index>(task) % out_h;
    const auto ui = static_cast<std::size_t>(i);
    const T fy = static_cast<T>(ty.frac[ui]);
    const T* r0 = x.data() + (b * H + ty.lo[ui]) * W * C;
    const T* r1 = x.data() + (b * H + ty.hi[ui]) * W * C;
    T* yo = y.data() + (b * out_h + i) * out_w * C;
    for (Index j = 0; j < out_w; ++j) {
      const auto uj = static_cast<std::size_t>(j);
      const T fx = static_cast<T>(tx.frac[uj]);
      const Index c0 = tx.lo[uj] * C, c1 = tx.hi[uj] * C;
      for (Index c = 0; c < C; ++c) {
        const T top = r0[c0 + c] * (T(1) - fx) + r0[c1 + c] * fx;
        const T bot = r1[c0 + c] * (T(1) - fx) + r1[c1 + c] * fx;
        yo[j * C + c] = top * (T(1) - fy) + bot * fy;
      }
    }
  });
  return y;
}

/// Nearest resize (TF2 half-pixel, = PyTorch nearest-exact) of `[B, H, W, C]` to `[B, out_h, out_w, C]`.
template <class T>
Tensor<T, 4> resize_nearest(const ConstTensorView<T, 4>& x, Index out_h, Index out_w,
                            std::string_view layer = "resize_nearest") {
  const Shape s{x.dimension(0), x.dimension(1), x.dimension(2), x.dimension(3)};
  detail::check_resize(layer, s, out_h, out_w);
  const Index B = s[0], H = s[1], W = s[2], C = s[3];
  auto y = checked_tensor<T>(layer, "output", B, out_h, out_w, C);
  if (y.size() == 0) return y;
  const auto src = [](Index i, Index in, Index out) {
    const double v = std::floor((static_cast<double>(i) + 0.5) * static_cast<double>(in) / static_cast<double>(out));
    return std::min<Index>(static_cast<Index>(v), in - 1);
  };
  for (Index b = 0; b < B; ++b)
    for (Index i = 0; i < out_h; ++i)
      for (Index j = 0; j < out_w; ++j)
        std::copy_n(x.data() + ((b * H + src(i, H, out_h)) * W + src(j, W, out_w)) * C, C,
                    y.data() + ((b * out_h + i) * out_w + j) * C);
  return y;
}

}  // namespace attn::ops
