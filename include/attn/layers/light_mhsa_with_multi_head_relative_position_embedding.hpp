/// \file
/// `light_mhsa_with_multi_head_relative_position_embedding` — CMT's lightweight multi-head self-attention:
/// keys and values from a spatially reduced map, and a BEiT-style relative position bias table per head
/// (Guo et al., 2022, "CMT: Convolutional Neural Networks Meet Vision Transformers"; KCAM `cmt.py`, spec
/// kcam_attention_layers.md §5.4 with §4.6, §2.1 and Appendix A.4).
///
/// Shapes: input `[B, H, W, C]` with `input_shape = [H, W, C]` (the table and the reduced grid depend on
/// them); output `[B, H, W, O]` with `O = out_shape` (null: C) when `out_weight`, else `[B, H, W, E]`.
/// Derived: `d = key_dim` if > 0, else `C / num_heads` (floor); `E = num_heads·d`; `s = sr_ratio`;
/// the key grid `Hk = ⌊H/s⌋`, `Wk = ⌊W/s⌋` (a remainder row / column is dropped by the valid convolution),
/// `N = H·W` queries, `Nk = Hk·Wk` keys.
/// Forward (tokens in raster order):
///   q   = x·Wq [+ bq]                                                        ([B, N, E], head-major)
///   src = x if s = 1, else Norm(depthwise_conv_{s×s, stride s, valid}(x) [+ b])   ([B, Hk, Wk, C])
///   kv  = src·Wkv [+ bkv]                                                    ([B, Nk, 2E])
///   per head: P = softmax(q kᵀ·d^−0.5 + table[head, I]);  y = merge(P v)      ([B, N, E])
///   out = y·Wout [+ bout] when out_weight, else y.
/// Norm is LayerNormalization (ε = 1e-5) or, with `use_bn`, inference BatchNorm (ε = 1e-5, spec errata).
/// `I [N, Nk]` is KCAM's `MultiHeadRelativePositionalEmbedding(with_cls_token=False, attn_height=H)`
/// index (ops/relpos.hpp, `kcam_relative_position_index`): token p has `a = p mod H`, `b = p div H`,
/// `I[p, q] = (a_p − a_q + H − 1) + (b_p − b_q + W − 1)(2H − 1)`, and with reduced keys only the LAST
/// `Nk` columns of the full `[N, N]` index are kept (key j reads column `N − Nk + j`): the reference's
/// convention, not a geometric key position (spec §5.4 observations) — reproduced for weight parity, as
/// is the fast axis of length H for H ≠ W. The gathered bias `[num_heads, N, Nk]` (the same for every
/// batch item) is added inside the attention core's logits. Attention weights `[B, num_heads, N, Nk]` on
/// request (`forward_with_weights`, typed class).
///
/// Key/value layouts (`weight_layout`), so that both generations of KCAM's CMT weights load:
/// - "head" (default, KCAM at HEAD): 1×1 convolutions `query_conv/kernel [1, 1, C, E]`,
///   `key_value_conv/kernel [1, 1, C, 2E]`; the `2E` channels are `[key block | value block]`, each
///   head-major (channel `t·E + i·d + j` for key (t = 0) / value (t = 1), head i, dim j).
/// - "seed" (seed era, Appendix A.4): Dense layers `query/kernel [C, E]`, `key_value/kernel [C, 2E]`;
///   the `2E` channels viewed as `[d, h, 2]`: channel `(j·h + i)·2 + t` (dim-major, head, then k/v
///   fastest). The query is head-major in both. (The seed era scaled the query before the product: the same
///   result up to rounding.)
///
/// Weights (Keras layouts, the reference's names, creation order): `query_conv/kernel` (or
/// `query/kernel`), `+/bias [E]` when `qkv_bias`; when `sr_ratio > 1`: `kv_sr_dw_conv/depthwise_kernel
/// [s, s, C, 1]` (+ `kv_sr_dw_conv/bias [C]` when `qkv_bias`), then `kv_sr_ln/gamma, beta [C]` or
/// `kv_sr_bn/gamma, beta, moving_mean, moving_variance [C]`; `key_value_conv/kernel` (or
/// `key_value/kernel`), `+/bias [2E]` when `qkv_bias`; `pos_emb/positional_embedding [num_heads,
/// (2H − 1)(2W − 1)]` (zeros: the bias starts at 0); `output/kernel [E, O]` (glorot_uniform),
/// `output/bias [O]` when `out_bias`, both only when `out_weight`. The projection kernels start
/// torch-like Uniform(±1/sqrt(fan_in)) as `conv2d_no_bias`, the depthwise kernel Uniform(±1/s).
///
/// Validation (ConfigError): `input_shape` three positive extents; `num_heads`, `sr_ratio`, `out_shape`
/// positive; `key_dim` >= 0; `dropout` in [0, 1]; `weight_layout` "head" or "seed";
/// "channels (C) must be at least num_heads (h) when key_dim is 0"; "sr_ratio (s) must not exceed the
/// height (H) or the width (W)" (no key would remain); with `out_weight` false and key_dim 0, "channels
/// (C) must be divisible by num_heads (h) when out_weight is false and key_dim is 0" (the reference
/// cannot reshape its output then; spec errata §5.4). Input checks (ShapeError naming the layer):
/// `[*, H, W, C]` of the input_shape; weights of other shapes: WeightsError.
///
/// Differences from the reference (deliberate): the grid and the channels are parameters
/// (`input_shape`); `pos_emb` (an externally shared score-bias layer, e.g. CMT-torch's per-stage
/// `BiasPositionalEmbedding`) is not taken: the block always owns its MHRPE table; dropout is the
/// identity (inference; the rate is kept); the seed-era layout is an option of one type instead of
/// another code generation.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
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
#include "attn/ops/conv.hpp"
#include "attn/ops/norm.hpp"
#include "attn/ops/relpos.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

inline constexpr std::array<std::string_view, 2> light_mhsa_weight_layouts{"head", "seed"};

struct LightMhsaWithMultiHeadRelativePositionEmbeddingConfig {
  IntList input_shape{};
  int num_heads = 4;
  int key_dim = 0;
  int sr_ratio = 1;
  bool qkv_bias = false;
  bool use_bn = false;
  std::optional<int> out_shape{};
  bool out_weight = true;
  bool out_bias = false;
  double dropout = 0.0;
  std::string_view weight_layout = "head";

  static constexpr std::string_view type_name = "light_mhsa_with_multi_head_relative_position_embedding";
  static constexpr std::string_view class_name = "LightMhsaWithMultiHeadRelativePositionEmbedding";
  static constexpr std::string_view description =
      "CMT's lightweight multi-head self-attention: keys and values from a map reduced by a strided depthwise "
      "convolution and a normalization, with a BEiT-style relative position bias table per head.";
  static constexpr std::string_view use_case =
      "The transformer blocks of CMT at high resolution, where full-resolution keys would be too costly.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = LightMhsaWithMultiHeadRelativePositionEmbeddingConfig;
    return std::array{
        Field<C>{.name = "input_shape", .member = member<&C::input_shape>, .required = true, .example = "[7, 9, 16]",
                 .range = positive, .length = {.min = 3, .max = 3},
                 .doc = "The input's [height, width, channels] (the bias table and the reduced grid depend on "
                        "them). Beyond the reference, which reads them from the input."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive, .doc = "Number of attention heads."},
        Field<C>{.name = "key_dim", .member = member<&C::key_dim>, .range = non_negative,
                 .doc = "Per-head query/key/value width; 0: channels // num_heads."},
        Field<C>{.name = "sr_ratio", .member = member<&C::sr_ratio>, .range = positive,
                 .doc = "Spatial reduction of keys and values: a sr x sr depthwise convolution of stride sr "
                        "(valid) and a normalization; 1: none."},
        Field<C>{.name = "qkv_bias", .member = member<&C::qkv_bias>,
                 .doc = "Bias on the query, reduction and key/value projections."},
        Field<C>{.name = "use_bn", .member = member<&C::use_bn>,
                 .doc = "After the reduction convolution: BatchNorm (true) or LayerNorm (false), epsilon 1e-5."},
        Field<C>{.name = "out_shape", .member = member<&C::out_shape>, .range = positive,
                 .doc = "Output channels of the output Dense (null: channels)."},
        Field<C>{.name = "out_weight", .member = member<&C::out_weight>,
                 .doc = "Apply the output Dense (false: the output has num_heads x key_dim channels)."},
        Field<C>{.name = "out_bias", .member = member<&C::out_bias>, .doc = "Bias on the output Dense."},
        Field<C>{.name = "dropout", .member = member<&C::dropout>, .range = unit_interval,
                 .doc = "Dropout on the attention probabilities (identity at inference)."},
        Field<C>{.name = "weight_layout", .member = member<&C::weight_layout>, .choices = light_mhsa_weight_layouts,
                 .doc = "'head': KCAM's 1x1 convolutions with [key | value] blocks; 'seed': the seed era's "
                        "Dense layers with key/value channels (dim, head, k/v). Beyond the reference."},
    };
  }

  [[nodiscard]] Index height() const { return input_shape[0]; }
  [[nodiscard]] Index width() const { return input_shape[1]; }
  [[nodiscard]] Index channels() const { return input_shape[2]; }
  [[nodiscard]] Index head_dim() const { return key_dim > 0 ? key_dim : channels() / num_heads; }
  [[nodiscard]] Index embed_dim() const { return num_heads * head_dim(); }
  [[nodiscard]] Index out_channels() const { return out_weight ? out_shape.value_or(channels()) : embed_dim(); }
  [[nodiscard]] Index key_height() const { return height() / sr_ratio; }
  [[nodiscard]] Index key_width() const { return width() / sr_ratio; }
  [[nodiscard]] Index table_size() const { return (2 * height() - 1) * (2 * width() - 1); }
  [[nodiscard]] bool seed_layout() const { return weight_layout == "seed"; }

  void check(Problems& p) const {
    if (input_shape.size() != 3 || num_heads <= 0 || sr_ratio <= 0) return;
    if (key_dim == 0 && channels() < num_heads)
      p.push_back({"num_heads", fmt::format("channels ({}) must be at least num_heads ({}) when key_dim is 0",
                                            channels(), num_heads)});
    else if (!out_weight && key_dim == 0 && channels() % num_heads != 0)
      p.push_back({"num_heads", fmt::format("channels ({}) must be divisible by num_heads ({}) when out_weight is "
                                            "false and key_dim is 0",
                                            channels(), num_heads)});
    if (sr_ratio > height() || sr_ratio > width())
      p.push_back({"sr_ratio", fmt::format("sr_ratio ({}) must not exceed the height ({}) or the width ({})",
                                           sr_ratio, height(), width())});
  }
};
static_assert(config_table_is_sound<LightMhsaWithMultiHeadRelativePositionEmbeddingConfig>());

template <class T = float>
class LightMhsaWithMultiHeadRelativePositionEmbedding
    : public LayerBase<LightMhsaWithMultiHeadRelativePositionEmbedding<T>,
                       LightMhsaWithMultiHeadRelativePositionEmbeddingConfig, T>,
      public detail::MapDoor<LightMhsaWithMultiHeadRelativePositionEmbedding<T>, T> {
  using Base = LayerBase<LightMhsaWithMultiHeadRelativePositionEmbedding,
                         LightMhsaWithMultiHeadRelativePositionEmbeddingConfig, T>;
  friend Base;
  friend detail::MapDoor<LightMhsaWithMultiHeadRelativePositionEmbedding<T>, T>;

public:
  using Config = LightMhsaWithMultiHeadRelativePositionEmbeddingConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit LightMhsaWithMultiHeadRelativePositionEmbedding(const Config& config, std::uint64_t seed = 0)
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

  /// KCAM's relative position index `[N, Nk]` (the last Nk columns of the `[N, N]` index; file comment).
  [[nodiscard]] const ops::IndexTable& relative_position_index() const noexcept { return index_; }
  /// The gathered bias `[num_heads, N, Nk]` the attention core adds to the scaled logits.
  [[nodiscard]] Tensor<T, 3> attention_bias() const {
    this->check_weights();
    Tensor<T, 3> out(config_.num_heads, index_.rows, index_.cols);
    ops::gather_relative_bias(this->weight(slots_.table).data.data(), Index(config_.num_heads), config_.table_size(),
                              true, index_, out.data(), Config::type_name);
    return out;
  }

  // forward(x): out `[B, H, W, O]` of x `[B, H, W, C]`.
  // forward_with_weights(x): also the attention weights `[B, num_heads, H·W, Hk·Wk]` (detail::MapDoor).

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot q_kernel, q_bias, sr_kernel, sr_bias, ln_gamma, ln_beta, kv_kernel, kv_bias, table, out_kernel,
        out_bias;
    detail::global::BnSlots bn;
  };

  static ops::IndexTable make_index(const Config& c) {
    const Index n = c.height() * c.width(), nk = c.key_height() * c.key_width();
    detail::posemb::check_table(Config::type_name, "the relative position index", {n, nk}, sizeof(Index));
    detail::posemb::check_table(Config::type_name, "the gathered bias", {Index(c.num_heads), n, nk}, sizeof(T));
    return ops::kcam_relative_position_index(c.height(), c.width(), false, nk, Config::type_name);
  }

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels(), E = config_.embed_dim(), O = config_.out_channels();
    const Index s = config_.sr_ratio;
    const bool seed_era = config_.seed_layout();
    const std::string q = seed_era ? "query" : "query_conv", kv = seed_era ? "key_value" : "key_value_conv";
    const auto kernel_shape = [&](Index out) { return seed_era ? Shape{C, out} : Shape{1, 1, C, out}; };
    const double bound = 1.0 / std::sqrt(double(C));
    Slots sl;
    sl.q_kernel = w.add(q + "/kernel", kernel_shape(E), "zeros", seed);
    detail::fill_uniform(w[sl.q_kernel.index], bound, seed);
    if (config_.qkv_bias) sl.q_bias = w.add(q + "/bias", {E}, "zeros", seed);
    if (s > 1) {
      sl.sr_kernel = w.add("kv_sr_dw_conv/depthwise_kernel", {s, s, C, 1}, "zeros", seed);
      detail::fill_uniform(w[sl.sr_kernel.index], 1.0 / double(s), seed + 1);
      if (config_.qkv_bias) sl.sr_bias = w.add("kv_sr_dw_conv/bias", {C}, "zeros", seed);
      if (config_.use_bn) {
        sl.bn = detail::global::BnSlots::add(w, "kv_sr_bn", C, false, seed);
      } else {
        sl.ln_gamma = w.add("kv_sr_ln/gamma", {C}, "ones", seed);
        sl.ln_beta = w.add("kv_sr_ln/beta", {C}, "zeros", seed);
      }
    }
    sl.kv_kernel = w.add(kv + "/kernel", kernel_shape(2 * E), "zeros", seed);
    detail::fill_uniform(w[sl.kv_kernel.index], bound, seed + 2);
    if (config_.qkv_bias) sl.kv_bias = w.add(kv + "/bias", {2 * E}, "zeros", seed);
    sl.table = w.add("pos_emb/positional_embedding", {config_.num_heads, config_.table_size()}, "zeros", seed);
    if (config_.out_weight) {
      sl.out_kernel = w.add("output/kernel", {E, O}, "glorot_uniform", seed);
      if (config_.out_bias) sl.out_bias = w.add("output/bias", {O}, "zeros", seed);
    }
    slots_ = sl;
  }

  void check_input(const Shape& x) const {
    check_shape(Config::type_name, "input", x, {-1, config_.height(), config_.width(), config_.channels()},
                "([batch, height, width, channels] of the input_shape)");
  }

  /// The key/value projection in HEAD's layout: the seed era's columns `(j·h + i)·2 + t` moved to
  /// `t·E + i·d + j` (kernel and bias), else the stored weights as they are.
  void head_layout_kv(Weight<T>& kernel, std::optional<Weight<T>>& bias) const {
    const Weight<T>& k = this->weight(slots_.kv_kernel);
    const Weight<T>* b = this->optional_weight(slots_.kv_bias);
    const Index C = config_.channels(), h = config_.num_heads, d = config_.head_dim(), E = h * d;
    kernel = Weight<T>{k.name, {C, 2 * E}, std::vector<T>(k.data.size()), true};
    if (b != nullptr) bias = Weight<T>{b->name, {2 * E}, std::vector<T>(b->data.size()), true};
    for (Index t = 0; t < 2; ++t)
      for (Index i = 0; i < h; ++i)
        for (Index j = 0; j < d; ++j) {
          const auto src = static_cast<std::size_t>((j * h + i) * 2 + t);
          const auto dst = static_cast<std::size_t>(t * E + i * d + j);
          for (Index c = 0; c < C; ++c)
            kernel.data[static_cast<std::size_t>(c * 2 * E) + dst] = k.data[static_cast<std::size_t>(c * 2 * E) + src];
          if (b != nullptr) bias->data[dst] = b->data[src];
        }
  }

  Tensor<T, 4> run(const ConstTensorView<T, 4>& x, Tensor<T, 4>* weights) const {
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), H = config_.height(), W = config_.width(), N = H * W, h = config_.num_heads;
    const Index d = config_.head_dim(), E = h * d, O = config_.out_channels(), C = config_.channels();
    const Index s = config_.sr_ratio, Hk = config_.key_height(), Wk = config_.key_width(), Nk = Hk * Wk;
    Tensor<T, 4> y(B, H, W, O);
    if (weights) *weights = Tensor<T, 4>(B, h, N, Nk);
    if (B == 0) return y;
    const Tensor<T, 3> bias = attention_bias();
    ScratchFrame scratch;
    T* q = scratch.get<T>(B * N * E);
    T* kv = scratch.get<T>(B * Nk * 2 * E);
    T* ctx = config_.out_weight ? scratch.get<T>(B * N * E) : y.data();
    detail::global::project(x.data(), B * N, this->weight(slots_.q_kernel), this->optional_weight(slots_.q_bias), q);
    const T* src = x.data();
    if (s > 1) {
      T* red = scratch.get<T>(B * Nk * C);
      const Weight<T>& k = this->weight(slots_.sr_kernel);
      const Weight<T>* b = this->optional_weight(slots_.sr_bias);
      ops::Conv2dOptions opt;
      opt.strides = {s, s};
      opt.padding = ops::Padding2d::valid();
      opt.layer = Config::type_name;
      ops::depthwise_conv2d<T>(x.data(), {B, H, W, C}, k.data.data(), k.shape, b ? b->data.data() : nullptr,
                               b ? Index(b->data.size()) : 0, red, opt);
      if (config_.use_bn)
        slots_.bn.apply(weights_, red, B * Nk, C, Config::type_name);
      else
        ops::layer_norm<T>(red, B * Nk, C, this->weight(slots_.ln_gamma).data.data(),
                           this->weight(slots_.ln_beta).data.data(), 1e-5, red, Config::type_name);
      src = red;
    }
    if (config_.seed_layout()) {
      Weight<T> kernel;
      std::optional<Weight<T>> kv_bias;
      head_layout_kv(kernel, kv_bias);
      detail::global::project(src, B * Nk, kernel, kv_bias ? &*kv_bias : nullptr, kv);
    } else {
      detail::global::project(src, B * Nk, this->weight(slots_.kv_kernel), this->optional_weight(slots_.kv_bias),
                              kv);
    }
    ops::attention(ops::heads_of<T>(q, B, N, h, d, E), ops::heads_of<T>(kv, B, Nk, h, d, 2 * E),
                   ops::heads_of<T>(kv + E, B, Nk, h, d, 2 * E), ops::heads_out<T>(ctx, B, N, h, d, E),
                   static_cast<T>(1.0 / std::sqrt(double(d))), detail::global::PositionBias<T>(bias).mask(),
                   weights ? weights->data() : nullptr);
    if (config_.out_weight)
      detail::global::project(ctx, B * N, this->weight(slots_.out_kernel), this->optional_weight(slots_.out_bias),
                              y.data());
    return y;
  }

  ops::IndexTable index_;
  Slots slots_;
};

}  // namespace attn
