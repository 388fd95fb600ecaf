/// \file
/// `channel` — the channel-attention gate of CBAM (Woo et al., 2018, "CBAM: Convolutional Block
/// Attention Module").
///
/// Shapes: input x `[B, H, W, C]` with C = `channels` and H, W >= 1; output the GATE `[B, 1, 1, C]`
/// with values in (0, 1), not the gated features (as the reference: the caller multiplies it with x;
/// `cbam` is the type that returns refined features). No mask.
///
/// Weights (Keras layout, reference names and order): `channel_attention_dense_1/kernel [C, C/ratio]`,
/// `channel_attention_dense_1/bias [C/ratio]` (with `use_bias`), `channel_attention_dense_2/kernel
/// [C/ratio, C]`, `channel_attention_dense_2/bias [C]` (with `use_bias`); biases start at zero.
/// Forward:
///   a[b] = mean over (r, c) of x[b, r, c, :];   m[b] = max over (r, c) of x[b, r, c, :]
///   MLP(z) = relu(z·W1 + b1)·W2 + b2  (shared by both branches, so b2 is counted twice)
///   out[b, 0, 0, :] = sigmoid(MLP(a[b]) + MLP(m[b]))
///
/// Validation (reference order and wording): `channels` > 0 (factory wording), `ratio` > 0, then
/// "channels (C) must be divisible by ratio (r)". `kernel_regularizer` is accepted and kept for the
/// round trip; it has no effect at inference.
/// Input checks (ShapeError, the reference's build wording prefixed by "channel: "): the rank must be
/// 4 and C must equal `channels`. Beyond the reference: an image with H = 0 or W = 0 is rejected
/// (global pooling over no pixels has no value; the reference would give NaN and -inf); B = 0 gives
/// an empty output.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/init.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/cbam_gates.hpp"
#include "attn/ops/gates.hpp"

namespace attn {

struct ChannelAttentionConfig {
  int channels = 0;
  int ratio = 8;
  std::string_view kernel_initializer = "glorot_uniform";
  bool use_bias = false;

  static constexpr std::string_view type_name = "channel";
  static constexpr std::string_view class_name = "ChannelAttention";
  static constexpr std::string_view description =
      "CBAM channel-attention gate: average- and max-pooled channel descriptors through a shared "
      "bottleneck MLP, summed, then a sigmoid.";
  static constexpr std::string_view use_case =
      "Re-weighting the channels of CNN feature maps (multiply the returned gate with the features).";
  static constexpr std::array<std::string_view, 1> training_only{"kernel_regularizer"};

  static constexpr auto fields() {
    using C = ChannelAttentionConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "8",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Number of input channels C (the last axis of the input)."},
        Field<C>{.name = "ratio", .member = member<&C::ratio>, .range = positive,
                 .doc = "Bottleneck reduction: the MLP's hidden width is channels / ratio; must divide "
                        "channels."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of both MLP kernels."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>,
                 .doc = "Add biases (initialised to zero) to both MLP layers."},
    };
  }

  void check(Problems& p) const {
    if (ratio > 0 && channels % ratio != 0)
      p.push_back({"ratio", fmt::format("channels ({}) must be divisible by ratio ({})", channels, ratio)});
  }
  [[nodiscard]] int hidden() const noexcept { return ratio > 0 ? channels / ratio : 0; }
};
static_assert(config_table_is_sound<ChannelAttentionConfig>());

template <class T = float>
class ChannelAttention : public LayerBase<ChannelAttention<T>, ChannelAttentionConfig, T> {
  using Base = LayerBase<ChannelAttention, ChannelAttentionConfig, T>;
  friend Base;

public:
  using Config = ChannelAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit ChannelAttention(const Config& config, std::uint64_t seed = 0)
      : Base(config), gate_{"", config.channels, config.hidden(), config.use_bias} {
    this->reset_parameters(seed);
  }

  /// `[B, 1, 1, C]` for an input `[B, H, W, C]`.
  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return {x[0], 1, 1, config_.channels};
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 5, 6, c.channels}}; }

  /// The channel gate `[B, 1, 1, C]` of x `[B, H, W, C]`.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    const ConstTensorView<T, 4> v = view_of<T, 4>(x);
    check_input(shape_of(v));
    this->check_weights();
    const Index B = v.dimension(0), P = v.dimension(1) * v.dimension(2);
    Tensor<T, 4> out(B, 1, 1, static_cast<Index>(config_.channels));
    gate_(weights_, slots_, v.data(), B, P, out.data());
    return out;
  }

private:
  using Base::config_, Base::weights_;

  /// The gate's weights, drawn from `seed` with the configured initializer (biases: zeros).
  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    slots_ = gate_.add_weights(w, config_.kernel_initializer, seed);
  }

  void check_input(const Shape& x) const {
    ops::check_image_input(Config::type_name, x, config_.channels, /*need_space=*/true,
                           /*need_channels=*/true);
  }

  detail::ChannelGate gate_;
  detail::ChannelGate::Slots slots_;
};

}  // namespace attn
