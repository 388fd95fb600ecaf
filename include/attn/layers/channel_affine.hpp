/// \file
/// `channel_affine` — KCAM's `ChannelAffine(use_bias=True, weight_init_value=1, axis=-1)` Keras layer
/// (mlp_family/res_mlp.py; spec kcam_attention_layers.md §3.8): a per-channel scale and shift (the
/// "Affine" of ResMLP, Touvron et al., 2021; with `use_bias` false and a small init, the LayerScale of
/// CaiT, Touvron et al., 2021).
///
/// Shapes: input x `[B, H, W, C]` with C = `channels` → output of the same shape:
///   y = x·weight (+ bias), broadcast over B, H, W.
///
/// Parameters: `channels` (required, > 0; the reference reads it from the input), `use_bias` (true),
/// `weight_init_value` (1.0: the constant `weight` starts at), `axis` (-1; the channel axis -1 or 3).
///
/// Weights (the reference's names; the layer is itself the Keras layer): `weight` `[C]` (constant
/// `weight_init_value`), `bias` `[C]` (with `use_bias`, zeros).
///
/// Validation (ConfigError): "Parameter 'channels' must be positive, got 0"; "axis must be the channel
/// axis of a [batch, height, width, channels] input (-1 or 3), got 1". Input checks (ShapeError): rank 4,
/// C = `channels`.
///
/// Differences from the reference: `axis` other than the last (which the reference accepts, with
/// weights of a full-rank broadcast shape, e.g. XCA's temperature `[h, 1, 1]`) is not supported: the
/// weights would depend on an input extent other than the channels. `weight_init_value` as an
/// initializer object is not supported (a number only).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/parallel.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/blocks_common.hpp"
#include "attn/layers/detail/layer_base.hpp"

namespace attn {

struct ChannelAffineConfig {
  int channels = 0;
  bool use_bias = true;
  double weight_init_value = 1.0;
  int axis = -1;

  static constexpr std::string_view type_name = "channel_affine";
  static constexpr std::string_view class_name = "ChannelAffine";
  static constexpr std::string_view description = "Per-channel scale and optional shift: y = x·weight + bias.";
  static constexpr std::string_view use_case =
      "ResMLP's affine normalisation, and LayerScale (use_bias false, a small weight_init_value).";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = ChannelAffineConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "8",
                 .wording = Wording::factory, .range = positive, .doc = "Channels C of the input (last axis)."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>, .doc = "With the shift bias (zeros at first)."},
        Field<C>{.name = "weight_init_value", .member = member<&C::weight_init_value>,
                 .doc = "The constant the scale weight starts at."},
        Field<C>{.name = "axis", .member = member<&C::axis>, .doc = "The channel axis (-1 or 3)."},
    };
  }

  void check(Problems& p) const {
    if (axis != -1 && axis != 3)
      p.push_back({"axis", fmt::format("axis must be the channel axis of a [batch, height, width, channels] input (-1 "
                                       "or 3), got {}",
                                       axis)});
  }
};
static_assert(config_table_is_sound<ChannelAffineConfig>());

template <class T = float>
class ChannelAffine : public LayerBase<ChannelAffine<T>, ChannelAffineConfig, T> {
  using Base = LayerBase<ChannelAffine, ChannelAffineConfig, T>;
  friend Base;

public:
  using Config = ChannelAffineConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};
  /// The initial weights are constants: the seed does not change them.
  static constexpr bool constant_initial_weights = true;

  explicit ChannelAffine(const Config& config, std::uint64_t seed = 0) : Base(config) { this->reset_parameters(seed); }

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
    const Index C = config_.channels, rows = v.size() / C;
    const T* w = this->weight(weight_).data.data();
    const Weight<T>* b = this->optional_weight(bias_);
    const T* bp = b != nullptr ? b->data.data() : nullptr;
    const Index chunk = std::max<Index>(1, (Index(1) << 14) / C);
    parallel_for((rows + chunk - 1) / chunk, [&](std::int64_t t) {
      const Index r0 = static_cast<Index>(t) * chunk, r1 = std::min(rows, r0 + chunk);
      for (Index r = r0; r < r1; ++r)
        for (Index c = 0; c < C; ++c)
          y.data()[r * C + c] = bp != nullptr ? v.data()[r * C + c] * w[c] + bp[c] : v.data()[r * C + c] * w[c];
    });
    return y;
  }

private:
  using Base::config_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels;
    const WeightSlot k = w.add("weight", {C}, "zeros", seed);
    for (auto& e : w[k.index].data) e = static_cast<T>(config_.weight_init_value);
    const WeightSlot b = config_.use_bias ? WeightSlot(w.add("bias", {C}, "zeros", seed)) : WeightSlot{};
    weight_ = k;
    bias_ = b;
  }

  WeightSlot weight_, bias_;
};

}  // namespace attn
