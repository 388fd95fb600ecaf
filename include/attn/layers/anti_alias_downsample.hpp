/// \file
/// `anti_alias_downsample` — KCAM's `common_layers.anti_alias_downsample(inputs, kernel_size=3, strides=2,
/// padding="same", trainable=False, name=None)` (spec kcam_attention_layers.md §3.2, Appendix B.7): a fixed
/// binomial blur followed by subsampling (Zhang, 2019, "Making Convolutional Networks Shift-Invariant
/// Again"), one depthwise convolution over ops/conv.hpp.
///
/// Shapes: input x `[B, H, W, C]` with C = `channels` → `[B, ⌈H/s⌉, ⌈W/s⌉, C]`.
///   y = depthwise_conv2d(x, kernel, stride s, TensorFlow "same" padding)  (the extra row/column of an
///   uneven pad at the bottom/right; for even H, k = 3, s = 2 the single pad row is at the bottom).
/// kernel[i, j, c, 0] = b_i·b_j for every channel, b_i = binom(k − 1, i)/2^(k − 1) (k = 3: [1/4, 1/2, 1/4];
/// k = 5: [1, 4, 6, 4, 1]/16): the 2-D kernel sums to 1, so a constant image stays constant away from
/// the bottom/right border.
///
/// Parameters: `channels` (required, > 0; the reference reads it from the input), `kernel_size` (3, in
/// [1, 64]), `strides` (2, > 0), `padding` ("same"; ignored, as by the reference: the padding is always
/// TensorFlow "same"), `trainable` (false; marks the kernel, no effect at inference).
///
/// Weights (Keras names under the sub-layer `anti_alias_down`): `anti_alias_down/depthwise_kernel`
/// `[k, k, C, 1]`, initialised to the binomial filter (non-trainable unless `trainable`); a loaded kernel
/// is used as loaded.
///
/// Validation (ConfigError): "Parameter 'channels' must be positive, got 0", "kernel_size must be in [1,
/// 64], got 0", "strides must be positive, got 0", "Parameter 'padding' of 'anti_alias_downsample' must
/// be one of ['same', 'valid', 'SAME', 'VALID'], got ...". Input checks (ShapeError): rank 4,
/// C = `channels`.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/blocks_common.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/conv.hpp"

namespace attn {

inline constexpr std::array<std::string_view, 4> anti_alias_padding_names{"same", "valid", "SAME", "VALID"};

struct AntiAliasDownsampleConfig {
  int channels = 0;
  int kernel_size = 3;
  int strides = 2;
  std::string_view padding = "same";
  bool trainable = false;

  static constexpr std::string_view type_name = "anti_alias_downsample";
  static constexpr std::string_view class_name = "AntiAliasDownsample";
  static constexpr std::string_view description =
      "Fixed binomial blur and subsampling: a depthwise convolution with TensorFlow 'same' padding.";
  static constexpr std::string_view use_case = "Shift-robust downsampling in CNN stages (blur pooling).";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = AntiAliasDownsampleConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "8",
                 .wording = Wording::factory, .range = positive, .doc = "Channels C of the input (last axis)."},
        Field<C>{.name = "kernel_size", .member = member<&C::kernel_size>,
                 .range = {.min = at_least(1), .max = at_most(64)}, .doc = "Size of the binomial filter."},
        Field<C>{.name = "strides", .member = member<&C::strides>, .range = positive, .doc = "Subsampling stride."},
        Field<C>{.name = "padding", .member = member<&C::padding>, .choices = anti_alias_padding_names,
                 .doc = "Ignored (as by the reference): the padding is TensorFlow 'same'."},
        Field<C>{.name = "trainable", .member = member<&C::trainable>, .doc = "Marks the kernel trainable."},
    };
  }
  void check(Problems& /*p*/) const {}
};
static_assert(config_table_is_sound<AntiAliasDownsampleConfig>());

template <class T = float>
class AntiAliasDownsample : public LayerBase<AntiAliasDownsample<T>, AntiAliasDownsampleConfig, T> {
  using Base = LayerBase<AntiAliasDownsample, AntiAliasDownsampleConfig, T>;
  friend Base;

public:
  using Config = AntiAliasDownsampleConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};
  /// The initial weights are constants: the seed does not change them.
  static constexpr bool constant_initial_weights = true;

  explicit AntiAliasDownsample(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  /// `[B, ⌈H/s⌉, ⌈W/s⌉, C]`.
  [[nodiscard]] Shape output_shape(const Shape& x) const {
    detail::check_block_input(Config::type_name, x, config_.channels);
    const Index s = config_.strides;
    return {x[0], (x[1] + s - 1) / s, (x[2] + s - 1) / s, x[3]};
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 6, 7, c.channels}}; }

  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    const ConstTensorView<T, 4> v = view_of<T, 4>(x);
    const Shape out = output_shape(shape_of(v));
    this->check_weights();
    Tensor<T, 4> y(out[0], out[1], out[2], out[3]);
    if (y.size() == 0) return y;
    const Weight<T>& k = this->weight(kernel_);
    ops::Conv2dOptions o;
    o.strides = {config_.strides, config_.strides};
    o.padding = ops::Padding2d::same();
    o.layer = Config::type_name;
    ops::depthwise_conv2d<T>(v.data(), shape_of(v), k.data.data(), k.shape, nullptr, 0, y.data(), o);
    return y;
  }

  /// The normalised binomial row b_i = binom(k − 1, i)/2^(k − 1).
  static std::vector<double> binomial(int k) {
    std::vector<double> b(static_cast<std::size_t>(k), 0.0);
    b[0] = 1.0;
    for (int n = 1; n < k; ++n)
      for (int i = n; i > 0; --i) b[static_cast<std::size_t>(i)] += b[static_cast<std::size_t>(i - 1)];
    for (auto& v : b) v /= std::ldexp(1.0, k - 1);
    return b;
  }

private:
  using Base::config_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index k = config_.kernel_size, C = config_.channels;
    const WeightSlot s = w.add("anti_alias_down/depthwise_kernel", {k, k, C, 1}, "zeros", seed, config_.trainable);
    const auto b = binomial(config_.kernel_size);
    auto& d = w[s.index].data;
    for (Index i = 0; i < k; ++i)
      for (Index j = 0; j < k; ++j)
        for (Index c = 0; c < C; ++c)
          d[static_cast<std::size_t>((i * k + j) * C + c)] =
              static_cast<T>(b[static_cast<std::size_t>(i)] * b[static_cast<std::size_t>(j)]);
    kernel_ = s;
  }

  WeightSlot kernel_;
};

}  // namespace attn
