/// \file
/// `cbam` — Convolutional Block Attention Module (Woo et al., 2018, "CBAM: Convolutional Block
/// Attention Module"): the channel gate of `channel` applied to the features, then the spatial gate of
/// `spatial` computed on the channel-refined features and applied to them.
///
/// Shapes: input x `[B, H, W, C]` with C = `channels` and H, W >= 1; output the REFINED FEATURES
/// `[B, H, W, C]` (unlike `channel` and `spatial`, which return their gates, as in the reference).
/// No residual, no mask. Forward:
///   Mc = ChannelGate(x)   [B, 1, 1, C]        F1 = x ⊙ Mc
///   Ms = SpatialGate(F1)  [B, H, W, 1]        out = F1 ⊙ Ms
/// with the gates exactly as documented in channel.hpp and spatial.hpp (the same ops::ChannelGate and
/// ops::SpatialGate kernels, with weights under a prefix).
///
/// Weights (reference names and order): `channel_attention/channel_attention_dense_1/kernel
/// [C, C/ratio]`, `channel_attention/channel_attention_dense_1/bias [C/ratio]` (with
/// `channel_use_bias`), `channel_attention/channel_attention_dense_2/kernel [C/ratio, C]`,
/// `channel_attention/channel_attention_dense_2/bias [C]` (with `channel_use_bias`),
/// `spatial_attention/spatial_attention_conv/kernel [kh, kw, 2, 1]`,
/// `spatial_attention/spatial_attention_conv/bias [1]` (with `spatial_use_bias`, the default).
/// Biases start at zero.
///
/// Validation, in the reference's order: `channels` > 0 (factory wording), `ratio` > 0, `kernel_size`
/// > 0, then the channel gate's "channels (C) must be divisible by ratio (r)", then the spatial gate's
/// "kernel_size must be odd for 'same' padding, got (kh, kw)" (the last two are cross-field checks, so
/// a config with both problems reports divisibility first, as the reference does). `kernel_size` is
/// size-like (JSON `7` or `[3, 5]`; the reference takes one int). `channel_kernel_regularizer` and
/// `spatial_kernel_regularizer` are accepted and kept for the round trip; they have no effect at
/// inference.
/// Input checks (ShapeError, the reference's build wording prefixed by "cbam: "): rank 4 and C equal
/// to `channels`. Beyond the reference: H = 0 or W = 0 is rejected (the channel gate's global pooling
/// over no pixels has no value); B = 0 gives an empty output.
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

struct CBAMConfig {
  int channels = 0;
  int ratio = 8;
  Size2 kernel_size{7, 7};
  std::string_view channel_kernel_initializer = "glorot_uniform";
  std::string_view spatial_kernel_initializer = "glorot_uniform";
  bool channel_use_bias = false;
  bool spatial_use_bias = true;

  static constexpr std::string_view type_name = "cbam";
  static constexpr std::string_view class_name = "CBAM";
  static constexpr std::string_view description =
      "Convolutional Block Attention Module: a channel-attention gate, then a spatial-attention gate, "
      "both applied to the features.";
  static constexpr std::string_view use_case =
      "Drop-in refinement of CNN feature maps; returns features of the input's shape.";
  static constexpr std::array<std::string_view, 2> training_only{"channel_kernel_regularizer",
                                                                 "spatial_kernel_regularizer"};

  static constexpr auto fields() {
    using C = CBAMConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "8",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Number of input channels C (the last axis of the input)."},
        Field<C>{.name = "ratio", .member = member<&C::ratio>, .range = positive,
                 .doc = "Channel-gate bottleneck reduction: hidden width channels / ratio; must divide "
                        "channels."},
        Field<C>{.name = "kernel_size", .member = member<&C::kernel_size>, .range = positive,
                 .doc = "Spatial-gate convolution size (rows, cols); an int means a square kernel. "
                        "Positive and odd (the odd rule is checked after the divisibility of channels "
                        "by ratio, as in the reference)."},
        Field<C>{.name = "channel_kernel_initializer", .member = member<&C::channel_kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the channel gate's MLP kernels."},
        Field<C>{.name = "spatial_kernel_initializer", .member = member<&C::spatial_kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the spatial gate's conv kernel."},
        Field<C>{.name = "channel_use_bias", .member = member<&C::channel_use_bias>,
                 .doc = "Add biases (initialised to zero) to the channel gate's MLP."},
        Field<C>{.name = "spatial_use_bias", .member = member<&C::spatial_use_bias>,
                 .doc = "Add a bias (initialised to zero) to the spatial gate's convolution."},
    };
  }

  /// The sub-gates' construction checks, in the reference's order (ranges already hold).
  void check(Problems& p) const {
    if (ratio > 0 && channels % ratio != 0)
      p.push_back({"ratio", fmt::format("channels ({}) must be divisible by ratio ({})", channels, ratio)});
    if (kernel_size[0] % 2 == 0 || kernel_size[1] % 2 == 0)
      p.push_back({"kernel_size", fmt::format("kernel_size must be odd for 'same' padding, got ({}, {})",
                                              kernel_size[0], kernel_size[1])});
  }
  [[nodiscard]] int hidden() const noexcept { return ratio > 0 ? channels / ratio : 0; }
};
static_assert(config_table_is_sound<CBAMConfig>());

template <class T = float>
class CBAM : public LayerBase<CBAM<T>, CBAMConfig, T> {
  using Base = LayerBase<CBAM, CBAMConfig, T>;
  friend Base;

public:
  using Config = CBAMConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit CBAM(const Config& config, std::uint64_t seed = 0)
      : Base(config),
        channel_gate_{"channel_attention/", config.channels, config.hidden(), config.channel_use_bias},
        spatial_gate_{"spatial_attention/", config.kernel_size[0], config.kernel_size[1],
                      config.spatial_use_bias} {
    this->reset_parameters(seed);
  }

  /// The input's shape `[B, H, W, C]`.
  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 5, 6, c.channels}}; }

  /// The refined features `[B, H, W, C]` of x `[B, H, W, C]`.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    const ConstTensorView<T, 4> v = view_of<T, 4>(x);
    check_input(shape_of(v));
    this->check_weights();
    const Index B = v.dimension(0), H = v.dimension(1), W = v.dimension(2), C = v.dimension(3);
    const Index P = H * W;
    Matrix<T> mc(B, C);
    channel_gate_(weights_, channel_slots_, v.data(), B, P, mc.data());
    Tensor<T, 4> out(B, H, W, C);
    for (Index b = 0; b < B; ++b)  // F1 = x ⊙ Mc
      MatrixMap<T>(out.data() + b * P * C, P, C).array() =
          ConstMatrixMap<T>(v.data() + b * P * C, P, C).array().rowwise() * mc.row(b).array();
    std::vector<T> ms(static_cast<std::size_t>(B * P));
    spatial_gate_(weights_, spatial_slots_, out.data(), B, H, W, C, ms.data());
    // out = F1 ⊙ Ms
    MatrixMap<T>(out.data(), B * P, C).array().colwise() *=
        Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(ms.data(), B * P);
    return out;
  }

private:
  using Base::config_, Base::weights_;

  /// Both gates' weights, in the reference's order, drawn from `seed` with the configured
  /// initializers (biases: zeros).
  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const auto c = channel_gate_.add_weights(w, config_.channel_kernel_initializer, seed);
    const auto s = spatial_gate_.add_weights(w, config_.spatial_kernel_initializer, seed);
    channel_slots_ = c;
    spatial_slots_ = s;
  }

  void check_input(const Shape& x) const {
    ops::check_image_input(Config::type_name, x, config_.channels, /*need_space=*/true,
                           /*need_channels=*/true);
  }

  detail::ChannelGate channel_gate_;
  detail::SpatialGate spatial_gate_;
  detail::ChannelGate::Slots channel_slots_;
  detail::SpatialGate::Slots spatial_slots_;
};

}  // namespace attn
