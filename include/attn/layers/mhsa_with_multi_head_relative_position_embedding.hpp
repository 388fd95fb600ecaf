/// \file
/// `mhsa_with_multi_head_relative_position_embedding` — CoAtNet's multi-head self-attention with a
/// BEiT-style relative position bias table per head (Dai et al., 2021, "CoAtNet: Marrying Convolution
/// and Attention for All Data Sizes"; KCAM `coatnet.py`, spec kcam_attention_layers.md §5.7 with §4.6
/// and §2.1).
///
/// Shapes: input `[B, H, W, C]` with `input_shape = [H, W, C]` (the table depends on H and W); output
/// `[B, H, W, O]` with `O = out_shape` (null: C) when `out_weight`, else `[B, H, W, E]`. Derived:
/// `d = key_dim` if > 0, else `C / num_heads` (floor); `E = num_heads·d`; the value width per head is
/// `d` (not O / num_heads).
/// Forward (tokens in raster order, N = H·W):
///   q, k, v = split(conv1x1(x) [+ b], [E, E, E])   (block layout, each head-major)
///   per head: P = softmax(q kᵀ·d^−0.5 + table[head, I]);  y = merge(P v)   ([B, N, E])
///   out = y·Wout [+ bout] when out_weight, else y.
/// `I [N, N]` is KCAM's `MultiHeadRelativePositionalEmbedding(with_cls_token=False, attn_height=H)` index
/// (ops/relpos.hpp, `kcam_relative_position_index`): token p has `a = p mod H`, `b = p div H`,
/// `I[p, q] = (a_p − a_q + H − 1) + (b_p − b_q + W − 1)(2H − 1)`. For square grids this is the raster
/// relative index; for H ≠ W the fast axis is taken to have length H, which is not the raster geometry —
/// reproduced as is for weight parity (spec §4.6 observations). The gathered bias `[num_heads, N, N]`
/// (the same for every batch item) is added inside the attention core's logits. Attention weights
/// `[B, num_heads, N, N]` on request (`forward_with_weights`, typed class).
///
/// Weights (Keras layouts, the reference's names): `qkv_conv/kernel [1, 1, C, 3E]` (torch-like
/// Uniform(±1/sqrt(C)) as `conv2d_no_bias`), `qkv_conv/bias [3E]` (zeros) when `qkv_bias`,
/// `pos_emb/positional_embedding [num_heads, (2H − 1)(2W − 1)]` (zeros: the bias starts at 0),
/// `output/kernel [E, O]` (glorot_uniform), `output/bias [O]` when `out_bias`, both only when
/// `out_weight`.
///
/// Validation (ConfigError): `input_shape` three positive extents; `num_heads`, `out_shape` positive;
/// `key_dim` >= 0; `attn_dropout` in [0, 1]; "channels (C) must be at least num_heads (h) when key_dim
/// is 0". Input checks (ShapeError naming the layer): `[*, H, W, C]` of the input_shape.
///
/// Differences from the reference (deliberate): the grid and the channels are parameters
/// (`input_shape`); `global_query` (GCViT's externally computed query tensor) and `data_format`
/// (channels-first input) are not taken; dropout is the identity (inference; the rate is kept). No
/// class token: the block's input is a feature map (the table's class-token entries of §4.6 are the
/// `multi_head_relative_positional_embedding` layer's).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/param.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/blocks_common.hpp"
#include "attn/layers/detail/global_blocks.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/positional.hpp"
#include "attn/layers/detail/vision_layers.hpp"
#include "attn/ops/relpos.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

struct MhsaWithMultiHeadRelativePositionEmbeddingConfig {
  IntList input_shape{};
  int num_heads = 4;
  int key_dim = 0;
  std::optional<int> out_shape{};
  bool out_weight = true;
  bool qkv_bias = false;
  bool out_bias = false;
  double attn_dropout = 0.0;

  static constexpr std::string_view type_name = "mhsa_with_multi_head_relative_position_embedding";
  static constexpr std::string_view class_name = "MhsaWithMultiHeadRelativePositionEmbedding";
  static constexpr std::string_view description =
      "CoAtNet's multi-head self-attention over a feature map with a BEiT-style learned relative position "
      "bias table per head added to the attention scores.";
  static constexpr std::string_view use_case =
      "The transformer stages of CoAtNet (and MaxViT-like hybrids) at low resolution.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = MhsaWithMultiHeadRelativePositionEmbeddingConfig;
    return std::array{
        Field<C>{.name = "input_shape", .member = member<&C::input_shape>, .required = true, .example = "[3, 5, 16]",
                 .range = positive, .length = {.min = 3, .max = 3},
                 .doc = "The input's [height, width, channels] (the bias table depends on them). Beyond the "
                        "reference, which reads them from the input."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive, .doc = "Number of attention heads."},
        Field<C>{.name = "key_dim", .member = member<&C::key_dim>, .range = non_negative,
                 .doc = "Per-head query/key/value width; 0: channels // num_heads."},
        Field<C>{.name = "out_shape", .member = member<&C::out_shape>, .range = positive,
                 .doc = "Output channels of the output Dense (null: channels)."},
        Field<C>{.name = "out_weight", .member = member<&C::out_weight>,
                 .doc = "Apply the output Dense (false: the output has num_heads x key_dim channels)."},
        Field<C>{.name = "qkv_bias", .member = member<&C::qkv_bias>, .doc = "Bias on the qkv convolution."},
        Field<C>{.name = "out_bias", .member = member<&C::out_bias>, .doc = "Bias on the output Dense."},
        Field<C>{.name = "attn_dropout", .member = member<&C::attn_dropout>, .range = unit_interval,
                 .doc = "Dropout on the attention probabilities (identity at inference)."},
    };
  }

  [[nodiscard]] Index height() const { return input_shape[0]; }
  [[nodiscard]] Index width() const { return input_shape[1]; }
  [[nodiscard]] Index channels() const { return input_shape[2]; }
  [[nodiscard]] Index head_dim() const { return key_dim > 0 ? key_dim : channels() / num_heads; }
  [[nodiscard]] Index out_channels() const {
    return out_weight ? out_shape.value_or(channels()) : num_heads * head_dim();
  }
  [[nodiscard]] Index table_size() const { return (2 * height() - 1) * (2 * width() - 1); }

  void check(Problems& p) const {
    if (input_shape.size() != 3 || num_heads <= 0) return;
    if (key_dim == 0 && channels() < num_heads)
      p.push_back({"num_heads", fmt::format("channels ({}) must be at least num_heads ({}) when key_dim is 0",
                                            channels(), num_heads)});
  }
};
static_assert(config_table_is_sound<MhsaWithMultiHeadRelativePositionEmbeddingConfig>());

template <class T = float>
class MhsaWithMultiHeadRelativePositionEmbedding
    : public LayerBase<MhsaWithMultiHeadRelativePositionEmbedding<T>, MhsaWithMultiHeadRelativePositionEmbeddingConfig,
                       T>,
      public detail::MapDoor<MhsaWithMultiHeadRelativePositionEmbedding<T>, T> {
  using Base =
      LayerBase<MhsaWithMultiHeadRelativePositionEmbedding, MhsaWithMultiHeadRelativePositionEmbeddingConfig, T>;
  friend Base;
  friend detail::MapDoor<MhsaWithMultiHeadRelativePositionEmbedding<T>, T>;

public:
  using Config = MhsaWithMultiHeadRelativePositionEmbeddingConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit MhsaWithMultiHeadRelativePositionEmbedding(const Config& config, std::uint64_t seed = 0)
      : Base(config), index_(make_index(config)) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return {x[0], x[1], x[2], config_.out_channels()};
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    return {{2, c.input_shape[0], c.input_shape[1], c.input_shape[2]}};
  }

  /// KCAM's relative position index `[N, N]` (file comment).
  [[nodiscard]] const ops::IndexTable& relative_position_index() const noexcept { return index_; }
  /// The gathered bias `[num_heads, N, N]` the attention core adds to the scaled logits.
  [[nodiscard]] Tensor<T, 3> attention_bias() const {
    this->check_weights();
    Tensor<T, 3> out(config_.num_heads, index_.rows, index_.cols);
    ops::gather_relative_bias(this->weight(slots_.table).data.data(), Index(config_.num_heads), config_.table_size(),
                              true, index_, out.data(), Config::type_name);
    return out;
  }

  // forward(x): out `[B, H, W, O]` of x `[B, H, W, C]`.
  // forward_with_weights(x): also the attention weights `[B, num_heads, H·W, H·W]` (detail::MapDoor).

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot qkv_kernel, qkv_bias, table, out_kernel, out_bias;
  };

  static ops::IndexTable make_index(const Config& c) {
    const Index n = c.height() * c.width();
    detail::posemb::check_table(Config::type_name, "the relative position index", {n, n}, sizeof(Index));
    detail::posemb::check_table(Config::type_name, "the gathered bias", {Index(c.num_heads), n, n}, sizeof(T));
    return ops::kcam_relative_position_index(c.height(), c.width(), false, n, Config::type_name);
  }

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels(), E = config_.num_heads * config_.head_dim(), O = config_.out_channels();
    Slots s;
    s.qkv_kernel = w.add("qkv_conv/kernel", {1, 1, C, 3 * E}, "zeros", seed);
    detail::fill_uniform(w[s.qkv_kernel.index], 1.0 / std::sqrt(double(C)), seed);
    if (config_.qkv_bias) s.qkv_bias = w.add("qkv_conv/bias", {3 * E}, "zeros", seed);
    s.table = w.add("pos_emb/positional_embedding", {config_.num_heads, config_.table_size()}, "zeros", seed);
    if (config_.out_weight) {
      s.out_kernel = w.add("output/kernel", {E, O}, "glorot_uniform", seed);
      if (config_.out_bias) s.out_bias = w.add("output/bias", {O}, "zeros", seed);
    }
    slots_ = s;
  }

  void check_input(const Shape& x) const {
    check_shape(Config::type_name, "input", x, {-1, config_.height(), config_.width(), config_.channels()},
                "([batch, height, width, channels] of the input_shape)");
  }

  Tensor<T, 4> run(const ConstTensorView<T, 4>& x, Tensor<T, 4>* weights) const {
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), H = config_.height(), W = config_.width(), N = H * W, h = config_.num_heads;
    const Index d = config_.head_dim(), E = h * d, O = config_.out_channels();
    Tensor<T, 4> y(B, H, W, O);
    if (weights) *weights = Tensor<T, 4>(B, h, N, N);
    if (B == 0) return y;
    const Tensor<T, 3> bias = attention_bias();
    ScratchFrame scratch;
    T* t = scratch.get<T>(B * N * 3 * E);
    T* ctx = config_.out_weight ? scratch.get<T>(B * N * E) : y.data();
    detail::global::project(x.data(), B * N, this->weight(slots_.qkv_kernel), this->optional_weight(slots_.qkv_bias),
                            t);
    ops::attention(ops::heads_of<T>(t, B, N, h, d, 3 * E), ops::heads_of<T>(t + E, B, N, h, d, 3 * E),
                   ops::heads_of<T>(t + 2 * E, B, N, h, d, 3 * E), ops::heads_out<T>(ctx, B, N, h, d, E),
                   static_cast<T>(1.0 / std::sqrt(double(d))),
                   detail::global::PositionBias<T>(bias).mask(), weights ? weights->data() : nullptr);
    if (config_.out_weight)
      detail::global::project(ctx, B * N, this->weight(slots_.out_kernel), this->optional_weight(slots_.out_bias),
                              y.data());
    return y;
  }

  ops::IndexTable index_;
  Slots slots_;
};

}  // namespace attn
