/// \file
/// `mobile_mqa` — MobileNetV4's mobile multi-query attention (Qin et al., 2024, "MobileNetV4: Universal
/// Models for the Mobile Ecosystem"; multi-query attention: Shazeer, 2019): per-head queries, one shared
/// single-head key and value, optionally downsampled by a stride-2 depthwise 3×3 convolution, an output
/// projection and the reference's gated residual x + λ·attn(x).
///
/// Shapes: input x `[B, H, W, dim]` (H, W >= 1); output `[B, H, W, dim]`. Optional attention weights
/// `[B, num_heads, H·W, S]` with S = H·W, or ⌈H/2⌉·⌈W/2⌉ with downsampling (positions row-major).
/// Forward (h = num_heads, d = dim / h):
///   q  = x·Wq + bq                                   [B, H·W, dim] → h heads of width d
///   kv = x·Wkv + bkv                                 [B, H, W, 2d]
///   kv = DepthwiseConv_{3×3, stride 2, Keras 'same'}(kv) + b     (use_downsampling)
///   k, v = kv[..., :d], kv[..., d:]                  one head, shared by every query head
///   O  = softmax(Q Kᵀ / √d) V;   out = x + λ·(merge(O)·Wo + bo)
/// No mask (as the reference). `forward_with_weights` returns the weights on the typed layer; the
/// factory's forward door does not (its weights are `[B, heads, T, S]` of sequence inputs).
///
/// Weights (reference names, Keras layouts, in this order): `lambda` (a scalar, shape [], init 1),
/// `q_proj/kernel [dim, dim]`, `q_proj/bias [dim]`, `kv_proj/kernel [dim, 2d]`, `kv_proj/bias [2d]`,
/// `o_proj/kernel [dim, dim]`, `o_proj/bias [dim]`, and with use_downsampling `downsample/kernel
/// [3, 3, 2d, 1]`, `downsample/bias [2d]` (Keras 3.8 names the depthwise variable `kernel`; a checkpoint
/// that calls it `depthwise_kernel` must be renamed before loading). Kernels from kernel_initializer
/// (he_normal), biases zeros.
///
/// Validation: `dim`, `num_heads` positive (factory wording), "dim (D) must be divisible by num_heads
/// (h)". Input checks (ShapeError naming mobile_mqa): rank 4, channels dim, H and W >= 1.
/// `kernel_regularizer` is kept for the round trip.
///
/// Differences from the reference (deliberate): with use_downsampling and an odd H or W the reference
/// crashes (its convolution yields ⌈H/2⌉ × ⌈W/2⌉ keys but it reshapes to ⌊H/2⌋ × ⌊W/2⌋; spec §4.12,
/// Appendix B: 7×7 → 4×4 keys). Here the keys are the convolution's actual output, ⌈H/2⌉·⌈W/2⌉ (7×7 →
/// 16 keys); even sizes are unchanged (8×8 → 16 keys, 6×10 → 15). The input width is checked (the
/// reference fails at its first call when C ≠ dim).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/param.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/vision_layers.hpp"
#include "attn/ops/conv.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

struct MobileMQAConfig {
  int dim = 0;
  int num_heads = 8;
  bool use_downsampling = false;
  std::string_view kernel_initializer = "he_normal";

  static constexpr std::string_view type_name = "mobile_mqa";
  static constexpr std::string_view class_name = "MobileMQA";
  static constexpr std::string_view description =
      "Mobile multi-query attention for feature maps: per-head queries, one shared key/value head "
      "(optionally downsampled), and a gated residual.";
  static constexpr std::string_view use_case = "Efficient attention on edge devices (MobileNetV4-style blocks).";
  static constexpr std::array<std::string_view, 1> training_only{"kernel_regularizer"};

  static constexpr auto fields() {
    using C = MobileMQAConfig;
    return std::array{
        Field<C>{.name = "dim", .member = member<&C::dim>, .required = true, .example = "16",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Channels of the input and output; num_heads x head width."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive, .doc = "Number of query heads; must divide dim."},
        Field<C>{.name = "use_downsampling", .member = member<&C::use_downsampling>,
                 .doc = "Downsample keys and values with a stride-2 depthwise 3x3 convolution."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the dense and depthwise kernels."},
    };
  }

  void check(Problems& p) const {
    if (num_heads > 0 && dim % num_heads != 0)
      p.push_back({"num_heads", fmt::format("dim ({}) must be divisible by num_heads ({})", dim, num_heads)});
  }
  [[nodiscard]] Index head_dim() const noexcept { return num_heads > 0 ? dim / num_heads : 0; }
};
static_assert(config_table_is_sound<MobileMQAConfig>());

template <class T = float>
class MobileMQA : public LayerBase<MobileMQA<T>, MobileMQAConfig, T>,
                  public detail::MapDoor<MobileMQA<T>, T> {
  using Base = LayerBase<MobileMQA, MobileMQAConfig, T>;
  friend Base;
  friend detail::MapDoor<MobileMQA<T>, T>;

public:
  using Config = MobileMQAConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit MobileMQA(const Config& config, std::uint64_t seed = 0) : Base(config) { this->reset_parameters(seed); }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 5, 7, c.dim}}; }

  /// The number of keys for an H × W map: H·W, or ⌈H/2⌉·⌈W/2⌉ with downsampling.
  [[nodiscard]] Index keys(Index h, Index w) const noexcept {
    return config_.use_downsampling ? ((h + 1) / 2) * ((w + 1) / 2) : h * w;
  }

  // forward(x): out `[B, H, W, dim]` of x `[B, H, W, dim]`.
  // forward_with_weights(x): also the attention weights `[B, num_heads, H·W, S]` (detail::MapDoor).

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot lambda, q_kernel, q_bias, kv_kernel, kv_bias, o_kernel, o_bias, ds_kernel, ds_bias;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index c = config_.dim, d = config_.head_dim();
    const auto ki = config_.kernel_initializer;
    Slots s;
    s.lambda = w.add("lambda", {}, "ones", seed);
    s.q_kernel = w.add("q_proj/kernel", {c, c}, ki, seed);
    s.q_bias = w.add("q_proj/bias", {c}, "zeros", seed);
    s.kv_kernel = w.add("kv_proj/kernel", {c, 2 * d}, ki, seed);
    s.kv_bias = w.add("kv_proj/bias", {2 * d}, "zeros", seed);
    s.o_kernel = w.add("o_proj/kernel", {c, c}, ki, seed);
    s.o_bias = w.add("o_proj/bias", {c}, "zeros", seed);
    if (config_.use_downsampling) {
      s.ds_kernel = w.add("downsample/kernel", {3, 3, 2 * d, 1}, ki, seed);
      s.ds_bias = w.add("downsample/bias", {2 * d}, "zeros", seed);
    }
    slots_ = s;
  }

  void check_input(const Shape& x) const {
    if (x.size() != 4 || x[3] != config_.dim || x[1] < 1 || x[2] < 1)
      throw ShapeError(fmt::format("mobile_mqa: input must have shape [batch, height >= 1, width >= 1, {}], got {}",
                                   config_.dim, shape_str(x)));
  }

  Tensor<T, 4> run(ConstTensorView<T, 4> x, Tensor<T, 4>* weights) const {
    const Shape xs = shape_of(x);
    check_input(xs);
    this->check_weights();
    const Index B = xs[0], Hs = xs[1], Ws = xs[2], C = xs[3], P = Hs * Ws, H = config_.num_heads;
    const Index d = config_.head_dim(), S = keys(Hs, Ws);
    const ops::AttentionMask<T> no_mask{};
    Tensor<T, 4> y(B, Hs, Ws, C);
    if (weights) *weights = Tensor<T, 4>(B, H, P, S);
    if (B == 0) return y;
    ScratchFrame scratch;
    T* q = scratch.get<T>(B * P * C);
    T* kv = scratch.get<T>(B * P * 2 * d);
    T* ctx = scratch.get<T>(B * P * C);
    ops::dense(x.data(), B * P, this->weight(slots_.q_kernel), this->optional_weight(slots_.q_bias), q);
    ops::dense(x.data(), B * P, this->weight(slots_.kv_kernel), this->optional_weight(slots_.kv_bias), kv);
    const T* keys_values = kv;
    if (config_.use_downsampling) {
      T* ds = scratch.get<T>(B * S * 2 * d);
      const Weight<T>& k = this->weight(slots_.ds_kernel);
      const Weight<T>& b = this->weight(slots_.ds_bias);
      ops::Conv2dOptions opt;
      opt.strides = {2, 2};
      opt.padding = ops::Padding2d::same();
      opt.layer = "mobile_mqa";
      ops::depthwise_conv2d<T>(kv, {B, Hs, Ws, 2 * d}, k.data.data(), k.shape, b.data.data(), 2 * d, ds, opt);
      keys_values = ds;
    }
    ops::attention(ops::heads_of<T>(q, B, P, H, d, C), ops::heads_of<T>(keys_values, B, S, 1, d, 2 * d),
                   ops::heads_of<T>(keys_values + d, B, S, 1, d, 2 * d), ops::heads_out<T>(ctx, B, P, H, d, C),
                   static_cast<T>(1.0 / std::sqrt(double(d))), no_mask, weights ? weights->data() : nullptr);
    ops::dense(ctx, B * P, this->weight(slots_.o_kernel), this->optional_weight(slots_.o_bias), y.data());
    const T lambda = this->weight(slots_.lambda).data[0];
    MatrixMap<T> Y(y.data(), B * P, C);
    Y = ConstMatrixMap<T>(x.data(), B * P, C) + lambda * Y;
    return y;
  }

  Slots slots_;
};

}  // namespace attn
