/// \file
/// The one mask contract of attn, for every layer and for the functions
/// (`scaled_dot_product_attention`, `dot_product_attention`).
///
/// The KIND of a mask is said by its C++ type, never guessed from its rank. `AttentionMasks<T>` holds
/// one field per kind; every attention layer's `forward` and the functions' `SdpaOptions<T>` take the
/// same fields, and `AnyLayer<T>::forward(ForwardArgs<T>)` takes them too:
///
///   key_padding  `KeyPaddingMask`  `[B, S]` bool, true = key s of item b is a real key (the inverse of
///                                  PyTorch's `key_padding_mask`, where true = ignore)
///   key_lengths  `KeyLengths`      `[B]` counts: keys j >= key_lengths[b] of item b are masked (clamped
///                                  to [0, S])
///   attn_mask    `AttnMask`        bool, true = query t may attend to key s, of shape
///                                    rank 2 `[T, S]`         the same for every item and head
///                                    rank 3 `[B, T, S]`      per item, the same for every head
///                                    rank 4 `[B, H, T, S]`   per item and head
///                                  where the B, H and T extents may each be 1 (broadcast); the key
///                                  axis is always S. The functions on rank-4 inputs (`[B, H, T, d]`)
///                                  refuse a rank-3 mask: NumPy broadcasting would read it as
///                                  `[H, T, S]`, attn's layers as `[B, T, S]`; pass rank 4 instead.
///   causal       `bool`            query i sees key j iff j <= i + S - T (bottom-right aligned, as
///                                  for a KV cache); with key_lengths, aligned per item to the item's
///                                  own length: j <= i + key_lengths[b] - T (the queries are the last
///                                  T positions of each item, as in a ragged KV cache; ONNX's rule).
///                                  A right-padded self-attention batch (queries padded like keys)
///                                  passes its padding as a `KeyPaddingMask` instead, which keeps the
///                                  alignment to S. A layer whose config sets `causal` is causal
///                                  whatever the call says
///   bias         `AttnBias<T>`     additive, added to the scaled logits; the shapes of `attn_mask`
///
/// The kinds are views (pointer and shape), never copies: the tensor must outlive the call (a
/// temporary inside the call's full expression does). All given kinds combine (a key is visible when
/// every mask allows it). A query row whose every key is
/// masked yields zeros (and zero weights), never NaN. Masks are read in place through strides (an
/// extent of 1 broadcasts), except that a key padding mask given together with an attention mask is
/// combined into one buffer of the attention mask's broadcast shape with B expanded.
///
/// A raw `Tensor<bool, R>` converts to none of the kinds implicitly: `layer.forward(x, mask_tensor)`
/// does not compile; say `attn::AttnMask(m)` or `attn::KeyPaddingMask(m)`. A default-constructed
/// mask is "no mask"; a mask constructed from a pointer that is null while its shape holds elements is
/// a ShapeError at the call (never silently "no mask"). Shape errors name the layer or function, the
/// argument, the expected and the actual shape. `attn::mask_from_values` converts a 0/1 numeric mask.
#pragma once

#include <array>
#include <concepts>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attn/core/limits.hpp"
#include "attn/core/error.hpp"
#include "attn/core/tensor.hpp"
#include "attn/ops/heads.hpp"

namespace attn {

/// Any row-major Eigen tensor or map of scalar S (any rank), owning or not.
template <class X, class S>
concept TensorOfScalar = requires(const X& x) {
  { x.data() } -> std::convertible_to<const S*>;
  { x.dimensions() };
} && std::is_same_v<std::remove_cv_t<typename std::remove_cvref_t<X>::Scalar>, S> &&
                         (static_cast<int>(std::remove_cvref_t<X>::Layout) == static_cast<int>(Eigen::RowMajor));

/// A rank-erased read-only view of a boolean tensor: data plus shape (row-major, contiguous). It says
/// nothing about what the mask means, so no forward takes it: wrap it in one of the kinds below.
struct BoolMask {
  const bool* data = nullptr;
  Shape shape;

  BoolMask() = default;
  BoolMask(const bool* d, Shape s) : data(d), shape(std::move(s)) {}
  template <class M>
    requires TensorOfScalar<M, bool>
  BoolMask(const M& t)  // NOLINT(google-explicit-constructor)
      : data(t.data()), shape(shape_of(t)) {}

  [[nodiscard]] int rank() const noexcept { return static_cast<int>(shape.size()); }
  [[nodiscard]] bool empty() const noexcept { return data == nullptr; }
};

namespace detail {
/// A boolean mask of one kind: a view plus whether the caller gave one (default: no mask).
template <class Kind>
class TypedBoolMask {
public:
  TypedBoolMask() = default;
  explicit TypedBoolMask(const bool* data, Shape shape) : view_(data, std::move(shape)), given_(true) {}
  explicit TypedBoolMask(BoolMask view) : view_(std::move(view)), given_(true) {}
  template <class M>
    requires TensorOfScalar<M, bool>
  explicit TypedBoolMask(const M& t) : view_(t), given_(true) {}

  /// True unless default-constructed ("no mask").
  [[nodiscard]] bool given() const noexcept { return given_; }
  [[nodiscard]] const bool* data() const noexcept { return view_.data; }
  [[nodiscard]] const Shape& shape() const noexcept { return view_.shape; }
  [[nodiscard]] int rank() const noexcept { return view_.rank(); }

private:
  BoolMask view_;
  bool given_ = false;
};
}  // namespace detail

/// Key padding `[B, S]`: true = key s of item b is a real key. Explicit construction only.
struct KeyPaddingMask : detail::TypedBoolMask<KeyPaddingMask> {
  using TypedBoolMask::TypedBoolMask;
};

/// An attention mask `[T, S]`, `[B, T, S]` or `[B, H, T, S]` (B, H, T extents may be 1): true = may
/// attend. Explicit construction only.
struct AttnMask : detail::TypedBoolMask<AttnMask> {
  using TypedBoolMask::TypedBoolMask;
};

/// Key lengths `[B]`: keys j >= lengths[b] of item b are masked. From a span or a vector (not copied).
class KeyLengths {
public:
  KeyLengths() = default;
  KeyLengths(std::span<const Index> lengths) : lengths_(lengths), given_(true) {}  // NOLINT
  KeyLengths(const std::vector<Index>& lengths)  // NOLINT(google-explicit-constructor)
      : lengths_(lengths), given_(true) {}
  [[nodiscard]] bool given() const noexcept { return given_; }
  [[nodiscard]] std::span<const Index> values() const noexcept { return lengths_; }
  [[nodiscard]] std::size_t size() const noexcept { return lengths_.size(); }
  [[nodiscard]] const Index* data() const noexcept { return lengths_.data(); }

private:
  std::span<const Index> lengths_{};
  bool given_ = false;
};

/// An additive bias over the logits, of an attention mask's shapes. Its kind is its scalar type, so it
/// converts implicitly from any tensor of T.
template <class T>
class AttnBias {
public:
  AttnBias() = default;
  AttnBias(const T* data, Shape shape) : data_(data), shape_(std::move(shape)), given_(true) {}
  template <class M>
    requires TensorOfScalar<M, T>
  AttnBias(const M& t)  // NOLINT(google-explicit-constructor)
      : data_(t.data()), shape_(shape_of(t)), given_(true) {}
  [[nodiscard]] bool given() const noexcept { return given_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] const Shape& shape() const noexcept { return shape_; }
  [[nodiscard]] int rank() const noexcept { return static_cast<int>(shape_.size()); }

private:
  const T* data_ = nullptr;
  Shape shape_;
  bool given_ = false;
};

/// The masks of one attention call, one field per kind (see the file comment). Default: no mask.
template <class T>
struct AttentionMasks {
  KeyPaddingMask key_padding{};  ///< [B, S], true = a real key
  KeyLengths key_lengths{};      ///< [B]
  AttnMask attn_mask{};          ///< [T, S] | [B, T, S] | [B, H, T, S], true = attend
  bool causal = false;           ///< bottom-right aligned
  AttnBias<T> bias{};            ///< added to the scaled logits; attn_mask's shapes

  [[nodiscard]] bool any() const noexcept {
    return key_padding.given() || key_lengths.given() || attn_mask.given() || causal || bias.given();
  }
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

/// Causal mask [T, S], bottom-right aligned: query i may see key j iff j <= i + (S - T). An
/// attention mask: pass it as `attn::AttnMask(causal_mask(T, S))` (or set `causal`). Throws
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

/// The masks bound to the attention core, and the buffer they point into when a key padding mask and
/// an attention mask were combined (moving it keeps the pointers valid).
template <class T>
struct BoundMasks {
  ops::AttentionMask<T> core;
  std::unique_ptr<bool[]> combined;
};

namespace detail {

/// Throws when a mask was given with null data for a shape that holds elements (issue: a null mask
/// must never read as "no mask").
inline void check_mask_data(std::string_view who, std::string_view arg, const void* data, const Shape& shape) {
  if (data == nullptr && shape_size(shape) > 0)
    throw ShapeError(fmt::format("{}: {} of shape {} was given with null data; pass a default-constructed "
                                 "mask for no mask",
                                 who, arg, shape_str(shape)));
}

/// Strides in elements over [B, H, T] of an attention mask or bias of `shape`, read against scores
/// [B, H, T, S] per the contract (rank 2 [T, S], rank 3 [B, T, S], rank 4 [B, H, T, S]; B, H, T
/// extents may be 1). `rank3_ok` is false for the functions on rank-4 inputs. `target` is printed in
/// messages (the scores' shape as the caller sees it).
inline std::array<Index, 3> mask_strides(std::string_view who, std::string_view arg, const Shape& shape,
                                         Index B, Index H, Index T_, Index S, bool rank3_ok,
                                         const Shape& target) {
  const int r = static_cast<int>(shape.size());
  if (r < 2 || r > 4 || (r == 3 && !rank3_ok))
    throw ShapeError(fmt::format(
        "{}: {} must have rank 2 [T, S], {}or 4 [B, 1|H, T, S], got rank {} with shape {}{}", who, arg,
        rank3_ok ? "3 [B, T, S] " : "", r, shape_str(shape),
        r == 3 ? " (rank 3 is ambiguous for rank-4 inputs: [B, T, S] or [H, T, S]; pass rank 4)" : ""));
  const auto bad = [&](std::string_view why) {
    return ShapeError(fmt::format("{}: {} of shape {} does not broadcast to {} ({})", who, arg, shape_str(shape),
                                  shape_str(target), why));
  };
  if (shape.back() != S) throw bad("the key axis must equal S");
  // the mask's axes as score axes: 0 = B, 1 = H, 2 = T
  std::array<int, 3> axes{};
  if (r == 2) axes = {2, -1, -1};
  if (r == 3) axes = {0, 2, -1};
  if (r == 4) axes = {0, 1, 2};
  const std::array<Index, 3> full{B, H, T_};
  std::array<Index, 3> strides{0, 0, 0};
  Index stride = S;
  for (int m = r - 2; m >= 0; --m) {
    const int a = axes[static_cast<std::size_t>(m)];
    const Index ext = shape[static_cast<std::size_t>(m)];
    if (ext != 1 && ext != full[static_cast<std::size_t>(a)]) throw bad("an extent is neither 1 nor equal");
    strides[static_cast<std::size_t>(a)] = ext == 1 ? 0 : stride;
    stride *= ext;
  }
  return strides;
}

}  // namespace detail

/// Checks every given mask of `m` against scores [B, H, T, S] and binds them to the core. `who` names
/// the layer or function in errors; `rank3_ok` is false for the functions on rank-4 inputs (see the
/// file comment); `target` is the scores' shape as the caller sees it (default [B, H, T, S]).
template <class T>
BoundMasks<T> bind_masks(const AttentionMasks<T>& m, Index B, Index H, Index T_, Index S, std::string_view who,
                         bool rank3_ok = true, Shape target = {}) {
  if (target.empty()) target = {B, H, T_, S};
  BoundMasks<T> out;
  ops::AttentionMask<T>& c = out.core;
  c.causal = m.causal;
  if (m.key_lengths.given()) {
    if (static_cast<Index>(m.key_lengths.size()) != B)
      throw ShapeError(fmt::format("{}: key_lengths must have {} entries (one per batch item), got {}", who, B,
                                   m.key_lengths.size()));
    c.key_lengths = m.key_lengths.data();
  }
  if (m.bias.given()) {
    detail::check_mask_data(who, "bias", m.bias.data(), m.bias.shape());
    const auto s = detail::mask_strides(who, "bias", m.bias.shape(), B, H, T_, S, rank3_ok, target);
    c.bias = m.bias.data();
    c.bias_sb = s[0];
    c.bias_sh = s[1];
    c.bias_st = s[2];
  }
  const bool pad = m.key_padding.given(), mask = m.attn_mask.given();
  if (pad) {
    detail::check_mask_data(who, "key_padding_mask", m.key_padding.data(), m.key_padding.shape());
    check_shape(who, "key_padding_mask", m.key_padding.shape(), {B, S}, "([batch, keys], true = a real key)");
  }
  std::array<Index, 3> ms{0, 0, 0};
  if (mask) {
    detail::check_mask_data(who, "attn_mask", m.attn_mask.data(), m.attn_mask.shape());
    ms = detail::mask_strides(who, "attn_mask", m.attn_mask.shape(), B, H, T_, S, rank3_ok, target);
  }
  if (pad && !mask) {
    c.keep = m.key_padding.data();
    c.keep_sb = S;
  } else if (mask && !pad) {
    c.keep = m.attn_mask.data();
    c.keep_sb = ms[0];
    c.keep_sh = ms[1];
    c.keep_st = ms[2];
  } else if (mask && pad) {  // one buffer [B, Hm, T, S]: padding AND the mask
    const Index hm = ms[1] == 0 ? 1 : H;
    out.combined = std::make_unique<bool[]>(static_cast<std::size_t>(B * hm * T_ * S));
    bool* dst = out.combined.get();
    for (Index b = 0; b < B; ++b)
      for (Index h = 0; h < hm; ++h)
        for (Index t = 0; t < T_; ++t) {
          const bool* src = m.attn_mask.data() + b * ms[0] + h * ms[1] + t * ms[2];
          const bool* keep = m.key_padding.data() + b * S;
          for (Index j = 0; j < S; ++j) *dst++ = src[j] && keep[j];
        }
    c.keep = out.combined.get();
    c.keep_sb = hm * T_ * S;
    c.keep_sh = hm == 1 ? 0 : T_ * S;
    c.keep_st = S;
  }
  return out;
}

}  // namespace attn
