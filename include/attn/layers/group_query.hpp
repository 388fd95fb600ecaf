/// \file
/// `group_query` — grouped-query self-attention with rotary position embedding (Ainslie et al., 2023,
/// "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints"; RoPE from
/// Su et al., 2021, "RoFormer").
///
/// Shapes: input x `[B, T, d_model]`; output `[B, T, d_model]`; T must not exceed `max_seq_len`.
/// Masks: `AttentionMasks<T>` (ops/masks.hpp: key padding `[B, T]`, key lengths `[B]`, attention mask
/// `[T, T]` / `[B, T, T]` / `[B, 1|n_head, T, T]`, causal, additive bias); combined with the causal
/// mask when the config sets `causal`. Optional attention weights `[B, n_head, T, T]`.
///
/// `n_head` query heads share `n_kv_head` key/value heads: query head h reads kv head
/// h / (n_head / n_kv_head) (the attention core maps heads; K and V are never copied per query head).
/// With n_kv_head == n_head this is multi-head attention with RoPE, with n_kv_head == 1 multi-query
/// attention. With d = d_model / n_head:
///   Q = split(x·Wq + bq, n_head);  K = split(x·Wk + bk, n_kv_head);  V = split(x·Wv + bv, n_kv_head)
///   Q, K = RoPE(Q), RoPE(K)   (interleaved pairs, positions from 0, see ops/rope.hpp)
///   P = softmax(Q Kᵀ / sqrt(d), masked);  y = merge(P V)·Wo + bo
///
/// Weights (Keras layout, in this order): `w_q/kernel [d_model, n_head·d]`, `w_k/kernel
/// [d_model, n_kv_head·d]`, `w_v/kernel [d_model, n_kv_head·d]`, `w_o/kernel [d_model, d_model]`, each
/// followed by its `/bias` when it has one (q, k, v: `use_bias` or `qkv_bias`; o: `use_bias` or
/// `proj_bias`); then, unless `use_rope` is false, the non-trainable RoPE tables `rope/cos_cached` and
/// `rope/sin_cached` `[max_seq_len, max(r/2, 1)]` (zeros when the rotated width r is 0). The forward
/// pass reads the stored tables, so tables loaded from a weight file are honoured.
///
/// Log lines at construction (attn::log): the rotary embedding's WARNING for an odd head width and
/// INFO for a width rounded down to even, then INFO `GroupedQueryAttention initialized: d_model=..,
/// n_head=.., n_kv_head=.., groups=..`, then the WARNING that no rotation will be applied when r = 0
/// (the reference emits that one when the tables are built, at the first call).
///
/// Incremental decoding (attn/kv_cache.hpp; beyond the reference): `make_cache(batch, capacity)` makes
/// a cache of K (after RoPE) and V `[batch, n_kv_head, capacity, head_dim]` (kv heads not repeated);
/// `forward(x, cache)` (or `forward(x, cache, active)`) appends the T tokens of x `[B, T, d_model]` to
/// every active item at RoPE positions lengths()[b] .. lengths()[b] + T − 1 and returns their outputs
/// (rows of inactive items are zeros), equal to the corresponding rows of a causal forward over each
/// item's whole sequence. Positions must stay below max_seq_len. Attention over the cache is always
/// causal. `forward(x, masks, position_offset)` runs the plain forward with RoPE positions starting at
/// `position_offset` (offset + T <= max_seq_len).
///
/// Differences from the reference (deliberate):
/// - The kind of a mask is its type (ops/masks.hpp): a key padding mask `[B, T]` is a
///   `KeyPaddingMask`. The reference does not special-case rank 2 and broadcasts it against the (T, T)
///   score axes, which misreads a padding mask (and Keras's implicit padding mask).
/// - The reference adds (1 − m)·(−1e9) to the logits, so a query row whose every key is masked gets the
///   softmax of its unmasked logits; here such a row yields zero weights and a zero context (the
///   library-wide mask contract). Masks are boolean; `attn::mask_from_values` converts 0/1 masks.
/// - `causal` (default false) is beyond the reference: a bottom-right aligned causal mask.
/// - `use_rope` (default true) switches RoPE off explicitly (no tables, no log lines); `qkv_bias` and
///   `proj_bias` (default false) add biases to the q/k/v or the output projection alone, as
///   checkpoints such as Qwen2's (biases on q/k/v, none on o) need. All three are beyond the reference.
/// - The input width is checked against d_model (the reference sizes its output projection from the
///   input width and only works when both agree).
/// - The RoPE tables are computed in double and stored in T (the reference stores float32).
/// - Dropout is the identity (inference library); `dropout_rate` is validated and kept. The returned
///   weights are therefore the softmax probabilities (the reference returns them after dropout).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attn/core/scratch.hpp"
#include "attn/core/error.hpp"
#include "attn/core/init.hpp"
#include "attn/core/log.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/kv_cache.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/masks.hpp"
#include "attn/ops/rope.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

struct GroupedQueryAttentionConfig {
  int d_model = 0;
  int n_head = 0;
  int n_kv_head = 0;
  int max_seq_len = 2048;
  double dropout_rate = 0.0;
  double rope_percentage = 1.0;
  double rope_theta = 10000.0;
  bool use_bias = false;
  std::string_view kernel_initializer = "glorot_uniform";
  std::string_view bias_initializer = "zeros";
  bool causal = false;
  bool use_rope = true;
  bool qkv_bias = false;
  bool proj_bias = false;

  static constexpr std::string_view type_name = "group_query";
  static constexpr std::string_view class_name = "GroupedQueryAttention";
  static constexpr std::string_view description =
      "Grouped-query attention: query heads share fewer key/value heads; rotary position embedding "
      "on queries and keys.";
  static constexpr std::string_view use_case =
      "Language models whose key/value cache size limits inference.";
  static constexpr std::array<std::string_view, 2> training_only{"kernel_regularizer",
                                                                 "bias_regularizer"};

  static constexpr auto fields() {
    using C = GroupedQueryAttentionConfig;
    return std::array{
        Field<C>{.name = "d_model", .member = member<&C::d_model>, .required = true, .example = "32",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Model width: input and output features, n_head x head width."},
        Field<C>{.name = "n_head", .member = member<&C::n_head>, .required = true, .example = "4",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Number of query heads; must divide d_model."},
        Field<C>{.name = "n_kv_head", .member = member<&C::n_kv_head>, .required = true, .example = "2",
                 .range = positive, .doc = "Number of key/value heads; must divide n_head (1: multi-query)."},
        Field<C>{.name = "max_seq_len", .member = member<&C::max_seq_len>, .range = positive,
                 .doc = "Longest sequence: rows of the RoPE tables."},
        Field<C>{.name = "dropout_rate", .member = member<&C::dropout_rate>, .wording = Wording::factory,
                 .range = unit_interval,
                 .doc = "Dropout on the attention probabilities (identity at inference)."},
        Field<C>{.name = "rope_percentage", .member = member<&C::rope_percentage>, .range = unit_half_open,
                 .doc = "Fraction of each head's features that rotate (rounded down to even)."},
        Field<C>{.name = "rope_theta", .member = member<&C::rope_theta>, .range = positive,
                 .doc = "Base of the RoPE frequencies theta^(-2i/r)."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>,
                 .doc = "Add biases to the four projections."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the four kernels."},
        Field<C>{.name = "bias_initializer", .member = member<&C::bias_initializer>,
                 .choices = initializer_names,
                 .doc = "Initializer of the four biases."},
        Field<C>{.name = "causal", .member = member<&C::causal>,
                 .doc = "Apply a causal mask (query i sees keys j <= i). Beyond the reference."},
        Field<C>{.name = "use_rope", .member = member<&C::use_rope>,
                 .doc = "Rotate queries and keys (false: no RoPE and no RoPE tables). Beyond the reference."},
        Field<C>{.name = "qkv_bias", .member = member<&C::qkv_bias>,
                 .doc = "Biases on the q, k and v projections even when use_bias is false (Qwen2-style). "
                        "Beyond the reference (timm's name)."},
        Field<C>{.name = "proj_bias", .member = member<&C::proj_bias>,
                 .doc = "A bias on the output projection even when use_bias is false. Beyond the reference "
                        "(timm's name)."},
    };
  }

  void check(Problems& p) const {
    if (n_head > 0 && d_model % n_head != 0)
      p.push_back({"n_head", fmt::format("d_model ({}) must be divisible by n_head ({})", d_model, n_head)});
    if (n_kv_head > 0 && n_head % n_kv_head != 0)
      p.push_back({"n_kv_head", fmt::format("n_head ({}) must be divisible by n_kv_head ({})", n_head,
                                            n_kv_head)});
  }

  [[nodiscard]] int head_dim() const noexcept { return n_head > 0 ? d_model / n_head : 0; }
  [[nodiscard]] int groups() const noexcept { return n_kv_head > 0 ? n_head / n_kv_head : 0; }
  /// The rotated width r of each head (0 without RoPE).
  [[nodiscard]] Index rotary_dim() const noexcept {
    return use_rope ? ops::rope_rotary_dim(head_dim(), rope_percentage) : 0;
  }
  /// Whether the q/k/v projections, and the output projection, have biases.
  [[nodiscard]] bool has_qkv_bias() const noexcept { return use_bias || qkv_bias; }
  [[nodiscard]] bool has_proj_bias() const noexcept { return use_bias || proj_bias; }
};
static_assert(config_table_is_sound<GroupedQueryAttentionConfig>());

template <class T = float>
class GroupedQueryAttention : public LayerBase<GroupedQueryAttention<T>, GroupedQueryAttentionConfig, T> {
  using Base = LayerBase<GroupedQueryAttention, GroupedQueryAttentionConfig, T>;
  friend Base;

public:
  using Config = GroupedQueryAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{3};

  explicit GroupedQueryAttention(const Config& config, std::uint64_t seed = 0) : Base(config) {
    if (config_.use_rope) ops::rope_log_construction(config_.head_dim(), config_.rope_percentage);
    log(LogLevel::info, "GroupedQueryAttention initialized: d_model={}, n_head={}, n_kv_head={}, groups={}",
        config_.d_model, config_.n_head, config_.n_kv_head, config_.groups());
    this->reset_parameters(seed);
    if (config_.use_rope) ops::rope_log_tables(config_.rotary_dim());
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return {x[0], x[1], config_.d_model};
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 5, c.d_model}}; }

  /// y `[B, T, d_model]` of x `[B, T, d_model]`; `masks` per ops/masks.hpp (S = T).
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(x), masks, nullptr).output;
  }
  /// The same with RoPE positions `position_offset .. position_offset + T − 1` (the reference starts
  /// at 0). ShapeError when they exceed max_seq_len or the offset is negative.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const AttentionMasks<T>& masks, Index position_offset) const {
    return run(view_of<T, 3>(x), masks, nullptr, position_offset).output;
  }
  /// The output and the attention weights `[B, n_head, T, T]`.
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
    return KVCache<T>(Config::type_name, batch, capacity, 1, config_.n_kv_head, config_.head_dim(), storage);
  }
  /// Appends the T tokens of x `[B, T, d_model]` to the active items of `cache` (all by default) at
  /// RoPE positions continuing from each item's length and returns their outputs `[B, T, d_model]`,
  /// causal over each item's cached and new tokens; rows of inactive items are zeros. ShapeError
  /// (cache unchanged) per kv_cache.hpp, and when a position would reach max_seq_len.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, KVCache<T>& cache, const ActiveItems& active = {}) const {
    return run_cached(view_of<T, 3>(x), cache, active);
  }

private:
  using Base::config_, Base::weights_;

  [[nodiscard]] ops::RopeTablesView<T> rope_tables() const {
    const Weight<T>& cos = this->weight(slots_.cos);
    return {cos.data.data(), this->weight(slots_.sin).data.data(), cos.shape[0], cos.shape[1],
            config_.rotary_dim()};
  }

  Tensor<T, 3> run_cached(ConstTensorView<T, 3> x, KVCache<T>& cache, const ActiveItems& active) const {
    check_shape(Config::type_name, "input", shape_of(x), {-1, -1, config_.d_model}, "([batch, seq, d_model])");
    this->check_weights();
    const Index B = x.dimension(0), L = x.dimension(1), D = config_.d_model;
    const Index H = config_.n_head, Hkv = config_.n_kv_head, d = config_.head_dim();
    const Index qw = H * d, kvw = Hkv * d;
    cache.check_step(Config::type_name, 1, Hkv, d, B, L, active, config_.max_seq_len);
    Tensor<T, 3> y(B, L, D);
    y.setZero();
    if (L == 0) return y;
    ScratchFrame scratch;
    T* q = scratch.get<T>(B * L * qw);
    T* k = scratch.get<T>(B * L * kvw);
    T* v = scratch.get<T>(B * L * kvw);
    T* ctx = scratch.get<T>(B * L * D);
    std::fill_n(ctx, B * L * D, T(0));
    ops::dense(x.data(), B * L, this->weight(slots_.wq), this->optional_weight(slots_.bq), q);
    ops::dense(x.data(), B * L, this->weight(slots_.wk), this->optional_weight(slots_.bk), k);
    ops::dense(x.data(), B * L, this->weight(slots_.wv), this->optional_weight(slots_.bv), v);
    std::vector<Index> lengths(cache.lengths().begin(), cache.lengths().end());
    for (Index b = 0; b < B; ++b) {
      if (!active[b]) continue;
      const Index pos = lengths[static_cast<std::size_t>(b)];
      if (config_.use_rope) {  // positions continue from the item's cached length
        ops::apply_rope(ops::heads_out<T>(q + b * L * qw, 1, L, H, d, qw), rope_tables(), pos);
        ops::apply_rope(ops::heads_out<T>(k + b * L * kvw, 1, L, Hkv, d, kvw), rope_tables(), pos);
      }
      cache.write(0, b, k + b * L * kvw, v + b * L * kvw, kvw, L);
      lengths[static_cast<std::size_t>(b)] += L;
    }
    cache.visit([&](const auto* base) {
      ops::cache_attention<T>(q, qw, base + cache.offset(0, 0, 0, 0, 0), base + cache.offset(0, 1, 0, 0, 0), B, Hkv,
                              cache.capacity(), d, H, L, lengths.data(), active,
                              static_cast<T>(1.0 / std::sqrt(static_cast<double>(d))), ctx, D);
    });
    cache.commit(L, active);
    ops::dense(ctx, B * L, this->weight(slots_.wo), this->optional_weight(slots_.bo), y.data());
    for (Index b = 0; b < B; ++b)
      if (!active[b]) std::fill_n(y.data() + b * L * D, L * D, T(0));
    return y;
  }

  struct Slots {
    WeightSlot wq, bq, wk, bk, wv, bv, wo, bo, cos, sin;
  };

  /// Every trainable weight drawn from `seed` with the configured initializers, then the RoPE tables
  /// (when RoPE is on) rebuilt; records their slots only once nothing can throw.
  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index D = config_.d_model, d = config_.head_dim();
    const Index q_width = config_.n_head * d, kv_width = config_.n_kv_head * d;
    Slots s;
    auto dense = [&](std::string_view name, Index out, bool bias, WeightSlot& kernel, WeightSlot& b) {
      kernel = w.add(fmt::format("{}/kernel", name), {D, out}, config_.kernel_initializer, seed);
      if (bias) b = w.add(fmt::format("{}/bias", name), {out}, config_.bias_initializer, seed);
    };
    dense("w_q", q_width, config_.has_qkv_bias(), s.wq, s.bq);
    dense("w_k", kv_width, config_.has_qkv_bias(), s.wk, s.bk);
    dense("w_v", kv_width, config_.has_qkv_bias(), s.wv, s.bv);
    dense("w_o", D, config_.has_proj_bias(), s.wo, s.bo);
    if (config_.use_rope) {
      const Index r = config_.rotary_dim();
      const Index cols = ops::rope_table_columns(r);
      s.cos = w.add("rope/cos_cached", {config_.max_seq_len, cols}, "zeros", seed, false);
      s.sin = w.add("rope/sin_cached", {config_.max_seq_len, cols}, "zeros", seed, false);
      ops::rope_fill_tables(r, config_.rope_theta, config_.max_seq_len, w[s.cos.index].data.data(),
                            w[s.sin.index].data.data());
    }
    slots_ = s;
  }

  void check_input(const Shape& x, Index position_offset = 0) const {
    check_shape(Config::type_name, "input", x, {-1, -1, config_.d_model}, "([batch, seq, d_model])");
    if (position_offset < 0 || position_offset > config_.max_seq_len)
      throw ShapeError(fmt::format("{}: position_offset must be in [0, max_seq_len = {}], got {}",
                                   Config::type_name, config_.max_seq_len, position_offset));
    if (position_offset > 0 && x[1] > config_.max_seq_len - position_offset)
      throw ShapeError(fmt::format("{}: positions [{}, {}) exceed max_seq_len ({})", Config::type_name,
                                   position_offset, position_offset + x[1], config_.max_seq_len));
    if (x[1] > config_.max_seq_len)
      throw ShapeError(fmt::format("{}: Input sequence length ({}) exceeds max_seq_len ({}). Please "
                                   "increase max_seq_len or truncate the input.",
                                   Config::type_name, x[1], config_.max_seq_len));
  }

  AttentionResult<T> run(ConstTensorView<T, 3> x, const AttentionMasks<T>& masks, Tensor<T, 4>* weights,
                         Index position_offset = 0) const {
    check_input(shape_of(x), position_offset);
    this->check_weights();
    const Index B = x.dimension(0), L = x.dimension(1), D = config_.d_model;
    const Index H = config_.n_head, Hkv = config_.n_kv_head, d = config_.head_dim();
    const Index qw = H * d, kvw = Hkv * d;
    BoundMasks<T> bound = bind_masks(masks, B, H, L, L, Config::type_name);
    bound.core.causal = bound.core.causal || config_.causal;

    ScratchFrame scratch;  // q, k, v and the context: reused across calls (core/scratch.hpp)
    T* q = scratch.get<T>(B * L * qw);
    T* k = scratch.get<T>(B * L * kvw);
    T* v = scratch.get<T>(B * L * kvw);
    T* ctx = scratch.get<T>(B * L * D);
    ops::dense(x.data(), B * L, this->weight(slots_.wq), this->optional_weight(slots_.bq), q);
    ops::dense(x.data(), B * L, this->weight(slots_.wk), this->optional_weight(slots_.bk), k);
    ops::dense(x.data(), B * L, this->weight(slots_.wv), this->optional_weight(slots_.bv), v);

    if (config_.use_rope) {
      const ops::RopeTablesView<T> tables = rope_tables();
      ops::apply_rope(ops::heads_out<T>(q, B, L, H, d, qw), tables, position_offset);
      ops::apply_rope(ops::heads_out<T>(k, B, L, Hkv, d, kvw), tables, position_offset);
    }

    if (weights) *weights = Tensor<T, 4>(B, H, L, L);
    ops::attention(ops::heads_of<T>(q, B, L, H, d, qw),    // query heads
                   ops::heads_of<T>(k, B, L, Hkv, d, kvw),  // kv heads: the core maps h -> h / g
                   ops::heads_of<T>(v, B, L, Hkv, d, kvw),
                   ops::heads_out<T>(ctx, B, L, H, d, D),
                   static_cast<T>(1.0 / std::sqrt(static_cast<double>(d))), bound.core,
                   weights ? weights->data() : nullptr);
    AttentionResult<T> r;
    r.output = Tensor<T, 3>(B, L, D);
    ops::dense(ctx, B * L, this->weight(slots_.wo), this->optional_weight(slots_.bo), r.output.data());
    return r;
  }

  Slots slots_;
};

}  // namespace attn
