/// \file
/// `mhsa_with_relative_position_embedding` — BoTNet's multi-head self-attention with 2-D relative (or
/// absolute) position logits (Srinivas et al., 2021, "Bottleneck Transformers for Visual Recognition";
/// KCAM `botnet.py`, spec kcam_attention_layers.md §5.8 with §4.10 and §2.1).
///
/// Shapes: input `[B, H, W, C]` with `input_shape = [H, W, C]` (the position tables depend on H and W);
/// output `[B, H, W, O]`. Derived: `d = key_dim` if > 0, else `C / num_heads` (floor); `E = num_heads·d`;
/// `O = out_shape` (null: C; C when `out_weight` is false); value width per head `d_v = O / num_heads`.
/// Forward (tokens in raster order, n = y·W + x, N = H·W):
///   q, k, v = split(conv1x1(x), [E, E, O])   (block layout, each head-major; no bias)
///   relative: Lh[q, ky] = q·r_height[:, H − 1 + ky − y],  Lw[q, kx] = q·r_width[:, W − 1 + kx − x]
///   absolute: Lh[q, ky] = q·r_height[:, ky],              Lw[q, kx] = q·r_width[:, kx]
///   (the unscaled query; the same tables for every head: RelativePositionalEmbedding, §4.10)
///   per head: P = softmax(q kᵀ·d^−0.5 + Lh[q, ky] + Lw[q, kx])  (key n' = ky·W + kx);  y = merge(P v)
///   out = y·Wout [+ bout] when out_weight, else y.
/// The position logits depend on the query's content, so they are not one bias for the whole batch: the
/// block builds them per batch item (`[heads, N, N]`, from the `[heads, N, H]` and `[heads, N, W]`
/// factors) and the attention core adds them inside its logits; no `[B, heads, N, N]` tensor exists
/// unless the weights are asked for. Attention weights `[B, num_heads, N, N]` on request
/// (`forward_with_weights`, typed class).
///
/// Weights (Keras layouts, the reference's names): `qkv_conv/kernel [1, 1, C, 2E + O]` (no bias;
/// torch-like Uniform(±1/sqrt(C)) as `conv2d_no_bias`), `pos_emb/r_height [d, 2H − 1]` and
/// `pos_emb/r_width [d, 2W − 1]` (`[d, H]`, `[d, W]` when `relative` is false; Normal(0, d^−0.5)),
/// `output/kernel [num_heads·d_v, O]` (glorot_uniform), `output/bias [O]` when `out_bias`, both only
/// when `out_weight`. (BoTNet models run it with `out_weight = false`.)
///
/// Validation (ConfigError): `input_shape` three positive extents; `num_heads`, `out_shape` positive;
/// `key_dim` >= 0; `attn_dropout` in [0, 1]; "channels (C) must be at least num_heads (h) when key_dim
/// is 0"; "out_shape (O) must be divisible by num_heads (h)" (the reference's value reshape fails).
/// Input checks (ShapeError naming the layer): `[*, H, W, C]` of the input_shape.
///
/// Differences from the reference (deliberate): the grid and the channels are parameters
/// (`input_shape`), since the weights exist before the first call; `data_format` (channels-first input)
/// is not taken: inputs are channels-last; dropout is the identity (inference; the rate is kept).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/init.hpp"
#include "attn/core/param.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/blocks_common.hpp"
#include "attn/layers/detail/global_blocks.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/vision_layers.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

struct MhsaWithRelativePositionEmbeddingConfig {
  IntList input_shape{};
  int num_heads = 4;
  int key_dim = 0;
  bool relative = true;
  std::optional<int> out_shape{};
  bool out_weight = true;
  bool out_bias = false;
  double attn_dropout = 0.0;

  static constexpr std::string_view type_name = "mhsa_with_relative_position_embedding";
  static constexpr std::string_view class_name = "MhsaWithRelativePositionEmbedding";
  static constexpr std::string_view description =
      "BoTNet's multi-head self-attention over a feature map with query-dependent 2-D relative (or absolute) "
      "position logits added to the attention scores.";
  static constexpr std::string_view use_case =
      "The attention of BoTNet's bottleneck blocks (replacing the 3x3 convolution at low resolution).";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = MhsaWithRelativePositionEmbeddingConfig;
    return std::array{
        Field<C>{.name = "input_shape", .member = member<&C::input_shape>, .required = true, .example = "[3, 5, 16]",
                 .range = positive, .length = {.min = 3, .max = 3},
                 .doc = "The input's [height, width, channels] (the position tables depend on them). Beyond the "
                        "reference, which reads them from the input."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive, .doc = "Number of attention heads."},
        Field<C>{.name = "key_dim", .member = member<&C::key_dim>, .range = non_negative,
                 .doc = "Per-head query/key width; 0: channels // num_heads."},
        Field<C>{.name = "relative", .member = member<&C::relative>,
                 .doc = "Relative position logits (false: absolute ones)."},
        Field<C>{.name = "out_shape", .member = member<&C::out_shape>, .range = positive,
                 .doc = "Output channels O (null: channels); the value width is O, O // num_heads per head."},
        Field<C>{.name = "out_weight", .member = member<&C::out_weight>,
                 .doc = "Apply the output Dense (false: O = channels, no projection)."},
        Field<C>{.name = "out_bias", .member = member<&C::out_bias>, .doc = "Bias on the output Dense."},
        Field<C>{.name = "attn_dropout", .member = member<&C::attn_dropout>, .range = unit_interval,
                 .doc = "Dropout on the attention probabilities (identity at inference)."},
    };
  }

  [[nodiscard]] Index height() const { return input_shape[0]; }
  [[nodiscard]] Index width() const { return input_shape[1]; }
  [[nodiscard]] Index channels() const { return input_shape[2]; }
  [[nodiscard]] Index head_dim() const { return key_dim > 0 ? key_dim : channels() / num_heads; }
  [[nodiscard]] Index out_channels() const { return out_weight ? out_shape.value_or(channels()) : channels(); }
  [[nodiscard]] Index value_dim() const { return out_channels() / num_heads; }

  void check(Problems& p) const {
    if (input_shape.size() != 3 || num_heads <= 0) return;
    const bool named_out = out_weight && out_shape.has_value();
    if (key_dim == 0 && channels() < num_heads)
      p.push_back({"num_heads", fmt::format("channels ({}) must be at least num_heads ({}) when key_dim is 0",
                                            channels(), num_heads)});
    else if (out_channels() % num_heads != 0)
      p.push_back({named_out ? "out_shape" : "input_shape",
                   fmt::format("{} ({}) must be divisible by num_heads ({})", named_out ? "out_shape" : "channels",
                               out_channels(), num_heads)});
  }
};
static_assert(config_table_is_sound<MhsaWithRelativePositionEmbeddingConfig>());

template <class T = float>
class MhsaWithRelativePositionEmbedding
    : public LayerBase<MhsaWithRelativePositionEmbedding<T>, MhsaWithRelativePositionEmbeddingConfig, T>,
      public detail::MapDoor<MhsaWithRelativePositionEmbedding<T>, T> {
  using Base = LayerBase<MhsaWithRelativePositionEmbedding, MhsaWithRelativePositionEmbeddingConfig, T>;
  friend Base;
  friend detail::MapDoor<MhsaWithRelativePositionEmbedding<T>, T>;

public:
  using Config = MhsaWithRelativePositionEmbeddingConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit MhsaWithRelativePositionEmbedding(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return {x[0], x[1], x[2], config_.out_channels()};
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    return {{2, c.input_shape[0], c.input_shape[1], c.input_shape[2]}};
  }

  // forward(x): out `[B, H, W, O]` of x `[B, H, W, C]`.
  // forward_with_weights(x): also the attention weights `[B, num_heads, H·W, H·W]` (detail::MapDoor).

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot qkv, r_height, r_width, out_kernel, out_bias;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels(), H = config_.height(), W = config_.width(), d = config_.head_dim();
    const Index E = config_.num_heads * d, O = config_.out_channels();
    const bool rel = config_.relative;
    Slots s;
    s.qkv = w.add("qkv_conv/kernel", {1, 1, C, 2 * E + O}, "zeros", seed);
    detail::fill_uniform(w[s.qkv.index], 1.0 / std::sqrt(double(C)), seed);
    s.r_height = w.add("pos_emb/r_height", {d, rel ? 2 * H - 1 : H}, "zeros", seed);
    s.r_width = w.add("pos_emb/r_width", {d, rel ? 2 * W - 1 : W}, "zeros", seed);
    for (WeightSlot t : {s.r_height, s.r_width}) {
      Rng rng(seed ^ hash_name(w[t.index].name));
      for (T& v : w[t.index].data) v = static_cast<T>(rng.normal() / std::sqrt(double(d)));
    }
    if (config_.out_weight) {
      s.out_kernel = w.add("output/kernel", {config_.num_heads * config_.value_dim(), O}, "glorot_uniform", seed);
      if (config_.out_bias) s.out_bias = w.add("output/bias", {O}, "zeros", seed);
    }
    slots_ = s;
  }

  void check_input(const Shape& x) const {
    check_shape(Config::type_name, "input", x, {-1, config_.height(), config_.width(), config_.channels()},
                "([batch, height, width, channels] of the input_shape)");
  }

  /// The position factor `L[r, k] = q_r · table[:, rel ? P − 1 + k − pos(r) : k]`, k < P, for the query
  /// rows of batch item b (head-major rows r = hd·N + n), `pos(n)` its row (height) or column (width).
  void factor(const T* t, Index ld, Index N, Index h, Index d, const Weight<T>& table, Index P, bool height,
              T* full, T* out) const {
    const Index L = table.shape[1];
    // full[hd·N + n, :] = q[n, hd] · table
    for (Index hd = 0; hd < h; ++hd)
      ops::gemm<T>(N, L, d, t + hd * d, ld, table.data.data(), L, /*b_trans=*/false, full + hd * N * L, L);
    const Index W = config_.width();
    for (Index r = 0; r < h * N; ++r) {
      const Index n = r % N, pos = height ? n / W : n % W;
      for (Index k = 0; k < P; ++k) out[r * P + k] = full[r * L + (config_.relative ? P - 1 + k - pos : k)];
    }
  }

  Tensor<T, 4> run(const ConstTensorView<T, 4>& x, Tensor<T, 4>* weights) const {
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), H = config_.height(), W = config_.width(), N = H * W, h = config_.num_heads;
    const Index d = config_.head_dim(), E = h * d, O = config_.out_channels(), dv = config_.value_dim();
    const Index ld = 2 * E + O;
    Tensor<T, 4> y(B, H, W, O);
    if (weights) *weights = Tensor<T, 4>(B, h, N, N);
    if (B == 0) return y;
    ScratchFrame scratch;
    T* t = scratch.get<T>(B * N * ld);
    T* ctx = config_.out_weight ? scratch.get<T>(B * N * h * dv) : y.data();
    const Weight<T>& rh = this->weight(slots_.r_height);
    const Weight<T>& rw = this->weight(slots_.r_width);
    T* full = scratch.get<T>(h * N * std::max(rh.shape[1], rw.shape[1]));
    T* lh = scratch.get<T>(h * N * H);
    T* lw = scratch.get<T>(h * N * W);
    T* bias = scratch.get<T>(h * N * N);
    detail::global::project(x.data(), B * N, this->weight(slots_.qkv), static_cast<const Weight<T>*>(nullptr), t);
    const T scale = static_cast<T>(1.0 / std::sqrt(double(d)));
    for (Index b = 0; b < B; ++b) {
      const T* tb = t + b * N * ld;
      factor(tb, ld, N, h, d, rh, H, /*height=*/true, full, lh);
      factor(tb, ld, N, h, d, rw, W, /*height=*/false, full, lw);
      for (Index r = 0; r < h * N; ++r)
        for (Index ky = 0; ky < H; ++ky)
          for (Index kx = 0; kx < W; ++kx) bias[(r * H + ky) * W + kx] = lh[r * H + ky] + lw[r * W + kx];
      ops::AttentionMask<T> mask{};
      mask.bias = bias;
      mask.bias_sh = N * N;
      mask.bias_st = N;
      ops::attention(ops::heads_of<T>(tb, 1, N, h, d, ld), ops::heads_of<T>(tb + E, 1, N, h, d, ld),
                     ops::heads_of<T>(tb + 2 * E, 1, N, h, dv, ld),
                     ops::heads_out<T>(ctx + b * N * h * dv, 1, N, h, dv, h * dv), scale, mask,
                     weights ? weights->data() + b * h * N * N : nullptr);
    }
    if (config_.out_weight)
      detail::global::project(ctx, B * N, this->weight(slots_.out_kernel), this->optional_weight(slots_.out_bias),
                              y.data());
    return y;
  }

  Slots slots_;
};

}  // namespace attn
