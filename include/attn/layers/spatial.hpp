/// \file
/// `spatial` — the spatial-attention gate of CBAM (Woo et al., 2018, "CBAM: Convolutional Block
/// Attention Module").
///
/// Shapes: input x `[B, H, W, C]` with any C >= 1; output the GATE `[B, H, W, 1]` with values in
/// (0, 1), not the gated features (as the reference: the caller multiplies it with x; `cbam` is the
/// type that returns refined features). No mask.
///
/// Weights (Keras layout, reference names and order): `spatial_attention_conv/kernel [kh, kw, 2, 1]`
/// (input channel 0 = the mean map, 1 = the max map) and, with `use_bias` (default), its bias `[1]`,
/// initialised to zero. Forward:
///   avg[b, r, c] = mean over channels of x[b, r, c, :];   mx[b, r, c] = max over channels
///   out = sigmoid(Conv2D_{kh×kw, stride 1, 'same'}([avg ; mx]) + bias)
/// 'same' is TensorFlow's: zero padding, (k − 1)/2 on each side for the odd sizes allowed here.
///
/// `kernel_size` is size-like: JSON `7` and `[7, 7]` are the same (stored as (kh, kw)); a non-square
/// kernel such as `[3, 5]` is accepted (the reference takes one int). Both extents must be positive
/// ("kernel_size must be positive, got (0, 0)"), then odd ("kernel_size must be odd for 'same'
/// padding, got (6, 6)"). `kernel_regularizer` is accepted and kept for the round trip; it has no
/// effect at inference.
/// Input checks (ShapeError naming "spatial"): rank 4 (the reference does not check the rank) and
/// C >= 1 (a mean over no channels has no value). H = 0, W = 0 or B = 0 give an empty output.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "attn/core/init.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/cbam_gates.hpp"
#include "attn/ops/gates.hpp"

namespace attn {

struct SpatialAttentionConfig {
  Size2 kernel_size{7, 7};
  std::string_view kernel_initializer = "glorot_uniform";
  bool use_bias = true;

  static constexpr std::string_view type_name = "spatial";
  static constexpr std::string_view class_name = "SpatialAttention";
  static constexpr std::string_view description =
      "CBAM spatial-attention gate: a convolution over the per-pixel channel mean and max, then a "
      "sigmoid.";
  static constexpr std::string_view use_case =
      "Highlighting informative regions of CNN feature maps (multiply the returned gate with the "
      "features).";
  static constexpr std::array<std::string_view, 1> training_only{"kernel_regularizer"};

  static constexpr auto fields() {
    using C = SpatialAttentionConfig;
    return std::array{
        Field<C>{.name = "kernel_size", .member = member<&C::kernel_size>, .range = positive, .odd = true,
                 .doc = "Convolution size (rows, cols); an int means a square kernel. Odd, positive."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the convolution kernel."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>,
                 .doc = "Add a bias (initialised to zero) to the convolution."},
    };
  }

  void check(Problems& /*unused*/) const {}
};
static_assert(config_table_is_sound<SpatialAttentionConfig>());

template <class T = float>
class SpatialAttention : public LayerBase<SpatialAttention<T>, SpatialAttentionConfig, T> {
  using Base = LayerBase<SpatialAttention, SpatialAttentionConfig, T>;
  friend Base;

public:
  using Config = SpatialAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit SpatialAttention(const Config& config, std::uint64_t seed = 0)
      : Base(config), gate_{"", config.kernel_size[0], config.kernel_size[1], config.use_bias} {
    this->reset_parameters(seed);
  }

  /// `[B, H, W, 1]` for an input `[B, H, W, C]`.
  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return {x[0], x[1], x[2], 1};
  }
  static std::vector<Shape> example_input_shapes(const Config& /*c*/) { return {{2, 5, 6, 3}}; }

  /// The spatial gate `[B, H, W, 1]` of x `[B, H, W, C]`.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    const ConstTensorView<T, 4> v = view_of<T, 4>(x);
    check_input(shape_of(v));
    this->check_weights();
    const Index B = v.dimension(0), H = v.dimension(1), W = v.dimension(2), C = v.dimension(3);
    Tensor<T, 4> out(B, H, W, 1);
    gate_(weights_, slots_, v.data(), B, H, W, C, out.data());
    return out;
  }

private:
  using Base::config_, Base::weights_;

  /// The gate's weights, drawn from `seed` with the configured initializer (bias: zero).
  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    slots_ = gate_.add_weights(w, config_.kernel_initializer, seed);
  }

  void check_input(const Shape& x) const {
    ops::check_image_input(Config::type_name, x, /*channels=*/-1, /*need_space=*/false,
                           /*need_channels=*/true);
  }

  detail::SpatialGate gate_;
  detail::SpatialGate::Slots slots_;
};

}  // namespace attn
