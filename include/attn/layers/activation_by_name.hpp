/// \file
/// `activation_by_name` — an activation function chosen by name, as KCAM's
/// `common_layers.activation_by_name(inputs, activation="relu", name=None)` (spec
/// kcam_attention_layers.md §3.1 and its errata), as a layer.
///
/// Sources: the functions' papers (GELU: Hendrycks & Gimpel 2016; Swish/SiLU: Ramachandran et al. 2017;
/// Mish: Misra 2019; hard-swish: Howard et al. 2019, "Searching for MobileNetV3"; PReLU: He et al. 2015;
/// StarReLU: Yu et al. 2022, "MetaFormer Baselines for Vision"); the name rules are the reference's.
///
/// Shapes: input x `[B, H, W, C]` (channels last) → output of the same shape, element-wise (softmax and
/// prelu per pixel over the C channels). With `channels` > 0 the input must have C = `channels`; with
/// `channels` = 0 (default) any C.
///
/// Parameters: `activation` (default "relu"; null = identity, as the reference's `None`): the names and
/// formulas of ops/activation.hpp: `hard_swish`, `leaky_relu` (Keras's slope 0.3), `leaky_relu/<slope>`,
/// `mish`, `phish`, `prelu`, `gelu/app` (tanh), `gelu/linear`, `gelu/quick`, `hard_sigmoid_torch`,
/// `squared_relu`/`squaredrelu`, `star_relu`/`starrelu` (special names compared lower-cased, the `gelu/…`
/// forms by prefix), then exactly the Keras names `relu`, `relu6`, `gelu` (exact erf), `swish`, `silu`,
/// `sigmoid`, `tanh`, `softmax`, `softplus`, `elu`, `selu`, `linear`, `hard_sigmoid` (TF-Keras 2.x:
/// clip(0.2·x + 0.5, 0, 1)), compared case-sensitively. `channels` (default 0, >= 0): the input's C;
/// required (> 0) for `prelu`, whose weight it sizes.
///
/// Weights (only the parametric activations have any; `<activation>` is the name as given, since the
/// reference names the created Keras layer `name + activation`): `prelu`: `<activation>/alpha`
/// `[1, 1, C]` (Keras PReLU with shared_axes [1, 2]), init 0.25; `star_relu`: `<activation>/gain` and
/// `<activation>/bias`, scalars (rank 0, shape `[]`), init 1 and 0 (the reference's `ZeroInitGain`).
///
/// Validation (ConfigError): an unknown name: "activation_by_name: unknown activation 'ReLU'. Did you
/// mean 'relu'? Known activations: ..."; a `leaky_relu/` suffix that is not a number; `channels` < 0
/// ("channels must be non-negative, got -1"); `prelu` with `channels` = 0 ("channels must be positive
/// for activation 'prelu' (its weight alpha is [1, 1, channels]), got 0").
/// Input checks (ShapeError naming the layer, the tensor, the expected and the actual shape): rank 4;
/// C = `channels` when `channels` > 0.
///
/// Differences from the reference: it applies to any rank; here the input is an image `[B, H, W, C]`
/// (prelu's alpha `[1, 1, C]` is the NHWC shape of the reference). The reference's Keras fallback accepts
/// whatever the installed Keras knows; here exactly the names listed (spec errata).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/blocks_common.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/activation.hpp"

namespace attn {

struct ActivationByNameConfig {
  std::optional<ActivationName> activation = ActivationName("relu");
  int channels = 0;

  static constexpr std::string_view type_name = "activation_by_name";
  static constexpr std::string_view class_name = "ActivationByName";
  static constexpr std::string_view description =
      "An activation function chosen by name with KCAM's rules (hard_swish, leaky_relu[/slope], mish, phish, "
      "prelu, gelu/app, gelu/linear, gelu/quick, hard_sigmoid_torch, squared_relu, star_relu and the Keras "
      "names).";
  static constexpr std::string_view use_case =
      "The nonlinearity of a block given by a config string, with the reference's formulas and defaults.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = ActivationByNameConfig;
    return std::array{
        Field<C>{.name = "activation", .member = member<&C::activation>,
                 .doc = "The activation's name (see the header); null: identity."},
        Field<C>{.name = "channels", .member = member<&C::channels>, .range = non_negative,
                 .doc = "Channels C of the input (0: any); required (> 0) for 'prelu'."},
    };
  }

  void check(Problems& p) const {
    if (activation && channels == 0 &&
        ops::Activation::from_name(activation->view(), type_name).kind == ops::ActivationKind::prelu)
      p.push_back({"channels", fmt::format("channels must be positive for activation '{}' (its weight alpha is [1, "
                                           "1, channels]), got 0",
                                           activation->view())});
  }
};
static_assert(config_table_is_sound<ActivationByNameConfig>());

template <class T = float>
class ActivationByName : public LayerBase<ActivationByName<T>, ActivationByNameConfig, T> {
  using Base = LayerBase<ActivationByName, ActivationByNameConfig, T>;
  friend Base;

public:
  using Config = ActivationByNameConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};
  /// The initial weights are constants: the seed does not change them.
  static constexpr bool constant_initial_weights = true;

  explicit ActivationByName(const Config& config, std::uint64_t seed = 0)
      : Base(config),
        act_(config.activation ? config.activation->view() : std::string_view{}, Config::type_name) {
    this->reset_parameters(seed);
  }

  /// The input's shape.
  [[nodiscard]] Shape output_shape(const Shape& x) const {
    detail::check_block_input(Config::type_name, x, config_.channels > 0 ? config_.channels : -1);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    return {{2, 5, 6, c.channels > 0 ? c.channels : 8}};
  }

  /// f(x), element-wise (softmax and prelu over the channels of each pixel).
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    const ConstTensorView<T, 4> v = view_of<T, 4>(x);
    const Shape s = output_shape(shape_of(v));
    this->check_weights();
    Tensor<T, 4> y(v.dimensions());
    if (!act_.present()) {
      std::copy_n(v.data(), v.size(), y.data());
      return y;
    }
    ops::ActivationParams<T> p;
    if (slots_.alpha.declared()) p.alpha = this->weight(slots_.alpha).data.data();
    if (slots_.gain.declared()) p.gain = this->weight(slots_.gain).data[0];
    if (slots_.bias.declared()) p.bias = this->weight(slots_.bias).data[0];
    ops::apply_activation<T>(*act_.get(), v.data(), y.data(), v.size(), s[3], p, Config::type_name);
    return y;
  }

private:
  using Base::config_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) { slots_ = act_.add_weights(w, config_.channels, seed); }

  detail::BlockActivation act_;
  detail::BlockActivation::Slots slots_;
};

}  // namespace attn
