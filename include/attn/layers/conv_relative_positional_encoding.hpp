/// \file
/// `conv_relative_positional_encoding` — CoaT's convolutional relative position encoding (CRPE): the
/// values' image tokens go through depthwise convolutions, one kernel size per group of heads, and are
/// multiplied element-wise by the queries (`ConvRelativePositionalEncoding`; Xu et al., 2021, "Co-Scale
/// Conv-Attentional Image Transformers"; spec kcam_attention_layers.md §4.3 and its errata).
///
/// Shapes: inputs `query`, `value` `[B, h, 1 + H·W, d]` (heads split, the class token first); output
/// `[B, h, 1 + H·W, d]`: the class-token row is zero, and for the image tokens
/// `out[b, hd, 1 + n, j] = q[b, hd, 1 + n, j] · conv_v[b, hd, n, j]` where `conv_v` is the values' image
/// `[B, H, W, h·d]` (channel `hd·d + j`) cut into consecutive channel chunks of `head_splits[i]·d`
/// (heads `s_0 … s_0 + s_i − 1`), each zero-padded by `⌊k_i/2⌋` and convolved depthwise with its
/// `k_i × k_i` kernel (stride 1: same size; ops/conv.hpp). No residual with the values. Grid:
/// `H = input_height`, or `⌊sqrt(N − 1)⌋` when -1, `W = (N − 1)/H`. In CoaT's factorised attention the
/// result is added to the (scaled) attention output with the unscaled queries.
///
/// Weights (the reference's Keras names): for each group `i`, `depth_conv_{i+1}/depthwise_kernel
/// [k_i, k_i, head_splits[i]·d, 1]` (glorot_uniform) and `depth_conv_{i+1}/bias [head_splits[i]·d]`
/// (zeros). The reference creates them on its first call from the query's shape; here `key_dim` says d
/// (`query.shape[-1]`) and the head count is `sum(head_splits)`.
///
/// Parameters: `key_dim` (required, d), `head_splits` (`[2, 3, 3]`: 8 heads), `head_kernel_size`
/// (`[3, 5, 7]`, odd, one per split: a ConfigError otherwise), `input_height` (-1).
///
/// Differs from the reference (spec errata): inputs whose head count is not `sum(head_splits)`, whose
/// image tokens do not fill the rows of the grid, or whose query and value differ are a ShapeError
/// naming the layer (the reference would fail in a reshape or a broadcast, or drop tokens).
/// Errors: ConfigError for the config, ShapeError for the inputs, WeightsError for weights changed
/// through parameters().
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>
#include <string>
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

struct ConvRelativePositionalEncodingConfig {
  int key_dim = 0;
  IntList head_splits{2, 3, 3};
  IntList head_kernel_size{3, 5, 7};
  int input_height = -1;

  static constexpr std::string_view type_name = "conv_relative_positional_encoding";
  static constexpr std::string_view class_name = "ConvRelativePositionalEncoding";
  static constexpr std::string_view description =
      "CoaT's convolutional relative position encoding: depthwise convolutions of the values' image tokens "
      "(one kernel size per group of heads) times the queries; query, value [B, h, 1 + H*W, d].";
  static constexpr std::string_view use_case =
      "The position term of CoaT's factorised attention, for token grids of any resolution.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = ConvRelativePositionalEncodingConfig;
    return std::array{
        Field<C>{.name = "key_dim", .member = member<&C::key_dim>, .required = true, .example = "4",
                 .range = positive, .doc = "Per-head width d of query and value (their last axis)."},
        Field<C>{.name = "head_splits", .member = member<&C::head_splits>, .range = positive, .length = {.min = 1},
                 .doc = "Heads per convolution, in head order; their sum is the number of heads."},
        Field<C>{.name = "head_kernel_size", .member = member<&C::head_kernel_size>, .range = positive,
                 .odd = true, .length = {.min = 1}, .doc = "Kernel size of each split's depthwise convolution."},
        Field<C>{.name = "input_height", .member = member<&C::input_height>, .range = {.min = at_least(-1)},
                 .doc = "Grid height H; -1: floor(sqrt(N - 1))."},
    };
  }

  [[nodiscard]] Index heads() const {
    return std::accumulate(head_splits.begin(), head_splits.end(), Index(0));
  }

  void check(Problems& p) const {
    if (input_height == 0) p.push_back({"input_height", "input_height must be -1 or positive, got 0"});
    if (head_splits.size() != head_kernel_size.size())
      p.push_back({"head_kernel_size", fmt::format("head_kernel_size must have one kernel per head split ({}), got {}",
                                                   head_splits.size(), head_kernel_size.size())});
  }
};
static_assert(config_table_is_sound<ConvRelativePositionalEncodingConfig>());

template <class T = float>
class ConvRelativePositionalEncoding
    : public LayerBase<ConvRelativePositionalEncoding<T>, ConvRelativePositionalEncodingConfig, T> {
  using Base = LayerBase<ConvRelativePositionalEncoding, ConvRelativePositionalEncodingConfig, T>;
  friend Base;

public:
  using Config = ConvRelativePositionalEncodingConfig;
  using Scalar = T;
  static constexpr std::array<int, 2> input_ranks{4, 4};

  explicit ConvRelativePositionalEncoding(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& query, const Shape& value) const {
    check_inputs(query, value);
    return query;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    const Shape s{2, c.heads(), 1 + 4 * 5, c.key_dim};
    return {s, s};
  }

  /// The encoding `[B, h, 1 + H·W, d]` of query and value (file comment).
  template <class Q, class V>
    requires TensorOf<Q, T, 4> && TensorOf<V, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const Q& query, const V& value) const {
    const ConstTensorView<T, 4> q = view_of<T, 4>(query), v = view_of<T, 4>(value);
    const auto [h, w] = check_inputs(shape_of(q), shape_of(v));
    this->check_weights();
    const Index b = q.dimension(0), heads = q.dimension(1), n = q.dimension(2), d = q.dimension(3), hw = h * w;
    Tensor<T, 4> y(b, heads, n, d);
    y.setZero();
    if (b == 0) return y;
    Index head0 = 0;
    for (std::size_t i = 0; i < config_.head_splits.size(); ++i) {
      const Index split = config_.head_splits[i], c = split * d, k = config_.head_kernel_size[i], half = k / 2;
      // the values' image tokens of heads [head0, head0 + split) as [B, H, W, split·d]
      Tensor<T, 4> img(b, h, w, c);
      for (Index bb = 0; bb < b; ++bb)
        for (Index s = 0; s < split; ++s)
          for (Index t = 0; t < hw; ++t)
            std::copy_n(v.data() + ((bb * heads + head0 + s) * n + 1 + t) * d, d, img.data() + ((bb * hw + t) * c + s * d));
      const Weight<T>& kernel = this->weight(kernels_[i]);
      const Weight<T>& bias = this->weight(biases_[i]);
      ops::Conv2dOptions o;
      o.padding = ops::Padding2d::explicit_pads(half, half, half, half);
      o.layer = Config::type_name;
      Tensor<T, 4> conv(b, h, w, c);
      ops::depthwise_conv2d<T>(img.data(), shape_of(img), kernel.data.data(), kernel.shape, bias.data.data(), c,
                               conv.data(), o);
      for (Index bb = 0; bb < b; ++bb)
        for (Index s = 0; s < split; ++s)
          for (Index t = 0; t < hw; ++t) {
            const Index row = ((bb * heads + head0 + s) * n + 1 + t) * d;
            const T* cv = conv.data() + (bb * hw + t) * c + s * d;
            for (Index j = 0; j < d; ++j) y.data()[row + j] = q.data()[row + j] * cv[j];
          }
      head0 += split;
    }
    return y;
  }

private:
  using Base::config_, Base::weights_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    std::vector<WeightSlot> kernels, biases;
    for (std::size_t i = 0; i < config_.head_splits.size(); ++i) {
      const Index c = Index(config_.head_splits[i]) * config_.key_dim, k = config_.head_kernel_size[i];
      const std::string name = fmt::format("depth_conv_{}/", i + 1);
      kernels.emplace_back(w.add(name + "depthwise_kernel", {k, k, c, 1}, "glorot_uniform", seed));
      biases.emplace_back(w.add(name + "bias", {c}, "zeros", seed));
    }
    kernels_ = std::move(kernels);
    biases_ = std::move(biases);
  }

  /// The grid (H, W) of valid inputs.
  std::pair<Index, Index> check_inputs(const Shape& query, const Shape& value) const {
    const std::string meaning = fmt::format("([B, heads, 1 + H*W, key_dim] with heads = sum(head_splits) = {})",
                                            config_.heads());
    check_shape(Config::type_name, "query", query, {-1, config_.heads(), -1, config_.key_dim}, meaning);
    check_shape(Config::type_name, "value", value, query, "(the query's shape)");
    return detail::posemb::token_grid(Config::type_name, "query", query[2] - 1, config_.input_height);
  }

  std::vector<WeightSlot> kernels_, biases_;
};

}  // namespace attn
