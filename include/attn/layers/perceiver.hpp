/// \file
/// `perceiver` — Perceiver-style multi-head cross-attention: queries from one sequence, keys and
/// values from another through one fused projection (Jaegle et al., 2021, "Perceiver: General
/// Perception with Iterative Attention").
///
/// Shapes: query input `[B, T, dim]`, kv input `[B, S, dim]`; output `[B, T, dim]`. Called with the
/// query input alone it is self-attention: `forward(x) == forward(x, x)`. Masks: `AttentionMasks<T>`
/// (ops/masks.hpp: key padding `[B, S]` and key lengths `[B]` of the kv input, attention mask
/// `[T, S]` / `[B, T, S]` / `[B, 1|num_heads, T, S]`, causal (bottom-right aligned), additive bias).
/// Optional attention weights `[B, num_heads, T, S]`. Through the factory (AnyLayer) the layer takes
/// two inputs, query and kv (pass the same tensor twice for self-attention).
///
/// Parameters (the reference's, defaults as there): `dim` (required), `num_heads` = 8 (must divide
/// dim), `dropout` = 0.0 in [0, 1], `use_bias` = true, `kernel_initializer` = glorot_uniform,
/// `bias_initializer` = zeros; `kernel_regularizer`, `bias_regularizer` are kept and have no effect
/// at inference. Errors: ConfigError with the reference's messages (`Parameter 'dim' must be positive,
/// got 0`, `dim (10) must be divisible by num_heads (3)`); ShapeError naming the layer for an input
/// whose last axis is not dim (`perceiver: KV last dimension (7) must match dim (8)`) or whose batch
/// differs from the query's.
///
/// Weights (Keras layout `[in, out]`, in this order): `q/kernel [dim, dim]`, `q/bias [dim]`,
/// `kv/kernel [dim, 2·dim]` (columns [0, dim) are K, [dim, 2·dim) are V, head i owning columns
/// [i·d, (i+1)·d) of each block), `kv/bias [2·dim]`, `proj/kernel [dim, dim]`, `proj/bias [dim]`
/// (biases when `use_bias`). With d = dim / num_heads:
///   Q = split(xq·Wq + bq);  [K; V] = split(xkv·Wkv + bkv);  y = merge(softmax(Q Kᵀ / sqrt(d)) V)·Wproj + bproj
///
/// Differences from the reference (deliberate):
/// - Both inputs are checked (the reference's build step sees only the query's shape, so a kv input
///   of the wrong width fails later in a matrix product).
/// - Masks and the attention weights are beyond the reference (it takes no mask and returns no
///   scores). A query row whose every key is masked yields zeros.
/// - Dropout is the identity (inference library); `dropout` is validated and kept.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/init.hpp"
#include "attn/core/param.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/heads.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/masks.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

struct PerceiverAttentionConfig {
  int dim = 0;
  int num_heads = 8;
  double dropout = 0.0;
  bool use_bias = true;
  std::string_view kernel_initializer = "glorot_uniform";
  std::string_view bias_initializer = "zeros";

  static constexpr std::string_view type_name = "perceiver";
  static constexpr std::string_view class_name = "PerceiverAttention";
  static constexpr std::string_view description =
      "Perceiver-style multi-head cross-attention: queries from one sequence, keys and values from another.";
  static constexpr std::string_view use_case =
      "Cross-modal attention and latent bottlenecks (a small latent array attending to a long input).";
  static constexpr std::array<std::string_view, 2> training_only{"kernel_regularizer", "bias_regularizer"};

  static constexpr auto fields() {
    using C = PerceiverAttentionConfig;
    return std::array{
        Field<C>{.name = "dim", .member = member<&C::dim>, .required = true, .example = "16",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Width of both inputs, of Q, K, V and of the output."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive, .doc = "Number of attention heads; must divide dim."},
        Field<C>{.name = "dropout", .member = member<&C::dropout>, .wording = Wording::factory,
                 .range = unit_interval, .doc = "Dropout on the attention probabilities (identity at inference)."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>, .doc = "Biases on the three projections."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the kernels."},
        Field<C>{.name = "bias_initializer", .member = member<&C::bias_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the biases."},
    };
  }

  void check(Problems& p) const {
    if (num_heads > 0 && dim % num_heads != 0)
      p.push_back({"num_heads", fmt::format("dim ({}) must be divisible by num_heads ({})", dim, num_heads)});
  }
};
static_assert(config_table_is_sound<PerceiverAttentionConfig>());

template <class T = float>
class PerceiverAttention : public LayerBase<PerceiverAttention<T>, PerceiverAttentionConfig, T> {
  using Base = LayerBase<PerceiverAttention, PerceiverAttentionConfig, T>;
  friend Base;

public:
  using Config = PerceiverAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 2> input_ranks{3, 3};

  explicit PerceiverAttention(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& query) const {
    check_inputs(query, query);
    return query;
  }
  [[nodiscard]] Shape output_shape(const Shape& query, const Shape& kv) const {
    check_inputs(query, kv);
    return query;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 4, c.dim}, {2, 6, c.dim}}; }

  /// Self-attention: y `[B, T, dim]` of x `[B, T, dim]` (equals forward(x, x)).
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const AttentionMasks<T>& masks = {}) const {
    const auto v = view_of<T, 3>(x);
    return run(v, v, masks, false).output;
  }
  /// Cross-attention: y `[B, T, dim]` of the query input `[B, T, dim]` and the kv input `[B, S, dim]`;
  /// key padding and key lengths refer to the kv input.
  template <class Q, class KV>
    requires TensorOf<Q, T, 3> && TensorOf<KV, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const Q& query, const KV& kv, const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(query), view_of<T, 3>(kv), masks, false).output;
  }
  /// The output and the attention weights `[B, num_heads, T, T]` of self-attention.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const X& x, const AttentionMasks<T>& masks = {}) const {
    const auto v = view_of<T, 3>(x);
    return run(v, v, masks, true);
  }
  /// The output and the attention weights `[B, num_heads, T, S]`.
  template <class Q, class KV>
    requires TensorOf<Q, T, 3> && TensorOf<KV, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const Q& query, const KV& kv,
                                                        const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(query), view_of<T, 3>(kv), masks, true);
  }

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot q_kernel, q_bias, kv_kernel, kv_bias, proj_kernel, proj_bias;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index e = config_.dim;
    const auto& ki = config_.kernel_initializer;
    const auto& bi = config_.bias_initializer;
    Slots s;
    s.q_kernel = w.add("q/kernel", {e, e}, ki, seed);
    if (config_.use_bias) s.q_bias = w.add("q/bias", {e}, bi, seed);
    s.kv_kernel = w.add("kv/kernel", {e, 2 * e}, ki, seed);
    if (config_.use_bias) s.kv_bias = w.add("kv/bias", {2 * e}, bi, seed);
    s.proj_kernel = w.add("proj/kernel", {e, e}, ki, seed);
    if (config_.use_bias) s.proj_bias = w.add("proj/bias", {e}, bi, seed);
    slots_ = s;
  }

  void check_inputs(const Shape& q, const Shape& kv) const {
    const auto rank = [](std::string_view what, const Shape& s) {
      if (s.size() != 3)
        throw ShapeError(fmt::format("perceiver: {} input must be 3D, got shape {}", what, shape_str(s)));
    };
    rank("Query", q);
    rank("KV", kv);
    if (q[2] != config_.dim)
      throw ShapeError(fmt::format("perceiver: Query last dimension ({}) must match dim ({})", q[2], config_.dim));
    if (kv[2] != config_.dim)
      throw ShapeError(fmt::format("perceiver: KV last dimension ({}) must match dim ({})", kv[2], config_.dim));
    if (kv[0] != q[0])
      throw ShapeError(fmt::format("perceiver: the kv input's batch ({}) must equal the query input's ({}); query {}, "
                                   "kv {}",
                                   kv[0], q[0], shape_str(q), shape_str(kv)));
  }

  AttentionResult<T> run(ConstTensorView<T, 3> xq, ConstTensorView<T, 3> xkv, const AttentionMasks<T>& masks,
                         bool want_weights) const {
    check_inputs(shape_of(xq), shape_of(xkv));
    this->check_weights();
    const Index B = xq.dimension(0), Tq = xq.dimension(1), S = xkv.dimension(1), E = config_.dim,
                H = config_.num_heads, d = E / H;
    BoundMasks<T> bound = bind_masks(masks, B, H, Tq, S, Config::type_name);
    AttentionResult<T> r;
    r.output = Tensor<T, 3>(B, Tq, E);
    if (want_weights) r.weights = Tensor<T, 4>(B, H, Tq, S);
    if (B == 0 || Tq == 0) return r;
    ScratchFrame scratch;  // q, kv and the context: reused across calls (core/scratch.hpp)
    T* q = scratch.get<T>(B * Tq * E);
    T* kv = scratch.get<T>(B * S * 2 * E);
    T* ctx = scratch.get<T>(B * Tq * E);
    ops::dense(xq.data(), B * Tq, this->weight(slots_.q_kernel), this->optional_weight(slots_.q_bias), q);
    ops::dense(xkv.data(), B * S, this->weight(slots_.kv_kernel), this->optional_weight(slots_.kv_bias), kv);
    ops::attention(ops::heads_of<T>(q, B, Tq, H, d, E), ops::heads_of<T>(kv, B, S, H, d, 2 * E),
                   ops::heads_of<T>(kv + E, B, S, H, d, 2 * E), ops::heads_out<T>(ctx, B, Tq, H, d, E),
                   static_cast<T>(1.0 / std::sqrt(static_cast<double>(d))), bound.core,
                   want_weights ? r.weights.data() : nullptr);
    ops::dense(ctx, B * Tq, this->weight(slots_.proj_kernel), this->optional_weight(slots_.proj_bias),
               r.output.data());
    return r;
  }

  Slots slots_;
};

}  // namespace attn
