/// \file
/// The argument types of the attention core (`ops::attention`, `ops::attention_core`,
/// `ops::attention_reference`): strided read-only and writable head views and the mask bound to the
/// core's [batch, head, query, key] axes. Layers and the functions build these; users normally use the
/// typed masks of ops/masks.hpp instead of `AttentionMask` directly.
#pragma once

#include "attn/core/tensor.hpp"

namespace attn::ops {

/// A read-only [batch, len, heads, dim] view; the last axis is contiguous.
template <class T>
struct HeadsView {
  const T* data = nullptr;
  Index batch = 0, len = 0, heads = 0, dim = 0;
  Index s_batch = 0, s_len = 0, s_head = 0;
  [[nodiscard]] const T* at(Index b, Index l, Index h) const noexcept {
    return data + b * s_batch + l * s_len + h * s_head;
  }
};

/// A writable [batch, len, heads, dim] view; the last axis is contiguous.
template <class T>
struct HeadsOut {
  T* data = nullptr;
  Index batch = 0, len = 0, heads = 0, dim = 0;
  Index s_batch = 0, s_len = 0, s_head = 0;
  [[nodiscard]] T* at(Index b, Index l, Index h) const noexcept {
    return data + b * s_batch + l * s_len + h * s_head;
  }
};

/// Heads of width `dim` packed side by side in rows of `row_stride` elements starting at `base`:
/// e.g. Q of a fused QKV projection is heads_of(qkv, B, T, H, d, 3·H·d), K is heads_of(qkv + H·d, ...).
template <class T>
HeadsView<T> heads_of(const T* base, Index batch, Index len, Index heads, Index dim, Index row_stride) {
  return {base, batch, len, heads, dim, len * row_stride, row_stride, dim};
}
template <class T>
HeadsOut<T> heads_out(T* base, Index batch, Index len, Index heads, Index dim, Index row_stride) {
  return {base, batch, len, heads, dim, len * row_stride, row_stride, dim};
}

/// Which (query, key) pairs may attend, and an optional additive bias. Strides are in elements over
/// [batch, head, query] with the key axis contiguous; a stride of 0 broadcasts.
template <class T>
struct AttentionMask {
  bool causal = false;
  const Index* key_lengths = nullptr;  ///< [B] or null
  const bool* keep = nullptr;          ///< [.., T, S] or null
  Index keep_sb = 0, keep_sh = 0, keep_st = 0;
  const T* bias = nullptr;  ///< [.., T, S] or null
  Index bias_sb = 0, bias_sh = 0, bias_st = 0;
  /// > 0: batch item b reads the bias of item b mod bias_period. A batch of windows of several
  /// images (Swin: nW windows per image) shares one bias per window position this way, without a
  /// copy per image.
  Index bias_period = 0;

  /// The batch index whose bias item b reads (see bias_period).
  [[nodiscard]] Index bias_item(Index b) const noexcept { return bias_period > 0 ? b % bias_period : b; }
  [[nodiscard]] bool any() const noexcept {
    return causal || key_lengths != nullptr || keep != nullptr || bias != nullptr;
  }
};

}  // namespace attn::ops
