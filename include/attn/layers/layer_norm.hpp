/// \file
/// `layer_norm` — KCAM's `common_layers.layer_norm(inputs, zero_gamma=False, epsilon=1e-5, center=True,
/// axis="auto", name=None)` (spec kcam_attention_layers.md §3.6, §1.2): Keras LayerNormalization over
/// the channel axis (Ba, Kiros & Hinton, 2016, "Layer Normalization").
///
/// Shapes: input x `[B, H, W, C]` with C = `channels` → output of the same shape. Per pixel, mean μ
/// and biased variance σ² over the C channels: `y = gamma·(x − μ)/sqrt(σ² + epsilon) + beta`.
///
/// Parameters: `channels` (required, > 0: the weights' size; the reference reads it from the input),
/// `zero_gamma` (false: gamma starts at ones; true: zeros), `epsilon` (1e-5, the helper's default, not
/// Keras's 1e-3; >= 0), `center` (true: with beta; false: no beta), `axis` ("auto" or the channel axis
/// -1 / 3; spec errata: other values are a ConfigError).
///
/// Weights (Keras names under the sub-layer `ln`): `ln/gamma` `[C]`, `ln/beta` `[C]` (with `center`,
/// init zeros).
///
/// Validation (ConfigError): "Parameter 'channels' must be positive, got 0", "epsilon must be
/// non-negative, got -1.0", "axis must be 'auto' or the channel axis of a [batch, height, width,
/// channels] input (-1 or 3), got 1". Input checks (ShapeError): rank 4, C = `channels`.
///
/// Differences from the reference: the reference normalises inputs of any rank; here images
/// `[B, H, W, C]`.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/blocks_common.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/norm.hpp"

namespace attn {

struct LayerNormConfig {
  int channels = 0;
  bool zero_gamma = false;
  double epsilon = 1e-5;
  bool center = true;
  ChannelAxis axis{};

  static constexpr std::string_view type_name = "layer_norm";
  static constexpr std::string_view class_name = "LayerNorm";
  static constexpr std::string_view description =
      "Layer normalization over the channels of each pixel (KCAM's layer_norm helper: epsilon 1e-5).";
  static constexpr std::string_view use_case = "Normalising the channels of feature maps and tokens in transformer blocks.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = LayerNormConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "8",
                 .wording = Wording::factory, .range = positive, .doc = "Channels C of the input (last axis)."},
        Field<C>{.name = "zero_gamma", .member = member<&C::zero_gamma>, .doc = "Initialise gamma to zeros."},
        Field<C>{.name = "epsilon", .member = member<&C::epsilon>, .range = non_negative,
                 .doc = "Added to the variance."},
        Field<C>{.name = "center", .member = member<&C::center>, .doc = "With the offset beta."},
        Field<C>{.name = "axis", .member = member<&C::axis>, .doc = "'auto' or the channel axis (-1 or 3)."},
    };
  }
  void check(Problems& /*p*/) const {}
};
static_assert(config_table_is_sound<LayerNormConfig>());

template <class T = float>
class LayerNorm : public LayerBase<LayerNorm<T>, LayerNormConfig, T> {
  using Base = LayerBase<LayerNorm, LayerNormConfig, T>;
  friend Base;

public:
  using Config = LayerNormConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};
  /// The initial weights are constants: the seed does not change them.
  static constexpr bool constant_initial_weights = true;

  explicit LayerNorm(const Config& config, std::uint64_t seed = 0) : Base(config) { this->reset_parameters(seed); }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    detail::check_block_input(Config::type_name, x, config_.channels);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 5, 6, c.channels}}; }

  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    const ConstTensorView<T, 4> v = view_of<T, 4>(x);
    (void)output_shape(shape_of(v));
    this->check_weights();
    Tensor<T, 4> y(v.dimensions());
    const Weight<T>* beta = this->optional_weight(beta_);
    ops::layer_norm<T>(v.data(), v.size() / config_.channels, config_.channels, this->weight(gamma_).data.data(),
                       beta != nullptr ? beta->data.data() : nullptr, config_.epsilon, y.data(), Config::type_name);
    return y;
  }

private:
  using Base::config_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels;
    WeightSlot gamma = w.add("ln/gamma", {C}, config_.zero_gamma ? "zeros" : "ones", seed);
    WeightSlot beta = config_.center ? WeightSlot(w.add("ln/beta", {C}, "zeros", seed)) : WeightSlot{};
    gamma_ = gamma;
    beta_ = beta;
  }

  WeightSlot gamma_, beta_;
};

}  // namespace attn
