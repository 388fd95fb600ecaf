/// \file
/// The two gates of CBAM (Woo et al., 2018, "CBAM: Convolutional Block Attention Module"), shared by
/// the `channel`, `spatial` and `cbam` layers: each declares its weights (the reference's names, under
/// a prefix inside `cbam`) and returns their slots; the layer keeps the slots and, after its
/// `check_weights()`, runs the gate on them. The kernels are in ops/gates.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/gates.hpp"
#include "attn/ops/linear.hpp"

namespace attn::detail {

/// The channel gate: a shared bottleneck MLP (dense_1: C → C/ratio with ReLU, dense_2: C/ratio → C)
/// over the average- and max-pooled descriptors, summed, then the sigmoid.
struct ChannelGate {
  std::string prefix;  ///< "" for the `channel` layer, "channel_attention/" inside `cbam`
  Index channels = 0;
  Index hidden = 0;
  bool use_bias = false;

  struct Slots {
    WeightSlot k1, b1, k2, b2;
  };

  [[nodiscard]] std::string name(std::string_view leaf) const { return prefix + std::string(leaf); }

  /// Declares the weights in the reference's order: dense_1 kernel [C, C/r], dense_1 bias [C/r],
  /// dense_2 kernel [C/r, C], dense_2 bias [C] (biases only with use_bias, zero-initialised).
  template <class T>
  Slots add_weights(WeightSet<T>& w, std::string_view initializer, std::uint64_t seed) const {
    Slots s;
    s.k1 = w.add(name("channel_attention_dense_1/kernel"), {channels, hidden}, initializer, seed);
    if (use_bias) s.b1 = w.add(name("channel_attention_dense_1/bias"), {hidden}, "zeros", seed);
    s.k2 = w.add(name("channel_attention_dense_2/kernel"), {hidden, channels}, initializer, seed);
    if (use_bias) s.b2 = w.add(name("channel_attention_dense_2/bias"), {channels}, "zeros", seed);
    return s;
  }

  /// gate[b, :] = sigmoid(MLP(avg[b, :]) + MLP(max[b, :])),  MLP(z) = relu(z·W1 + b1)·W2 + b2.
  /// x `[B, P, C]` with P >= 1 pixels; gate `[B, C]`. The weights were checked by the layer.
  template <class T>
  void operator()(const WeightSet<T>& w, const Slots& s, const T* x, Index batch, Index pixels, T* gate) const {
    const auto opt = [&](WeightSlot slot) { return slot.declared() ? &w[slot.index] : nullptr; };
    // rows [0, B) hold the average descriptors, rows [B, 2B) the max descriptors: one GEMM per dense
    Matrix<T> pooled(2 * batch, channels);
    ops::global_avg_max_pool(x, batch, pixels, channels, pooled.data(), pooled.data() + batch * channels);
    Matrix<T> h(2 * batch, hidden);
    ops::dense(pooled.data(), 2 * batch, w[s.k1.index], opt(s.b1), h.data());
    h = h.cwiseMax(T(0));
    Matrix<T> z(2 * batch, channels);
    ops::dense(h.data(), 2 * batch, w[s.k2.index], opt(s.b2), z.data());
    MatrixMap<T> g(gate, batch, channels);
    g = z.topRows(batch) + z.bottomRows(batch);
    ops::sigmoid_inplace(gate, batch * channels);
  }
};

/// The spatial gate: per-pixel channel mean and max (in that order) as 2 channels, a k×k 'same'
/// convolution to 1 channel (+ bias), then the sigmoid.
struct SpatialGate {
  std::string prefix;  ///< "" for the `spatial` layer, "spatial_attention/" inside `cbam`
  Index kh = 7;
  Index kw = 7;
  bool use_bias = true;

  struct Slots {
    WeightSlot kernel, bias;
  };

  [[nodiscard]] std::string name(std::string_view leaf) const { return prefix + std::string(leaf); }

  /// Declares conv kernel [kh, kw, 2, 1] (input channel 0 = mean map, 1 = max map) and, with
  /// use_bias, bias [1] (zero-initialised).
  template <class T>
  Slots add_weights(WeightSet<T>& w, std::string_view initializer, std::uint64_t seed) const {
    Slots s;
    s.kernel = w.add(name("spatial_attention_conv/kernel"), {kh, kw, 2, 1}, initializer, seed);
    if (use_bias) s.bias = w.add(name("spatial_attention_conv/bias"), {1}, "zeros", seed);
    return s;
  }

  /// gate[b, r, c] = sigmoid(conv([mean_c x ; max_c x])[b, r, c] + bias). x `[B, H, W, C]` with
  /// C >= 1; gate `[B, H, W]`. The weights were checked by the layer.
  template <class T>
  void operator()(const WeightSet<T>& w, const Slots& s, const T* x, Index batch, Index height, Index width,
                  Index channels, T* gate) const {
    const Index n = batch * height * width;
    std::vector<T> z(static_cast<std::size_t>(2 * n));
    ops::channel_avg_max(x, n, channels, z.data());
    ops::conv2d_same(z.data(), batch, height, width, w[s.kernel.index],
                     s.bias.declared() ? &w[s.bias.index] : nullptr, gate);
    ops::sigmoid_inplace(gate, n);
  }
};

}  // namespace attn::detail
