/// \file
/// Padding rules and output geometry of the 2-D sliding-window operators (ops/conv.hpp, ops/pool.hpp)
/// on channels-last images `[B, H, W, C]`, with the Keras / KCAM semantics of the specification
/// (kcam_attention_layers.md §1.2 and its errata):
///
/// | mode | pad before / after of an axis of size `n`, kernel `k`, stride `s`, dilation `r` |
/// |---|---|
/// | `valid` | 0 / 0 |
/// | `same` (Keras / TensorFlow "same") | `out = ⌈n/s⌉`, `total = max((out − 1)·s + r(k − 1) + 1 − n, 0)`, before `⌊total/2⌋`, after the rest (the extra row/column at the bottom/right) |
/// | `torch_same` (KCAM's conv helpers) | `⌊k/2⌋` / `⌊k/2⌋` whatever the stride and dilation: an even `k` gives `n + 1` outputs at stride 1, and a dilated kernel shrinks the map (as the reference does) |
/// | `explicit_pads` | the given counts (Keras `ZeroPadding2D` followed by a `valid` op) |
///
/// Output extent of an axis: `⌊(n + before + after − r(k − 1) − 1)/s⌋ + 1`.
///
/// Errors (the message names the layer given by the caller, the parameter and what came):
/// ConfigError for strides or dilation below 1, negative explicit pads, a kernel extent below 1;
/// ShapeError when the dilated kernel is larger than the padded image.
#pragma once

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/tensor.hpp"

namespace attn::ops {

/// How a 2-D window op pads its input (see the file comment for the arithmetic).
struct Padding2d {
  enum class Mode { valid, same, torch_same, explicit_pads };
  Mode mode = Mode::valid;
  Index top = 0, bottom = 0, left = 0, right = 0;  ///< explicit_pads only

  static constexpr Padding2d valid() { return {}; }
  /// Keras / TensorFlow "same" (asymmetric: the extra cell goes to the bottom/right)
  static constexpr Padding2d same() { return {Mode::same}; }
  /// ⌊k/2⌋ on every side (PyTorch's symmetric `padding=k//2`, KCAM's default for its conv helpers)
  static constexpr Padding2d torch_same() { return {Mode::torch_same}; }
  /// `top`, `bottom`, `left`, `right` zero rows/columns, then valid
  static constexpr Padding2d explicit_pads(Index t, Index b, Index l, Index r) {
    return {Mode::explicit_pads, t, b, l, r};
  }
};

/// "valid", "same", "torch_same" or "[t, b, l, r]"
inline std::string padding_str(const Padding2d& p) {
  switch (p.mode) {
    case Padding2d::Mode::valid: return "valid";
    case Padding2d::Mode::same: return "same";
    case Padding2d::Mode::torch_same: return "torch_same";
    case Padding2d::Mode::explicit_pads: break;
  }
  return fmt::format("[{}, {}, {}, {}]", p.top, p.bottom, p.left, p.right);
}

/// The resolved geometry of a 2-D window op over an `[H, W]` image.
struct Geometry2d {
  Index in_h = 0, in_w = 0;      ///< input extents
  Index kh = 1, kw = 1;          ///< kernel extents (undilated)
  Index sh = 1, sw = 1;          ///< strides
  Index dh = 1, dw = 1;          ///< dilation rates
  Index top = 0, bottom = 0;     ///< rows padded before / after
  Index left = 0, right = 0;     ///< columns padded before / after
  Index out_h = 0, out_w = 0;    ///< output extents
};

/// Resolves padding and output size; throws as the file comment says. `layer` names the caller in
/// messages ("conv2d", "avg_pool2d", a layer type, ...).
inline Geometry2d window_geometry(std::string_view layer, Index in_h, Index in_w, Index kh, Index kw,
                                  std::array<Index, 2> strides, std::array<Index, 2> dilation,
                                  const Padding2d& padding) {
  if (kh < 1 || kw < 1)
    throw ConfigError(fmt::format("{}: kernel_size must be positive, got [{}, {}]", layer, kh, kw),
                      std::string(layer), "kernel_size");
  if (strides[0] < 1 || strides[1] < 1)
    throw ConfigError(fmt::format("{}: strides must be positive, got [{}, {}]", layer, strides[0], strides[1]),
                      std::string(layer), "strides");
  if (dilation[0] < 1 || dilation[1] < 1)
    throw ConfigError(
        fmt::format("{}: dilation_rate must be positive, got [{}, {}]", layer, dilation[0], dilation[1]),
        std::string(layer), "dilation_rate");
  Geometry2d g;
  g.in_h = in_h;
  g.in_w = in_w;
  g.kh = kh;
  g.kw = kw;
  g.sh = strides[0];
  g.sw = strides[1];
  g.dh = dilation[0];
  g.dw = dilation[1];
  if (in_h < 0 || in_w < 0)
    throw ShapeError(fmt::format("{}: the input extents must be non-negative, got {}x{}", layer, in_h, in_w));
  // Every sum and product below in range of Index, else a ConfigError naming the parameter that is
  // too large: an overflow would make a wrong geometry, not an error.
  const auto too_large = [&](std::string_view parameter, std::string_view what) {
    return ConfigError(fmt::format("{}: {} is too large: {} overflows a 64-bit index (input {}x{}, kernel {}x{}, "
                                   "strides [{}, {}], dilation_rate [{}, {}], padding {})",
                                   layer, parameter, what, in_h, in_w, kh, kw, strides[0], strides[1], dilation[0],
                                   dilation[1], padding_str(padding)),
                       std::string(layer), std::string(parameter));
  };
  const auto dilated = [&](Index d, Index k) {  // d·(k − 1) + 1
    const std::optional<Index> e = checked_mul(d, k - 1);
    if (!e) throw too_large("dilation_rate", "the dilated kernel extent");
    return *e + 1;
  };
  const Index eh = dilated(g.dh, kh), ew = dilated(g.dw, kw);  // effective (dilated) extents
  switch (padding.mode) {
    case Padding2d::Mode::valid: break;
    case Padding2d::Mode::same: {
      const auto split = [&](Index n, Index e, Index s, Index& before, Index& after) {
        if (!checked_add(n, s)) throw too_large("strides", "input extent + stride");
        const Index out = (n + s - 1) / s;  // (out − 1)·s < n: no overflow below
        const Index total = std::max<Index>((out - 1) * s - n + e, 0);
        before = total / 2;
        after = total - before;
      };
      split(in_h, eh, g.sh, g.top, g.bottom);
      split(in_w, ew, g.sw, g.left, g.right);
      break;
    }
    case Padding2d::Mode::torch_same:
      g.top = g.bottom = kh / 2;
      g.left = g.right = kw / 2;
      break;
    case Padding2d::Mode::explicit_pads:
      if (padding.top < 0 || padding.bottom < 0 || padding.left < 0 || padding.right < 0)
        throw ConfigError(fmt::format("{}: padding must be non-negative, got {}", layer, padding_str(padding)),
                          std::string(layer), "padding");
      g.top = padding.top;
      g.bottom = padding.bottom;
      g.left = padding.left;
      g.right = padding.right;
      break;
  }
  const auto padded = [&](Index n, Index a, Index b) {
    const std::optional<Index> ab = checked_add(a, b);
    const std::optional<Index> p = ab ? checked_add(n, *ab) : std::nullopt;
    if (!p) throw too_large("padding", "the padded input extent");
    return *p;
  };
  const Index ph = padded(in_h, g.top, g.bottom), pw = padded(in_w, g.left, g.right);
  if (eh > ph || ew > pw)
    throw ShapeError(fmt::format(
        "{}: the kernel ({}x{}, dilated {}x{}) is larger than the padded input ({}x{}: input {}x{}, padding "
        "'{}' adds {} + {} rows and {} + {} columns)",
        layer, kh, kw, eh, ew, ph, pw, in_h, in_w, padding_str(padding), g.top, g.bottom, g.left, g.right));
  g.out_h = (ph - eh) / g.sh + 1;
  g.out_w = (pw - ew) / g.sw + 1;
  return g;
}

/// check_element_count of the output `[batch, g.out_h, g.out_w, channels]` (`channels` < 0: its product
/// overflowed already).
inline void check_output(std::string_view layer, Index batch, const Geometry2d& g, Index channels) {
  check_element_count(layer, "output", {batch, g.out_h, g.out_w, channels});
}

/// Checks that `x` is a rank-4 `[B, H, W, C]` shape (ShapeError naming `layer` and `arg` otherwise).
inline void check_image(std::string_view layer, std::string_view arg, const Shape& x) {
  if (x.size() != 4)
    throw ShapeError(fmt::format("{}: {} must have rank 4 [batch, height, width, channels], got shape {}", layer,
                                 arg, shape_str(x)));
}

}  // namespace attn::ops
