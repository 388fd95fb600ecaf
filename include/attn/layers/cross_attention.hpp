/// \file
/// `cross_attention` — queries from one sequence attend to keys and values of another (encoder-
/// decoder attention; Vaswani et al., 2017). Beyond the reference registry.
///
/// Shapes: query input x `[B, T, embed_dim]`, context c `[B, S, context_dim]` (context_dim defaults
/// to embed_dim); output `[B, T, embed_dim]`. Masks: `AttentionMasks<T>` (ops/masks.hpp: key padding
/// `[B, S]` and key lengths `[B]` of the context, attention mask `[T, S]` / `[B, T, S]` /
/// `[B, 1|num_heads, T, S]`, causal, additive bias); the config's `causal` masks, on every call, the
/// keys after each query's position, bottom-right aligned (query i sees key j iff j <= i + S - T).
/// Optional attention weights `[B, num_heads, T, S]`.
///
/// Weights (Keras layout `[in, out]`): `query/kernel [embed_dim, embed_dim]`, `query/bias`,
/// `key/kernel [context_dim, embed_dim]`, `key/bias`, `value/kernel [context_dim, embed_dim]`,
/// `value/bias` (biases when `use_bias`), then `output/kernel`, `output/bias` when
/// `output_projection`. Forward: Q = x·Wq + bq, K = c·Wk + bk, V = c·Wv + bv;
/// y = merge(softmax(Q Kᵀ·scale) V) (·Wo + bo).
///
/// Deliberate difference from the seed: the seed's CrossAttention does not scale the logits; the
/// Transformer's attention scales by 1/sqrt(head_dim), which is the default here. `scale = 1.0`
/// reproduces the seed. A query row with every key masked yields zeros.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "attn/core/init.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/masks.hpp"
#include "attn/layers/detail/projected.hpp"

namespace attn {

struct CrossAttentionConfig {
  int embed_dim = 0;
  std::optional<int> context_dim{};
  int num_heads = 1;
  bool use_bias = true;
  bool output_projection = false;
  std::optional<double> scale{};
  std::string_view kernel_initializer = "glorot_uniform";
  std::string_view bias_initializer = "zeros";
  bool causal = false;

  static constexpr std::string_view type_name = "cross_attention";
  static constexpr std::string_view class_name = "CrossAttention";
  static constexpr std::string_view description =
      "Scaled dot-product attention from a query sequence to a separate context sequence.";
  static constexpr std::string_view use_case =
      "Encoder-decoder attention and conditioning one sequence on another; torch.nn.MultiheadAttention "
      "cross-attention with output_projection.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = CrossAttentionConfig;
    return std::array{
        Field<C>{.name = "embed_dim", .member = member<&C::embed_dim>, .required = true, .example = "12",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Width of the query input, of Q, K, V and of the output."},
        Field<C>{.name = "context_dim", .member = member<&C::context_dim>, .range = positive,
                 .doc = "Width of the context input (null: embed_dim)."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive,
                 .doc = "Number of heads; must divide embed_dim."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>, .doc = "Biases on the projections."},
        Field<C>{.name = "output_projection", .member = member<&C::output_projection>,
                 .doc = "Apply an output projection after merging the heads."},
        Field<C>{.name = "scale", .member = member<&C::scale>, .range = positive,
                 .doc = "Logit scale (null: 1/sqrt(head_dim); 1.0 reproduces the unscaled seed)."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names,
                 .doc = "Initializer of the kernels."},
        Field<C>{.name = "bias_initializer", .member = member<&C::bias_initializer>,
                 .choices = initializer_names,
                 .doc = "Initializer of the biases."},
        Field<C>{.name = "causal", .member = member<&C::causal>,
                 .doc = "Mask future keys, bottom-right aligned (query i sees keys j <= i + S - T; with key lengths, S is the item's length)."},
    };
  }
  void check(Problems& p) const {
    if (num_heads > 0 && embed_dim % num_heads != 0)
      p.push_back({"num_heads", fmt::format("embed_dim ({}) must be divisible by num_heads ({})", embed_dim,
                                            num_heads)});
  }
  [[nodiscard]] int ctx_dim() const noexcept { return context_dim.value_or(embed_dim); }
};
static_assert(config_table_is_sound<CrossAttentionConfig>());

template <class T = float>
class CrossAttention : public LayerBase<CrossAttention<T>, CrossAttentionConfig, T> {
  using Base = LayerBase<CrossAttention, CrossAttentionConfig, T>;
  friend Base;

public:
  using Config = CrossAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 2> input_ranks{3, 3};

  explicit CrossAttention(const Config& config, std::uint64_t seed = 0)
      : Base(config), proj_(projected_of(config_)) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x, const Shape& context) const {
    check_inputs(x, context);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    return {{2, 4, c.embed_dim}, {2, 6, c.ctx_dim()}};
  }

  /// y `[B, T, embed_dim]` of x `[B, T, embed_dim]` and context `[B, S, context_dim]`; `masks` per
  /// ops/masks.hpp (key padding and key lengths refer to the context).
  template <class X, class Ctx>
    requires TensorOf<X, T, 3> && TensorOf<Ctx, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const Ctx& context, const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(x), view_of<T, 3>(context), masks, false).output;
  }
  /// The output and the attention weights `[B, num_heads, T, S]`.
  template <class X, class Ctx>
    requires TensorOf<X, T, 3> && TensorOf<Ctx, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const X& x, const Ctx& context,
                                                        const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(x), view_of<T, 3>(context), masks, true);
  }

private:
  using Base::config_, Base::weights_;

  static detail::Projected projected_of(const Config& c) {
    const Index e = c.embed_dim;
    return {e,
            c.ctx_dim(),
            e,
            c.num_heads,
            c.use_bias,
            c.output_projection,
            c.scale.value_or(1.0 / std::sqrt(static_cast<double>(e / c.num_heads)))};
  }
  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    slots_ = proj_.add_weights(w, config_.kernel_initializer, config_.bias_initializer, seed);
  }
  void check_inputs(const Shape& x, const Shape& c) const {
    check_shape(Config::type_name, "query input", x, {-1, -1, config_.embed_dim}, "([batch, T, embed_dim])");
    check_shape(Config::type_name, "context", c, {x.at(0), -1, config_.ctx_dim()},
                "([batch, S, context_dim] with the query's batch)");
  }
  AttentionResult<T> run(ConstTensorView<T, 3> x, ConstTensorView<T, 3> c, const AttentionMasks<T>& masks,
                         bool want) const {
    check_inputs(shape_of(x), shape_of(c));
    this->check_weights();
    BoundMasks<T> bound =
        bind_masks(masks, x.dimension(0), proj_.num_heads, x.dimension(1), c.dimension(1), Config::type_name);
    bound.core.causal = bound.core.causal || config_.causal;
    return proj_.run(weights_, slots_, x, c, bound.core, want);
  }

  detail::Projected proj_;
  detail::Projected::Slots slots_;
};

}  // namespace attn
