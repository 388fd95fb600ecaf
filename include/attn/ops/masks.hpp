/// \file
/// The one mask contract of attn. A boolean mask holds `true` where a query may attend to a key.
/// Masks are read in place through strides (a stride of 0 broadcasts), never copied.
#pragma once

#include <span>
#include <string_view>

#include <fmt/format.h>

#include "attn/core/limits.hpp"
#include "attn/core/tensor.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

/// A rank-erased read-only view of a boolean mask: data plus shape (row-major, contiguous).
struct BoolMask {
  const bool* data = nullptr;
  Shape shape;

  BoolMask() = default;
  BoolMask(const bool* d, Shape s) : data(d), shape(std::move(s)) {}
  template <int R>
  BoolMask(const Tensor<bool, R>& t)  // NOLINT(google-explicit-constructor)
      : data(t.data()), shape(shape_of(t)) {}
  template <int R>
  BoolMask(const TensorView<bool, R>& t)  // NOLINT(google-explicit-constructor)
      : data(t.data()), shape(shape_of(t)) {}
  template <int R>
  BoolMask(const ConstTensorView<bool, R>& t)  // NOLINT(google-explicit-constructor)
      : data(t.data()), shape(shape_of(t)) {}

  [[nodiscard]] int rank() const noexcept { return static_cast<int>(shape.size()); }
  [[nodiscard]] bool empty() const noexcept { return data == nullptr; }
};

/// Converts a 0/1 mask of numbers (1 = attend) to booleans; any other value is an error, because the
/// reference's additive use of such masks gives no meaning to it.
template <class T, int R>
Tensor<bool, R> mask_from_values(const Tensor<T, R>& m, std::string_view what = "mask") {
  Tensor<bool, R> out(m.dimensions());
  for (Index i = 0; i < m.size(); ++i) {
    const T v = m.data()[i];
    if (v != T(0) && v != T(1))
      throw ShapeError(fmt::format("{} must hold only 0 (blocked) and 1 (attend), got {} at flat "
                                   "index {}", what, static_cast<double>(v), i));
    out.data()[i] = v != T(0);
  }
  return out;
}

/// Causal mask [T, S], bottom-right aligned: query i may see key j iff j <= i + (S - T). Throws
/// ShapeError for a negative extent and ConfigError above attn::allocation_limit() (core/limits.hpp).
inline Tensor<bool, 2> causal_mask(Index t, Index s) {
  if (t < 0 || s < 0)
    throw ShapeError(fmt::format("causal_mask: extents must be non-negative, got [{}, {}]", t, s));
  check_allocation(fmt::format("causal_mask: a [{}, {}] mask", t, s), checked_shape_size({t, s}), sizeof(bool));
  Tensor<bool, 2> m(t, s);
  if (m.size() == 0) return m;  // work proportional to the elements: [2^40, 0] returns at once
  for (Index i = 0; i < t; ++i)
    for (Index j = 0; j < s; ++j) m(i, j) = j <= i + (s - t);
  return m;
}

/// Binds a boolean mask to the attention core for queries [B, T], keys [B, S] and H heads:
///   rank 2 [B, S]        key padding (true = a real key), broadcast over heads and queries;
///   rank 3 [B, T, S]     per batch item, broadcast over heads;
///   rank 4 [B, 1|H, T, S] per head (a head extent of 1 broadcasts).
/// Any other rank or extent throws ShapeError naming `layer` and `arg`.
template <class T>
void bind_mask(ops::AttentionMask<T>& m, const BoolMask& mask, Index B, Index H, Index T_, Index S,
               std::string_view layer, std::string_view arg = "attention_mask") {
  if (mask.empty()) return;
  switch (mask.rank()) {
    case 2:
      check_shape(layer, arg, mask.shape, {B, S}, "(rank 2: [batch, keys], true = attend)");
      m.keep = mask.data;
      m.keep_sb = S;
      m.keep_sh = 0;
      m.keep_st = 0;
      return;
    case 3:
      check_shape(layer, arg, mask.shape, {B, T_, S}, "(rank 3: [batch, queries, keys])");
      m.keep = mask.data;
      m.keep_sb = T_ * S;
      m.keep_sh = 0;
      m.keep_st = S;
      return;
    case 4: {
      const Index h = mask.shape[1] == 1 ? 1 : H;
      check_shape(layer, arg, mask.shape, {B, h, T_, S}, "(rank 4: [batch, 1 or heads, queries, keys])");
      m.keep = mask.data;
      m.keep_sb = h * T_ * S;
      m.keep_sh = h == 1 ? 0 : T_ * S;
      m.keep_st = S;
      return;
    }
    default:
      throw ShapeError(fmt::format("{}: Unsupported {} rank: {}. Expected 2, 3, or 4 (got shape {}).",
                                   layer, arg, mask.rank(), shape_str(mask.shape)));
  }
}

}  // namespace attn
