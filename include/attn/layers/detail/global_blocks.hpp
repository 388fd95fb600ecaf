/// \file
/// What the global attention blocks of KCAM (spec kcam_attention_layers.md §5: `multi_head_self_attention`,
/// `cross_covariance_attention`, `multi_head_self_attention_channel`, the BoTNet, CoAtNet, LeViT and CMT
/// blocks) share:
///
/// - `GlobalInput`: the geometry of a block's input, a feature map `[B, H, W, C]` or tokens `[B, N, C]`
///   (the reference flattens a map in raster order, token `y·W + x`, which is the same memory), with the
///   shape check (ShapeError naming the layer, expected and actual).
/// - `project`: a Dense (`[C_in, C_out]` kernel) or a 1×1 convolution (`[1, 1, C_in, C_out]`, the
///   reference's `conv2d_no_bias(kernel_size=1)`) applied to rows of channels, plus an optional bias.
/// - `PositionBias<T>`: an additive bias on the scaled logits, `[heads | 1, Nq, Nk]` (the
///   `attention_bias()` of a positional-embedding layer, or a block's own table), which the attention
///   core adds inside its logits: no `[B, h, Nq, Nk]` score tensor exists unless weights are asked for.
/// - `channel_attention`: attention over channels (XCA, DaViT's channel attention): per head the `d`
///   channels are the queries and keys, the `N` tokens their features; the attention core runs on the
///   channel-major copies `[B, h, d, N]` (scores `[B, h, d, d]`), optionally l2-normalizing Q and K over
///   the tokens as TensorFlow's `l2_normalize` (`x / sqrt(max(Σx², ε))`) and scaling each head's
///   queries by its temperature.
/// - `BnSlots`: the inference BatchNorm of LeViT's blocks (`<prefix>/gamma, beta, moving_mean,
///   moving_variance`, ε = 1e-5), and `interleaved`: a head view whose heads are interleaved with other
///   parts (LeViT's per-head q | k | v layout).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/vision_layers.hpp"
#include "attn/ops/heads.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/norm.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn::detail::global {

/// The geometry of a block input `[B, H, W, C]` (rank 4) or `[B, N, C]` (rank 3; H = N, W = 1).
struct GlobalInput {
  Index batch = 0, height = 0, width = 0, channels = 0;
  [[nodiscard]] Index tokens() const noexcept { return height * width; }
  [[nodiscard]] Index rows() const noexcept { return batch * height * width; }
};

/// Checks x (rank 3 or 4) against `channels` and returns its geometry; ShapeError otherwise.
inline GlobalInput input_of(std::string_view layer, const Shape& x, Index channels) {
  if (x.size() == 4) {
    check_shape(layer, "input", x, {-1, -1, -1, channels}, "([batch, height, width, channels])");
    return {x[0], x[1], x[2], x[3]};
  }
  check_shape(layer, "input", x, {-1, -1, channels}, "([batch, tokens, channels])");
  return {x[0], x[1], 1, x[2]};
}

/// The output shape: the input's with the last extent `out`.
inline Shape with_channels(Shape x, Index out) {
  x.back() = out;
  return x;
}

/// y[rows, out] = x[rows, in] · kernel + bias, for a Dense kernel `[in, out]` or a 1×1 convolution kernel
/// `[1, 1, in, out]` (row-major, so both are the same matrix). `y` must not alias `x`.
template <class T>
void project(const T* x, Index rows, const Weight<T>& kernel, const Weight<T>* bias, T* y) {
  const Index in = kernel.shape[kernel.shape.size() - 2], out = kernel.shape.back();
  if (rows == 0 || out == 0) return;
  ops::gemm<T>(rows, out, in, x, in, kernel.data.data(), out, /*b_trans=*/false, y, out);
  if (bias != nullptr) MatrixMap<T>(y, rows, out).rowwise() += bias->row();
}

/// An additive bias `[heads | 1, Nq, Nk]` (contiguous) on the scaled logits; empty: none.
template <class T>
struct PositionBias {
  const T* data = nullptr;
  Index heads = 0, nq = 0, nk = 0;

  PositionBias() = default;
  PositionBias(const Tensor<T, 3>& t)  // NOLINT(google-explicit-constructor)
      : data(t.data()), heads(t.dimension(0)), nq(t.dimension(1)), nk(t.dimension(2)) {}
  [[nodiscard]] bool given() const noexcept { return data != nullptr || heads != 0; }

  /// Throws ShapeError unless the bias is `[heads | 1, nq, nk]`.
  void check(std::string_view layer, std::string_view what, Index h, Index q, Index k) const {
    if (!given()) return;
    if ((heads != h && heads != 1) || nq != q || nk != k)
      throw ShapeError(fmt::format("{}: {} must have shape [{} or 1, {}, {}], got [{}, {}, {}]", layer, what, h, q,
                                   k, heads, nq, nk));
  }
  /// The core's bias binding (broadcast over the batch, and over heads for a single-head bias).
  [[nodiscard]] ops::AttentionMask<T> mask() const {
    ops::AttentionMask<T> m{};
    if (!given()) return m;
    m.bias = data;
    m.bias_sb = 0;
    m.bias_sh = heads == 1 ? 0 : nq * nk;
    m.bias_st = nk;
    return m;
  }
};

/// Copies channel block `[offset, offset + h·d)` of token-major rows (stride `ld`) into channel-major
/// `[B, h, d, N]`; with `l2`, each channel row is divided by sqrt(max(Σ_n x², 1e-6)); with `mult`, head
/// i's rows are then multiplied by mult[i].
template <class T>
void to_channel_major(const T* src, Index ld, Index offset, Index B, Index N, Index h, Index d, bool l2,
                      const T* mult, T* dst) {
  for (Index b = 0; b < B; ++b)
    for (Index n = 0; n < N; ++n) {
      const T* row = src + (b * N + n) * ld + offset;
      for (Index c = 0; c < h * d; ++c) dst[((b * h * d) + c) * N + n] = row[c];
    }
  if (!l2 && mult == nullptr) return;
  for (Index r = 0; r < B * h * d; ++r) {
    T* x = dst + r * N;
    T f = T(1);
    if (l2) {
      T ss = T(0);
      for (Index n = 0; n < N; ++n) ss += x[n] * x[n];
      f = T(1) / std::sqrt(std::max(ss, T(1e-6)));
    }
    if (mult != nullptr) f *= mult[(r / d) % h];
    for (Index n = 0; n < N; ++n) x[n] *= f;
  }
}

/// Attention over channels (file comment). q, k, v: channel blocks at offsets `oq`, `ok`, `ov` of the
/// token-major rows `t` (stride `ld`, `B·N` rows), each `h·d` wide, head-major. Writes the result
/// token-major to `out` `[B, N, h·d]` and, when not null, the weights `[B, h, d, d]`.
template <class T>
void channel_attention(const T* t, Index ld, Index oq, Index ok, Index ov, Index B, Index N, Index h, Index d,
                       bool l2, const T* q_mult, T scale, T* out, T* weights) {
  if (B == 0 || N == 0 || h * d == 0) return;
  ScratchFrame scratch;
  const Index n = B * h * d * N;
  T* qt = scratch.get<T>(n);
  T* kt = scratch.get<T>(n);
  T* vt = scratch.get<T>(n);
  T* ot = scratch.get<T>(n);
  to_channel_major(t, ld, oq, B, N, h, d, l2, q_mult, qt);
  to_channel_major(t, ld, ok, B, N, h, d, l2, static_cast<const T*>(nullptr), kt);
  to_channel_major(t, ld, ov, B, N, h, d, false, static_cast<const T*>(nullptr), vt);
  const auto view = [&](const T* p) { return ops::HeadsView<T>{p, B, d, h, N, h * d * N, N, d * N}; };
  const ops::HeadsOut<T> o{ot, B, d, h, N, h * d * N, N, d * N};
  ops::attention(view(qt), view(kt), view(vt), o, scale, ops::AttentionMask<T>{}, weights);
  for (Index b = 0; b < B; ++b)
    for (Index c = 0; c < h * d; ++c) {
      const T* row = ot + (b * h * d + c) * N;
      for (Index m = 0; m < N; ++m) out[(b * N + m) * h * d + c] = row[m];
    }
}

/// LeViT's BatchNorm weights `<prefix>/gamma, beta, moving_mean, moving_variance` `[channels]`.
struct BnSlots {
  WeightSlot gamma, beta, mean, var;
  template <class T>
  static BnSlots add(WeightSet<T>& w, const std::string& prefix, Index channels, bool zero_gamma, std::uint64_t seed) {
    BnSlots s;
    s.gamma = w.add(prefix + "/gamma", {channels}, zero_gamma ? "zeros" : "ones", seed);
    s.beta = w.add(prefix + "/beta", {channels}, "zeros", seed);
    s.mean = w.add(prefix + "/moving_mean", {channels}, "zeros", seed, /*trainable=*/false);
    s.var = w.add(prefix + "/moving_variance", {channels}, "ones", seed, /*trainable=*/false);
    return s;
  }
  /// In place on `rows` rows of `channels`, ε = 1e-5.
  template <class T>
  void apply(const WeightSet<T>& w, T* x, Index rows, Index channels, std::string_view layer) const {
    ops::batch_norm<T>(x, rows, channels, w[gamma.index].data.data(), w[beta.index].data.data(),
                       w[mean.index].data.data(), w[var.index].data.data(), 1e-5, x, layer);
  }
};

/// The per-head interleaved view of LeViT: head i's `dim` channels start at `offset + i·head_stride` of
/// rows of `ld` values.
template <class T>
ops::HeadsView<T> interleaved(const T* base, Index batch, Index len, Index heads, Index dim, Index ld,
                              Index head_stride) {
  return {base, batch, len, heads, dim, len * ld, ld, head_stride};
}

/// The forward door of a block that takes a feature map `[B, H, W, C]` or tokens `[B, N, C]`:
/// `forward` and `forward_with_weights` (the weights `[B, heads, ·, ·]`) for both ranks, over the
/// block's `template <int R> Tensor<T, R> run(const ConstTensorView<T, R>&, Tensor<T, 4>* weights)
/// const` (a friend of this class when private).
template <class Block, class T>
class MapOrTokensDoor {
public:
  /// out `[B, H, W, ·]` of x `[B, H, W, C]`.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    return block().template run<4>(view_of<T, 4>(x), nullptr);
  }
  /// out `[B, N, ·]` of tokens x `[B, N, C]`.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x) const {
    return block().template run<3>(view_of<T, 3>(x), nullptr);
  }
  /// The output and the attention weights.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] FeatureMapResult<T> forward_with_weights(const X& x) const {
    FeatureMapResult<T> r;
    r.output = block().template run<4>(view_of<T, 4>(x), &r.weights);
    return r;
  }
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const X& x) const {
    AttentionResult<T> r;
    r.output = block().template run<3>(view_of<T, 3>(x), &r.weights);
    return r;
  }

private:
  [[nodiscard]] const Block& block() const noexcept { return static_cast<const Block&>(*this); }
};

}  // namespace attn::detail::global
