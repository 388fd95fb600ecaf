/// \file
/// `capsule_routing` — CapsuleRoutingSelfAttention: multi-head self-attention whose logits get two
/// terms computed from the logits themselves by capsule dynamic routing (squash non-linearity,
/// agreement updates; Sabour et al., 2017, "Dynamic Routing Between Capsules"): a "vertical" term across
/// the heads and a "horizontal" term across the query rows (the reference module's
/// CapsuleRoutingSelfAttention).
///
/// Shapes: input x `[B, T, D]` (D = `input_dim`); output `[B, T, D]`. Masks: `AttentionMasks<T>`
/// (ops/masks.hpp: key padding `[B, T]` (the reference's rank-2 mask), key lengths `[B]`, attention
/// mask `[T, T]` / `[B, T, T]` / `[B, 1|num_heads, T, T]` (its rank-3 and rank-4 masks), causal,
/// additive bias on the final logits). `forward_with_weights` also returns the attention weights
/// `[B, num_heads, T, T]` (beyond the reference, which returns none).
///
/// Parameters (the reference's, defaults as there): `num_heads` (required, > 0), `key_dim` = null (null:
/// D / num_heads), `value_dim` = null (null: the key width), `dropout` = 0.0 in [0, 1], `use_bias` =
/// true (also the vertical aggregation bias), `kernel_initializer` = glorot_uniform (also the
/// aggregation matrix), `bias_initializer` = zeros, `routing_iterations` = 3 (> 0),
/// `use_vertical_routing` = true, `use_horizontal_routing` = true, `use_positional_routing` = true,
/// `epsilon` = 1e-8 (> 0). Regularizers are accepted and kept, with no effect at inference. Beyond the
/// reference (Keras takes D from the first call): `input_dim` (null: num_heads·key_dim, or
/// num_heads·64 when key_dim is null too). D must be divisible by num_heads, even with key_dim given.
///
/// Weights (Keras layout `[in, out]`, in this order): `query/kernel [D, h·d_k]`, `query/bias [h·d_k]`,
/// `key/kernel [D, h·d_k]`, `key/bias`, `value/kernel [D, h·d_v]`, `value/bias [h·d_v]`,
/// `output/kernel [h·d_v, D]`, `output/bias [D]` (biases with use_bias), then with
/// use_vertical_routing `vertical_aggregation_weights [h, h]` and (with use_bias)
/// `vertical_aggregation_bias [h]`.
///
/// Forward, per batch item, with route() and squash() of layers/detail/capsule_routing.hpp (the coupling
/// softmax runs over the INPUT capsules, as in the reference, not over the outputs as in Sabour et al.):
///   A = (Q Kᵀ) / √d_k   (raw logits [h, T, T], before any mask)
///   v_t = route(A[0, t, :], …, A[h−1, t, :])                       (one vector per query row t)
///   Vert[j, t, s] = softmax_j(v_t[s]·Σ_o W_vert[o, :] + b_vert)[j] · v_t[s]
///   Horz[i, t, :] = A[i, 0, :] for t = 0 (the raw row: row 0's logits are doubled; the reference's
///                   quirk, reproduced), route(A[i, 0, :], …, A[i, t, :]) for t ≥ 1
///                   (use_positional_routing); v_t for every head otherwise (the reference's
///                   non-positional variant routes across heads like the vertical core)
///   Z = A + Vert (if use_vertical_routing) + Horz (if use_horizontal_routing) (+ bias)
///   y = merge(softmax(Z, masked) V)·W_o + b_o
/// The routing terms need the whole logit map: one `[h, T, T]` buffer per batch item (items one at a
/// time) plus two `[T, T]` (v_t and the vertical softmax normalisers); the terms then reach the
/// attention core as its additive bias (the core recomputes Q Kᵀ, masks and normalises). Cost: the
/// positional term routes t + 1 rows of length T for every row t, O(h·T³·R) per item.
///
/// Errors: ConfigError with the reference's messages (`Parameter 'num_heads' must be positive, got 0`,
/// `key_dim must be positive, got 0`, `value_dim must be positive, got 0`, `Parameter 'dropout' must
/// be between 0.0 and 1.0, got 2.0` (the factory's wording, which the reference checks first),
/// `routing_iterations must be positive, got 0`, `epsilon must be positive, got 0.0`, `embed_dim (10)
/// must be divisible by num_heads (3)`); ShapeError for an input that is not `[B, T, D]`, and for
/// masks per ops/masks.hpp.
///
/// Differences from the reference (deliberate):
/// - The reference replaces masked logits by −1e9, so a query row whose every key is masked becomes
///   uniform; here it yields zero weights and a zero context (the library-wide mask contract). A
///   partially masked row matches. The routing reads the raw, unmasked logits, as in the reference.
/// - The reference divides by √d_k for the logits it routes; the core multiplies Q Kᵀ by 1/√d_k:
///   equal up to the last bits.
/// - The input width is the `input_dim` parameter, checked on every call.
/// - Dropout is the identity (inference library); `dropout` is validated and kept.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/init.hpp"
#include "attn/core/limits.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/param.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/capsule_routing.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/masks.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

struct CapsuleRoutingSelfAttentionConfig {
  int num_heads = 0;
  std::optional<int> key_dim{};
  std::optional<int> value_dim{};
  double dropout = 0.0;
  bool use_bias = true;
  std::string_view kernel_initializer = "glorot_uniform";
  std::string_view bias_initializer = "zeros";
  int routing_iterations = 3;
  bool use_vertical_routing = true;
  bool use_horizontal_routing = true;
  bool use_positional_routing = true;
  double epsilon = 1e-8;
  std::optional<int> input_dim{};

  static constexpr std::string_view type_name = "capsule_routing";
  static constexpr std::string_view class_name = "CapsuleRoutingSelfAttention";
  static constexpr std::string_view description =
      "Self-attention whose logits are refined by capsule-style dynamic routing across heads and query rows.";
  static constexpr std::string_view use_case = "Experimental contextualisation of attention through routing.";
  static constexpr std::array<std::string_view, 3> training_only{"kernel_regularizer", "bias_regularizer",
                                                                 "activity_regularizer"};

  static constexpr auto fields() {
    using C = CapsuleRoutingSelfAttentionConfig;
    return std::array{
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .required = true, .example = "2",
                 .wording = Wording::factory, .range = positive, .doc = "Number of attention heads."},
        Field<C>{.name = "key_dim", .member = member<&C::key_dim>, .range = positive,
                 .doc = "Width of each query/key head (null: input_dim / num_heads)."},
        Field<C>{.name = "value_dim", .member = member<&C::value_dim>, .range = positive,
                 .doc = "Width of each value head (null: the key width)."},
        Field<C>{.name = "dropout", .member = member<&C::dropout>, .wording = Wording::factory,
                 .range = unit_interval, .doc = "Dropout on the attention probabilities (identity at inference)."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>,
                 .doc = "Biases on the four projections and the vertical aggregation."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the kernels and the aggregation matrix."},
        Field<C>{.name = "bias_initializer", .member = member<&C::bias_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the biases."},
        Field<C>{.name = "routing_iterations", .member = member<&C::routing_iterations>, .range = positive,
                 .doc = "Dynamic-routing iterations."},
        Field<C>{.name = "use_vertical_routing", .member = member<&C::use_vertical_routing>,
                 .doc = "Add the routing term across heads."},
        Field<C>{.name = "use_horizontal_routing", .member = member<&C::use_horizontal_routing>,
                 .doc = "Add the routing term across query rows."},
        Field<C>{.name = "use_positional_routing", .member = member<&C::use_positional_routing>,
                 .doc = "Horizontal term over the query rows up to each row (false: across heads, as the "
                        "reference)."},
        Field<C>{.name = "epsilon", .member = member<&C::epsilon>, .range = positive,
                 .doc = "Epsilon of the squash."},
        Field<C>{.name = "input_dim", .member = member<&C::input_dim>, .range = positive,
                 .doc = "Features D of the input and the output (null: num_heads x key_dim, or num_heads x 64 "
                        "without key_dim). Beyond the reference."},
    };
  }

  void check(Problems& p) const {
    if (num_heads > 0 && d_model() % num_heads != 0)
      p.push_back({"num_heads",
                   fmt::format("embed_dim ({}) must be divisible by num_heads ({})", d_model(), num_heads)});
  }

  [[nodiscard]] int d_model() const noexcept { return input_dim.value_or(num_heads * key_dim.value_or(64)); }
  [[nodiscard]] int dk() const noexcept { return key_dim.value_or(num_heads > 0 ? d_model() / num_heads : 0); }
  [[nodiscard]] int dv() const noexcept { return value_dim.value_or(dk()); }
};
static_assert(config_table_is_sound<CapsuleRoutingSelfAttentionConfig>());

template <class T = float>
class CapsuleRoutingSelfAttention
    : public LayerBase<CapsuleRoutingSelfAttention<T>, CapsuleRoutingSelfAttentionConfig, T> {
  using Base = LayerBase<CapsuleRoutingSelfAttention, CapsuleRoutingSelfAttentionConfig, T>;
  friend Base;

public:
  using Config = CapsuleRoutingSelfAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{3};

  explicit CapsuleRoutingSelfAttention(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 5, c.d_model()}}; }

  /// y `[B, T, D]` of x `[B, T, D]`; `masks` per ops/masks.hpp (S = T).
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(x), masks, false).output;
  }
  /// The output and the attention weights `[B, num_heads, T, T]` (softmax of the routed logits).
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const X& x, const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(x), masks, true);
  }

  /// The routing terms Vert + Horz (as the switches select) of one item's raw logits a `[h, T, T]`,
  /// written over `a` (exposed for tests).
  void routing_terms(T* a, Index L) const {
    const Index H = config_.num_heads, LL = L * L;
    const int R = config_.routing_iterations;
    const T eps = static_cast<T>(config_.epsilon);
    const bool vert = config_.use_vertical_routing, horz = config_.use_horizontal_routing;
    const bool positional = config_.use_positional_routing;
    // v_t: routed across the heads from every head's row t (needed by the vertical term and by the
    // non-positional horizontal term)
    std::vector<T> vt;
    if (vert || (horz && !positional)) {
      vt.resize(static_cast<std::size_t>(LL));
      parallel_for_dynamic(L, [&](std::int64_t t) {
        std::vector<T> beta, c;
        detail::capsule_route(a + t * L, H, L, LL, R, eps, vt.data() + t * L, beta, c);
      });
    }
    std::vector<T> wsum, bvert, lse;  // Σ_o W_vert[o, j], b_vert, log Σ_j exp(g[t, s, j]) per (t, s)
    if (vert) {
      const Weight<T>& w = this->weight(slots_.vert_weights);
      wsum.assign(static_cast<std::size_t>(H), T(0));
      for (Index o = 0; o < H; ++o)
        for (Index j = 0; j < H; ++j) wsum[static_cast<std::size_t>(j)] += w.data[static_cast<std::size_t>(o * H + j)];
      bvert.assign(static_cast<std::size_t>(H), T(0));
      if (const Weight<T>* b = this->optional_weight(slots_.vert_bias)) bvert = b->data;
      lse.resize(static_cast<std::size_t>(LL));
      parallel_for_dynamic(L, [&](std::int64_t t) {
        for (Index s = 0; s < L; ++s) {
          const T v = vt[static_cast<std::size_t>(t * L + s)];
          T mx = -std::numeric_limits<T>::infinity();
          for (Index j = 0; j < H; ++j)
            mx = std::max(mx, v * wsum[static_cast<std::size_t>(j)] + bvert[static_cast<std::size_t>(j)]);
          T sum = 0;
          for (Index j = 0; j < H; ++j)
            sum += std::exp(v * wsum[static_cast<std::size_t>(j)] + bvert[static_cast<std::size_t>(j)] - mx);
          lse[static_cast<std::size_t>(t * L + s)] = mx + std::log(sum);
        }
      });
    }
    // per head, rows from the last to the first: the positional term of row t reads the raw rows
    // 0..t, which are still in place, then row t is overwritten by its terms
    parallel_for_dynamic(H, [&](std::int64_t hh) {
      const Index i = static_cast<Index>(hh);
      T* ai = a + i * LL;
      std::vector<T> beta, c, row(static_cast<std::size_t>(L));
      for (Index t = L - 1; t >= 0; --t) {
        T* out = ai + t * L;
        std::fill(row.begin(), row.end(), T(0));
        if (horz) {
          if (!positional) std::copy_n(vt.data() + t * L, L, row.begin());
          else if (t == 0) std::copy_n(out, L, row.begin());
          else detail::capsule_route(ai, t + 1, L, L, R, eps, row.data(), beta, c);
        }
        if (vert) {  // π[t, s, i] · v_t[s] with π = softmax_j(g), g = v_t[s]·Σ_o W[o, :] + b
          const T* v = vt.data() + t * L;
          const T* ls = lse.data() + t * L;
          const T wi = wsum[static_cast<std::size_t>(i)], bi = bvert[static_cast<std::size_t>(i)];
          for (Index s = 0; s < L; ++s) row[static_cast<std::size_t>(s)] += std::exp(v[s] * wi + bi - ls[s]) * v[s];
        }
        std::copy(row.begin(), row.end(), out);
      }
    });
  }

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot q_kernel, q_bias, k_kernel, k_bias, v_kernel, v_bias, o_kernel, o_bias, vert_weights, vert_bias;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index D = config_.d_model(), H = config_.num_heads, wk = H * config_.dk(), wv = H * config_.dv();
    const auto ki = config_.kernel_initializer, bi = config_.bias_initializer;
    const bool ub = config_.use_bias;
    Slots s;
    s.q_kernel = w.add("query/kernel", {D, wk}, ki, seed);
    if (ub) s.q_bias = w.add("query/bias", {wk}, bi, seed);
    s.k_kernel = w.add("key/kernel", {D, wk}, ki, seed);
    if (ub) s.k_bias = w.add("key/bias", {wk}, bi, seed);
    s.v_kernel = w.add("value/kernel", {D, wv}, ki, seed);
    if (ub) s.v_bias = w.add("value/bias", {wv}, bi, seed);
    s.o_kernel = w.add("output/kernel", {wv, D}, ki, seed);
    if (ub) s.o_bias = w.add("output/bias", {D}, bi, seed);
    if (config_.use_vertical_routing) {
      s.vert_weights = w.add("vertical_aggregation_weights", {H, H}, ki, seed);
      if (ub) s.vert_bias = w.add("vertical_aggregation_bias", {H}, bi, seed);
    }
    slots_ = s;
  }

  void check_input(const Shape& x) const {
    if (x.size() != 3)
      throw ShapeError(fmt::format("{}: Expected 3D input, got shape {}", Config::type_name, shape_str(x)));
    check_shape(Config::type_name, "input", x, {-1, -1, config_.d_model()}, "([batch, T, input_dim])");
  }

  AttentionResult<T> run(ConstTensorView<T, 3> x, const AttentionMasks<T>& masks, bool want_weights) const {
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), L = x.dimension(1), D = config_.d_model(), H = config_.num_heads;
    const Index dk = config_.dk(), dv = config_.dv(), wk = H * dk, wv = H * dv, LL = L * L;
    const BoundMasks<T> bound = bind_masks(masks, B, H, L, L, Config::type_name);
    AttentionResult<T> r;
    r.output = Tensor<T, 3>(B, L, D);
    if (want_weights) r.weights = Tensor<T, 4>(B, H, L, L);
    if (B == 0 || L == 0) return r;
    const bool routed = config_.use_vertical_routing || config_.use_horizontal_routing;
    ScratchFrame scratch;
    T* q = scratch.get<T>(B * L * wk);
    T* k = scratch.get<T>(B * L * wk);
    T* v = scratch.get<T>(B * L * wv);
    T* ctx = scratch.get<T>(B * L * wv);
    ops::dense(x.data(), B * L, this->weight(slots_.q_kernel), this->optional_weight(slots_.q_bias), q);
    ops::dense(x.data(), B * L, this->weight(slots_.k_kernel), this->optional_weight(slots_.k_bias), k);
    ops::dense(x.data(), B * L, this->weight(slots_.v_kernel), this->optional_weight(slots_.v_bias), v);
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(dk)));
    const T root = static_cast<T>(std::sqrt(static_cast<double>(dk)));
    std::vector<T> terms;
    if (routed) {
      check_allocation(fmt::format("{}: the routing terms [{}, {}, {}] of one batch item", Config::type_name, H, L, L),
                       checked_shape_size({H, L, L}), sizeof(T), std::string(Config::type_name));
      terms.resize(static_cast<std::size_t>(H * LL));
    }
    for (Index b = 0; b < B; ++b) {
      ops::AttentionMask<T> m = bound.core;  // this item's view of the masks
      if (m.key_lengths != nullptr) m.key_lengths += b;
      if (m.keep != nullptr) m.keep += b * m.keep_sb;
      if (routed) {
        const T* qb = q + b * L * wk;
        const T* kb = k + b * L * wk;
        for (Index h = 0; h < H; ++h) {  // raw logits A = Q Kᵀ / √d_k
          T* a = terms.data() + h * LL;
          ops::gemm<T>(L, L, dk, qb + h * dk, wk, kb + h * dk, wk, /*b_trans=*/true, a, L);
          for (Index e = 0; e < LL; ++e) a[e] /= root;
        }
        routing_terms(terms.data(), L);
        if (m.bias != nullptr)
          for (Index h = 0; h < H; ++h)
            for (Index t = 0; t < L; ++t) {
              const T* src = m.bias + b * m.bias_sb + h * m.bias_sh + t * m.bias_st;
              T* dst = terms.data() + h * LL + t * L;
              for (Index s = 0; s < L; ++s) dst[s] += src[s];
            }
        m.bias = terms.data();
        m.bias_sb = 0;
        m.bias_sh = LL;
        m.bias_st = L;
      } else if (m.bias != nullptr) {
        m.bias += b * m.bias_sb;
      }
      ops::attention(ops::heads_of<T>(q + b * L * wk, 1, L, H, dk, wk), ops::heads_of<T>(k + b * L * wk, 1, L, H, dk, wk),
                     ops::heads_of<T>(v + b * L * wv, 1, L, H, dv, wv), ops::heads_out<T>(ctx + b * L * wv, 1, L, H, dv, wv),
                     scale, m, want_weights ? r.weights.data() + b * H * LL : nullptr);
    }
    ops::dense(ctx, B * L, this->weight(slots_.o_kernel), this->optional_weight(slots_.o_bias), r.output.data());
    return r;
  }

  Slots slots_;
};

}  // namespace attn
