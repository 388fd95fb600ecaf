/// \file
/// `self_attention` — self-attention with separate query, key and value projections (the basic
/// layer of the seed notes; Vaswani et al., 2017). Beyond the reference registry.
///
/// Shapes: input x `[B, T, embed_dim]`; output `[B, T, embed_dim]`. Masks: `AttentionMasks<T>`
/// (ops/masks.hpp: key padding `[B, T]`, key lengths `[B]`, attention mask `[T, T]` / `[B, T, T]` /
/// `[B, 1|num_heads, T, T]`, causal, additive bias); the config's `causal` applies to every call.
/// Optional attention weights `[B, num_heads, T, T]`.
///
/// Weights (Keras layout `[in, out]`): `query/kernel`, `query/bias`, `key/kernel`, `key/bias`,
/// `value/kernel`, `value/bias` (each `[D, D]` / `[D]`; biases when `use_bias`), then
/// `output/kernel [D, D]`, `output/bias` when `output_projection`.
/// Forward: Q = x·Wq + bq, K = x·Wk + bk, V = x·Wv + bv; P = softmax(Q Kᵀ / sqrt(D / num_heads));
/// y = merge(P V) (·Wo + bo).
///
/// With num_heads = 1 and no output projection this is the seed's SelfAttention (scaled by
/// 1/sqrt(D)); with num_heads = h and output_projection it is torch.nn.MultiheadAttention's self
/// attention (see io/torch.hpp for the weight mapping). A query row with every key masked yields
/// zeros. The seed initialises like torch.nn.Linear; here kernels default to glorot_uniform.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
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

struct SelfAttentionConfig {
  int embed_dim = 0;
  int num_heads = 1;
  bool use_bias = true;
  bool output_projection = false;
  bool causal = false;
  std::string_view kernel_initializer = "glorot_uniform";
  std::string_view bias_initializer = "zeros";

  static constexpr std::string_view type_name = "self_attention";
  static constexpr std::string_view class_name = "SelfAttention";
  static constexpr std::string_view description =
      "Scaled dot-product self-attention with separate query, key and value projections.";
  static constexpr std::string_view use_case =
      "The basic building block: contextualising a sequence by itself; torch.nn.MultiheadAttention "
      "self-attention with output_projection.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = SelfAttentionConfig;
    return std::array{
        Field<C>{.name = "embed_dim", .member = member<&C::embed_dim>, .required = true, .example = "12",
                 .wording = Wording::factory, .range = positive,
                 .doc = "Width of the input, of Q, K, V and of the output."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive,
                 .doc = "Number of heads; must divide embed_dim."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>, .doc = "Biases on the projections."},
        Field<C>{.name = "output_projection", .member = member<&C::output_projection>,
                 .doc = "Apply an output projection after merging the heads."},
        Field<C>{.name = "causal", .member = member<&C::causal>,
                 .doc = "Mask future keys (query i sees keys j <= i)."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names,
                 .doc = "Initializer of the kernels."},
        Field<C>{.name = "bias_initializer", .member = member<&C::bias_initializer>,
                 .choices = initializer_names,
                 .doc = "Initializer of the biases."},
    };
  }
  void check(Problems& p) const {
    if (num_heads > 0 && embed_dim % num_heads != 0)
      p.push_back({"num_heads", fmt::format("embed_dim ({}) must be divisible by num_heads ({})", embed_dim,
                                            num_heads)});
  }
};
static_assert(config_table_is_sound<SelfAttentionConfig>());

template <class T = float>
class SelfAttention : public LayerBase<SelfAttention<T>, SelfAttentionConfig, T> {
  using Base = LayerBase<SelfAttention, SelfAttentionConfig, T>;
  friend Base;

public:
  using Config = SelfAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{3};

  explicit SelfAttention(const Config& config, std::uint64_t seed = 0)
      : Base(config), proj_(projected_of(config_)) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 5, c.embed_dim}}; }

  /// y `[B, T, embed_dim]` of x `[B, T, embed_dim]`; `masks` per ops/masks.hpp (S = T).
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(x), masks, false).output;
  }
  /// The output and the attention weights `[B, num_heads, T, T]`.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] AttentionResult<T> forward_with_weights(const X& x, const AttentionMasks<T>& masks = {}) const {
    return run(view_of<T, 3>(x), masks, true);
  }

private:
  using Base::config_, Base::weights_;

  static detail::Projected projected_of(const Config& c) {
    const Index e = c.embed_dim;
    return {e, e, e, c.num_heads, c.use_bias, c.output_projection,
            1.0 / std::sqrt(static_cast<double>(e / c.num_heads))};
  }
  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    slots_ = proj_.add_weights(w, config_.kernel_initializer, config_.bias_initializer, seed);
  }
  void check_input(const Shape& x) const {
    check_shape(Config::type_name, "input", x, {-1, -1, config_.embed_dim}, "([batch, seq, embed_dim])");
  }
  AttentionResult<T> run(ConstTensorView<T, 3> x, const AttentionMasks<T>& masks, bool want) const {
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), L = x.dimension(1);
    BoundMasks<T> bound = bind_masks(masks, B, proj_.num_heads, L, L, Config::type_name);
    bound.core.causal = bound.core.causal || config_.causal;
    return proj_.run(weights_, slots_, x, x, bound.core, want);
  }

  detail::Projected proj_;
  detail::Projected::Slots slots_;
};

}  // namespace attn
