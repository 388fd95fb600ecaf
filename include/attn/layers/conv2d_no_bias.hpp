/// \file
/// `conv2d_no_bias` — KCAM's `common_layers.conv2d_no_bias(inputs, filters, kernel_size=1, strides=1,
/// padding="valid", use_bias=False, groups=1, use_torch_padding=True, name=None, **kwargs)` (spec
/// kcam_attention_layers.md §3.4, §1.2 and the errata): a 2-D convolution (Keras Conv2D, cross-
/// correlation) with the reference's padding rules, over ops/conv.hpp.
///
/// Shapes: input x `[B, H, W, C]` with C = `channels` → `[B, H_out, W_out, filters]`, per axis
/// `out = ⌊(n + before + after − r(k − 1) − 1)/s⌋ + 1` with the padding below.
///
/// Padding (`padding`, `use_torch_padding`):
/// - `"same"` (case-insensitive) with `use_torch_padding` (default): zero-pad ⌊kh/2⌋ rows at the top and
///   bottom and ⌊kw/2⌋ columns left and right, then valid ("torch-same": H + 1 outputs for an even
///   kernel at stride 1; a dilated kernel shrinks the map, as the reference, spec errata);
/// - `"same"` without `use_torch_padding`: TensorFlow "same" (out = ⌈n/s⌉, the extra row/column at the
///   bottom/right, the dilated kernel extent in the formula);
/// - `"valid"`: none;
/// - an int `p` or a pair `[p_h, p_w]`: zero-pad p_h rows top and bottom, p_w columns left and right,
///   then valid (0 is valid).
///
/// Parameters: `channels` (required, > 0; the reference reads it from the input), `filters` (required,
/// > 0), `kernel_size` (1), `strides` (1), `dilation_rate` (1; a Keras Conv2D argument the reference
/// passes through `**kwargs`), all size-like (`3` or `[3, 5]`, > 0), `padding` ("valid"), `use_bias`
/// (false), `groups` (1; values below 1 are taken as 1, as the reference's `max(1, groups)`),
/// `use_torch_padding` (true).
///
/// Weights (Keras names under the sub-layer `conv`): `conv/kernel` `[kh, kw, C/groups, filters]`, init
/// Uniform(−a, a), a = 1/sqrt(C·kh·kw) with the FULL C (spec §1.3); `conv/bias` `[filters]` (with
/// `use_bias`), zeros.
///
/// Validation (ConfigError): ranges ("Parameter 'filters' must be positive, got 0", "kernel_size must be
/// positive, got (0, 0)", "padding must be non-negative, got (-1, 1)"); then "channels (6) and filters
/// (4) must be divisible by groups (4)"; Keras's "strides > 1 not supported in conjunction with
/// dilation_rate > 1, got strides (2, 2) and dilation_rate (2, 2)"; an explicit pad with
/// `use_torch_padding` false: "padding (1, 1) needs use_torch_padding=True: without it the reference
/// ignores the pad and uses TensorFlow 'same' padding; give padding 'same' for that".
/// Input checks (ShapeError): rank 4, C = `channels`, a (dilated) kernel larger than the padded input
/// (ops/padding.hpp's message, naming the layer).
///
/// Differences from the reference: an explicit pad with `use_torch_padding=False` is rejected instead of
/// silently replaced by TensorFlow "same" (spec errata). Other `**kwargs` of Keras Conv2D
/// (initializers, regularizers) are not parameters here.
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
#include "attn/ops/conv.hpp"

namespace attn {

struct Conv2dNoBiasConfig {
  int channels = 0;
  int filters = 0;
  Size2 kernel_size{1, 1};
  Size2 strides{1, 1};
  ConvPadding padding{};
  bool use_bias = false;
  int groups = 1;
  bool use_torch_padding = true;
  Size2 dilation_rate{1, 1};

  static constexpr std::string_view type_name = "conv2d_no_bias";
  static constexpr std::string_view class_name = "Conv2dNoBias";
  static constexpr std::string_view description =
      "2-D convolution with KCAM's padding rules (torch-style symmetric 'same' by default), optional bias and "
      "groups.";
  static constexpr std::string_view use_case = "The convolutions of the reference's blocks (stems, projections, "
                                               "pointwise and grouped convolutions).";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = Conv2dNoBiasConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "8",
                 .wording = Wording::factory, .range = positive, .doc = "Channels C of the input (last axis)."},
        Field<C>{.name = "filters", .member = member<&C::filters>, .required = true, .example = "16",
                 .wording = Wording::factory, .range = positive, .doc = "Output channels."},
        Field<C>{.name = "kernel_size", .member = member<&C::kernel_size>, .range = positive,
                 .doc = "Kernel (height, width)."},
        Field<C>{.name = "strides", .member = member<&C::strides>, .range = positive, .doc = "Strides (height, width)."},
        Field<C>{.name = "padding", .member = member<&C::padding>,
                 .doc = "'valid', 'same' (see use_torch_padding) or an explicit symmetric pad p / [p_h, p_w]."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>, .doc = "Add a bias (zeros at first)."},
        Field<C>{.name = "groups", .member = member<&C::groups>,
                 .doc = "Channel groups; values below 1 mean 1. Must divide channels and filters."},
        Field<C>{.name = "use_torch_padding", .member = member<&C::use_torch_padding>,
                 .doc = "'same' pads floor(k/2) on every side (true) or as TensorFlow (false)."},
        Field<C>{.name = "dilation_rate", .member = member<&C::dilation_rate>, .range = positive,
                 .doc = "Dilation (height, width) (a Keras Conv2D keyword argument)."},
    };
  }

  [[nodiscard]] int effective_groups() const noexcept { return std::max(1, groups); }

  void check(Problems& p) const {
    const int g = effective_groups();
    if (channels % g != 0 || filters % g != 0)
      p.push_back({"groups", fmt::format("channels ({}) and filters ({}) must be divisible by groups ({})", channels,
                                         filters, g)});
    if ((strides[0] > 1 || strides[1] > 1) && (dilation_rate[0] > 1 || dilation_rate[1] > 1))
      p.push_back({"dilation_rate", fmt::format("strides > 1 not supported in conjunction with dilation_rate > 1, got "
                                                "strides ({}, {}) and dilation_rate ({}, {})",
                                                strides[0], strides[1], dilation_rate[0], dilation_rate[1])});
    if (padding.mode == ConvPadding::Mode::pads && (padding.h > 0 || padding.w > 0) && !use_torch_padding)
      p.push_back({"padding", fmt::format("padding ({}, {}) needs use_torch_padding=True: without it the reference "
                                          "ignores the pad and uses TensorFlow 'same' padding; give padding 'same' "
                                          "for that",
                                          padding.h, padding.w)});
  }

  /// The padding of ops/conv.hpp.
  [[nodiscard]] ops::Padding2d ops_padding() const noexcept {
    switch (padding.mode) {
      case ConvPadding::Mode::valid: return ops::Padding2d::valid();
      case ConvPadding::Mode::same: return use_torch_padding ? ops::Padding2d::torch_same() : ops::Padding2d::same();
      case ConvPadding::Mode::pads: break;
    }
    return ops::Padding2d::explicit_pads(padding.h, padding.h, padding.w, padding.w);
  }
  [[nodiscard]] ops::Conv2dOptions conv_options() const noexcept {
    ops::Conv2dOptions o;
    o.strides = {strides[0], strides[1]};
    o.dilation_rate = {dilation_rate[0], dilation_rate[1]};
    o.groups = effective_groups();
    o.padding = ops_padding();
    o.layer = type_name;
    return o;
  }
};
static_assert(config_table_is_sound<Conv2dNoBiasConfig>());

template <class T = float>
class Conv2dNoBias : public LayerBase<Conv2dNoBias<T>, Conv2dNoBiasConfig, T> {
  using Base = LayerBase<Conv2dNoBias, Conv2dNoBiasConfig, T>;
  friend Base;

public:
  using Config = Conv2dNoBiasConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit Conv2dNoBias(const Config& config, std::uint64_t seed = 0) : Base(config) { this->reset_parameters(seed); }

  /// `[B, H_out, W_out, filters]`.
  [[nodiscard]] Shape output_shape(const Shape& x) const {
    detail::check_block_input(Config::type_name, x, config_.channels);
    const ops::Geometry2d g = ops::conv2d_geometry(x, kernel_shape(), config_.conv_options());
    return {x[0], g.out_h, g.out_w, config_.filters};
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    const auto ext = [&](int i) {
      return std::max<Index>(7, Index(c.dilation_rate[i]) * (c.kernel_size[i] - 1) + 1 + 2);
    };
    return {{2, ext(0), ext(1) + 1, c.channels}};
  }

  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    const ConstTensorView<T, 4> v = view_of<T, 4>(x);
    const Shape out = output_shape(shape_of(v));
    this->check_weights();
    Tensor<T, 4> y(out[0], out[1], out[2], out[3]);
    const Weight<T>& k = this->weight(kernel_);
    const Weight<T>* b = this->optional_weight(bias_);
    ops::conv2d<T>(v.data(), shape_of(v), k.data.data(), k.shape, b != nullptr ? b->data.data() : nullptr,
                   b != nullptr ? b->size() : 0, y.data(), config_.conv_options());
    return y;
  }

private:
  using Base::config_;

  [[nodiscard]] Shape kernel_shape() const {
    return {config_.kernel_size[0], config_.kernel_size[1], config_.channels / config_.effective_groups(),
            config_.filters};
  }

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const WeightSlot k = w.add("conv/kernel", kernel_shape(), "zeros", seed);
    detail::fill_uniform(w[k.index],
                         1.0 / std::sqrt(double(config_.channels) * config_.kernel_size[0] * config_.kernel_size[1]),
                         seed);
    const WeightSlot b = config_.use_bias ? WeightSlot(w.add("conv/bias", {config_.filters}, "zeros", seed)) : WeightSlot{};
    kernel_ = k;
    bias_ = b;
  }

  WeightSlot kernel_, bias_;
};

}  // namespace attn
