/// \file
/// `adaptive_multi_head` — AdaptiveMultiHeadAttention: Keras multi-head attention whose softmax over the
/// attention logits is the adaptive-temperature softmax (ATS): every attention row gets its own
/// temperature from the entropy of its plain softmax, so diffuse rows are sharpened (Veličković et al.,
/// 2024, "softmax is not enough (for sharp out-of-distribution)", arXiv:2410.01104; the reference
/// module's AdaptiveMultiHeadAttention with its AdaptiveTemperatureSoftmax).
///
/// Shapes: query `[B, T, query_input_dim]`, value `[B, S, value_input_dim]`, optional key `[B, S,
/// key_input_dim]` (default: the value); output `[B, T, D_out]` with D_out = output_shape[0] or
/// query_input_dim. Self-attention is `forward(x, x)` (the reference has no one-argument form). Masks:
/// `AttentionMasks<T>` (ops/masks.hpp: key padding `[B, S]` and key lengths `[B]` of the value/key,
/// attention mask `[T, S]` / `[B, T, S]` / `[B, 1|num_heads, T, S]`, causal, additive bias).
/// `forward_with_weights` also returns the attention weights `[B, num_heads, T, S]` (the reference's
/// `return_attention_scores`: the ATS probabilities, pre-dropout).
///
/// Parameters (the reference's, defaults as there): `num_heads` (required, > 0), `key_dim` (required,
/// > 0), `value_dim` = null (null or 0: key_dim), `dropout` = 0.0 in [0, 1], `use_bias` = true,
/// `output_shape` = null (an int or a one-element list: the output width; 0 or [] mean unset),
/// `attention_axes` = null (only the sequence axis: 1, -2, [1] or [-2]), `flash_attention` = null,
/// `kernel_initializer` = glorot_uniform, `bias_initializer` = zeros, `seed` = null (dropout seed,
/// kept), `min_temp` = 0.1 (> 0), `max_temp` = 1.0 (> 0, >= min_temp), `entropy_threshold` = 0.5
/// (>= 0), `polynomial_coeffs` = null (highest degree first; null or [] = [-1.791, 4.917, -2.3,
/// 0.481, -0.037]). Regularizers and constraints are accepted and kept, with no effect at inference.
/// Beyond the reference (Keras takes the widths from the first call): `query_input_dim` (null:
/// num_heads·key_dim), `value_input_dim` (null: query_input_dim), `key_input_dim` (null:
/// value_input_dim).
///
/// Weights (Keras MultiHeadAttention's names and rank-3 layouts, in this order; biases with use_bias):
/// `query/kernel [Dq, h, key_dim]`, `query/bias [h, key_dim]`, `key/kernel [Dk, h, key_dim]`,
/// `key/bias [h, key_dim]`, `value/kernel [Dv, h, value_dim]`, `value/bias [h, value_dim]`,
/// `attention_output/kernel [h, value_dim, D_out]`, `attention_output/bias [D_out]`.
///
/// Forward: Q, K, V = the biased projections split into heads; Z = Q Kᵀ/√key_dim (masked);
/// P = ATS(Z) along the keys; y = merge(P V)·W_o + b_o. ATS of a row z (eps = 1e-7):
///   p = softmax(z), p̃ = clip(p, eps, 1 − eps), H = −Σ p̃ ln p̃,
///   τ = min_temp + (max_temp − min_temp)·clip(P(H), 0, 1) if H > entropy_threshold, else 1,
///   ATS(z) = softmax(z / max(τ, eps)).
/// Computation: the row temperatures come from two blockwise passes over the keys (row max and sum,
/// then the clipped entropy: layers/detail/adaptive_temperature.hpp); the output then goes through the
/// attention core with Q/τ (softmax((Q/τ)Kᵀ·s) = softmax(Z/τ)), so no `[T, S]` map is held unless the
/// weights are asked for — except with an additive bias, which must be divided by τ too: then a
/// `[B, h, T, S]` buffer of bias/τ is held.
///
/// Errors: ConfigError with the reference's messages (`Parameter 'num_heads' must be positive, got 0`,
/// `min_temp must be positive, got 0.0`, `max_temp must be positive, got -1.0`, `min_temp (2.0) must
/// be <= max_temp (1.0)`, `entropy_threshold must be non-negative, got -0.5`, `Dropout is not
/// supported when flash attention is enabled. Please set dropout to 0.0 to use flash attention.`,
/// and at the call `Returning attention scores is not supported when flash attention is enabled.
/// Please disable flash attention to access attention scores.`); ShapeError for inputs of the wrong
/// rank or width, `All dimensions of `value` and `key`, except the last one, must be equal. ...`,
/// and for masks per ops/masks.hpp.
///
/// Differences from the reference (deliberate):
/// - The temperature parameters are validated at construction (the reference: lazily, at the first
///   call, so a bad value passes its factory).
/// - `key_dim` must be positive (the reference raises ZeroDivisionError for 0).
/// - The reference replaces masked logits by −1e9, so a query row whose every key is masked becomes
///   a uniform row; here it yields zero weights and a zero context (the library-wide mask contract),
///   so its output is the output bias. A partially masked row matches the reference, including the
///   eps contribution of the masked keys' clipped probabilities to H. Causal masks are bottom-right
///   aligned when T != S (Keras: top-left); equal for T == S. The additive bias is beyond the reference.
/// - 3-D inputs only (the reference follows Keras's arbitrary attention axes, and then normalises
///   over the last key axis only); `output_shape` with more than one axis is refused.
/// - Keras scales Q by 1/√key_dim before Q·Kᵀ, the core scales the logits: equal up to the last bits.
/// - Dropout is the identity (inference library); `dropout` and `seed` are validated and kept.
///   `flash_attention` only raises the reference's two errors (the reference never uses it either).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/init.hpp"
#include "attn/core/limits.hpp"
#include "attn/core/param.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/adaptive_temperature.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/sequence_b.hpp"
#include "attn/ops/masks.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

/// A list of ints that a config may also give as one int, as Keras's `output_shape` and
/// `attention_axes` (an int n means [n]; the int 0 means unset, i.e. []).
struct IntOrIntList : IntList {
  constexpr IntOrIntList() noexcept = default;
  constexpr IntOrIntList(std::initializer_list<int> init) : IntList(init) {}
};

template <>
struct ParamTraits<IntOrIntList> {
  using List = ParamTraits<IntList>;
  static std::string kind(const FieldSpec& /*f*/) { return "int_or_int_list"; }
  static std::string expected(const FieldSpec& /*f*/) { return "an integer or a list of integers"; }
  static std::string expected_or_null(const FieldSpec& /*f*/) {
    return "an integer, a list of integers or null";
  }
  static Parsed parse(const Json& j, IntOrIntList& out, const FieldSpec& f, const ParamContext& ctx) {
    if (j.is_number_integer()) {
      int v = 0;
      if (!detail::read_int(j, v)) return Parsed::wrong_kind;
      out = v == 0 ? IntOrIntList{} : IntOrIntList{v};
      return Parsed::ok;
    }
    IntList l;
    const Parsed r = List::parse(j, l, f, ctx);
    if (r == Parsed::ok) {
      out = IntOrIntList{};
      for (int v : l) out.push_back(v);
    }
    return r;
  }
  static Json to_json(const IntOrIntList& v, const FieldSpec& f) { return List::to_json(v, f); }
  static void check(const IntOrIntList& v, const FieldSpec& f, const ParamContext& ctx) { List::check(v, f, ctx); }
  static constexpr bool valid(const IntOrIntList& v, const FieldSpec& f) { return List::valid(v, f); }
  static constexpr bool row_ok(const FieldSpec& f) { return List::row_ok(f); }
  static void describe(Json& info, const FieldSpec& f) { List::describe(info, f); }
};

struct AdaptiveMultiHeadAttentionConfig {
  int num_heads = 0;
  int key_dim = 0;
  std::optional<int> value_dim{};
  double dropout = 0.0;
  bool use_bias = true;
  std::optional<IntOrIntList> output_shape{};
  std::optional<IntOrIntList> attention_axes{};
  std::optional<bool> flash_attention{};
  std::string_view kernel_initializer = "glorot_uniform";
  std::string_view bias_initializer = "zeros";
  std::optional<int> seed{};
  double min_temp = 0.1;
  double max_temp = 1.0;
  double entropy_threshold = 0.5;
  std::optional<FloatList> polynomial_coeffs{};
  std::optional<int> query_input_dim{};
  std::optional<int> value_input_dim{};
  std::optional<int> key_input_dim{};

  static constexpr std::string_view type_name = "adaptive_multi_head";
  static constexpr std::string_view class_name = "AdaptiveMultiHeadAttention";
  static constexpr std::string_view description =
      "Multi-head attention whose softmax adapts its temperature per row to the entropy of the row.";
  static constexpr std::string_view use_case =
      "Transformers whose attention should stay sharp as the sequence grows.";
  static constexpr std::array<std::string_view, 5> training_only{"kernel_regularizer", "bias_regularizer",
                                                                 "activity_regularizer", "kernel_constraint",
                                                                 "bias_constraint"};

  static constexpr auto fields() {
    using C = AdaptiveMultiHeadAttentionConfig;
    return std::array{
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .required = true, .example = "2",
                 .wording = Wording::factory, .range = positive, .doc = "Number of attention heads."},
        Field<C>{.name = "key_dim", .member = member<&C::key_dim>, .required = true, .example = "8",
                 .range = positive, .doc = "Width of each query/key head."},
        Field<C>{.name = "value_dim", .member = member<&C::value_dim>, .range = non_negative,
                 .doc = "Width of each value head (null or 0: key_dim)."},
        Field<C>{.name = "dropout", .member = member<&C::dropout>, .wording = Wording::factory,
                 .range = unit_interval, .doc = "Dropout on the attention probabilities (identity at inference)."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>, .doc = "Biases on the four projections."},
        Field<C>{.name = "output_shape", .member = member<&C::output_shape>, .range = positive,
                 .doc = "Output width as an int or a one-element list (null, 0 or []: the query's width)."},
        Field<C>{.name = "attention_axes", .member = member<&C::attention_axes>,
                 .doc = "Axes attention runs over: only the sequence axis (1 or -2) of [B, T, D] inputs (null, [] "
                        "or 0: it; 0 is not the batch axis here)."},
        Field<C>{.name = "flash_attention", .member = member<&C::flash_attention>,
                 .doc = "Kept for the reference's checks (refuses dropout > 0 and returning scores); no other effect."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the four kernels."},
        Field<C>{.name = "bias_initializer", .member = member<&C::bias_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the four biases."},
        Field<C>{.name = "seed", .member = member<&C::seed>, .doc = "Dropout seed (kept; no effect at inference)."},
        Field<C>{.name = "min_temp", .member = member<&C::min_temp>, .range = positive,
                 .doc = "Lowest temperature of the adaptive softmax."},
        Field<C>{.name = "max_temp", .member = member<&C::max_temp>, .range = positive,
                 .doc = "Highest temperature of the adaptive softmax."},
        Field<C>{.name = "entropy_threshold", .member = member<&C::entropy_threshold>, .range = non_negative,
                 .doc = "Rows whose entropy is at most this keep temperature 1."},
        Field<C>{.name = "polynomial_coeffs", .member = member<&C::polynomial_coeffs>,
                 .doc = "Coefficients of the entropy polynomial, highest degree first (null or []: the "
                        "reference's five)."},
        Field<C>{.name = "query_input_dim", .member = member<&C::query_input_dim>, .range = positive,
                 .doc = "Features of the query input (null: num_heads x key_dim). Beyond the reference."},
        Field<C>{.name = "value_input_dim", .member = member<&C::value_input_dim>, .range = positive,
                 .doc = "Features of the value input (null: query_input_dim). Beyond the reference."},
        Field<C>{.name = "key_input_dim", .member = member<&C::key_input_dim>, .range = positive,
                 .doc = "Features of the key input (null: value_input_dim). Beyond the reference."},
    };
  }

  void check(Problems& p) const {
    if (min_temp > max_temp)
      p.push_back({"min_temp", fmt::format("min_temp ({}) must be <= max_temp ({})", detail::py_float(min_temp),
                                           detail::py_float(max_temp))});
    if (flash_attention.value_or(false) && dropout > 0.0)
      p.push_back({"flash_attention",
                   "Dropout is not supported when flash attention is enabled. Please set dropout to 0.0 to use "
                   "flash attention."});
    if (output_shape && output_shape->size() > 1)
      p.push_back({"output_shape", fmt::format("output_shape: only one output axis is supported (the output is "
                                               "[batch, T, units]), got {} axes",
                                               output_shape->size())});
    if (attention_axes)
      for (int a : *attention_axes)
        if (a != 1 && a != -2) {
          p.push_back({"attention_axes", fmt::format("attention_axes: only the sequence axis (1 or -2) of a [batch, "
                                                     "T, features] input is supported, got {}",
                                                     a)});
          break;
        }
  }

  [[nodiscard]] int dk() const noexcept { return key_dim; }
  [[nodiscard]] int dv() const noexcept { return value_dim.value_or(0) > 0 ? *value_dim : key_dim; }
  [[nodiscard]] int dq_in() const noexcept { return query_input_dim.value_or(num_heads * key_dim); }
  [[nodiscard]] int dv_in() const noexcept { return value_input_dim.value_or(dq_in()); }
  [[nodiscard]] int dk_in() const noexcept { return key_input_dim.value_or(dv_in()); }
  [[nodiscard]] int d_out() const noexcept {
    return output_shape && !output_shape->empty() ? (*output_shape)[0] : dq_in();
  }
};
static_assert(config_table_is_sound<AdaptiveMultiHeadAttentionConfig>());

template <class T = float>
class AdaptiveMultiHeadAttention
    : public LayerBase<AdaptiveMultiHeadAttention<T>, AdaptiveMultiHeadAttentionConfig, T> {
  using Base = LayerBase<AdaptiveMultiHeadAttention, AdaptiveMultiHeadAttentionConfig, T>;
  friend Base;

public:
  using Config = AdaptiveMultiHeadAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 2> input_ranks{3, 3};

  explicit AdaptiveMultiHeadAttention(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& query, const Shape& value) const {
    check_inputs(query, value, value);
    return {query[0], query[1], config_.d_out()};
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    return {{2, 5, c.dq_in()}, {2, 6, c.dv_in()}};
  }

  /// y `[B, T, D_out]` of query `[B, T, Dq]` and value `[B, S, Dv]` (key = value).
  template <class Q, class V>
    requires TensorOf<Q, T, 3> && TensorOf<V, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const Q& query, const V& value, const AttentionMasks<T>& masks = {}) const {
    const auto v = view_of<T, 3>(value);
    return run(view_of<T, 3>(query), v, v, masks, false).output;
  }
  /// The same with a separate key `[B, S, Dk]`.
  template <class Q, class V, class K>
    requires TensorOf<Q, T, 3> && TensorOf<V, T, 3> && TensorOf<K, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const Q& query, const V& value, const K& key,
                                     const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(query), view_of<T, 3>(value), view_of<T, 3>(key), masks, false).output;
  }
  /// The output and the attention weights `[B, num_heads, T, S]` (key = value).
  template <class Q, class V>
    requires TensorOf<Q, T, 3> && TensorOf<V, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const Q& query, const V& value,
                                                        const AttentionMasks<T>& masks = {}) const {
    const auto v = view_of<T, 3>(value);
    return run(view_of<T, 3>(query), v, v, masks, true);
  }
  /// The output and the attention weights with a separate key.
  template <class Q, class V, class K>
    requires TensorOf<Q, T, 3> && TensorOf<V, T, 3> && TensorOf<K, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const Q& query, const V& value, const K& key,
                                                        const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(query), view_of<T, 3>(value), view_of<T, 3>(key), masks, true);
  }

  /// The ATS schedule of this layer's config (temperatures and polynomial).
  [[nodiscard]] detail::AtsSchedule schedule() const noexcept {
    detail::AtsSchedule s{config_.min_temp, config_.max_temp, config_.entropy_threshold};
    if (config_.polynomial_coeffs && !config_.polynomial_coeffs->empty())
      s.coeffs = std::span<const double>(config_.polynomial_coeffs->data(), config_.polynomial_coeffs->size());
    return s;
  }

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot q_kernel, q_bias, k_kernel, k_bias, v_kernel, v_bias, o_kernel, o_bias;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index H = config_.num_heads, dk = config_.dk(), dv = config_.dv();
    const auto ki = config_.kernel_initializer, bi = config_.bias_initializer;
    const bool bias = config_.use_bias;
    Slots s;
    s.q_kernel = w.add("query/kernel", {config_.dq_in(), H, dk}, ki, seed);
    if (bias) s.q_bias = w.add("query/bias", {H, dk}, bi, seed);
    s.k_kernel = w.add("key/kernel", {config_.dk_in(), H, dk}, ki, seed);
    if (bias) s.k_bias = w.add("key/bias", {H, dk}, bi, seed);
    s.v_kernel = w.add("value/kernel", {config_.dv_in(), H, dv}, ki, seed);
    if (bias) s.v_bias = w.add("value/bias", {H, dv}, bi, seed);
    s.o_kernel = w.add("attention_output/kernel", {H, dv, config_.d_out()}, ki, seed);
    if (bias) s.o_bias = w.add("attention_output/bias", {config_.d_out()}, bi, seed);
    slots_ = s;
  }

  void check_inputs(const Shape& q, const Shape& v, const Shape& k) const {
    check_shape(Config::type_name, "query", q, {-1, -1, config_.dq_in()}, "([batch, T, query_input_dim])");
    check_shape(Config::type_name, "value", v, {q.at(0), -1, config_.dv_in()},
                "([batch, S, value_input_dim] with the query's batch)");
    if (k.size() == 3 && (k[0] != v[0] || k[1] != v[1]))
      throw ShapeError(fmt::format("{}: All dimensions of `value` and `key`, except the last one, must be equal. "
                                   "Received: value_shape={} and key_shape={}",
                                   Config::type_name, shape_str(v), shape_str(k)));
    check_shape(Config::type_name, "key", k, {v.at(0), v.at(1), config_.dk_in()},
                "([batch, S, key_input_dim] with the value's batch and length)");
  }

  AttentionResult<T> run(ConstTensorView<T, 3> xq, ConstTensorView<T, 3> xv, ConstTensorView<T, 3> xk,
                         const AttentionMasks<T>& masks, bool want_weights) const {
    if (want_weights && config_.flash_attention.value_or(false))
      throw ConfigError("adaptive_multi_head: Returning attention scores is not supported when flash attention is "
                        "enabled. Please disable flash attention to access attention scores.",
                        std::string(Config::type_name), "flash_attention");
    check_inputs(shape_of(xq), shape_of(xv), shape_of(xk));
    this->check_weights();
    const Index B = xq.dimension(0), Tq = xq.dimension(1), S = xv.dimension(1), H = config_.num_heads;
    const Index dk = config_.dk(), dv = config_.dv(), wk = H * dk, wv = H * dv;
    BoundMasks<T> bound = bind_masks(masks, B, H, Tq, S, Config::type_name);
    AttentionResult<T> r;
    r.output = Tensor<T, 3>(B, Tq, config_.d_out());
    if (want_weights) r.weights = Tensor<T, 4>(B, H, Tq, S);
    if (B == 0 || Tq == 0) return r;
    ScratchFrame scratch;
    T* q = scratch.get<T>(B * Tq * wk);
    T* k = scratch.get<T>(B * S * wk);
    T* v = scratch.get<T>(B * S * wv);
    T* ctx = scratch.get<T>(B * Tq * wv);
    detail::dense_flat(xq.data(), B * Tq, this->weight(slots_.q_kernel), this->optional_weight(slots_.q_bias), q);
    detail::dense_flat(xk.data(), B * S, this->weight(slots_.k_kernel), this->optional_weight(slots_.k_bias), k);
    detail::dense_flat(xv.data(), B * S, this->weight(slots_.v_kernel), this->optional_weight(slots_.v_bias), v);
    const auto qh = ops::heads_of<T>(q, B, Tq, H, dk, wk);
    const auto kh = ops::heads_of<T>(k, B, S, H, dk, wk);
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(dk)));
    const detail::AtsSchedule sched = schedule();
    std::vector<double> tau(static_cast<std::size_t>(B * H * Tq));
    detail::ats_temperatures(qh, kh, scale, bound.core, sched, tau.data());
    // softmax(Z/τ) = softmax((Q/τ)·Kᵀ·scale + bias/τ): divide each query row of each head by its τ
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < Tq; ++t)
        for (Index h = 0; h < H; ++h) {
          const T inv = static_cast<T>(1.0 / std::max(tau[static_cast<std::size_t>((b * H + h) * Tq + t)], sched.eps));
          T* row = q + (b * Tq + t) * wk + h * dk;
          for (Index c = 0; c < dk; ++c) row[c] *= inv;
        }
    ops::AttentionMask<T> m = bound.core;
    std::vector<T> bias_tau;
    if (m.bias != nullptr) {  // bias/τ per row: the one [B, H, T, S] buffer of this layer
      check_allocation(fmt::format("{}: the additive bias divided by the temperatures, [{}, {}, {}, {}],", Config::type_name,
                                   B, H, Tq, S),
                       checked_shape_size({B, H, Tq, S}), sizeof(T), std::string(Config::type_name));
      bias_tau.resize(static_cast<std::size_t>(B * H * Tq * S));
      for (Index b = 0; b < B; ++b)
        for (Index h = 0; h < H; ++h)
          for (Index t = 0; t < Tq; ++t) {
            const T inv =
                static_cast<T>(1.0 / std::max(tau[static_cast<std::size_t>((b * H + h) * Tq + t)], sched.eps));
            const T* src = m.bias + b * m.bias_sb + h * m.bias_sh + t * m.bias_st;
            T* dst = bias_tau.data() + ((b * H + h) * Tq + t) * S;
            for (Index j = 0; j < S; ++j) dst[j] = src[j] * inv;
          }
      m.bias = bias_tau.data();
      m.bias_sb = H * Tq * S;
      m.bias_sh = Tq * S;
      m.bias_st = S;
    }
    ops::attention(qh, kh, ops::heads_of<T>(v, B, S, H, dv, wv), ops::heads_out<T>(ctx, B, Tq, H, dv, wv), scale, m,
                   want_weights ? r.weights.data() : nullptr);
    detail::dense_flat(ctx, B * Tq, this->weight(slots_.o_kernel), this->optional_weight(slots_.o_bias),
                       r.output.data(), /*in_axes=*/2);
    return r;
  }

  Slots slots_;
};

}  // namespace attn
