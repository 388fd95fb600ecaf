/// \file
/// `differential` — DifferentialMultiHeadAttention: two complete multi-head self-attentions whose
/// outputs are subtracted with a depth-dependent weight λ (the reference module's form), or, as an
/// option, the attention-map subtraction of the Differential Transformer (Ye et al., 2024,
/// "Differential Transformer", arXiv:2410.05258).
///
/// Shapes: input x `[B, T, dim]`; output `[B, T, dim]`. Masks: `AttentionMasks<T>` (ops/masks.hpp: key
/// padding `[B, T]`, key lengths `[B]`, attention mask `[T, T]` / `[B, T, T]` / `[B, 1|num_heads, T,
/// T]`, causal, additive bias), applied to both attentions. No attention weights are returned (the
/// reference returns none).
///
/// Weights (Keras layouts, in this order, 19 tensors): for each of `attention1` and `attention2` (two
/// Keras MultiHeadAttention layers, num_heads h, key_dim head_dim): `<a>/query/kernel [dim, h,
/// head_dim]`, `<a>/query/bias [h, head_dim]`, the same for `key` and `value`,
/// `<a>/attention_output/kernel [h, head_dim, dim]`, `<a>/attention_output/bias [dim]`; then
/// `proj/kernel [dim, dim]`, `proj/bias [dim]` and `lambda_param [1]` (initialised to lambda_init).
/// Kernels are drawn with `kernel_initializer` (rank-3 fans as Keras), biases with `bias_initializer`.
///
/// λ for the block at depth `layer_idx` (the config's, or the argument of `forward`):
///   f(l) = 0.8 − 0.6·exp(−0.3·max(l − 1, 0));   λ = clip(f(l)·lambda_param[0], 0.1, 0.9)
/// (`lambda_at`). With the default lambda_init 0.8, λ = 0.16 at depth 0 and 1.
///
/// formulation = "reference" (default; a model trained with the reference ports unchanged):
///   Y_a = MHA_a(x)  (softmax(Q_a K_aᵀ/√head_dim, masked) V_a, merged, ·W_o,a + b_o,a), a = 1, 2
///   y   = (Y_1 − λ·Y_2)·W_proj + b_proj
/// formulation = "paper" (Ye et al.: subtract the two softmax maps, normalise each head, scale by
/// (1 − λ_init)), on the same weights:
///   O_h = (softmax(Q_1h K_1hᵀ/√d) − λ·softmax(Q_2h K_2hᵀ/√d))·V_1h      (values of attention1)
///   O_h ← RMSNorm(O_h)·(1 − lambda_init)   (per head over its head_dim features, eps 1e-5, no affine)
///   y   = (merge(O)·W_o,1 + b_o,1)·W_proj + b_proj
/// so attention2's value and output projections are unused there. λ is the same scalar as above (the
/// paper re-parameterises it through four vectors λ_q1, λ_k1, λ_q2, λ_k2, which the reference's
/// checkpoints do not have); λ_init is the config's `lambda_init`. The paper's per-head norm has a
/// learnable scale that the reference has no weight for: it is 1 here. (P1 − λP2)V is computed as
/// P1·V − λ·P2·V, two passes of the attention core, so no T × T map is held.
///
/// The projections, the attention of one branch and the combination are separate steps
/// (`project_branch`, `attend_branch`, `combine`), so that a key/value cache can keep each branch's K
/// and V.
///
/// Incremental decoding (attn/kv_cache.hpp; beyond the reference): `make_cache(batch, capacity)` makes
/// a cache of two streams (attention1, attention2), each K and V `[batch, num_heads, capacity,
/// head_dim]`; `forward(x, cache)` (or `forward(x, cache, active)`) appends the T tokens of x
/// `[B, T, dim]` to every active item and returns their outputs at the config's layer_idx (rows of
/// inactive items are zeros), equal to the corresponding rows of a causal forward over each item's
/// whole sequence. With formulation "paper" both maps read attention1's cached values (attention2's
/// stream stores them too, unused). Attention over the cache is always causal.
///
/// Errors: ConfigError with the reference's messages (`Parameter 'dim' must be positive, got 0` through
/// the factory's checks, `head_dim must be positive, got 0`, `lambda_init must be between 0 and 1, got
/// 1.5`); ShapeError for an input that is not `[B, T, dim]` (`Input dimension 7 doesn't match expected
/// dimension 8`), for masks per ops/masks.hpp.
///
/// Differences from the reference (deliberate):
/// - Keras adds (1 − m)·(−1e9) to the logits, so a query row whose every key is masked gets the
///   softmax of its unmasked logits; here such a row yields a zero attention context (the library-wide
///   mask contract), so its output is the output biases only. Masks are boolean, of every kind of
///   ops/masks.hpp (the reference takes a `(B, T, T)` / `(B, 1, T)` Keras attention mask).
/// - `layer_idx` is also a config parameter (default 0) so that a layer built from JSON knows its
///   depth; `forward(x, masks, layer_idx)` overrides it per call as the reference's call argument does.
/// - `formulation` (default "reference") is beyond the reference.
/// - Keras scales Q before Q·Kᵀ, the core scales the logits: equal up to the last bits.
/// - Dropout (`dropout`, `attention_dropout`) is the identity (inference library); both are validated
///   and kept. Regularizers are accepted and kept for the round trip, with no effect at inference.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/init.hpp"
#include "attn/core/param.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/kv_cache.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/sequence_b.hpp"
#include "attn/ops/masks.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

inline constexpr std::array<std::string_view, 2> differential_formulations{"reference", "paper"};

struct DifferentialMultiHeadAttentionConfig {
  int dim = 0;
  int num_heads = 0;
  int head_dim = 0;
  double dropout = 0.0;
  double attention_dropout = 0.0;
  double lambda_init = 0.8;
  std::string_view kernel_initializer = "glorot_uniform";
  std::string_view bias_initializer = "zeros";
  int layer_idx = 0;
  std::string_view formulation = "reference";

  static constexpr std::string_view type_name = "differential";
  static constexpr std::string_view class_name = "DifferentialMultiHeadAttention";
  static constexpr std::string_view description =
      "Two multi-head attentions combined with a learnable, depth-dependent weight to amplify the signal "
      "and cancel common-mode noise.";
  static constexpr std::string_view use_case =
      "Transformers that need sharper attention focus and less attention noise.";
  static constexpr std::array<std::string_view, 3> training_only{"kernel_regularizer", "bias_regularizer",
                                                                 "activity_regularizer"};

  static constexpr auto fields() {
    using C = DifferentialMultiHeadAttentionConfig;
    return std::array{
        Field<C>{.name = "dim", .member = member<&C::dim>, .required = true, .example = "16",
                 .wording = Wording::factory, .range = positive, .doc = "Input and output features."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .required = true, .example = "2",
                 .wording = Wording::factory, .range = positive, .doc = "Heads of each of the two attentions."},
        Field<C>{.name = "head_dim", .member = member<&C::head_dim>, .required = true, .example = "8",
                 .range = positive, .doc = "Width of each head (need not be dim / num_heads)."},
        Field<C>{.name = "dropout", .member = member<&C::dropout>, .wording = Wording::factory,
                 .range = unit_interval, .doc = "Dropout on the output (identity at inference)."},
        Field<C>{.name = "attention_dropout", .member = member<&C::attention_dropout>,
                 .wording = Wording::factory, .range = unit_interval,
                 .doc = "Dropout on both attentions' probabilities (identity at inference)."},
        Field<C>{.name = "lambda_init", .member = member<&C::lambda_init>,
                 .doc = "Initial value of lambda_param, in [0, 1]; the paper form's (1 - lambda_init) scale."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of every kernel."},
        Field<C>{.name = "bias_initializer", .member = member<&C::bias_initializer>,
                 .choices = initializer_names, .doc = "Initializer of every bias."},
        Field<C>{.name = "layer_idx", .member = member<&C::layer_idx>, .range = non_negative,
                 .doc = "Depth of the block in the lambda schedule (the reference's call argument). Beyond "
                        "the reference."},
        Field<C>{.name = "formulation", .member = member<&C::formulation>,
                 .choices = differential_formulations,
                 .doc = "'reference': subtract the two attention outputs (the reference's math); 'paper': "
                        "subtract the attention maps with per-head normalisation (Ye et al. 2024). Beyond "
                        "the reference."},
    };
  }

  /// lambda_init is checked last, as in the reference, with its message (the range rows of the table
  /// would word it "between 0.0 and 1.0").
  void check(Problems& p) const {
    if (!(lambda_init >= 0.0 && lambda_init <= 1.0))
      p.push_back({"lambda_init",
                   fmt::format("lambda_init must be between 0 and 1, got {}", detail::py_float(lambda_init))});
  }
  [[nodiscard]] bool paper() const noexcept { return formulation == "paper"; }
};
static_assert(config_table_is_sound<DifferentialMultiHeadAttentionConfig>());

template <class T = float>
class DifferentialMultiHeadAttention
    : public LayerBase<DifferentialMultiHeadAttention<T>, DifferentialMultiHeadAttentionConfig, T> {
  using Base = LayerBase<DifferentialMultiHeadAttention, DifferentialMultiHeadAttentionConfig, T>;
  friend Base;

public:
  using Config = DifferentialMultiHeadAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{3};

  explicit DifferentialMultiHeadAttention(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 5, c.dim}}; }

  /// The depth factor f(l) = 0.8 − 0.6·exp(−0.3·max(l − 1, 0)).
  [[nodiscard]] static double depth_factor(int layer_idx) {
    return 0.8 - 0.6 * std::exp(-0.3 * static_cast<double>(std::max(layer_idx - 1, 0)));
  }
  /// λ = clip(f(layer_idx)·lambda_param, 0.1, 0.9) with the current lambda_param.
  [[nodiscard]] double lambda_at(int layer_idx) const {
    this->check_weights();
    const double lp = static_cast<double>(this->weight(slots_.lambda_param).data[0]);
    return std::clamp(depth_factor(layer_idx) * lp, 0.1, 0.9);
  }

  /// y `[B, T, dim]` of x `[B, T, dim]` at the config's layer_idx; `masks` per ops/masks.hpp (S = T).
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(x), masks, config_.layer_idx);
  }
  /// The same at depth `layer_idx` (>= 0), the reference's call argument.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const AttentionMasks<T>& masks, int layer_idx) const {
    if (layer_idx < 0)
      throw ConfigError(fmt::format("{}: layer_idx must be non-negative, got {}", Config::type_name, layer_idx),
                        std::string(Config::type_name), "layer_idx");
    return run(view_of<T, 3>(x), masks, layer_idx);
  }

  /// A KV cache for this layer (two streams): `batch` items of up to `capacity` tokens (kv_cache.hpp).
  [[nodiscard]] KVCache<T> make_cache(Index batch, Index capacity, KVStorage storage = KVStorage::same) const {
    return KVCache<T>(Config::type_name, batch, capacity, 2, config_.num_heads, config_.head_dim, storage);
  }
  /// Appends the T tokens of x `[B, T, dim]` to the active items of `cache` (all by default) and returns
  /// their outputs `[B, T, dim]` at the config's layer_idx, causal over each item's cached and new
  /// tokens; rows of inactive items are zeros. ShapeError (cache unchanged) per kv_cache.hpp.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, KVCache<T>& cache, const ActiveItems& active = {}) const {
    return run_cached(view_of<T, 3>(x), cache, active);
  }

private:
  using Base::config_, Base::weights_;

  /// Writes branch a's new k, v `[B·T, h·head_dim]` of the active items into stream a of the cache.
  void cache_branch(KVCache<T>& cache, int a, const T* k, const T* v, Index B, Index L,
                    const ActiveItems& active) const {
    const Index w = config_.num_heads * config_.head_dim;
    for (Index b = 0; b < B; ++b)
      if (active[b]) cache.write(a, b, k + b * L * w, v + b * L * w, w, L);
  }

  /// The cached attention of queries q `[B·T, h·head_dim]` over the keys of stream ks and the values of
  /// stream vs, into ctx.
  void attend_cached(const KVCache<T>& cache, const T* q, Index ks, Index vs, Index B, Index L,
                     const std::vector<Index>& lengths, const ActiveItems& active, T* ctx) const {
    const Index H = config_.num_heads, d = config_.head_dim, w = H * d;
    cache.visit([&](const auto* base) {
      ops::cache_attention<T>(q, w, base + cache.offset(ks, 0, 0, 0, 0), base + cache.offset(vs, 1, 0, 0, 0), B, H,
                              cache.capacity(), d, H, L, lengths.data(), active,
                              static_cast<T>(1.0 / std::sqrt(static_cast<double>(d))), ctx, w);
    });
  }

  Tensor<T, 3> run_cached(ConstTensorView<T, 3> x, KVCache<T>& cache, const ActiveItems& active) const {
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), L = x.dimension(1), D = config_.dim, H = config_.num_heads;
    const Index w = H * config_.head_dim, rows = B * L;
    cache.check_step(Config::type_name, 2, H, config_.head_dim, B, L, active);
    Tensor<T, 3> y(B, L, D);
    y.setZero();
    if (rows == 0) return y;
    const T lambda = static_cast<T>(lambda_at(config_.layer_idx));
    ScratchFrame scratch;
    T* q = scratch.get<T>(rows * w);
    T* k = scratch.get<T>(rows * w);
    T* v = scratch.get<T>(rows * w);
    T* ctx1 = scratch.get<T>(rows * w);
    T* ctx2 = scratch.get<T>(rows * w);
    std::fill_n(ctx1, rows * w, T(0));
    std::fill_n(ctx2, rows * w, T(0));
    std::vector<Index> lengths(cache.lengths().begin(), cache.lengths().end());
    for (Index b = 0; b < B; ++b)
      if (active[b]) lengths[static_cast<std::size_t>(b)] += L;
    if (!config_.paper()) {
      T* y1 = scratch.get<T>(rows * D);
      T* y2 = scratch.get<T>(rows * D);
      for (int a = 0; a < 2; ++a) {
        project_branch(a, x.data(), rows, q, k, v);
        cache_branch(cache, a, k, v, B, L, active);
        attend_cached(cache, q, a, a, B, L, lengths, active, a == 0 ? ctx1 : ctx2);
        output_branch(a, a == 0 ? ctx1 : ctx2, rows, a == 0 ? y1 : y2);
      }
      cache.commit(L, active);
      combine(y1, y2, rows, lambda, y.data());
    } else {
      T* v1 = scratch.get<T>(rows * w);
      project_branch(0, x.data(), rows, q, k, v1);
      cache_branch(cache, 0, k, v1, B, L, active);
      attend_cached(cache, q, 0, 0, B, L, lengths, active, ctx1);
      project_branch(1, x.data(), rows, q, k, v, /*need_v=*/false);
      cache_branch(cache, 1, k, v1, B, L, active);
      attend_cached(cache, q, 1, 0, B, L, lengths, active, ctx2);  // attention2's map, attention1's values
      cache.commit(L, active);
      paper_output(ctx1, ctx2, rows, lambda, y.data(), scratch);
    }
    for (Index b = 0; b < B; ++b)
      if (!active[b]) std::fill_n(y.data() + b * L * D, L * D, T(0));
    return y;
  }

  /// The paper form's per-head combination, normalisation and output projections into y.
  void paper_output(T* ctx1, const T* ctx2, Index rows, T lambda, T* y, ScratchFrame& scratch) const {
    const Index H = config_.num_heads, d = config_.head_dim, D = config_.dim;
    const T scale = static_cast<T>(1.0 - config_.lambda_init);
    for (Index r = 0; r < rows * H; ++r) {
      T* o = ctx1 + r * d;
      const T* o2 = ctx2 + r * d;
      T ms = 0;
      for (Index c = 0; c < d; ++c) {
        o[c] -= lambda * o2[c];
        ms += o[c] * o[c];
      }
      const T inv = scale / std::sqrt(ms / static_cast<T>(d) + static_cast<T>(1e-5));
      for (Index c = 0; c < d; ++c) o[c] *= inv;
    }
    T* y1 = scratch.get<T>(rows * D);
    output_branch(0, ctx1, rows, y1);
    ops::dense(y1, rows, this->weight(slots_.proj_kernel), &this->weight(slots_.proj_bias), y);
  }

  struct Branch {
    WeightSlot q_kernel, q_bias, k_kernel, k_bias, v_kernel, v_bias, o_kernel, o_bias;
  };
  struct Slots {
    std::array<Branch, 2> branch;
    WeightSlot proj_kernel, proj_bias, lambda_param;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index D = config_.dim, H = config_.num_heads, d = config_.head_dim;
    const auto ki = config_.kernel_initializer, bi = config_.bias_initializer;
    Slots s;
    for (int a = 0; a < 2; ++a) {
      const std::string p = a == 0 ? "attention1/" : "attention2/";
      Branch& b = s.branch[static_cast<std::size_t>(a)];
      b.q_kernel = w.add(p + "query/kernel", {D, H, d}, ki, seed);
      b.q_bias = w.add(p + "query/bias", {H, d}, bi, seed);
      b.k_kernel = w.add(p + "key/kernel", {D, H, d}, ki, seed);
      b.k_bias = w.add(p + "key/bias", {H, d}, bi, seed);
      b.v_kernel = w.add(p + "value/kernel", {D, H, d}, ki, seed);
      b.v_bias = w.add(p + "value/bias", {H, d}, bi, seed);
      b.o_kernel = w.add(p + "attention_output/kernel", {H, d, D}, ki, seed);
      b.o_bias = w.add(p + "attention_output/bias", {D}, bi, seed);
    }
    s.proj_kernel = w.add("proj/kernel", {D, D}, ki, seed);
    s.proj_bias = w.add("proj/bias", {D}, bi, seed);
    s.lambda_param = w.add("lambda_param", {1}, "zeros", seed);
    w[s.lambda_param.index].data[0] = static_cast<T>(config_.lambda_init);
    slots_ = s;
  }

  void check_input(const Shape& x) const {
    if (x.size() != 3)
      throw ShapeError(fmt::format("{}: Expected 3D input (batch_size, seq_len, dim), got shape: {}",
                                   Config::type_name, shape_str(x)));
    if (x[2] != config_.dim)
      throw ShapeError(fmt::format("{}: Input dimension {} doesn't match expected dimension {} (input shape {})",
                                   Config::type_name, x[2], config_.dim, shape_str(x)));
  }

  /// One branch's projections of x `[B·T, dim]`: q, k, v `[B·T, h·head_dim]` each.
  void project_branch(int a, const T* x, Index rows, T* q, T* k, T* v, bool need_v = true) const {
    const Branch& br = slots_.branch[static_cast<std::size_t>(a)];
    detail::dense_flat(x, rows, this->weight(br.q_kernel), &this->weight(br.q_bias), q);
    detail::dense_flat(x, rows, this->weight(br.k_kernel), &this->weight(br.k_bias), k);
    if (need_v) detail::dense_flat(x, rows, this->weight(br.v_kernel), &this->weight(br.v_bias), v);
  }

  /// softmax(Q Kᵀ/√head_dim, masked)·V of one branch into ctx `[B, T, h·head_dim]` (the core).
  void attend_branch(const T* q, const T* k, const T* v, T* ctx, Index B, Index L, const ops::AttentionMask<T>& m) const {
    const Index H = config_.num_heads, d = config_.head_dim, w = H * d;
    ops::attention(ops::heads_of<T>(q, B, L, H, d, w), ops::heads_of<T>(k, B, L, H, d, w),
                   ops::heads_of<T>(v, B, L, H, d, w), ops::heads_out<T>(ctx, B, L, H, d, w),
                   static_cast<T>(1.0 / std::sqrt(static_cast<double>(d))), m);
  }

  /// The output projection of branch a: ctx `[rows, h·head_dim]` → y `[rows, dim]`.
  void output_branch(int a, const T* ctx, Index rows, T* y) const {
    const Branch& br = slots_.branch[static_cast<std::size_t>(a)];
    detail::dense_flat(ctx, rows, this->weight(br.o_kernel), &this->weight(br.o_bias), y, /*in_axes=*/2);
  }

  /// y = (y1 − λ·y2)·W_proj + b_proj, with y1 overwritten.
  void combine(T* y1, const T* y2, Index rows, T lambda, T* out) const {
    const Index n = rows * config_.dim;
    for (Index i = 0; i < n; ++i) y1[i] -= lambda * y2[i];
    ops::dense(y1, rows, this->weight(slots_.proj_kernel), &this->weight(slots_.proj_bias), out);
  }

  Tensor<T, 3> run(ConstTensorView<T, 3> x, const AttentionMasks<T>& masks, int layer_idx) const {
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), L = x.dimension(1), D = config_.dim, H = config_.num_heads;
    const Index w = H * config_.head_dim, rows = B * L;
    const BoundMasks<T> bound = bind_masks(masks, B, H, L, L, Config::type_name);
    Tensor<T, 3> y(B, L, D);
    if (rows == 0) return y;
    const T lambda = static_cast<T>(lambda_at(layer_idx));
    ScratchFrame scratch;
    T* q = scratch.get<T>(rows * w);
    T* k = scratch.get<T>(rows * w);
    T* v = scratch.get<T>(rows * w);
    T* ctx1 = scratch.get<T>(rows * w);
    T* ctx2 = scratch.get<T>(rows * w);
    if (!config_.paper()) {
      T* y1 = scratch.get<T>(rows * D);
      T* y2 = scratch.get<T>(rows * D);
      for (int a = 0; a < 2; ++a) {
        project_branch(a, x.data(), rows, q, k, v);
        attend_branch(q, k, v, a == 0 ? ctx1 : ctx2, B, L, bound.core);
        output_branch(a, a == 0 ? ctx1 : ctx2, rows, a == 0 ? y1 : y2);
      }
      combine(y1, y2, rows, lambda, y.data());
      return y;
    }
    // paper: both maps read attention1's values
    T* v1 = scratch.get<T>(rows * w);
    project_branch(0, x.data(), rows, q, k, v1);
    attend_branch(q, k, v1, ctx1, B, L, bound.core);
    project_branch(1, x.data(), rows, q, k, v, /*need_v=*/false);
    attend_branch(q, k, v1, ctx2, B, L, bound.core);
    paper_output(ctx1, ctx2, rows, lambda, y.data(), scratch);
    return y;
  }

  Slots slots_;
};

}  // namespace attn
