/// \file
/// `multi_head_self_attention` — UniFormer's plain multi-head self-attention block (Li et al., 2022,
/// "UniFormer: Unifying Convolution and Self-attention for Visual Recognition"; KCAM `uniformer.py`,
/// spec kcam_attention_layers.md §5.10 with §2.1).
///
/// Shapes: input a feature map `[B, H, W, C]` (the factory's door) or tokens `[B, N, C]` (the typed
/// class), C = `channels`; output the input's shape with `O` channels. Derived sizes: head width
/// `d = key_dim` if > 0, else `C / num_heads` (floor); `E = num_heads·d`; `O = out_shape` (null: C; C
/// when `out_weight` is false); value width per head `d_v = O / num_heads`.
/// Forward (tokens in raster order, n = y·W + x):
///   t = x·Wqkv [+ bqkv];  q, k, v = t[:, :E], t[:, E:2E], t[:, 2E:]   (block layout, each head-major)
///   per head: P = softmax(q kᵀ·d^−0.5 [+ pos_emb]);  y = merge(P v)   ([B, N, num_heads·d_v])
///   out = y·Wout [+ bout] when out_weight, else y.
/// `pos_emb` (optional, typed class): a bias `[num_heads | 1, N, N]` added to the scaled logits inside
/// the attention core, e.g. the `attention_bias()` of a positional-embedding layer — the reference's
/// `pos_emb` callable is such a bias-adding layer (HEAD; the seed era had no `pos_emb`).
/// Attention weights `[B, num_heads, N, N]` on request (`forward_with_weights`, typed class).
///
/// Weights (Keras layouts, the reference's layer names): `qkv/kernel [C, 2E + O]` (glorot_uniform),
/// `qkv/bias [2E + O]` (zeros) when `qkv_bias`; `output/kernel [num_heads·d_v, O]`, `output/bias [O]`
/// when `out_bias`, both only when `out_weight`.
///
/// Validation (ConfigError): `channels`, `num_heads`, `out_shape` positive; `key_dim` >= 0;
/// dropouts in [0, 1]; "channels (C) must be at least num_heads (h) when key_dim is 0" (d would be 0);
/// "out_shape (O) must be divisible by num_heads (h)" (the reference's value reshape fails there).
/// Input checks (ShapeError naming the layer): rank 3 or 4 with C channels; a `pos_emb` of another shape.
///
/// Differences from the reference (deliberate): the input width is a parameter (`channels`), since the
/// weights exist before the first call; dropout is the identity (inference library; the rates are kept
/// for the round trip); `name` is not a parameter (weights are loaded under a prefix instead).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/param.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/global_blocks.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/vision_layers.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

struct MultiHeadSelfAttentionConfig {
  int channels = 0;
  int num_heads = 4;
  int key_dim = 0;
  std::optional<int> out_shape{};
  bool out_weight = true;
  bool qkv_bias = false;
  bool out_bias = false;
  double attn_dropout = 0.0;
  double output_dropout = 0.0;

  static constexpr std::string_view type_name = "multi_head_self_attention";
  static constexpr std::string_view class_name = "MultiHeadSelfAttention";
  static constexpr std::string_view description =
      "UniFormer's plain multi-head self-attention over every position of a feature map (or tokens), with a "
      "fused Dense qkv projection and an output Dense.";
  static constexpr std::string_view use_case =
      "Global self-attention stages of hybrid CNN/transformer vision models (UniFormer).";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = MultiHeadSelfAttentionConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "16",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Input channels C (the reference reads them from the input). Beyond the reference."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive, .doc = "Number of attention heads."},
        Field<C>{.name = "key_dim", .member = member<&C::key_dim>, .range = non_negative,
                 .doc = "Per-head query/key width; 0: channels // num_heads."},
        Field<C>{.name = "out_shape", .member = member<&C::out_shape>, .range = positive,
                 .doc = "Output channels O (null: channels); the value width is O, O // num_heads per head."},
        Field<C>{.name = "out_weight", .member = member<&C::out_weight>,
                 .doc = "Apply the output Dense (false: O = channels, no projection)."},
        Field<C>{.name = "qkv_bias", .member = member<&C::qkv_bias>, .doc = "Bias on the qkv Dense."},
        Field<C>{.name = "out_bias", .member = member<&C::out_bias>, .doc = "Bias on the output Dense."},
        Field<C>{.name = "attn_dropout", .member = member<&C::attn_dropout>, .range = unit_interval,
                 .doc = "Dropout on the attention probabilities (identity at inference)."},
        Field<C>{.name = "output_dropout", .member = member<&C::output_dropout>, .range = unit_interval,
                 .doc = "Dropout on the output (identity at inference)."},
    };
  }

  [[nodiscard]] Index head_dim() const noexcept { return key_dim > 0 ? key_dim : channels / num_heads; }
  [[nodiscard]] Index out_channels() const noexcept { return out_weight ? out_shape.value_or(channels) : channels; }
  [[nodiscard]] Index value_dim() const noexcept { return out_channels() / num_heads; }

  void check(Problems& p) const {
    if (channels <= 0 || num_heads <= 0) return;
    if (key_dim == 0 && channels < num_heads)
      p.push_back({"num_heads", fmt::format("channels ({}) must be at least num_heads ({}) when key_dim is 0",
                                            channels, num_heads)});
    else if (out_channels() % num_heads != 0)
      p.push_back({out_weight && out_shape ? "out_shape" : "channels",
                   fmt::format("{} ({}) must be divisible by num_heads ({})",
                               out_weight && out_shape ? "out_shape" : "channels", out_channels(), num_heads)});
  }
};
static_assert(config_table_is_sound<MultiHeadSelfAttentionConfig>());

template <class T = float>
class MultiHeadSelfAttention : public LayerBase<MultiHeadSelfAttention<T>, MultiHeadSelfAttentionConfig, T> {
  using Base = LayerBase<MultiHeadSelfAttention, MultiHeadSelfAttentionConfig, T>;
  friend Base;

public:
  using Config = MultiHeadSelfAttentionConfig;
  using Scalar = T;
  using PositionBias = detail::global::PositionBias<T>;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit MultiHeadSelfAttention(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    detail::global::input_of(Config::type_name, x, config_.channels);
    return detail::global::with_channels(x, config_.out_channels());
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 3, 5, c.channels}}; }

  /// out `[B, H, W, O]` of x `[B, H, W, C]`; `pos_emb` `[num_heads | 1, H·W, H·W]` added to the logits.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x, const PositionBias& pos_emb = {}) const {
    return run<4>(view_of<T, 4>(x), pos_emb, nullptr);
  }
  /// out `[B, N, O]` of tokens x `[B, N, C]`.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const PositionBias& pos_emb = {}) const {
    return run<3>(view_of<T, 3>(x), pos_emb, nullptr);
  }
  /// The output and the attention weights `[B, num_heads, H·W, H·W]`.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] FeatureMapResult<T> forward_with_weights(const X& x, const PositionBias& pos_emb = {}) const {
    FeatureMapResult<T> r;
    r.output = run<4>(view_of<T, 4>(x), pos_emb, &r.weights);
    return r;
  }
  /// The output and the attention weights `[B, num_heads, N, N]` of tokens.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const X& x, const PositionBias& pos_emb = {}) const {
    AttentionResult<T> r;
    r.output = run<3>(view_of<T, 3>(x), pos_emb, &r.weights);
    return r;
  }

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot qkv_kernel, qkv_bias, out_kernel, out_bias;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels, E = config_.num_heads * config_.head_dim(), O = config_.out_channels();
    Slots s;
    s.qkv_kernel = w.add("qkv/kernel", {C, 2 * E + O}, "glorot_uniform", seed);
    if (config_.qkv_bias) s.qkv_bias = w.add("qkv/bias", {2 * E + O}, "zeros", seed);
    if (config_.out_weight) {
      s.out_kernel = w.add("output/kernel", {config_.num_heads * config_.value_dim(), O}, "glorot_uniform", seed);
      if (config_.out_bias) s.out_bias = w.add("output/bias", {O}, "zeros", seed);
    }
    slots_ = s;
  }

  template <int R>
  Tensor<T, R> run(const ConstTensorView<T, R>& x, const PositionBias& pos, Tensor<T, 4>* weights) const {
    namespace g = detail::global;
    const Shape xs = shape_of(x);
    const g::GlobalInput in = g::input_of(Config::type_name, xs, config_.channels);
    this->check_weights();
    const Index B = in.batch, N = in.tokens(), h = config_.num_heads, d = config_.head_dim();
    const Index E = h * d, O = config_.out_channels(), dv = config_.value_dim(), ld = 2 * E + O;
    pos.check(Config::type_name, "pos_emb", h, N, N);
    Tensor<T, R> y;
    {
      Shape os = g::with_channels(xs, O);
      std::array<Index, R> dims{};
      std::copy(os.begin(), os.end(), dims.begin());
      y = Tensor<T, R>(dims);
    }
    if (weights) *weights = Tensor<T, 4>(B, h, N, N);
    if (B == 0 || N == 0) return y;
    ScratchFrame scratch;
    T* t = scratch.get<T>(B * N * ld);
    T* ctx = config_.out_weight ? scratch.get<T>(B * N * h * dv) : y.data();
    g::project(x.data(), B * N, this->weight(slots_.qkv_kernel), this->optional_weight(slots_.qkv_bias), t);
    ops::attention(ops::heads_of<T>(t, B, N, h, d, ld), ops::heads_of<T>(t + E, B, N, h, d, ld),
                   ops::heads_of<T>(t + 2 * E, B, N, h, dv, ld), ops::heads_out<T>(ctx, B, N, h, dv, h * dv),
                   static_cast<T>(1.0 / std::sqrt(double(d))), pos.mask(), weights ? weights->data() : nullptr);
    if (config_.out_weight)
      g::project(ctx, B * N, this->weight(slots_.out_kernel), this->optional_weight(slots_.out_bias), y.data());
    return y;
  }

  Slots slots_;
};

}  // namespace attn
