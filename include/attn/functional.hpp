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
/// Masks follow NumPy broadcasting against `[B, H, T, S]` (rank-3 inputs: `[B, T, S]`): a boolean mask
/// (true = attend) or an additive bias of any rank up to that, each axis equal to the target or 1,
/// except the key axis, which must be S. `causal` is bottom-right aligned when T != S (query i sees
/// key j iff j <= i + S - T, as for a KV cache); `key_lengths[b]` masks keys j >= key_lengths[b].
/// A query row whose every key is masked yields zeros (and zero weights), never NaN.
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

/// A read-only view of an additive bias: data plus shape (row-major, contiguous).
template <class T>
struct BiasView {
  const T* data = nullptr;
  Shape shape;
  BiasView() = default;
  BiasView(const T* d, Shape s) : data(d), shape(std::move(s)) {}
  template <int R>
  BiasView(const Tensor<T, R>& t)  // NOLINT(google-explicit-constructor)
      : data(t.data()), shape(shape_of(t)) {}
  [[nodiscard]] bool empty() const noexcept { return data == nullptr; }
};

template <class T>
struct SdpaOptions {
  BoolMask mask;                  ///< broadcast to [B, H, T, S]; true = attend
  BiasView<T> bias;               ///< broadcast to [B, H, T, S]; added to the scaled logits
  bool causal = false;            ///< bottom-right aligned
  std::span<const Index> key_lengths{};  ///< [B]: keys at or beyond the length are masked
  std::optional<double> scale{};  ///< default 1/sqrt(d)
  bool need_weights = true;       ///< materialize the [.., T, S] weights
};

template <class T, int R>
struct SdpaResult {
  Tensor<T, R> output;
  Tensor<T, R> weights;  ///< empty when need_weights is false
};

namespace detail {

/// Strides over [B, H, T] (elements) of a row-major tensor of `shape` broadcast to `target`
/// = {B, H, T, S}; throws ShapeError when it does not broadcast.
inline std::array<Index, 3> broadcast_strides(const Shape& shape, const std::array<Index, 4>& target,
                                              std::string_view fn, std::string_view arg, int target_rank) {
  const auto bad = [&](std::string_view why) {
    Shape t = target_rank == 4 ? Shape(target.begin(), target.end()) : Shape{target[0], target[2], target[3]};
    return ShapeError(fmt::format("{}: {} of shape {} does not broadcast to {} ({})", fn, arg,
                                  shape_str(shape), shape_str(t), why));
  };
  if (shape.empty() || static_cast<int>(shape.size()) > target_rank) throw bad("rank");
  if (shape.back() != target[3]) throw bad("the key axis must equal S");
  std::array<Index, 3> strides{0, 0, 0};
  Index stride = shape.back();
  // the target's axes as [B, H, T, S] indices (rank 3 has no head axis); mask axes align right
  constexpr std::array<int, 4> axes4{0, 1, 2, 3};
  constexpr std::array<int, 3> axes3{0, 2, 3};
  for (int m = static_cast<int>(shape.size()) - 2; m >= 0; --m) {
    const int pos = target_rank - (static_cast<int>(shape.size()) - m);
    const int t = target_rank == 4 ? axes4[static_cast<std::size_t>(pos)] : axes3[static_cast<std::size_t>(pos)];
    const Index ext = shape[static_cast<std::size_t>(m)];
    if (ext != 1 && ext != target[static_cast<std::size_t>(t)]) throw bad("an extent is neither 1 nor equal");
    strides[static_cast<std::size_t>(t)] = ext == 1 ? 0 : stride;
    stride *= ext;
  }
  return strides;
}

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
  const std::array<Index, 4> target{B, H, T_, S};
  ops::AttentionMask<T> m;
  m.causal = o.causal;
  if (!o.key_lengths.empty()) {
    if (static_cast<Index>(o.key_lengths.size()) != B)
      throw ShapeError(fmt::format("{}: key_lengths must have {} entries (one per batch item), got {}", fn, B,
                                   o.key_lengths.size()));
    m.key_lengths = o.key_lengths.data();
  }
  if (!o.mask.empty()) {
    const auto s = broadcast_strides(o.mask.shape, target, fn, "mask", R == 4 ? 4 : 3);
    m.keep = o.mask.data;
    m.keep_sb = s[0];
    m.keep_sh = s[1];
    m.keep_st = s[2];
  }
  if (!o.bias.empty()) {
    const auto s = broadcast_strides(o.bias.shape, target, fn, "bias", R == 4 ? 4 : 3);
    m.bias = o.bias.data;
    m.bias_sb = s[0];
    m.bias_sh = s[1];
    m.bias_st = s[2];
  }
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

/// softmax(Q Kᵀ) V without scaling (the plain dot-product attention of the basics), with its weights.
template <class Q, class K, class V, class T = detail::scalar_of<Q>, int R = std::remove_cvref_t<Q>::NumIndices>
  requires TensorOf<Q, T, R> && TensorOf<K, T, R> && TensorOf<V, T, R>
SdpaResult<T, R> dot_product_attention(const Q& q, const K& k, const V& v) {
  return detail::sdpa<T, R>("dot_product_attention", view_of<T, R>(q), view_of<T, R>(k), view_of<T, R>(v),
                            SdpaOptions<T>{}, false);
}

}  // namespace attn
