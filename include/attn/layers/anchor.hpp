/// \file
/// `anchor` — multi-head self-attention through anchor tokens: the first A tokens (anchors) attend
/// among themselves, every other token attends to the anchors only, so the cost is O(N·A) instead of
/// O(N²) (hierarchical attention with anchor tokens; the reference's AnchorAttention).
///
/// Shapes: input x `[B, N, dim]`; output `[B, N, dim]`. The number of anchors A comes from the call
/// (`forward(x, num_anchor_tokens)`) or, when the call gives none, from the config's
/// `num_anchor_tokens` (default null: standard mode, every token attends to every token). Through the
/// factory (AnyLayer) the config's value applies. No masks; no attention weights (as the reference).
///
/// Parameters (the reference's, defaults as there): `dim` (required), `num_heads` = 8 (must divide
/// dim), `dropout` = 0.0 in [0, 1], `use_bias` = true, `kernel_initializer` = glorot_uniform,
/// `bias_initializer` = zeros; `kernel_regularizer`, `bias_regularizer` are kept and have no effect at
/// inference. Beyond the reference: `num_anchor_tokens` (null or >= 1), the reference's call argument
/// as a config default. Errors: ConfigError with the reference's messages (`Parameter 'dim' must be
/// positive, got 0`, `dim (10) must be divisible by num_heads (3)`), `num_anchor_tokens must be
/// positive, got 0` (config) and `anchor: num_anchor_tokens must be positive, got 0` (call);
/// ShapeError naming the layer for an input whose last axis is not dim, and for A > N.
///
/// Weights (Keras layout `[in, out]`, in this order; all exist whichever mode runs):
/// `qkv/kernel [dim, 3·dim]` (columns Q, K, V blocks, head i owning columns [i·d, (i+1)·d) of each),
/// `qkv/bias [3·dim]`, `q_query/kernel [dim, dim]`, `q_query/bias [dim]`, `proj/kernel [dim, dim]`,
/// `proj/bias [dim]` (biases when `use_bias`). With d = dim / num_heads and scale = 1/sqrt(d):
///   standard mode (A null or A == N):  [Q; K; V] = split(x·Wqkv + bqkv);  P = softmax(Q Kᵀ·scale)
///   anchor mode (1 <= A < N):  [Qa; Ka; Va] = split(x[:, :A]·Wqkv + bqkv),  Qq = split(x[:, A:]·Wqq + bqq),
///                              P = softmax([Qa; Qq] Kaᵀ·scale)  (B, heads, N, A)
///   y = merge(P V)·Wproj + bproj.
/// Non-anchor tokens produce no keys or values: changing them never changes rows 0..A−1.
///
/// Differences from the reference (deliberate):
/// - `num_anchor_tokens` < 1 is an error (the reference softmaxes over an empty axis for 0, giving
///   NaN, and slices from the end for negative values); A > N is a ShapeError (the reference silently
///   falls back to standard mode). A == N is standard mode, as in the reference (the same math).
/// - Dropout is the identity (inference library); `dropout` is validated and kept.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
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
#include "attn/ops/sdpa.hpp"

namespace attn {

struct AnchorAttentionConfig {
  int dim = 0;
  int num_heads = 8;
  double dropout = 0.0;
  bool use_bias = true;
  std::string_view kernel_initializer = "glorot_uniform";
  std::string_view bias_initializer = "zeros";
  std::optional<int> num_anchor_tokens{};

  static constexpr std::string_view type_name = "anchor";
  static constexpr std::string_view class_name = "AnchorAttention";
  static constexpr std::string_view description =
      "Hierarchical self-attention through anchor tokens: anchors attend among themselves, the other "
      "tokens attend to the anchors only.";
  static constexpr std::string_view use_case =
      "Long sequences where full self-attention costs too much memory or time.";
  static constexpr std::array<std::string_view, 2> training_only{"kernel_regularizer", "bias_regularizer"};

  static constexpr auto fields() {
    using C = AnchorAttentionConfig;
    return std::array{
        Field<C>{.name = "dim", .member = member<&C::dim>, .required = true, .example = "16",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Width of the input, of Q, K, V and of the output."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive, .doc = "Number of attention heads; must divide dim."},
        Field<C>{.name = "dropout", .member = member<&C::dropout>, .wording = Wording::factory,
                 .range = unit_interval, .doc = "Dropout on the attention probabilities (identity at inference)."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>, .doc = "Biases on the three projections."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the kernels."},
        Field<C>{.name = "bias_initializer", .member = member<&C::bias_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the biases."},
        Field<C>{.name = "num_anchor_tokens", .member = member<&C::num_anchor_tokens>, .range = positive,
                 .doc = "Anchors when a call gives none (null: standard self-attention). The reference's call "
                        "argument as a config default; beyond the reference."},
    };
  }

  void check(Problems& p) const {
    if (num_heads > 0 && dim % num_heads != 0)
      p.push_back({"num_heads", fmt::format("dim ({}) must be divisible by num_heads ({})", dim, num_heads)});
  }
};
static_assert(config_table_is_sound<AnchorAttentionConfig>());

template <class T = float>
class AnchorAttention : public LayerBase<AnchorAttention<T>, AnchorAttentionConfig, T> {
  using Base = LayerBase<AnchorAttention, AnchorAttentionConfig, T>;
  friend Base;

public:
  using Config = AnchorAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{3};

  explicit AnchorAttention(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    return {{2, std::max(5, c.num_anchor_tokens.value_or(0) + 2), c.dim}};
  }

  /// y `[B, N, dim]` of x `[B, N, dim]` with the config's num_anchor_tokens.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x) const {
    return run(view_of<T, 3>(x), config_.num_anchor_tokens);
  }
  /// y `[B, N, dim]` of x `[B, N, dim]` with the first `num_anchor_tokens` tokens as anchors
  /// (1 <= num_anchor_tokens <= N).
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, int num_anchor_tokens) const {
    if (num_anchor_tokens < 1)
      throw ConfigError(fmt::format("anchor: num_anchor_tokens must be positive, got {}", num_anchor_tokens),
                        std::string(Config::type_name), "num_anchor_tokens");
    return run(view_of<T, 3>(x), num_anchor_tokens);
  }

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot qkv_kernel, qkv_bias, qq_kernel, qq_bias, proj_kernel, proj_bias;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index e = config_.dim;
    const auto& ki = config_.kernel_initializer;
    const auto& bi = config_.bias_initializer;
    Slots s;
    s.qkv_kernel = w.add("qkv/kernel", {e, 3 * e}, ki, seed);
    if (config_.use_bias) s.qkv_bias = w.add("qkv/bias", {3 * e}, bi, seed);
    s.qq_kernel = w.add("q_query/kernel", {e, e}, ki, seed);
    if (config_.use_bias) s.qq_bias = w.add("q_query/bias", {e}, bi, seed);
    s.proj_kernel = w.add("proj/kernel", {e, e}, ki, seed);
    if (config_.use_bias) s.proj_bias = w.add("proj/bias", {e}, bi, seed);
    slots_ = s;
  }

  void check_input(const Shape& x) const {
    check_shape(Config::type_name, "input", x, {-1, -1, config_.dim}, "([batch, tokens, dim])");
  }

  Tensor<T, 3> run(ConstTensorView<T, 3> x, std::optional<int> anchors) const {
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), N = x.dimension(1), E = config_.dim, H = config_.num_heads, d = E / H;
    if (anchors && *anchors > N)
      throw ShapeError(fmt::format("anchor: num_anchor_tokens ({}) must not exceed the number of tokens ({}) of "
                                   "the input {}",
                                   *anchors, N, shape_str(shape_of(x))));
    Tensor<T, 3> y(B, N, E);
    if (B == 0 || N == 0) return y;
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
    const ops::AttentionMask<T> none{};
    ScratchFrame scratch;  // projections and the context: reused across calls (core/scratch.hpp)
    T* ctx = scratch.get<T>(B * N * E);
    const Weight<T>& wqkv = this->weight(slots_.qkv_kernel);
    const Weight<T>* bqkv = this->optional_weight(slots_.qkv_bias);
    if (!anchors || *anchors == N) {  // standard mode: fused QKV over every token
      T* qkv = scratch.get<T>(B * N * 3 * E);
      ops::dense(x.data(), B * N, wqkv, bqkv, qkv);
      ops::attention(ops::heads_of<T>(qkv, B, N, H, d, 3 * E), ops::heads_of<T>(qkv + E, B, N, H, d, 3 * E),
                     ops::heads_of<T>(qkv + 2 * E, B, N, H, d, 3 * E), ops::heads_out<T>(ctx, B, N, H, d, E), scale,
                     none);
    } else {  // anchor mode: anchors through the fused projection, the other tokens through q_query
      const Index A = *anchors, R = N - A;
      T* qkv = scratch.get<T>(B * A * 3 * E);
      T* qq = scratch.get<T>(B * R * E);
      for (Index b = 0; b < B; ++b) {
        ops::dense(x.data() + b * N * E, A, wqkv, bqkv, qkv + b * A * 3 * E);
        ops::dense(x.data() + (b * N + A) * E, R, this->weight(slots_.qq_kernel), this->optional_weight(slots_.qq_bias),
                   qq + b * R * E);
      }
      const auto k = ops::heads_of<T>(qkv + E, B, A, H, d, 3 * E);
      const auto v = ops::heads_of<T>(qkv + 2 * E, B, A, H, d, 3 * E);
      // rows [0, A) and [A, N) of the context, each [B, len, H, d] inside ctx [B, N, E]
      const ops::HeadsOut<T> out_a{ctx, B, A, H, d, N * E, E, d};
      const ops::HeadsOut<T> out_q{ctx + A * E, B, R, H, d, N * E, E, d};
      ops::attention(ops::heads_of<T>(qkv, B, A, H, d, 3 * E), k, v, out_a, scale, none);
      ops::attention(ops::heads_of<T>(qq, B, R, H, d, E), k, v, out_q, scale, none);
    }
    ops::dense(ctx, B * N, this->weight(slots_.proj_kernel), this->optional_weight(slots_.proj_bias), y.data());
    return y;
  }

  Slots slots_;
};

}  // namespace attn
