/// \file
/// `cross_covariance_attention` — EdgeNeXt's cross-covariance attention (XCA): attention over channels
/// with l2-normalized queries and keys and a learned temperature per head (Ali et al., 2021, "XCiT:
/// Cross-Covariance Image Transformers"; Maaz et al., 2022, "EdgeNeXt"; KCAM `edgenext.py`, spec
/// kcam_attention_layers.md §5.2 and its errata).
///
/// Shapes: input a feature map `[B, H, W, C]` (the factory's door) or tokens `[B, N, C]` (the typed
/// class), C = `channels`; output the input's shape with `D = num_heads·d` channels, `d = key_dim` if > 0,
/// else `C / num_heads` (floor). Attention weights `[B, num_heads, d, d]` (channels × channels) on
/// request (`forward_with_weights`, typed class).
/// Forward (tokens in raster order):
///   q, k, v = split(x·Wqkv + bqkv, 3)   (each [B, N, D], head-major)
///   per head: Q̂ = l2_normalize(qᵀ over the tokens), K̂ = l2_normalize(kᵀ over the tokens)   ([d, N])
///             A = softmax(τ_h · Q̂ K̂ᵀ) ([d, d], rows over the key channels);  Y = A vᵀ   ([d, N])
///   out = merge(Yᵀ)·Wout [+ bout]
/// with TensorFlow's `l2_normalize`: x / sqrt(max(Σ x², 1e-6)) (the clamp is on the squared norm). No
/// 1/√d scale (the temperature replaces it). The attention core runs on channel-major copies of Q̂ (times
/// τ_h), K̂ and v, so the d × d scores are never materialized unless the weights are asked for.
///
/// Weights (Keras layouts, the reference's layer names): `qkv/kernel [C, 3D]` (glorot_uniform),
/// `qkv/bias [3D]` (zeros; always present: the reference ignores `qkv_bias`),
/// `temperature/no_weight_decay/weight [num_heads, 1, 1]` (ones; the whole string is the weight's
/// name), `output/kernel [D, D]`, `output/bias [D]` when `out_bias` (default true).
///
/// Validation (ConfigError): `channels`, `num_heads` positive; `key_dim` >= 0; dropouts in [0, 1];
/// "channels (C) must be at least num_heads (h) when key_dim is 0". Input checks (ShapeError naming
/// the layer): rank 3 or 4 with C channels.
///
/// Differences from the reference (deliberate): the input width is a parameter (`channels`); `qkv_bias`
/// is accepted and kept for the round trip but, as in the reference, the qkv projection always has a
/// bias (spec errata); dropout is the identity (inference; rates kept).
#pragma once

#include <array>
#include <cstdint>
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

namespace attn {

struct CrossCovarianceAttentionConfig {
  int channels = 0;
  int num_heads = 4;
  int key_dim = 0;
  bool qkv_bias = true;
  bool out_bias = true;
  double attn_dropout = 0.0;
  double out_dropout = 0.0;

  static constexpr std::string_view type_name = "cross_covariance_attention";
  static constexpr std::string_view class_name = "CrossCovarianceAttention";
  static constexpr std::string_view description =
      "EdgeNeXt's cross-covariance attention (XCA): attention over channels with l2-normalized queries and "
      "keys (over the tokens) and a learned temperature per head; scores [B, h, d, d].";
  static constexpr std::string_view use_case =
      "Linear-in-tokens global mixing of high-resolution feature maps (EdgeNeXt, XCiT).";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = CrossCovarianceAttentionConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "16",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Input channels C (the reference reads them from the input). Beyond the reference."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive, .doc = "Number of attention heads."},
        Field<C>{.name = "key_dim", .member = member<&C::key_dim>, .range = non_negative,
                 .doc = "Per-head width d; 0: channels // num_heads. The output has num_heads x d channels."},
        Field<C>{.name = "qkv_bias", .member = member<&C::qkv_bias>,
                 .doc = "Ignored, as in the reference: the qkv Dense always has a bias."},
        Field<C>{.name = "out_bias", .member = member<&C::out_bias>, .doc = "Bias on the output Dense."},
        Field<C>{.name = "attn_dropout", .member = member<&C::attn_dropout>, .range = unit_interval,
                 .doc = "Dropout on the attention probabilities (identity at inference)."},
        Field<C>{.name = "out_dropout", .member = member<&C::out_dropout>, .range = unit_interval,
                 .doc = "Dropout on the output (identity at inference)."},
    };
  }

  [[nodiscard]] Index head_dim() const noexcept { return key_dim > 0 ? key_dim : channels / num_heads; }
  [[nodiscard]] Index width() const noexcept { return num_heads * head_dim(); }

  void check(Problems& p) const {
    if (channels > 0 && num_heads > 0 && key_dim == 0 && channels < num_heads)
      p.push_back({"num_heads", fmt::format("channels ({}) must be at least num_heads ({}) when key_dim is 0",
                                            channels, num_heads)});
  }
};
static_assert(config_table_is_sound<CrossCovarianceAttentionConfig>());

template <class T = float>
class CrossCovarianceAttention
    : public LayerBase<CrossCovarianceAttention<T>, CrossCovarianceAttentionConfig, T>,
      public detail::global::MapOrTokensDoor<CrossCovarianceAttention<T>, T> {
  using Base = LayerBase<CrossCovarianceAttention, CrossCovarianceAttentionConfig, T>;
  friend Base;
  friend detail::global::MapOrTokensDoor<CrossCovarianceAttention<T>, T>;

public:
  using Config = CrossCovarianceAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit CrossCovarianceAttention(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    detail::global::input_of(Config::type_name, x, config_.channels);
    return detail::global::with_channels(x, config_.width());
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 3, 5, c.channels}}; }

  // forward(x) and forward_with_weights(x) (weights `[B, num_heads, d, d]`) for x `[B, H, W, C]` or tokens `[B, N, C]`:
  // detail::global::MapOrTokensDoor.

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot qkv_kernel, qkv_bias, temperature, out_kernel, out_bias;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels, D = config_.width();
    Slots s;
    s.qkv_kernel = w.add("qkv/kernel", {C, 3 * D}, "glorot_uniform", seed);
    s.qkv_bias = w.add("qkv/bias", {3 * D}, "zeros", seed);
    s.temperature = w.add("temperature/no_weight_decay/weight", {config_.num_heads, 1, 1}, "ones", seed);
    s.out_kernel = w.add("output/kernel", {D, D}, "glorot_uniform", seed);
    if (config_.out_bias) s.out_bias = w.add("output/bias", {D}, "zeros", seed);
    slots_ = s;
  }

  template <int R>
  Tensor<T, R> run(const ConstTensorView<T, R>& x, Tensor<T, 4>* weights) const {
    namespace g = detail::global;
    const Shape xs = shape_of(x);
    const g::GlobalInput in = g::input_of(Config::type_name, xs, config_.channels);
    this->check_weights();
    const Index B = in.batch, N = in.tokens(), h = config_.num_heads, d = config_.head_dim(), D = h * d;
    const Shape os = g::with_channels(xs, D);
    std::array<Index, R> dims{};
    std::copy(os.begin(), os.end(), dims.begin());
    Tensor<T, R> y(dims);
    if (weights) {
      *weights = Tensor<T, 4>(B, h, d, d);
      weights->setConstant(T(1) / static_cast<T>(d));  // no tokens: Q̂ = K̂ = 0, every score 0, uniform rows
    }
    if (B == 0 || N == 0) return y;
    ScratchFrame scratch;
    T* t = scratch.get<T>(B * N * 3 * D);
    T* ctx = scratch.get<T>(B * N * D);
    g::project(x.data(), B * N, this->weight(slots_.qkv_kernel), this->optional_weight(slots_.qkv_bias), t);
    g::channel_attention(t, 3 * D, 0, D, 2 * D, B, N, h, d, /*l2=*/true,
                         this->weight(slots_.temperature).data.data(), T(1), ctx,
                         weights ? weights->data() : nullptr);
    g::project(ctx, B * N, this->weight(slots_.out_kernel), this->optional_weight(slots_.out_bias), y.data());
    return y;
  }

  Slots slots_;
};

}  // namespace attn
