/// \file
/// `hopfield` — HopfieldAttention: multi-head attention as the update rule of a modern Hopfield network
/// (Ramsauer et al., 2020, "Hopfield Networks is All You Need"): the projected, LayerNorm-ed query state
/// may be replaced by the attention-weighted keys, ξ ← softmax(ξ Kᵀ/√d_k)·K, until the attention
/// pattern stops changing or a step budget is used up.
///
/// Shapes: self-attention x `[B, T, D]`, or query `[B, T, D]` with key/value `[B, S, D]` (two inputs:
/// key = value; three: key and value), D = `input_dim` (default num_heads·key_dim); output `[B, T, D]`.
/// Masks: `AttentionMasks<T>` (ops/masks.hpp: key padding `[B, S]`, key lengths `[B]`, attention mask
/// `[T, S]` / `[B, T, S]` / `[B, 1|num_heads, T, S]`, causal, additive bias), applied at every step.
/// Optional attention weights `[B, num_heads, T, S]`: those of the last step.
///
/// Weights (Keras layout, in this order): `query_dense/kernel [D, h·d_k]`, `query_dense/bias [h·d_k]`,
/// `key_dense/kernel [D, h·d_k]`, `key_dense/bias`, `value_dense/kernel [D, h·d_v]`,
/// `value_dense/bias [h·d_v]`, `output_dense/kernel [h·d_v, D]`, `output_dense/bias [D]` (biases only
/// with `use_bias`), then, with `normalize_patterns`, `pattern_norm/gamma [d_k]` and
/// `pattern_norm/beta [d_k]` (one LayerNorm, epsilon 1e-5, shared by queries and keys, per head vector).
/// d_v = value_dim (default key_dim).
///
/// Forward, per batch item:
///   Q0 = split(q·Wq + bq), K = split(k·Wk + bk), V = split(v·Wv + bv); with normalize_patterns
///   Q0 = LN(Q0), K = LN(K).  ξ = Q0, n = 0
///   loop:  P = softmax(ξ Kᵀ/√d_k, masked);  O = P V
///          stop if update_steps_max = 0, or (n > 0 and ‖P − P_prev‖_F < update_steps_eps or is NaN), or
///          n = update_steps_max;  P_prev = P;  n = n + 1;  ξ = P K
///   y = merge(O)·Wo + bo
/// so the attention runs at most update_steps_max + 1 times, and update_steps_max = 0 is ordinary
/// multi-head attention. Every step goes through the attention core; with update steps the core also
/// writes the item's `[h, T, S]` probabilities, which the convergence test and ξ = P K need (the only
/// T × S memory, one batch item at a time). Without update steps nothing T × S is held. A NaN in the
/// input makes P NaN and the change NaN: the loop stops there (the reference would run all
/// update_steps_max steps on NaN), the output is NaN either way.
///
/// Errors: ConfigError with the reference's messages (`Parameter 'num_heads' must be positive, got 0`,
/// `key_dim must be positive, got 0`, `update_steps_max must be non-negative, got -1`,
/// `update_steps_eps must be positive, got 0.0`); ShapeError for inputs whose feature size is not D or
/// whose batch sizes or key/value lengths differ, and for masks per ops/masks.hpp.
///
/// Differences from the reference (deliberate):
/// - The early exit is decided per batch item: the reference takes the Frobenius norm of P − P_prev over
///   the whole batch, so one item's number of steps, and so its result, depends on the other items of
///   the batch. Here an item's output does not change when other items are added.
/// - The reference adds (1 − m)·(−1e9) to the logits, so a query row whose every key is masked gets the
///   softmax of its unmasked logits; here such a row yields zero weights and a zero context (the
///   library-wide mask contract). Masks are boolean and of every kind of ops/masks.hpp; the reference
///   broadcasts a rank-2 mask as (T, S), here a `[B, S]` padding mask is a KeyPaddingMask.
/// - The input width is the `input_dim` parameter (beyond the reference, which takes it from the first
///   call), checked on every input.
/// - value_dim must be positive when given (the reference does not check it).
/// - The reference divides the logits by √d_k, the core multiplies by 1/√d_k: equal up to the last bits.
/// - Dropout is the identity (inference library), so the number of steps is deterministic and the
///   returned weights are the softmax probabilities; `dropout_rate` is validated and kept.
///   Regularizers are accepted and kept for the round trip, with no effect at inference.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/init.hpp"
#include "attn/core/log.hpp"
#include "attn/core/param.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/masks.hpp"
#include "attn/ops/norm.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

struct HopfieldAttentionConfig {
  int num_heads = 0;
  int key_dim = 0;
  std::optional<int> value_dim{};
  double dropout_rate = 0.0;
  bool use_bias = true;
  std::string_view kernel_initializer = "glorot_uniform";
  std::string_view bias_initializer = "zeros";
  bool normalize_patterns = true;
  int update_steps_max = 0;
  double update_steps_eps = 1e-4;
  std::optional<int> input_dim{};

  static constexpr std::string_view type_name = "hopfield";
  static constexpr std::string_view class_name = "HopfieldAttention";
  static constexpr std::string_view description =
      "Modern Hopfield network attention: the query state is iteratively updated towards stored patterns.";
  static constexpr std::string_view use_case =
      "Associative memory and pattern retrieval; update_steps_max = 0 is standard attention.";
  static constexpr std::array<std::string_view, 3> training_only{"kernel_regularizer", "bias_regularizer",
                                                                 "activity_regularizer"};

  static constexpr auto fields() {
    using C = HopfieldAttentionConfig;
    return std::array{
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .required = true, .example = "2",
                 .wording = Wording::factory, .range = positive, .doc = "Number of attention heads."},
        Field<C>{.name = "key_dim", .member = member<&C::key_dim>, .required = true, .example = "8",
                 .range = positive, .doc = "Width of each query/key head."},
        Field<C>{.name = "value_dim", .member = member<&C::value_dim>, .range = positive,
                 .doc = "Width of each value head (null: key_dim)."},
        Field<C>{.name = "dropout_rate", .member = member<&C::dropout_rate>, .wording = Wording::factory,
                 .range = unit_interval, .doc = "Dropout on the attention probabilities (identity at inference)."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>, .doc = "Biases on the four projections."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the four kernels."},
        Field<C>{.name = "bias_initializer", .member = member<&C::bias_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the four biases."},
        Field<C>{.name = "normalize_patterns", .member = member<&C::normalize_patterns>,
                 .doc = "LayerNorm (shared weights, eps 1e-5) on every projected query and key head."},
        Field<C>{.name = "update_steps_max", .member = member<&C::update_steps_max>, .range = non_negative,
                 .doc = "Most update steps of the query state (0: plain attention)."},
        Field<C>{.name = "update_steps_eps", .member = member<&C::update_steps_eps>, .range = positive,
                 .doc = "Stop when the Frobenius norm of the change of an item's attention is below this."},
        Field<C>{.name = "input_dim", .member = member<&C::input_dim>, .range = positive,
                 .doc = "Features of the query, key and value inputs and of the output (null: num_heads x "
                        "key_dim). Beyond the reference."},
    };
  }
  void check(Problems& /*p*/) const {}

  [[nodiscard]] int dk() const noexcept { return key_dim; }
  [[nodiscard]] int dv() const noexcept { return value_dim.value_or(key_dim); }
  [[nodiscard]] int in_dim() const noexcept { return input_dim.value_or(num_heads * key_dim); }
};
static_assert(config_table_is_sound<HopfieldAttentionConfig>());

template <class T = float>
class HopfieldAttention : public LayerBase<HopfieldAttention<T>, HopfieldAttentionConfig, T> {
  using Base = LayerBase<HopfieldAttention, HopfieldAttentionConfig, T>;
  friend Base;

public:
  using Config = HopfieldAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{3};

  explicit HopfieldAttention(const Config& config, std::uint64_t seed = 0) : Base(config) {
    log(LogLevel::info, "Initialized HopfieldAttention with {} heads, key_dim={}, value_dim={}", config_.num_heads,
        config_.dk(), config_.dv());
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_inputs(x, x, x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 5, c.in_dim()}}; }

  /// Self-attention: y `[B, T, D]` of x `[B, T, D]`; `masks` per ops/masks.hpp (S = T).
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const AttentionMasks<T>& masks = {}) const {
    const auto v = view_of<T, 3>(x);
    return run(v, v, v, masks, nullptr);
  }
  /// The output and the last step's attention weights `[B, num_heads, T, T]`.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const X& x, const AttentionMasks<T>& masks = {}) const {
    const auto v = view_of<T, 3>(x);
    return with_weights(v, v, v, masks);
  }
  /// Cross-attention, key = value: query `[B, T, D]`, key_value `[B, S, D]`.
  template <class Q, class KV>
    requires TensorOf<Q, T, 3> && TensorOf<KV, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const Q& query, const KV& key_value, const AttentionMasks<T>& masks = {}) const {
    const auto kv = view_of<T, 3>(key_value);
    return run(view_of<T, 3>(query), kv, kv, masks, nullptr);
  }
  /// Cross-attention: query `[B, T, D]`, key and value `[B, S, D]`.
  template <class Q, class K, class V>
    requires TensorOf<Q, T, 3> && TensorOf<K, T, 3> && TensorOf<V, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const Q& query, const K& key, const V& value,
                                     const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(query), view_of<T, 3>(key), view_of<T, 3>(value), masks, nullptr);
  }
  /// Cross-attention with the last step's weights `[B, num_heads, T, S]`.
  template <class Q, class K, class V>
    requires TensorOf<Q, T, 3> && TensorOf<K, T, 3> && TensorOf<V, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const Q& query, const K& key, const V& value,
                                                        const AttentionMasks<T>& masks = {}) const {
    return with_weights(view_of<T, 3>(query), view_of<T, 3>(key), view_of<T, 3>(value), masks);
  }

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot q_kernel, q_bias, k_kernel, k_bias, v_kernel, v_bias, o_kernel, o_bias, gamma, beta;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index D = config_.in_dim(), H = config_.num_heads, dk = config_.dk(), dv = config_.dv();
    const auto ki = config_.kernel_initializer, bi = config_.bias_initializer;
    const bool b = config_.use_bias;
    Slots s;
    s.q_kernel = w.add("query_dense/kernel", {D, H * dk}, ki, seed);
    if (b) s.q_bias = w.add("query_dense/bias", {H * dk}, bi, seed);
    s.k_kernel = w.add("key_dense/kernel", {D, H * dk}, ki, seed);
    if (b) s.k_bias = w.add("key_dense/bias", {H * dk}, bi, seed);
    s.v_kernel = w.add("value_dense/kernel", {D, H * dv}, ki, seed);
    if (b) s.v_bias = w.add("value_dense/bias", {H * dv}, bi, seed);
    s.o_kernel = w.add("output_dense/kernel", {H * dv, D}, ki, seed);
    if (b) s.o_bias = w.add("output_dense/bias", {D}, bi, seed);
    if (config_.normalize_patterns) {
      s.gamma = w.add("pattern_norm/gamma", {dk}, "ones", seed);
      s.beta = w.add("pattern_norm/beta", {dk}, "zeros", seed);
    }
    slots_ = s;
  }

  void check_inputs(const Shape& q, const Shape& k, const Shape& v) const {
    const Index D = config_.in_dim();
    check_shape(Config::type_name, "query", q, {-1, -1, D}, "([batch, query len, input_dim])");
    check_shape(Config::type_name, "key", k, {q[0], -1, D}, "([batch, key len, input_dim])");
    check_shape(Config::type_name, "value", v, {q[0], k[1], D}, "([batch, key len, input_dim])");
  }

  AttentionResult<T> with_weights(ConstTensorView<T, 3> q, ConstTensorView<T, 3> k, ConstTensorView<T, 3> v,
                                  const AttentionMasks<T>& masks) const {
    Tensor<T, 4> w;
    AttentionResult<T> r;
    r.output = run(q, k, v, masks, &w);
    r.weights = std::move(w);
    return r;
  }

  Tensor<T, 3> run(ConstTensorView<T, 3> xq, ConstTensorView<T, 3> xk, ConstTensorView<T, 3> xv,
                   const AttentionMasks<T>& masks, Tensor<T, 4>* weights) const {
    check_inputs(shape_of(xq), shape_of(xk), shape_of(xv));
    this->check_weights();
    const Index B = xq.dimension(0), L = xq.dimension(1), S = xk.dimension(1), D = config_.in_dim();
    const Index H = config_.num_heads, dk = config_.dk(), dv = config_.dv(), wk = H * dk, wv = H * dv;
    const BoundMasks<T> bound = bind_masks(masks, B, H, L, S, Config::type_name);
    Tensor<T, 3> y(B, L, D);
    if (weights) *weights = Tensor<T, 4>(B, H, L, S);
    if (B == 0 || L == 0) return y;
    ScratchFrame scratch;
    T* q = scratch.get<T>(B * L * wk);
    T* k = scratch.get<T>(B * S * wk);
    T* val = scratch.get<T>(B * S * wv);
    T* ctx = scratch.get<T>(B * L * wv);
    ops::dense(xq.data(), B * L, this->weight(slots_.q_kernel), this->optional_weight(slots_.q_bias), q);
    ops::dense(xk.data(), B * S, this->weight(slots_.k_kernel), this->optional_weight(slots_.k_bias), k);
    ops::dense(xv.data(), B * S, this->weight(slots_.v_kernel), this->optional_weight(slots_.v_bias), val);
    if (config_.normalize_patterns) {
      const T* g = this->weight(slots_.gamma).data.data();
      const T* be = this->weight(slots_.beta).data.data();
      ops::layer_norm(q, B * L * H, dk, g, be, 1e-5, q, Config::type_name);
      ops::layer_norm(k, B * S * H, dk, g, be, 1e-5, k, Config::type_name);
    }
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(dk)));
    if (config_.update_steps_max == 0 || S == 0) {
      ops::attention(ops::heads_of<T>(q, B, L, H, dk, wk), ops::heads_of<T>(k, B, S, H, dk, wk),
                     ops::heads_of<T>(val, B, S, H, dv, wv), ops::heads_out<T>(ctx, B, L, H, dv, wv), scale,
                     bound.core, weights ? weights->data() : nullptr);
    } else {
      // per batch item: the early exit of one item never depends on another
      T* p = scratch.get<T>(H * L * S);
      T* p_prev = scratch.get<T>(H * L * S);
      for (Index b = 0; b < B; ++b) {
        ops::AttentionMask<T> m = bound.core;
        if (m.keep) m.keep += b * m.keep_sb;
        if (m.bias) m.bias += b * m.bias_sb;
        if (m.key_lengths) m.key_lengths += b;
        T* qb = q + b * L * wk;
        const T* kb = k + b * S * wk;
        const auto kv = ops::heads_of<T>(kb, 1, S, H, dk, wk);
        const auto vv = ops::heads_of<T>(val + b * S * wv, 1, S, H, dv, wv);
        const auto out = ops::heads_out<T>(ctx + b * L * wv, 1, L, H, dv, wv);
        for (int n = 0;; ++n) {
          ops::attention(ops::heads_of<T>(qb, 1, L, H, dk, wk), kv, vv, out, scale, m, p);
          if (n > 0) {
            double sq = 0;
            for (Index i = 0; i < H * L * S; ++i) {
              const double dlt = static_cast<double>(p[i]) - static_cast<double>(p_prev[i]);
              sq += dlt * dlt;
            }
            // converged, or NaN (a NaN in the input): more steps would keep the NaN, so they stop too
            if (!(std::sqrt(sq) >= config_.update_steps_eps)) break;
          }
          if (n >= config_.update_steps_max) break;
          std::swap(p, p_prev);
          for (Index h = 0; h < H; ++h)  // ξ_h = P_h K_h
            ops::gemm<T>(L, dk, S, p_prev + h * L * S, S, kb + h * dk, wk, /*b_trans=*/false, qb + h * dk, wk);
        }
        if (weights) std::copy(p, p + H * L * S, weights->data() + b * H * L * S);
      }
    }
    ops::dense(ctx, B * L, this->weight(slots_.o_kernel), this->optional_weight(slots_.o_bias), y.data());
    return y;
  }

  Slots slots_;
};

}  // namespace attn
