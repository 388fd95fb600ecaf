/// \file
/// `multi_head` — multi-head self-attention with a fused QKV projection (Vaswani et al., 2017,
/// "Attention Is All You Need").
///
/// Shapes: input x `[B, T, D_in]` (D_in = `input_dim`, default `embed_dim`); output `[B, T, embed_dim]`.
/// Masks: `AttentionMasks<T>` (ops/masks.hpp: key padding `[B, T]`, key lengths `[B]`, attention mask
/// `[T, T]` / `[B, T, T]` / `[B, 1|num_heads, T, T]`, causal, additive bias); the config's `causal`
/// (beyond the reference) masks future keys on every call and skips their blocks. Optional attention
/// weights `[B, num_heads, T, T]`.
///
/// Weights (Keras layout): `qkv/kernel [D_in, 3·embed_dim]` (columns: Q, K, V blocks, head i owning
/// columns [i·d, (i+1)·d) of each block), `qkv/bias [3·embed_dim]` and `proj/bias [embed_dim]` when
/// `use_bias`, `proj/kernel [embed_dim, embed_dim]`. Forward:
///   Q, K, V = split(x·Wqkv + bqkv);  P = softmax(Q Kᵀ / sqrt(d) masked);  y = merge(P V)·Wproj + bproj.
///
/// Incremental decoding (attn/kv_cache.hpp; beyond the reference): `make_cache(batch, capacity)` makes
/// a cache of K and V `[batch, num_heads, capacity, embed_dim / num_heads]`; `forward(x, cache)` (or
/// `forward(x, cache, active)`) appends the T tokens of x `[B, T, D_in]` to every active item and
/// returns their outputs `[B, T, embed_dim]` (rows of inactive items are zeros), equal to the
/// corresponding rows of a causal forward over each item's whole sequence. Attention over the cache is
/// always causal. Errors leave the cache unchanged (ShapeError: see kv_cache.hpp).
///
/// Differences from the reference (deliberate):
/// - The reference never checks D_in against embed_dim and builds its kernel from whatever comes
///   first; here the input width is the `input_dim` parameter (default `embed_dim`) and is checked.
/// - The reference adds (1 − m)·(−1e9) to the logits, so a query row whose every key is masked gets the
///   softmax of its unmasked logits; here such a row yields zeros (the library-wide mask contract).
///   Masks are boolean; `attn::mask_from_values` converts a 0/1 numeric mask and rejects other values.
/// - Attention weights can be returned (the reference returns none). Dropout is the identity
///   (inference library); `dropout_rate` is validated and kept.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "attn/core/scratch.hpp"
#include "attn/core/init.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/kv_cache.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/masks.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

struct MultiHeadAttentionConfig {
  int embed_dim = 0;
  int num_heads = 8;
  double dropout_rate = 0.0;
  std::string_view kernel_initializer = "he_normal";
  bool use_bias = false;
  std::optional<int> input_dim{};
  bool causal = false;

  static constexpr std::string_view type_name = "multi_head";
  static constexpr std::string_view class_name = "MultiHeadAttention";
  static constexpr std::string_view description =
      "Standard multi-head self-attention with a fused QKV projection.";
  static constexpr std::string_view use_case =
      "General-purpose self-attention in vision and sequence models.";
  static constexpr std::array<std::string_view, 1> training_only{"kernel_regularizer"};

  static constexpr auto fields() {
    using C = MultiHeadAttentionConfig;
    return std::array{
        Field<C>{.name = "embed_dim", .member = member<&C::embed_dim>, .required = true, .example = "32",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Model width: output features, and num_heads x head width."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive,
                 .doc = "Number of attention heads; must divide embed_dim."},
        Field<C>{.name = "dropout_rate", .member = member<&C::dropout_rate>, .wording = Wording::factory,
                 .range = unit_interval,
                 .doc = "Dropout on the attention probabilities (identity at inference)."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of both kernels."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>,
                 .doc = "Add biases to both projections."},
        Field<C>{.name = "input_dim", .member = member<&C::input_dim>, .range = positive,
                 .doc = "Width of the input features (null: embed_dim). Beyond the reference."},
        Field<C>{.name = "causal", .member = member<&C::causal>,
                 .doc = "Mask future keys (query i sees keys j <= i); masked blocks are skipped. Beyond "
                        "the reference."},
    };
  }

  void check(Problems& p) const {
    if (num_heads > 0 && embed_dim % num_heads != 0)
      p.push_back({"num_heads", fmt::format("embed_dim ({}) must be divisible by num_heads ({})",
                                            embed_dim, num_heads)});
  }
  [[nodiscard]] int in_dim() const noexcept { return input_dim.value_or(embed_dim); }
};
static_assert(config_table_is_sound<MultiHeadAttentionConfig>());

template <class T = float>
class MultiHeadAttention : public LayerBase<MultiHeadAttention<T>, MultiHeadAttentionConfig, T> {
  using Base = LayerBase<MultiHeadAttention, MultiHeadAttentionConfig, T>;
  friend Base;

public:
  using Config = MultiHeadAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{3};

  explicit MultiHeadAttention(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return {x[0], x[1], config_.embed_dim};
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 5, c.in_dim()}}; }

  /// y `[B, T, embed_dim]` of x `[B, T, D_in]`; `masks` per ops/masks.hpp (S = T).
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(x), masks, nullptr).output;
  }
  /// The output and the attention weights `[B, num_heads, T, T]`.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const X& x, const AttentionMasks<T>& masks = {}) const {
    Tensor<T, 4> w;
    auto r = run(view_of<T, 3>(x), masks, &w);
    r.weights = std::move(w);
    return r;
  }

  /// A KV cache for this layer: `batch` items of up to `capacity` tokens (kv_cache.hpp).
  [[nodiscard]] KVCache<T> make_cache(Index batch, Index capacity, KVStorage storage = KVStorage::same) const {
    return KVCache<T>(Config::type_name, batch, capacity, 1, config_.num_heads,
                      config_.embed_dim / config_.num_heads, storage);
  }
  /// Appends the T tokens of x `[B, T, D_in]` to the active items of `cache` (all by default) and
  /// returns their outputs `[B, T, embed_dim]`, causal over each item's cached and new tokens; rows of
  /// inactive items are zeros. ShapeError (cache unchanged) per kv_cache.hpp.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, KVCache<T>& cache, const ActiveItems& active = {}) const {
    return run_cached(view_of<T, 3>(x), cache, active);
  }

private:
  using Base::config_, Base::weights_;

  Tensor<T, 3> run_cached(ConstTensorView<T, 3> x, KVCache<T>& cache, const ActiveItems& active) const {
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), L = x.dimension(1), E = config_.embed_dim, H = config_.num_heads;
    const Index d = E / H;
    cache.check_step(Config::type_name, 1, H, d, B, L, active);
    Tensor<T, 3> y(B, L, E);
    y.setZero();
    if (L == 0) return y;
    ScratchFrame scratch;
    T* qkv = scratch.get<T>(B * L * 3 * E);
    T* ctx = scratch.get<T>(B * L * E);
    std::fill_n(ctx, B * L * E, T(0));
    ops::dense(x.data(), B * L, this->weight(slots_.qkv_kernel), this->optional_weight(slots_.qkv_bias), qkv);
    std::vector<Index> lengths(cache.lengths().begin(), cache.lengths().end());
    for (Index b = 0; b < B; ++b)
      if (active[b]) {
        cache.write(0, b, qkv + b * L * 3 * E + E, qkv + b * L * 3 * E + 2 * E, 3 * E, L);
        lengths[static_cast<std::size_t>(b)] += L;
      }
    cache.visit([&](const auto* base) {
      ops::cache_attention<T>(qkv, 3 * E, base + cache.offset(0, 0, 0, 0, 0), base + cache.offset(0, 1, 0, 0, 0), B,
                              H, cache.capacity(), d, H, L, lengths.data(), active,
                              static_cast<T>(1.0 / std::sqrt(double(d))), ctx, E);
    });
    cache.commit(L, active);
    ops::dense(ctx, B * L, this->weight(slots_.proj_kernel), this->optional_weight(slots_.proj_bias), y.data());
    for (Index b = 0; b < B; ++b)
      if (!active[b]) std::fill_n(y.data() + b * L * E, L * E, T(0));
    return y;
  }

  struct Slots {
    WeightSlot qkv_kernel, qkv_bias, proj_kernel, proj_bias;
  };

  /// The weights, drawn from `seed` with the configured initializer (biases: zeros).
  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index e = config_.embed_dim;
    Slots s;
    s.qkv_kernel = w.add("qkv/kernel", {config_.in_dim(), 3 * e}, config_.kernel_initializer, seed);
    if (config_.use_bias) s.qkv_bias = w.add("qkv/bias", {3 * e}, "zeros", seed);
    s.proj_kernel = w.add("proj/kernel", {e, e}, config_.kernel_initializer, seed);
    if (config_.use_bias) s.proj_bias = w.add("proj/bias", {e}, "zeros", seed);
    slots_ = s;
  }

  void check_input(const Shape& x) const {
    check_shape(Config::type_name, "input", x, {-1, -1, config_.in_dim()},
                "([batch, seq, input_dim])");
  }

  AttentionResult<T> run(ConstTensorView<T, 3> x, const AttentionMasks<T>& masks, Tensor<T, 4>* weights) const {
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), L = x.dimension(1), E = config_.embed_dim, H = config_.num_heads;
    const Index d = E / H;
    BoundMasks<T> bound = bind_masks(masks, B, H, L, L, Config::type_name);
    bound.core.causal = bound.core.causal || config_.causal;
    if (B == 0 || L == 0) {  // nothing to attend: empty output (and no pointer arithmetic on null data)
      AttentionResult<T> empty;
      empty.output = Tensor<T, 3>(B, L, E);
      if (weights) *weights = Tensor<T, 4>(B, H, L, L);
      return empty;
    }
    ScratchFrame scratch;  // qkv and the context: reused across calls (core/scratch.hpp)
    T* qkv = scratch.get<T>(B * L * 3 * E);
    T* ctx = scratch.get<T>(B * L * E);
    ops::dense(x.data(), B * L, this->weight(slots_.qkv_kernel), this->optional_weight(slots_.qkv_bias), qkv);
    if (weights) *weights = Tensor<T, 4>(B, H, L, L);
    ops::attention(ops::heads_of<T>(qkv, B, L, H, d, 3 * E), ops::heads_of<T>(qkv + E, B, L, H, d, 3 * E),
                   ops::heads_of<T>(qkv + 2 * E, B, L, H, d, 3 * E), ops::heads_out<T>(ctx, B, L, H, d, E),
                   static_cast<T>(1.0 / std::sqrt(double(d))), bound.core, weights ? weights->data() : nullptr);
    AttentionResult<T> r;
    r.output = Tensor<T, 3>(B, L, E);
    ops::dense(ctx, B * L, this->weight(slots_.proj_kernel), this->optional_weight(slots_.proj_bias),
               r.output.data());
    return r;
  }

  Slots slots_;
};

}  // namespace attn
