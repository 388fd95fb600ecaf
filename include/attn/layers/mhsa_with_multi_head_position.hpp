/// \file
/// `mhsa_with_multi_head_position` — LeViT's attention: multi-head self-attention with a learned
/// attention bias indexed by absolute position offsets, BatchNorm after the projections (Graham et al.,
/// 2021, "LeViT: a Vision Transformer in ConvNet's Clothing for Faster Inference"; KCAM `levit.py`, spec
/// kcam_attention_layers.md §5.5 with §4.4, §2.1, Appendix A.3 and the errata).
///
/// Shapes: input `[B, H, W, C]` (the factory's door) or tokens `[B, H·W, C]` (the typed class), with
/// `input_shape = [H, W, C]` (the bias table and index depend on the grid); output the input's shape with
/// `output_dim` channels (-1: C). Derived: `d = key_dim` if > 0, else `C / num_heads` (floor);
/// `r = attn_ratio`; value width per head `r·d`.
/// Forward (tokens in raster order, N = H·W):
///   t = x·Wqkv [+ bqkv];  t = BN(t) when use_bn
///   per head i (interleaved layout): channels [i·(r+2)d, (i+1)·(r+2)d) hold q (d), k (d), v (r·d)
///   per head: P = softmax(q kᵀ·d^−0.5 + table[I, head]);  y = merge(P v)   ([B, N, r·num_heads·d])
///   y = activation(y) (when given);  out = y·Wout [+ bout];  out = BN(out) when use_bn
/// `I [N, N]` is `MultiHeadPositionalEmbedding`'s index (§4.4, multi_head_positional_embedding.hpp) with
/// query height H and key height H: `I[p, m] = |m mod H − p mod H| + H·|m div H − p div H|` — for
/// non-square grids `p mod H` cycles with the height, not the raster column, reproduced as is for weight
/// parity. The gathered bias `[num_heads, N, N]` is added inside the attention core's logits. Attention
/// weights `[B, num_heads, N, N]` on request (`forward_with_weights`, typed class). BatchNorm: inference
/// form with the moving statistics, ε = 1e-5.
///
/// Weights (Keras layouts, the reference's names), in this order: `qkv/kernel [C, (r + 2)·num_heads·d]`
/// (glorot_uniform), `qkv/bias` when `qkv_bias`; with `use_bn` `qkv_bn/gamma`, `/beta`, `/moving_mean`,
/// `/moving_variance` `[(r + 2)·num_heads·d]` (ones, zeros, zeros, ones); `attn_pos/positional_embedding
/// [N, num_heads]` (zeros); the activation's weights (`prelu`: `<activation>/alpha [1, 1, r·num_heads·d]`);
/// `out/kernel [r·num_heads·d, output_dim]`, `out/bias` when `out_bias`; with `use_bn` `out_bn/...`
/// `[output_dim]` with gamma initialised to zeros (the block starts at its BN's beta).
///
/// Validation (ConfigError): `input_shape` three positive extents; `num_heads` (required), `attn_ratio`
/// positive; `key_dim`, `output_dim`, `attn_height` -1 or positive; `attn_height` must be -1 or H (the
/// grid is the input_shape's); "channels (C) must be at least num_heads (h) when key_dim is -1".
/// Input checks (ShapeError naming the layer): `[*, H, W, C]` or `[*, H·W, C]` of the input_shape.
///
/// Differences from the reference (deliberate): the grid and channels are parameters (`input_shape`);
/// `use_bn` defaults to false (HEAD; the seed era's default was true and LeViT models pass true: both
/// are accepted); tokens take their grid from `input_shape` (`attn_height` is kept for the round trip).
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
#include "attn/layers/multi_head_positional_embedding.hpp"
#include "attn/ops/norm.hpp"
#include "attn/ops/relpos.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

struct MhsaWithMultiHeadPositionConfig {
  IntList input_shape{};
  int num_heads = 0;
  int key_dim = -1;
  int attn_height = -1;
  int output_dim = -1;
  int attn_ratio = 1;
  bool use_bn = false;
  bool qkv_bias = false;
  bool out_bias = false;
  std::optional<ActivationName> activation{};

  static constexpr std::string_view type_name = "mhsa_with_multi_head_position";
  static constexpr std::string_view class_name = "MhsaWithMultiHeadPosition";
  static constexpr std::string_view description =
      "LeViT's attention: multi-head self-attention with a learned per-head bias indexed by absolute position "
      "offsets, BatchNorm after the qkv and output projections, value width attn_ratio x key_dim.";
  static constexpr std::string_view use_case = "The attention blocks of LeViT (fast inference hybrids).";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = MhsaWithMultiHeadPositionConfig;
    return std::array{
        Field<C>{.name = "input_shape", .member = member<&C::input_shape>, .required = true, .example = "[3, 5, 16]",
                 .range = positive, .length = {.min = 3, .max = 3},
                 .doc = "The input's [height, width, channels] (the bias depends on the grid). Beyond the "
                        "reference, which reads them from the input."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .required = true, .example = "2",
                 .wording = Wording::factory, .range = positive, .doc = "Number of attention heads."},
        Field<C>{.name = "key_dim", .member = member<&C::key_dim>, .range = {.min = at_least(-1)},
                 .doc = "Per-head query/key width d; -1 (or 0): channels // num_heads."},
        Field<C>{.name = "attn_height", .member = member<&C::attn_height>, .range = {.min = at_least(-1)},
                 .doc = "Grid height of token inputs; -1 or the input_shape's height."},
        Field<C>{.name = "output_dim", .member = member<&C::output_dim>, .range = {.min = at_least(-1)},
                 .doc = "Output channels; -1 (or 0): channels."},
        Field<C>{.name = "attn_ratio", .member = member<&C::attn_ratio>, .range = positive,
                 .doc = "Value width per head = attn_ratio x key_dim."},
        Field<C>{.name = "use_bn", .member = member<&C::use_bn>,
                 .doc = "BatchNorm after the qkv Dense and (zero gamma) after the output Dense."},
        Field<C>{.name = "qkv_bias", .member = member<&C::qkv_bias>, .doc = "Bias on the qkv Dense."},
        Field<C>{.name = "out_bias", .member = member<&C::out_bias>, .doc = "Bias on the output Dense."},
        Field<C>{.name = "activation", .member = member<&C::activation>,
                 .doc = "Activation by name before the output Dense (null: none; LeViT uses hard_swish)."},
    };
  }

  [[nodiscard]] Index height() const { return input_shape[0]; }
  [[nodiscard]] Index width() const { return input_shape[1]; }
  [[nodiscard]] Index channels() const { return input_shape[2]; }
  [[nodiscard]] Index head_dim() const { return key_dim > 0 ? key_dim : channels() / num_heads; }
  [[nodiscard]] Index qkv_width() const { return (Index(attn_ratio) + 2) * num_heads * head_dim(); }
  [[nodiscard]] Index value_width() const { return Index(attn_ratio) * num_heads * head_dim(); }
  [[nodiscard]] Index out_channels() const { return output_dim > 0 ? output_dim : channels(); }
  [[nodiscard]] MultiHeadPositionalEmbeddingConfig position_config() const {
    const Index n = height() * width();
    return {.input_shape = {num_heads, static_cast<int>(n), static_cast<int>(n)},
            .query_height = static_cast<int>(height()),
            .key_height = static_cast<int>(height())};
  }

  void check(Problems& p) const {
    if (input_shape.size() != 3 || num_heads <= 0) return;
    if (key_dim <= 0 && channels() < num_heads)
      p.push_back({"num_heads", fmt::format("channels ({}) must be at least num_heads ({}) when key_dim is -1",
                                            channels(), num_heads)});
    if (attn_height > 0 && attn_height != height())
      p.push_back({"attn_height", fmt::format("attn_height ({}) must be -1 or the input_shape's height ({})",
                                              attn_height, height())});
  }
};
static_assert(config_table_is_sound<MhsaWithMultiHeadPositionConfig>());


template <class T = float>
class MhsaWithMultiHeadPosition : public LayerBase<MhsaWithMultiHeadPosition<T>, MhsaWithMultiHeadPositionConfig, T>,
                                  public detail::global::MapOrTokensDoor<MhsaWithMultiHeadPosition<T>, T> {
  using Base = LayerBase<MhsaWithMultiHeadPosition, MhsaWithMultiHeadPositionConfig, T>;
  friend Base;
  friend detail::global::MapOrTokensDoor<MhsaWithMultiHeadPosition<T>, T>;

public:
  using Config = MhsaWithMultiHeadPositionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit MhsaWithMultiHeadPosition(const Config& config, std::uint64_t seed = 0)
      : Base(config), act_(config.activation ? config.activation->view() : std::string_view{}, Config::type_name),
        index_(make_index(config)) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return detail::global::with_channels(x, config_.out_channels());
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    return {{2, c.input_shape[0], c.input_shape[1], c.input_shape[2]}};
  }

  /// The position index `[N, N]` (file comment).
  [[nodiscard]] const ops::IndexTable& relative_position_index() const noexcept { return index_; }
  /// The gathered bias `[num_heads, N, N]` the attention core adds to the scaled logits.
  [[nodiscard]] Tensor<T, 3> attention_bias() const {
    this->check_weights();
    const Index n = config_.height() * config_.width();
    Tensor<T, 3> out(config_.num_heads, n, n);
    ops::gather_relative_bias(this->weight(slots_.table).data.data(), Index(config_.num_heads), n, false, index_,
                              out.data(), Config::type_name);
    return out;
  }

  // forward(x) and forward_with_weights(x) (weights `[B, num_heads, N, N]`) for x `[B, H, W, C]` or tokens `[B, N, C]`:
  // detail::global::MapOrTokensDoor.

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot qkv_kernel, qkv_bias, table, out_kernel, out_bias;
    detail::global::BnSlots qkv_bn, out_bn;
    detail::BlockActivation::Slots act;
  };

  static ops::IndexTable make_index(const Config& c) {
    const Index n = c.height() * c.width();
    detail::posemb::check_table(Config::type_name, "the position index", {n, n}, sizeof(Index));
    detail::posemb::check_table(Config::type_name, "the gathered bias", {Index(c.num_heads), n, n}, sizeof(T));
    return c.position_config().index();
  }

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels(), n = config_.height() * config_.width(), qkv = config_.qkv_width();
    const Index vw = config_.value_width(), O = config_.out_channels();
    Slots s;
    s.qkv_kernel = w.add("qkv/kernel", {C, qkv}, "glorot_uniform", seed);
    if (config_.qkv_bias) s.qkv_bias = w.add("qkv/bias", {qkv}, "zeros", seed);
    if (config_.use_bn) s.qkv_bn = detail::global::BnSlots::add(w, "qkv_bn", qkv, false, seed);
    s.table = w.add("attn_pos/positional_embedding", {n, config_.num_heads}, "zeros", seed);
    s.act = act_.add_weights(w, vw, seed);
    s.out_kernel = w.add("out/kernel", {vw, O}, "glorot_uniform", seed);
    if (config_.out_bias) s.out_bias = w.add("out/bias", {O}, "zeros", seed);
    if (config_.use_bn) s.out_bn = detail::global::BnSlots::add(w, "out_bn", O, true, seed);
    slots_ = s;
  }

  void check_input(const Shape& x) const {
    const Index H = config_.height(), W = config_.width(), C = config_.channels();
    if (x.size() == 3)
      check_shape(Config::type_name, "input", x, {-1, H * W, C}, "([batch, tokens, channels] of the input_shape)");
    else
      check_shape(Config::type_name, "input", x, {-1, H, W, C}, "([batch, height, width, channels] of the input_shape)");
  }

  template <int R>
  Tensor<T, R> run(const ConstTensorView<T, R>& x, Tensor<T, 4>* weights) const {
    namespace g = detail::global;
    const Shape xs = shape_of(x);
    check_input(xs);
    this->check_weights();
    const Index B = xs[0], N = config_.height() * config_.width(), h = config_.num_heads, d = config_.head_dim();
    const Index r = config_.attn_ratio, ld = config_.qkv_width(), vw = config_.value_width(), O = config_.out_channels();
    const Shape os = g::with_channels(xs, O);
    std::array<Index, R> dims{};
    std::copy(os.begin(), os.end(), dims.begin());
    Tensor<T, R> y(dims);
    if (weights) *weights = Tensor<T, 4>(B, h, N, N);
    if (B == 0) return y;
    const Tensor<T, 3> bias = attention_bias();
    ScratchFrame scratch;
    T* t = scratch.get<T>(B * N * ld);
    T* ctx = scratch.get<T>(B * N * vw);
    g::project(x.data(), B * N, this->weight(slots_.qkv_kernel), this->optional_weight(slots_.qkv_bias), t);
    if (config_.use_bn) slots_.qkv_bn.apply(weights_, t, B * N, ld, Config::type_name);
    const Index hs = (r + 2) * d;
    ops::attention(g::interleaved<T>(t, B, N, h, d, ld, hs), g::interleaved<T>(t + d, B, N, h, d, ld, hs),
                   g::interleaved<T>(t + 2 * d, B, N, h, r * d, ld, hs), ops::heads_out<T>(ctx, B, N, h, r * d, vw),
                   static_cast<T>(1.0 / std::sqrt(double(d))), g::PositionBias<T>(bias).mask(),
                   weights ? weights->data() : nullptr);
    act_.apply(weights_, slots_.act, ctx, B * N * vw, vw, Config::type_name);
    g::project(ctx, B * N, this->weight(slots_.out_kernel), this->optional_weight(slots_.out_bias), y.data());
    if (config_.use_bn) slots_.out_bn.apply(weights_, y.data(), B * N, O, Config::type_name);
    return y;
  }

  detail::BlockActivation act_;
  ops::IndexTable index_;
  Slots slots_;
};

}  // namespace attn
