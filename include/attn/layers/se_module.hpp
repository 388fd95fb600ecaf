/// \file
/// `se_module` — KCAM's `common_layers.se_module(inputs, se_ratio=0.25, divisor=8, limit_round_down=0.9,
/// activation="relu", use_bias=True, use_conv=True, name=None)` (spec kcam_attention_layers.md §3.7,
/// §2.5 and the errata): a squeeze-and-excitation block (Hu, Shen & Sun, 2018, "Squeeze-and-Excitation
/// Networks").
///
/// Shapes: input x `[B, H, W, C]` with C = `channels`, H·W >= 1 → output of the same shape:
///   s = mean over (H, W) of x                      [B, C]
///   s = act_hidden(s·W1 + b1)                      [B, R]
///   s = act_output(s·W2 + b2)                      [B, C]
///   y = x ⊙ s  (broadcast over H, W)
/// R = make_divisible(C·se_ratio, divisor, limit_round_down): m = divisor, v = max(m, ⌊C·se_ratio +
/// divisor/2⌋ // divisor · divisor), plus divisor when v < limit_round_down·C·se_ratio (e.g. 24·¼ → 8;
/// 40·¼ = 10 → 8 < 9 → 16; 96·¼ → 24).
///
/// Parameters: `channels` (required, > 0; the reference reads it from the input), `se_ratio` (0.25,
/// > 0), `divisor` (8, > 0), `limit_round_down` (0.9), `activation` ("relu": the hidden activation with
/// "sigmoid" at the output; or a pair `[hidden, output]`, e.g. `["relu", "hard_sigmoid_torch"]`; null
/// or a null element: none), `use_bias` (true), `use_conv` (true: 1×1 convolutions; false: dense
/// layers; the same numbers, different weight names and shapes).
///
/// Weights (Keras names under the sub-layers, in creation order): `use_conv`: `1_conv/kernel`
/// `[1, 1, C, R]`, `1_conv/bias` `[R]`, `2_conv/kernel` `[1, 1, R, C]`, `2_conv/bias` `[C]`; otherwise
/// `1_dense/kernel` `[C, R]`, `1_dense/bias` `[R]`, `2_dense/kernel` `[R, C]`, `2_dense/bias` `[C]`;
/// biases only with `use_bias`. Kernels glorot_uniform, biases zeros. A parametric activation adds its
/// weights after the projection it follows: prelu `<activation>/alpha` (`[1, 1, R]` / `[1, 1, C]`
/// with `use_conv`, `[R]` / `[C]` without), star_relu its scalars.
///
/// Validation (ConfigError): "Parameter 'channels' must be positive, got 0", "se_ratio must be
/// positive, got 0.0", "divisor must be positive, got 0", an unknown activation (activation_by_name's
/// message); the same parametric activation name for both ("activation: hidden and output 'prelu'
/// would both own the weights 'prelu/...'"; the reference fails on the duplicate layer name).
/// Input checks (ShapeError): rank 4, C = `channels`, H·W >= 1 (a mean over no pixels has no value).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/blocks_common.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/linear.hpp"

namespace attn {

/// KCAM's make_divisible (spec §2.5 and the errata for §3.7); `min_value` < 0: `divisor`.
constexpr int make_divisible(double v, int divisor = 4, int min_value = -1, double limit_round_down = 0.9) noexcept {
  const int m = min_value < 0 ? divisor : min_value;
  int nv = static_cast<int>(v + divisor / 2.0) / divisor * divisor;
  nv = std::max(m, nv);
  if (nv < limit_round_down * v) nv += divisor;
  return nv;
}

struct SeModuleConfig {
  int channels = 0;
  double se_ratio = 0.25;
  int divisor = 8;
  double limit_round_down = 0.9;
  ActivationPair activation{};
  bool use_bias = true;
  bool use_conv = true;

  static constexpr std::string_view type_name = "se_module";
  static constexpr std::string_view class_name = "SEModule";
  static constexpr std::string_view description =
      "Squeeze-and-excitation: global average pooling, a bottleneck of two projections with activations, "
      "and a channel gate multiplied with the input.";
  static constexpr std::string_view use_case = "Re-weighting the channels of CNN feature maps inside a block.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = SeModuleConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "16",
                 .wording = Wording::factory, .range = positive, .doc = "Channels C of the input (last axis)."},
        Field<C>{.name = "se_ratio", .member = member<&C::se_ratio>, .range = positive,
                 .doc = "Bottleneck width before rounding: C·se_ratio."},
        Field<C>{.name = "divisor", .member = member<&C::divisor>, .range = positive,
                 .doc = "The bottleneck width is rounded to a multiple of it (make_divisible)."},
        Field<C>{.name = "limit_round_down", .member = member<&C::limit_round_down>,
                 .doc = "Rounding down may not go below this fraction (else one divisor more)."},
        Field<C>{.name = "activation", .member = member<&C::activation>,
                 .doc = "Hidden activation (the output one is 'sigmoid'), or [hidden, output]."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>, .doc = "Biases in both projections."},
        Field<C>{.name = "use_conv", .member = member<&C::use_conv>,
                 .doc = "1x1 convolutions (true) or dense layers (false): weight names and shapes."},
    };
  }

  [[nodiscard]] int reduction() const noexcept {
    return make_divisible(channels * se_ratio, divisor, -1, limit_round_down);
  }

  void check(Problems& p) const {
    if (channels * se_ratio > double(1 << 30))
      p.push_back({"se_ratio", fmt::format("se_ratio ({}) makes the bottleneck width channels·se_ratio = {} larger "
                                           "than 2^30",
                                           se_ratio, channels * se_ratio)});
    if (activation.hidden.size > 0 && activation.hidden == activation.output) {
      const auto k = ops::Activation::from_name(activation.hidden.view(), type_name).kind;
      if (k == ops::ActivationKind::prelu || k == ops::ActivationKind::star_relu)
        p.push_back({"activation", fmt::format("activation: hidden and output '{}' would both own the weights "
                                               "'{}/...'",
                                               activation.hidden.view(), activation.hidden.view())});
    }
  }
};
static_assert(config_table_is_sound<SeModuleConfig>());
static_assert(make_divisible(24 * 0.25, 8) == 8 && make_divisible(40 * 0.25, 8) == 16 && make_divisible(96 * 0.25, 8) == 24);

template <class T = float>
class SEModule : public LayerBase<SEModule<T>, SeModuleConfig, T> {
  using Base = LayerBase<SEModule, SeModuleConfig, T>;
  friend Base;

public:
  using Config = SeModuleConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit SEModule(const Config& config, std::uint64_t seed = 0)
      : Base(config),
        hidden_(config.activation.hidden.view(), Config::type_name),
        output_(config.activation.output.view(), Config::type_name) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    detail::check_block_input(Config::type_name, x, config_.channels);
    if (x[0] > 0 && (x[1] == 0 || x[2] == 0))
      throw ShapeError(fmt::format("{}: the squeeze (mean over height and width) needs height and width >= 1, got "
                                   "input shape {}",
                                   Config::type_name, shape_str(x)));
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
    const Index B = v.dimension(0), P = v.dimension(1) * v.dimension(2), C = config_.channels;
    const Index R = config_.reduction();
    if (y.size() == 0) return y;
    std::vector<T> s(static_cast<std::size_t>(B * C), T(0)), h(static_cast<std::size_t>(B * R));
    for (Index b = 0; b < B; ++b) {
      T* sb = s.data() + b * C;
      for (Index p = 0; p < P; ++p)
        for (Index c = 0; c < C; ++c) sb[c] += v.data()[(b * P + p) * C + c];
      for (Index c = 0; c < C; ++c) sb[c] /= static_cast<T>(P);
    }
    const auto& w = this->parameters();
    ops::gemm<T>(B, R, C, s.data(), C, this->weight(slots_.k1).data.data(), R, false, h.data(), R);
    if (const Weight<T>* b1 = this->optional_weight(slots_.b1))
      for (Index b = 0; b < B; ++b)
        for (Index r = 0; r < R; ++r) h[static_cast<std::size_t>(b * R + r)] += b1->data[static_cast<std::size_t>(r)];
    hidden_.apply(w, hidden_slots_, h.data(), B * R, R, Config::type_name);
    ops::gemm<T>(B, C, R, h.data(), R, this->weight(slots_.k2).data.data(), C, false, s.data(), C);
    if (const Weight<T>* b2 = this->optional_weight(slots_.b2))
      for (Index b = 0; b < B; ++b)
        for (Index c = 0; c < C; ++c) s[static_cast<std::size_t>(b * C + c)] += b2->data[static_cast<std::size_t>(c)];
    output_.apply(w, output_slots_, s.data(), B * C, C, Config::type_name);
    for (Index b = 0; b < B; ++b)
      for (Index p = 0; p < P; ++p)
        for (Index c = 0; c < C; ++c)
          y.data()[(b * P + p) * C + c] = v.data()[(b * P + p) * C + c] * s[static_cast<std::size_t>(b * C + c)];
    return y;
  }

private:
  using Base::config_;

  struct Slots {
    WeightSlot k1, b1, k2, b2;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels, R = config_.reduction();
    const bool conv = config_.use_conv;
    const std::string p1 = conv ? "1_conv/" : "1_dense/", p2 = conv ? "2_conv/" : "2_dense/";
    Slots s;
    s.k1 = w.add(p1 + "kernel", conv ? Shape{1, 1, C, R} : Shape{C, R}, "glorot_uniform", seed);
    if (config_.use_bias) s.b1 = w.add(p1 + "bias", {R}, "zeros", seed);
    const auto hs = hidden_.add_weights(w, R, seed, conv ? Shape{1, 1, R} : Shape{R});
    s.k2 = w.add(p2 + "kernel", conv ? Shape{1, 1, R, C} : Shape{R, C}, "glorot_uniform", seed);
    if (config_.use_bias) s.b2 = w.add(p2 + "bias", {C}, "zeros", seed);
    const auto os = output_.add_weights(w, C, seed, conv ? Shape{1, 1, C} : Shape{C});
    slots_ = s;
    hidden_slots_ = hs;
    output_slots_ = os;
  }

  detail::BlockActivation hidden_, output_;
  Slots slots_;
  detail::BlockActivation::Slots hidden_slots_, output_slots_;
};

}  // namespace attn
