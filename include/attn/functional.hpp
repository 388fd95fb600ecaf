/// \file
/// The basic attention functions (no weights), on PyTorch's layout:
///   dot_product_attention(q, k, v)              softmax(Q Kᵀ) V            (unscaled)
///   scaled_dot_product_attention(q, k, v, opt)  softmax(Q Kᵀ·scale + bias, masked) V, scale 1/sqrt(d)
/// Both return the output and the attention weights.
///
/// Shapes: rank 4 q `[B, H, T, d]`, k `[B, Hkv, S, d]`, v `[B, Hkv, S, dv]` with H a multiple of Hkv
/// (grouped-query: head h reads K/V head h / (H / Hkv)); or rank 3 q `[B, T, d]`, k `[B, S, d]`,
/// v `[B, S, dv]`. Output `[B, (H,) T, dv]`, weights `[B, (H,) T, S]`.
///
/// Masks: the one contract of ops/masks.hpp, the same fields as every layer takes (`SdpaOptions<T>`
/// derives from `AttentionMasks<T>`): `key_padding` `[B, S]`, `key_lengths` `[B]`, `attn_mask` and
/// `bias` of rank 2 `[T, S]`, 3 `[B, T, S]` (rank-3 inputs only: for rank-4 inputs NumPy would read it
/// as `[H, T, S]`, so it is refused) or 4 `[B, H, T, S]` (extents B, H, T may be 1), `causal`
/// bottom-right aligned when T != S (query i sees key j iff j <= i + S - T, as for a KV cache; with
/// `key_lengths`, S is each item's own length).
/// A query row whose every key is masked yields zeros (and zero weights), never NaN. Deliberate
/// difference from PyTorch: rank-1 masks and rank-3 masks on rank-4 inputs are ShapeErrors rather
/// than NumPy broadcasts, so that one shape never means two things.
#pragma once

#include <cmath>
#include <optional>
#include <span>
#include <string_view>

#include <fmt/format.h>

#include "attn/core/tensor.hpp"
#include "attn/ops/masks.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

/// The former name of AttnBias (ops/masks.hpp).
template <class T>
using BiasView = AttnBias<T>;

/// The options of the functions: the masks of every attention call (`AttentionMasks<T>`, fields
/// `key_padding`, `key_lengths`, `attn_mask`, `causal`, `bias`; ops/masks.hpp), the scale and whether
/// to return the weights.
template <class T>
struct SdpaOptions : AttentionMasks<T> {
  std::optional<double> scale{};  ///< default 1/sqrt(d)
  bool need_weights = true;       ///< materialize the [.., T, S] weights
};

template <class T, int R>
struct SdpaResult {
  Tensor<T, R> output;
  Tensor<T, R> weights;  ///< empty when need_weights is false
};

namespace detail {

template <class T, int R>
SdpaResult<T, R> sdpa(std::string_view fn, ConstTensorView<T, R> q, ConstTensorView<T, R> k,
                      ConstTensorView<T, R> v, const SdpaOptions<T>& o, bool scaled) {
  static_assert(R == 3 || R == 4, "attention functions take rank-3 or rank-4 tensors");
  constexpr int off = R == 4 ? 1 : 0;
  const Index B = q.dimension(0), H = R == 4 ? q.dimension(1) : 1, T_ = q.dimension(1 + off),
              d = q.dimension(2 + off);
  const Index Hkv = R == 4 ? k.dimension(1) : 1, S = k.dimension(1 + off), dv = v.dimension(2 + off);
  if constexpr (R == 4) {
    check_shape(fn, "key", shape_of(k), {B, -1, -1, d}, "([B, Hkv, S, d] with q's B and d)");
    check_shape(fn, "value", shape_of(v), {B, Hkv, S, -1}, "([B, Hkv, S, dv] with key's B, Hkv, S)");
    if (Hkv == 0 || H % Hkv != 0)
      throw ShapeError(fmt::format("{}: query heads ({}) must be a multiple of key/value heads ({})", fn, H, Hkv));
  } else {
    check_shape(fn, "key", shape_of(k), {B, -1, d}, "([B, S, d] with q's B and d)");
    check_shape(fn, "value", shape_of(v), {B, S, -1}, "([B, S, dv] with key's B and S)");
  }
  const Shape target = R == 4 ? Shape{B, H, T_, S} : Shape{B, T_, S};
  const BoundMasks<T> bound = bind_masks<T>(o, B, H, T_, S, fn, /*rank3_ok=*/R == 3, target);
  const ops::AttentionMask<T>& m = bound.core;
  // [B, H, L, d] seen as [batch, len, heads, dim]: strides (H·L·d, d, L·d)
  const auto view = [&](const T* p, Index h, Index l, Index w) {
    return ops::HeadsView<T>{p, B, l, h, w, h * l * w, w, l * w};
  };
  SdpaResult<T, R> r;
  if constexpr (R == 4) r.output = Tensor<T, 4>(B, H, T_, dv);
  else r.output = Tensor<T, 3>(B, T_, dv);
  if (o.need_weights) {
    if constexpr (R == 4) r.weights = Tensor<T, 4>(B, H, T_, S);
    else r.weights = Tensor<T, 3>(B, T_, S);
  }
  const double scale = o.scale.value_or(scaled ? 1.0 / std::sqrt(static_cast<double>(std::max<Index>(d, 1))) : 1.0);
  ops::attention(view(q.data(), H, T_, d), view(k.data(), Hkv, S, d), view(v.data(), Hkv, S, dv),
                 ops::HeadsOut<T>{r.output.data(), B, T_, H, dv, H * T_ * dv, dv, T_ * dv}, static_cast<T>(scale),
                 m, o.need_weights ? r.weights.data() : nullptr);
  return r;
}

template <class X>
using scalar_of = std::remove_const_t<std::remove_pointer_t<decltype(std::declval<const X&>().data())>>;

}  // namespace detail

/// softmax(Q Kᵀ·scale + bias, masked) V with scale 1/sqrt(d) unless given. See the file comment.
template <class Q, class K, class V, class T = detail::scalar_of<Q>, int R = std::remove_cvref_t<Q>::NumIndices>
  requires TensorOf<Q, T, R> && TensorOf<K, T, R> && TensorOf<V, T, R>
SdpaResult<T, R> scaled_dot_product_attention(const Q& q, const K& k, const V& v,
                                              const SdpaOptions<T>& options = {}) {
  return detail::sdpa<T, R>("scaled_dot_product_attention", view_of<T, R>(q), view_of<T, R>(k),
                            view_of<T, R>(v), options, true);
}

/// softmax(Q Kᵀ) V without scaling (the plain dot-product attention of the basics), with its weights;
/// the same masks as scaled_dot_product_attention.
template <class Q, class K, class V, class T = detail::scalar_of<Q>, int R = std::remove_cvref_t<Q>::NumIndices>
  requires TensorOf<Q, T, R> && TensorOf<K, T, R> && TensorOf<V, T, R>
SdpaResult<T, R> dot_product_attention(const Q& q, const K& k, const V& v, const AttentionMasks<T>& masks = {}) {
  SdpaOptions<T> o;
  static_cast<AttentionMasks<T>&>(o) = masks;
  o.scale = 1.0;
  return detail::sdpa<T, R>("dot_product_attention", view_of<T, R>(q), view_of<T, R>(k), view_of<T, R>(v), o,
                            false);
}

}  // namespace attn
