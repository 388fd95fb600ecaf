/// \file
/// `multi_head_self_attention_channel` — DaViT's channel attention: multi-head self-attention over
/// channels, scores `[B, h, d, d]` (Ding et al., 2022, "DaViT: Dual Attention Vision Transformers"; KCAM
/// `davit.py`, spec kcam_attention_layers.md §5.11).
///
/// Shapes: input a feature map `[B, H, W, C]` (the factory's door) or tokens `[B, N, C]` (the typed
/// class), C = `channels`; `d = key_dim` if > 0, else `C / num_heads` (floor); `E = num_heads·d`; output
/// the input's shape with `O = out_shape` (null: C) channels, or E without the output Dense. Attention
/// weights `[B, num_heads, d, d]` on request (`forward_with_weights`, typed class).
/// Forward (tokens in raster order):
///   t = x·Wqkv [+ bqkv];  v, q, k = t[:, :E], t[:, E:2E], t[:, 2E:]   (this order: first third value,
///   second query, third key — the layout of converted DaViT weights; each head-major)
///   per head: A = softmax(qᵀ k · d^−0.5) ([d, d]: query channel × key channel, sums over the tokens)
///             Y = A vᵀ ([d, N]);  y = merge(Yᵀ) ([B, N, E])
///   out = y·Wout [+ bout] when out_weight, else y.
/// The attention core runs on channel-major copies of q, k and v (no d × d score tensor unless weights
/// are asked for). Unlike XCA: no normalization of q and k, the usual d^−0.5 scale.
///
/// Weights (Keras layouts, the reference's layer names): `qkv/kernel [C, 3E]` (glorot_uniform),
/// `qkv/bias [3E]` (zeros) when `qkv_bias`; `output/kernel [E, O]`, `output/bias [O]` when `out_bias`,
/// both only when `out_weight`.
///
/// Validation (ConfigError): `channels`, `num_heads`, `out_shape` positive; `key_dim` >= 0; dropouts in
/// [0, 1]; "channels (C) must be at least num_heads (h) when key_dim is 0". Input checks (ShapeError
/// naming the layer): rank 3 or 4 with C channels.
///
/// Differences from the reference (deliberate): the input width is a parameter (`channels`); dropout
/// is the identity (inference; rates kept).
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

namespace attn {

struct MultiHeadSelfAttentionChannelConfig {
  int channels = 0;
  int num_heads = 4;
  int key_dim = 0;
  std::optional<int> out_shape{};
  bool out_weight = true;
  bool qkv_bias = false;
  bool out_bias = false;
  double attn_dropout = 0.0;
  double output_dropout = 0.0;

  static constexpr std::string_view type_name = "multi_head_self_attention_channel";
  static constexpr std::string_view class_name = "MultiHeadSelfAttentionChannel";
  static constexpr std::string_view description =
      "DaViT's channel attention: multi-head self-attention over channels (scores [B, h, d, d]) with a fused "
      "Dense qkv projection (value, query, key thirds) and an output Dense.";
  static constexpr std::string_view use_case =
      "Global context at a cost linear in the tokens: the channel blocks of DaViT, beside window attention.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = MultiHeadSelfAttentionChannelConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "16",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Input channels C (the reference reads them from the input). Beyond the reference."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive, .doc = "Number of attention heads."},
        Field<C>{.name = "key_dim", .member = member<&C::key_dim>, .range = non_negative,
                 .doc = "Per-head width d; 0: channels // num_heads."},
        Field<C>{.name = "out_shape", .member = member<&C::out_shape>, .range = positive,
                 .doc = "Output channels of the output Dense (null: channels)."},
        Field<C>{.name = "out_weight", .member = member<&C::out_weight>,
                 .doc = "Apply the output Dense (false: the output has num_heads x d channels)."},
        Field<C>{.name = "qkv_bias", .member = member<&C::qkv_bias>, .doc = "Bias on the qkv Dense."},
        Field<C>{.name = "out_bias", .member = member<&C::out_bias>, .doc = "Bias on the output Dense."},
        Field<C>{.name = "attn_dropout", .member = member<&C::attn_dropout>, .range = unit_interval,
                 .doc = "Dropout on the attention probabilities (identity at inference)."},
        Field<C>{.name = "output_dropout", .member = member<&C::output_dropout>, .range = unit_interval,
                 .doc = "Dropout on the output (identity at inference)."},
    };
  }

  [[nodiscard]] Index head_dim() const noexcept { return key_dim > 0 ? key_dim : channels / num_heads; }
  [[nodiscard]] Index width() const noexcept { return num_heads * head_dim(); }
  [[nodiscard]] Index out_channels() const noexcept { return out_weight ? out_shape.value_or(channels) : width(); }

  void check(Problems& p) const {
    if (channels > 0 && num_heads > 0 && key_dim == 0 && channels < num_heads)
      p.push_back({"num_heads", fmt::format("channels ({}) must be at least num_heads ({}) when key_dim is 0",
                                            channels, num_heads)});
  }
};
static_assert(config_table_is_sound<MultiHeadSelfAttentionChannelConfig>());

template <class T = float>
class MultiHeadSelfAttentionChannel
    : public LayerBase<MultiHeadSelfAttentionChannel<T>, MultiHeadSelfAttentionChannelConfig, T>,
      public detail::global::MapOrTokensDoor<MultiHeadSelfAttentionChannel<T>, T> {
  using Base = LayerBase<MultiHeadSelfAttentionChannel, MultiHeadSelfAttentionChannelConfig, T>;
  friend Base;
  friend detail::global::MapOrTokensDoor<MultiHeadSelfAttentionChannel<T>, T>;

public:
  using Config = MultiHeadSelfAttentionChannelConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit MultiHeadSelfAttentionChannel(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    detail::global::input_of(Config::type_name, x, config_.channels);
    return detail::global::with_channels(x, config_.out_channels());
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 3, 5, c.channels}}; }

  // forward(x) and forward_with_weights(x) (weights `[B, num_heads, d, d]`) for x `[B, H, W, C]` or tokens `[B, N, C]`:
  // detail::global::MapOrTokensDoor.

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot qkv_kernel, qkv_bias, out_kernel, out_bias;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels, E = config_.width(), O = config_.out_channels();
    Slots s;
    s.qkv_kernel = w.add("qkv/kernel", {C, 3 * E}, "glorot_uniform", seed);
    if (config_.qkv_bias) s.qkv_bias = w.add("qkv/bias", {3 * E}, "zeros", seed);
    if (config_.out_weight) {
      s.out_kernel = w.add("output/kernel", {E, O}, "glorot_uniform", seed);
      if (config_.out_bias) s.out_bias = w.add("output/bias", {O}, "zeros", seed);
    }
    slots_ = s;
  }

  template <int R>
  Tensor<T, R> run(const ConstTensorView<T, R>& x, Tensor<T, 4>* weights) const {
    namespace g = detail::global;
    const Shape xs = shape_of(x);
    const g::GlobalInput in = g::input_of(Config::type_name, xs, config_.channels);
    this->check_weights();
    const Index B = in.batch, N = in.tokens(), h = config_.num_heads, d = config_.head_dim(), E = h * d;
    const Shape os = g::with_channels(xs, config_.out_channels());
    std::array<Index, R> dims{};
    std::copy(os.begin(), os.end(), dims.begin());
    Tensor<T, R> y(dims);
    if (weights) {
      *weights = Tensor<T, 4>(B, h, d, d);
      weights->setConstant(T(1) / static_cast<T>(d));  // no tokens: every score 0, uniform rows
    }
    if (B == 0 || N == 0) return y;
    ScratchFrame scratch;
    T* t = scratch.get<T>(B * N * 3 * E);
    T* ctx = config_.out_weight ? scratch.get<T>(B * N * E) : y.data();
    g::project(x.data(), B * N, this->weight(slots_.qkv_kernel), this->optional_weight(slots_.qkv_bias), t);
    g::channel_attention(t, 3 * E, /*q=*/E, /*k=*/2 * E, /*v=*/0, B, N, h, d, /*l2=*/false,
                         static_cast<const T*>(nullptr), static_cast<T>(1.0 / std::sqrt(double(d))), ctx,
                         weights ? weights->data() : nullptr);
    if (config_.out_weight)
      g::project(ctx, B * N, this->weight(slots_.out_kernel), this->optional_weight(slots_.out_bias), y.data());
    return y;
  }

  Slots slots_;
};

}  // namespace attn
