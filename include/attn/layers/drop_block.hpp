/// \file
/// `drop_block` — KCAM's `common_layers.drop_block(inputs, drop_rate=0, name=None)` (spec
/// kcam_attention_layers.md §3.5): per-sample stochastic depth (Huang et al., 2016, "Deep Networks with
/// Stochastic Depth"), `Dropout(drop_rate, noise_shape=[B, 1, 1, 1])` in training; the identity at
/// inference, which is what this layer computes.
///
/// Shapes: input x `[B, H, W, C]` → the same tensor (a copy).
///
/// Parameters: `drop_rate` (0; in [0, 1): Keras's Dropout rejects 1; validated and kept for the round
/// trip; no effect at inference).
///
/// Weights: none.
///
/// Validation (ConfigError): "drop_rate must be in [0, 1), got 1.0". Input checks (ShapeError): rank 4.
///
/// Differences from the reference: inference only; the reference's block takes any rank, here the
/// factory's input is an image.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/blocks_common.hpp"
#include "attn/layers/detail/layer_base.hpp"

namespace attn {

struct DropBlockConfig {
  double drop_rate = 0.0;

  static constexpr std::string_view type_name = "drop_block";
  static constexpr std::string_view class_name = "DropBlock";
  static constexpr std::string_view description =
      "Per-sample stochastic depth (dropout of whole samples) in training; the identity at inference.";
  static constexpr std::string_view use_case = "The drop-path of residual branches; kept so that model configs load.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = DropBlockConfig;
    return std::array{
        Field<C>{.name = "drop_rate", .member = member<&C::drop_rate>,
                 .range = {.min = at_least(0), .max = less_than(1)},
                 .doc = "Probability of dropping a sample (training only; kept)."},
    };
  }
  void check(Problems& /*p*/) const {}
};
static_assert(config_table_is_sound<DropBlockConfig>());

template <class T = float>
class DropBlock : public LayerBase<DropBlock<T>, DropBlockConfig, T> {
  using Base = LayerBase<DropBlock, DropBlockConfig, T>;
  friend Base;

public:
  using Config = DropBlockConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};
  /// The initial weights are constants: the seed does not change them.
  static constexpr bool constant_initial_weights = true;

  explicit DropBlock(const Config& config, std::uint64_t seed = 0) : Base(config) { this->reset_parameters(seed); }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    detail::check_block_input(Config::type_name, x, -1);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& /*c*/) { return {{2, 5, 6, 8}}; }

  /// The identity (inference).
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    const ConstTensorView<T, 4> v = view_of<T, 4>(x);
    (void)output_shape(shape_of(v));
    this->check_weights();
    Tensor<T, 4> y(v.dimensions());
    std::copy_n(v.data(), v.size(), y.data());
    return y;
  }

private:
  void add_weights(WeightSet<T>& /*w*/, std::uint64_t /*seed*/) {}
};

}  // namespace attn
