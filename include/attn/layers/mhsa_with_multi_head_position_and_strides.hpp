/// \file
/// `mhsa_with_multi_head_position_and_strides` — LeViT's "attention subsample": attention whose queries
/// come from a strided subsample of the map, so the output is downsampled (Graham et al., 2021, "LeViT";
/// KCAM `levit.py`, spec kcam_attention_layers.md §5.6 with §4.4, §2.1 and the errata).
///
/// Shapes: input `[B, H, W, C]` with `input_shape = [H, W, C]`; output `[B, Hq, Wq, output_dim]`,
/// `Hq = ⌈H/s⌉`, `Wq = ⌈W/s⌉`, `s = strides`, `output_dim` -1: C. Derived: `d = key_dim` if > 0, else
/// `C / num_heads` (floor); `r = attn_ratio`; value width per head `r·d`.
/// Forward (tokens in raster order; N = H·W keys, Nq = Hq·Wq queries):
///   xq = x[:, ::s, ::s, :];  q = xq·Wq [+ bq];  q = BN(q) when use_bn     (head-major)
///   kv = x·Wkv [+ bkv];  kv = BN(kv) when use_bn;  head i's channels [i·(r+1)d, (i+1)·(r+1)d) hold k (d), v (r·d)
///   per head: P = softmax(q kᵀ·d^−0.5 + table[I, head]);  y = merge(P v)   ([B, Nq, r·num_heads·d])
///   y = activation(y) (when given);  out = y·Wout [+ bout];  out = BN(out) when use_bn
/// `I [Nq, N]` is `MultiHeadPositionalEmbedding`'s index (§4.4, multi_head_positional_embedding.hpp) with
/// query height Hq, its stride `⌈sqrt(N / Nq)⌉` (which recovers s) and key height H:
/// `I[p, m] = |m mod H − s·(p mod Hq)| + H·|m div H − s·(p div Hq)|` (for non-square grids `p mod Hq`
/// cycles with the height, as the reference). The reference searches the key height from `Hq·s` down
/// to a divisor of N, which for some grids (odd H, e.g. 3×8) overruns its table; here the key grid is
/// the input's (spec errata), and a config whose index would still leave the table is a ConfigError.
/// The gathered bias `[num_heads, Nq, N]` is added inside the attention core's logits. Attention
/// weights `[B, num_heads, Nq, N]` on request (`forward_with_weights`, typed class). BatchNorm: inference
/// form, ε = 1e-5.
///
/// Weights (Keras layouts, the reference's names), in this order: `q/kernel [C, num_heads·d]`, `q/bias`
/// when `qkv_bias`, `q_bn/...` `[num_heads·d]` when `use_bn`; `kv/kernel [C, (r + 1)·num_heads·d]`,
/// `kv/bias`, `kv_bn/...`; `attn_pos/positional_embedding [N, num_heads]` (zeros); the activation's
/// weights (`prelu`: `<activation>/alpha [1, 1, r·num_heads·d]`); `out/kernel [r·num_heads·d,
/// output_dim]`, `out/bias` when `out_bias`, `out_bn/...` `[output_dim]` (gamma zeros) when `use_bn`.
/// BN weights: `gamma`, `beta`, `moving_mean`, `moving_variance` (ones, zeros, zeros, ones). Kernels
/// glorot_uniform, biases zeros.
///
/// Validation (ConfigError): `input_shape` three positive extents; `num_heads` (required), `attn_ratio`,
/// `strides` positive; `key_dim`, `output_dim` -1 or positive; "channels (C) must be at least num_heads
/// (h) when key_dim is -1"; the index check above (named `strides`). Input checks (ShapeError naming the
/// layer): `[*, H, W, C]` of the input_shape.
///
/// Differences from the reference (deliberate): the grid and channels are parameters (`input_shape`);
/// the key grid is the input's (errata); `use_bn` defaults to true as in the reference.
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
#include "attn/ops/relpos.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

struct MhsaWithMultiHeadPositionAndStridesConfig {
  IntList input_shape{};
  int num_heads = 0;
  int key_dim = -1;
  int output_dim = -1;
  int attn_ratio = 1;
  int strides = 1;
  bool use_bn = true;
  bool qkv_bias = false;
  bool out_bias = false;
  std::optional<ActivationName> activation{};

  static constexpr std::string_view type_name = "mhsa_with_multi_head_position_and_strides";
  static constexpr std::string_view class_name = "MhsaWithMultiHeadPositionAndStrides";
  static constexpr std::string_view description =
      "LeViT's attention subsample: queries from a strided subsample of the map attend to every position, "
      "with LeViT's learned position bias and BatchNorm after the projections; the output is downsampled.";
  static constexpr std::string_view use_case = "The downsampling attention between LeViT stages.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = MhsaWithMultiHeadPositionAndStridesConfig;
    return std::array{
        Field<C>{.name = "input_shape", .member = member<&C::input_shape>, .required = true, .example = "[5, 6, 16]",
                 .range = positive, .length = {.min = 3, .max = 3},
                 .doc = "The input's [height, width, channels] (the bias depends on the grid). Beyond the "
                        "reference, which reads them from the input."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .required = true, .example = "2",
                 .wording = Wording::factory, .range = positive, .doc = "Number of attention heads."},
        Field<C>{.name = "key_dim", .member = member<&C::key_dim>, .range = {.min = at_least(-1)},
                 .doc = "Per-head query/key width d; -1 (or 0): channels // num_heads."},
        Field<C>{.name = "output_dim", .member = member<&C::output_dim>, .range = {.min = at_least(-1)},
                 .doc = "Output channels; -1 (or 0): channels."},
        Field<C>{.name = "attn_ratio", .member = member<&C::attn_ratio>, .range = positive,
                 .doc = "Value width per head = attn_ratio x key_dim."},
        Field<C>{.name = "strides", .member = member<&C::strides>, .range = positive,
                 .doc = "Query stride: the queries are x[:, ::strides, ::strides]."},
        Field<C>{.name = "use_bn", .member = member<&C::use_bn>,
                 .doc = "BatchNorm after the q and kv Dense layers and (zero gamma) after the output Dense."},
        Field<C>{.name = "qkv_bias", .member = member<&C::qkv_bias>, .doc = "Biases on the q and kv Dense layers."},
        Field<C>{.name = "out_bias", .member = member<&C::out_bias>, .doc = "Bias on the output Dense."},
        Field<C>{.name = "activation", .member = member<&C::activation>,
                 .doc = "Activation by name before the output Dense (null: none; LeViT uses hard_swish)."},
    };
  }

  [[nodiscard]] Index height() const { return input_shape[0]; }
  [[nodiscard]] Index width() const { return input_shape[1]; }
  [[nodiscard]] Index channels() const { return input_shape[2]; }
  [[nodiscard]] Index query_height() const { return (height() + strides - 1) / strides; }
  [[nodiscard]] Index query_width() const { return (width() + strides - 1) / strides; }
  [[nodiscard]] Index head_dim() const { return key_dim > 0 ? key_dim : channels() / num_heads; }
  [[nodiscard]] Index value_width() const { return Index(attn_ratio) * num_heads * head_dim(); }
  [[nodiscard]] Index out_channels() const { return output_dim > 0 ? output_dim : channels(); }
  [[nodiscard]] MultiHeadPositionalEmbeddingConfig position_config() const {
    return {.input_shape = {num_heads, static_cast<int>(query_height() * query_width()),
                            static_cast<int>(height() * width())},
            .query_height = static_cast<int>(query_height()),
            .key_height = static_cast<int>(height())};
  }

  void check(Problems& p) const {
    if (input_shape.size() != 3 || num_heads <= 0 || strides <= 0) return;
    if (key_dim <= 0 && channels() < num_heads) {
      p.push_back({"num_heads", fmt::format("channels ({}) must be at least num_heads ({}) when key_dim is -1",
                                            channels(), num_heads)});
      return;
    }
    Problems q;
    position_config().check(q);
    for (auto& e : q) p.push_back({"strides", fmt::format("the position index of a {}x{} input with strides {}: {}",
                                                          height(), width(), strides, e.message)});
  }
};
static_assert(config_table_is_sound<MhsaWithMultiHeadPositionAndStridesConfig>());

template <class T = float>
class MhsaWithMultiHeadPositionAndStrides
    : public LayerBase<MhsaWithMultiHeadPositionAndStrides<T>, MhsaWithMultiHeadPositionAndStridesConfig, T>,
      public detail::MapDoor<MhsaWithMultiHeadPositionAndStrides<T>, T> {
  using Base = LayerBase<MhsaWithMultiHeadPositionAndStrides, MhsaWithMultiHeadPositionAndStridesConfig, T>;
  friend Base;
  friend detail::MapDoor<MhsaWithMultiHeadPositionAndStrides<T>, T>;

public:
  using Config = MhsaWithMultiHeadPositionAndStridesConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit MhsaWithMultiHeadPositionAndStrides(const Config& config, std::uint64_t seed = 0)
      : Base(config), act_(config.activation ? config.activation->view() : std::string_view{}, Config::type_name),
        index_(make_index(config)) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return {x[0], config_.query_height(), config_.query_width(), config_.out_channels()};
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    return {{2, c.input_shape[0], c.input_shape[1], c.input_shape[2]}};
  }

  /// The position index `[Nq, N]` (file comment).
  [[nodiscard]] const ops::IndexTable& relative_position_index() const noexcept { return index_; }
  /// The gathered bias `[num_heads, Nq, N]` the attention core adds to the scaled logits.
  [[nodiscard]] Tensor<T, 3> attention_bias() const {
    this->check_weights();
    Tensor<T, 3> out(config_.num_heads, index_.rows, index_.cols);
    ops::gather_relative_bias(this->weight(slots_.table).data.data(), Index(config_.num_heads), index_.cols, false,
                              index_, out.data(), Config::type_name);
    return out;
  }

  // forward(x): out `[B, ⌈H/s⌉, ⌈W/s⌉, output_dim]` of x `[B, H, W, C]`.
  // forward_with_weights(x): also the attention weights `[B, num_heads, Hq·Wq, H·W]` (detail::MapDoor).

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot q_kernel, q_bias, kv_kernel, kv_bias, table, out_kernel, out_bias;
    detail::global::BnSlots q_bn, kv_bn, out_bn;
    detail::BlockActivation::Slots act;
  };

  static ops::IndexTable make_index(const Config& c) {
    const Index nq = c.query_height() * c.query_width(), n = c.height() * c.width();
    detail::posemb::check_table(Config::type_name, "the position index", {nq, n}, sizeof(Index));
    detail::posemb::check_table(Config::type_name, "the gathered bias", {Index(c.num_heads), nq, n}, sizeof(T));
    return c.position_config().index();
  }

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels(), n = config_.height() * config_.width(), hd = config_.num_heads * config_.head_dim();
    const Index kvw = (Index(config_.attn_ratio) + 1) * hd, vw = config_.value_width(), O = config_.out_channels();
    Slots s;
    s.q_kernel = w.add("q/kernel", {C, hd}, "glorot_uniform", seed);
    if (config_.qkv_bias) s.q_bias = w.add("q/bias", {hd}, "zeros", seed);
    if (config_.use_bn) s.q_bn = detail::global::BnSlots::add(w, "q_bn", hd, false, seed);
    s.kv_kernel = w.add("kv/kernel", {C, kvw}, "glorot_uniform", seed);
    if (config_.qkv_bias) s.kv_bias = w.add("kv/bias", {kvw}, "zeros", seed);
    if (config_.use_bn) s.kv_bn = detail::global::BnSlots::add(w, "kv_bn", kvw, false, seed);
    s.table = w.add("attn_pos/positional_embedding", {n, config_.num_heads}, "zeros", seed);
    s.act = act_.add_weights(w, vw, seed);
    s.out_kernel = w.add("out/kernel", {vw, O}, "glorot_uniform", seed);
    if (config_.out_bias) s.out_bias = w.add("out/bias", {O}, "zeros", seed);
    if (config_.use_bn) s.out_bn = detail::global::BnSlots::add(w, "out_bn", O, true, seed);
    slots_ = s;
  }

  void check_input(const Shape& x) const {
    check_shape(Config::type_name, "input", x, {-1, config_.height(), config_.width(), config_.channels()},
                "([batch, height, width, channels] of the input_shape)");
  }

  Tensor<T, 4> run(const ConstTensorView<T, 4>& x, Tensor<T, 4>* weights) const {
    namespace g = detail::global;
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), H = config_.height(), W = config_.width(), C = config_.channels();
    const Index s = config_.strides, Hq = config_.query_height(), Wq = config_.query_width();
    const Index N = H * W, Nq = Hq * Wq, h = config_.num_heads, d = config_.head_dim(), r = config_.attn_ratio;
    const Index hd = h * d, kvw = (r + 1) * hd, vw = config_.value_width(), O = config_.out_channels();
    Tensor<T, 4> y(B, Hq, Wq, O);
    if (weights) *weights = Tensor<T, 4>(B, h, Nq, N);
    if (B == 0) return y;
    const Tensor<T, 3> bias = attention_bias();
    ScratchFrame scratch;
    T* xq = scratch.get<T>(B * Nq * C);
    T* q = scratch.get<T>(B * Nq * hd);
    T* kv = scratch.get<T>(B * N * kvw);
    T* ctx = scratch.get<T>(B * Nq * vw);
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < Hq; ++i)
        for (Index j = 0; j < Wq; ++j)
          std::copy_n(x.data() + ((b * H + i * s) * W + j * s) * C, C, xq + ((b * Hq + i) * Wq + j) * C);
    g::project(xq, B * Nq, this->weight(slots_.q_kernel), this->optional_weight(slots_.q_bias), q);
    if (config_.use_bn) slots_.q_bn.apply(weights_, q, B * Nq, hd, Config::type_name);
    g::project(x.data(), B * N, this->weight(slots_.kv_kernel), this->optional_weight(slots_.kv_bias), kv);
    if (config_.use_bn) slots_.kv_bn.apply(weights_, kv, B * N, kvw, Config::type_name);
    const Index hs = (r + 1) * d;
    ops::attention(ops::heads_of<T>(q, B, Nq, h, d, hd), g::interleaved<T>(kv, B, N, h, d, kvw, hs),
                   g::interleaved<T>(kv + d, B, N, h, r * d, kvw, hs), ops::heads_out<T>(ctx, B, Nq, h, r * d, vw),
                   static_cast<T>(1.0 / std::sqrt(double(d))), g::PositionBias<T>(bias).mask(),
                   weights ? weights->data() : nullptr);
    act_.apply(weights_, slots_.act, ctx, B * Nq * vw, vw, Config::type_name);
    g::project(ctx, B * Nq, this->weight(slots_.out_kernel), this->optional_weight(slots_.out_bias), y.data());
    if (config_.use_bn) slots_.out_bn.apply(weights_, y.data(), B * Nq, O, Config::type_name);
    return y;
  }

  detail::BlockActivation act_;
  ops::IndexTable index_;
  Slots slots_;
};

}  // namespace attn
