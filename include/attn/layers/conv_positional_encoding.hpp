/// \file
/// `conv_positional_encoding` — CoaT's convolutional position encoding: the image tokens after the
/// class token go through a depthwise `k×k` convolution that is added back to them; the class token
/// passes through (`ConvPositionalEncoding`; Xu et al., 2021, "Co-Scale Conv-Attentional Image
/// Transformers"; spec kcam_attention_layers.md §4.2 and its errata).
///
/// Shapes: input tokens `[B, 1 + H·W, C]`, the class token first, then the image in raster order;
/// `H = input_height`, or `⌊sqrt(N − 1)⌋` when -1, `W = (N − 1)/H`. Output the same shape:
/// `out[:, 0] = x[:, 0]`, `out[:, 1:] = img + dwconv(zero_pad(img, ⌊k/2⌋))` with `img` the image tokens
/// as `[B, H, W, C]` (stride 1, valid after the symmetric pad: same size; ops/conv.hpp).
///
/// Weights (the reference's Keras names under its sub-layer `depth_conv`): `depth_conv/depthwise_kernel
/// [k, k, C, 1]` (glorot_uniform) and `depth_conv/bias [C]` (zeros). The reference creates them on its
/// first call (a plain callable shared by the serial blocks of a CoaT stage); here `channels` says C.
/// With a zero kernel and zero bias the layer is the identity.
///
/// Parameters: `channels` (required, C), `kernel_size` (3; odd: an even kernel gives H + 1 rows that the
/// residual add cannot take, a ConfigError here — spec errata), `input_height` (-1).
///
/// Differs from the reference (spec errata): image tokens that do not fill the rows of the grid
/// (`N − 1` not a multiple of H) are a ShapeError, where the reference's reshape would fail or drop them.
/// Errors: ConfigError for the config, ShapeError for the input, WeightsError for a weight changed
/// through parameters().
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/positional.hpp"
#include "attn/ops/conv.hpp"

namespace attn {

struct ConvPositionalEncodingConfig {
  int channels = 0;
  int kernel_size = 3;
  int input_height = -1;

  static constexpr std::string_view type_name = "conv_positional_encoding";
  static constexpr std::string_view class_name = "ConvPositionalEncoding";
  static constexpr std::string_view description =
      "CoaT's convolutional position encoding: a depthwise k x k convolution of the image tokens added back "
      "to them, the class token passed through ([B, 1 + H*W, C]).";
  static constexpr std::string_view use_case =
      "Position information for ViT-style tokens of any resolution (CoaT serial blocks).";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = ConvPositionalEncodingConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "8",
                 .range = positive, .doc = "Channels C of the tokens (the last axis)."},
        Field<C>{.name = "kernel_size", .member = member<&C::kernel_size>, .range = positive, .odd = true,
                 .doc = "Size of the depthwise kernel (odd)."},
        Field<C>{.name = "input_height", .member = member<&C::input_height>, .range = {.min = at_least(-1)},
                 .doc = "Grid height H; -1: floor(sqrt(N - 1))."},
    };
  }

  void check(Problems& p) const {
    if (input_height == 0) p.push_back({"input_height", "input_height must be -1 or positive, got 0"});
  }
};
static_assert(config_table_is_sound<ConvPositionalEncodingConfig>());

template <class T = float>
class ConvPositionalEncoding : public LayerBase<ConvPositionalEncoding<T>, ConvPositionalEncodingConfig, T> {
  using Base = LayerBase<ConvPositionalEncoding, ConvPositionalEncodingConfig, T>;
  friend Base;

public:
  using Config = ConvPositionalEncodingConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{3};

  explicit ConvPositionalEncoding(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 1 + 4 * 5, c.channels}}; }

  /// x `[B, 1 + H·W, C]` with its image tokens' depthwise convolution added.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x) const {
    const ConstTensorView<T, 3> v = view_of<T, 3>(x);
    const auto [h, w] = check_input(shape_of(v));
    this->check_weights();
    const Index b = v.dimension(0), n = v.dimension(1), c = v.dimension(2), k = config_.kernel_size, half = k / 2;
    if (b == 0) return Tensor<T, 3>(0, n, c);
    Tensor<T, 4> img(b, h, w, c);
    for (Index i = 0; i < b; ++i) std::copy_n(v.data() + (i * n + 1) * c, h * w * c, img.data() + i * h * w * c);
    const Weight<T>& kernel = this->weight(kernel_);
    const Weight<T>& bias = this->weight(bias_);
    ops::Conv2dOptions o;
    o.padding = ops::Padding2d::explicit_pads(half, half, half, half);
    o.layer = Config::type_name;
    Tensor<T, 4> conv(b, h, w, c);
    ops::depthwise_conv2d<T>(img.data(), shape_of(img), kernel.data.data(), kernel.shape, bias.data.data(), c,
                             conv.data(), o);
    Tensor<T, 3> y(b, n, c);
    for (Index i = 0; i < b; ++i) {
      std::copy_n(v.data() + i * n * c, c, y.data() + i * n * c);
      const T* a = img.data() + i * h * w * c;
      const T* d = conv.data() + i * h * w * c;
      T* out = y.data() + (i * n + 1) * c;
      for (Index j = 0; j < h * w * c; ++j) out[j] = d[j] + a[j];
    }
    return y;
  }

private:
  using Base::config_, Base::weights_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index k = config_.kernel_size, c = config_.channels;
    const std::size_t kernel = w.add("depth_conv/depthwise_kernel", {k, k, c, 1}, "glorot_uniform", seed);
    const std::size_t bias = w.add("depth_conv/bias", {c}, "zeros", seed);
    kernel_ = kernel;
    bias_ = bias;
  }

  /// The grid (H, W) of a valid input.
  std::pair<Index, Index> check_input(const Shape& x) const {
    check_shape(Config::type_name, "x", x, {-1, -1, config_.channels}, "(tokens [B, 1 + H*W, channels])");
    return detail::posemb::token_grid(Config::type_name, "x", x[1] - 1, config_.input_height);
  }

  WeightSlot kernel_, bias_;
};

}  // namespace attn
