/// \file
/// What the positional-embedding layers (`positional_embedding`, `bias_positional_embedding`,
/// `positional_encoding_fourier`, `multi_head_relative_positional_embedding`, ...) share: the resize
/// method of `load_resized_weights`, the resize of a `[B, H, W, C]` block through ops/resize.hpp, the
/// check of a source table handed to a resize, the truncated-normal fill of a weight with a stddev
/// the named initializers lack, and the shape check of an input against the extents a layer was
/// configured (built) for.
///
/// The reference (KCAM) builds these layers' weights from the first input shape; attn declares
/// weights at construction, so the configs carry the extents the weights depend on and every forward
/// checks the input against them (ShapeError naming the layer, the argument, expected and actual).
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/init.hpp"
#include "attn/core/limits.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/ops/resize.hpp"

namespace attn {

/// The interpolation of `load_resized_weights` (TensorFlow 2's `tf.image.resize`, antialias off, as
/// the reference's `backend.numpy_image_resize`): bilinear with half-pixel centres (the reference's
/// default at HEAD; = PyTorch `interpolate(mode="bilinear", align_corners=False)`), or nearest with
/// half-pixel centres (the reference's default before 2023; = PyTorch `nearest-exact`).
enum class ResizeMethod : std::uint8_t { bilinear, nearest };

namespace detail::posemb {

/// Resizes `[B, H, W, C]` stored at `src` to `[B, oh, ow, C]` with `method`.
template <class T>
Tensor<T, 4> resize(const T* src, Index b, Index h, Index w, Index c, Index oh, Index ow, ResizeMethod method,
                    std::string_view layer) {
  const ConstTensorView<T, 4> x(src, b, h, w, c);
  return method == ResizeMethod::bilinear ? ops::resize_bilinear<T>(x, oh, ow, layer)
                                          : ops::resize_nearest<T>(x, oh, ow, layer);
}

/// Throws ShapeError unless `values` holds exactly the elements of `shape` and `shape` has `rank`
/// positive extents: the source table given to `load_resized_weights`.
template <class T>
void check_source(std::string_view layer, std::string_view weight, const Shape& shape, std::span<const T> values,
                  std::size_t rank) {
  bool ok = shape.size() == rank;
  for (Index e : shape) ok = ok && e > 0;
  if (!ok)
    throw ShapeError(fmt::format("{}: load_resized_weights: the source '{}' must have rank {} with positive "
                                 "extents, got shape {}",
                                 layer, weight, rank, shape_str(shape)));
  const std::optional<Index> n = checked_shape_size(shape);
  if (!n)
    throw ShapeError(fmt::format("{}: load_resized_weights: the element count of the source '{}' of shape {} "
                                 "overflows a 64-bit index",
                                 layer, weight, shape_str(shape)));
  if (static_cast<Index>(values.size()) != *n)
    throw ShapeError(fmt::format("{}: load_resized_weights: the source '{}' of shape {} needs {} values, got {}",
                                 layer, weight, shape_str(shape), *n, values.size()));
}

/// Re-fills weight `w` from TruncatedNormal(0, stddev) (values beyond 2·stddev re-drawn), on the
/// stream that WeightSet::add gives the weight (seed and name), like Keras's `TruncatedNormal`.
template <class T>
void fill_truncated_normal(Weight<T>& w, double stddev, std::uint64_t seed) {
  Rng rng(seed ^ hash_name(w.name));
  for (T& v : w.data) v = static_cast<T>(rng.truncated_normal(stddev));
}

/// Throws ShapeError "<layer>: <arg> must have shape [...] <meaning>, got [...]" unless the non-batch
/// extents of `x` equal `built` (the extents the layer was configured for; any batch).
inline void check_built(std::string_view layer, std::string_view arg, const Shape& x, const Shape& built,
                        std::string_view meaning) {
  Shape expected{-1};
  expected.insert(expected.end(), built.begin(), built.end());
  check_shape(layer, arg, x, expected, meaning);
}

/// Throws ConfigError (naming the layer and `input_shape`) unless a table of `shape` elements of
/// `elem_size` bytes fits attn::allocation_limit(): the index tables and expanded biases that a layer
/// builds from its configured extents, checked before they are allocated.
inline void check_table(std::string_view layer, std::string_view what, const Shape& shape, std::size_t elem_size) {
  check_allocation(fmt::format("{}: parameter 'input_shape': {} {}", layer, what, shape_str(shape)),
                   checked_shape_size(shape), elem_size, std::string(layer), "input_shape");
}

/// The grid (H, W) of the `n` image tokens that follow the class token(s) of a token input, for the
/// CoaT convolutional encodings: `H = input_height` when positive, else `⌊sqrt(n)⌋`; `W = n / H`.
/// Throws ShapeError (naming the layer, the argument and the counts) unless `H·W == n` with n ≥ 1 (the
/// reference would silently drop the tokens that do not fill a row).
inline std::pair<Index, Index> token_grid(std::string_view layer, std::string_view arg, Index n, int input_height);

/// ⌊sqrt(n)⌋ exactly for the sizes of a layer (Python's `int(float(n) ** 0.5)` for these sizes).
inline Index isqrt(Index n) {
  if (n <= 0) return 0;
  Index r = static_cast<Index>(std::sqrt(static_cast<double>(n)));
  while (r * r > n) --r;
  while ((r + 1) * (r + 1) <= n) ++r;
  return r;
}

inline std::pair<Index, Index> token_grid(std::string_view layer, std::string_view arg, Index n, int input_height) {
  if (n < 0)  // no token at all, not even the class token
    throw ShapeError(fmt::format("{}: {} must hold a class token and then H*W image tokens; it holds no token",
                                 layer, arg));
  const Index h = input_height > 0 ? Index(input_height) : isqrt(n);
  if (n < 1 || h < 1 || n % h != 0)
    throw ShapeError(fmt::format("{}: {} must hold a class token and then H*W image tokens (H = {}); its {} image "
                                 "tokens do not form a grid of height {}",
                                 layer, arg, input_height > 0 ? fmt::format("input_height = {}", input_height)
                                                              : std::string("floor(sqrt(N - 1))"),
                                 n, h));
  return {h, n / h};
}

}  // namespace detail::posemb
}  // namespace attn
