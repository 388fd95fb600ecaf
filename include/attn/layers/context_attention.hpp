/// \file
/// `context_attention` — ContextAttention: a very small attention network in which an embedding
/// table holds, per context id, attention logits over the input's features; the softmax of a
/// context's row is the attention, the input times the attention (element-wise) is the glimpse, and a
/// dense layer maps the glimpse to the output (the content-based "glimpse" of Mnih et al., 2014,
/// "Recurrent Models of Visual Attention", in the form of the project's seed notes on attention).
/// Not part of the reference module: names follow PyTorch (nn.Embedding, nn.Linear) in Keras layout.
///
/// Shapes: x `[B, input_dim]` or `[B, T, input_dim]`, context ids `[B]` (integers in [0, num_contexts));
/// output `[B, output_dim]` or `[B, T, output_dim]`; the attention `[B, input_dim]` (the same for
/// every position of a sequence):
///   a[b] = softmax(context_embedding[id_b]);  g = x[b] ⊙ a[b];  y = g·W_out + b_out
/// Through the factory's forward door (which carries tensors of T only) the context is given as a row
/// `[B, num_contexts]` of weights c: logits = c·context_embedding, so a one-hot row is the id lookup
/// (nn.Embedding(id) = one_hot(id)·E) and other rows mix contexts' logits.
///
/// Weights (in this order): `context_embedding [num_contexts, input_dim]` (glorot_uniform),
/// `output/kernel [input_dim, output_dim]` (glorot_uniform), `output/bias [output_dim]` (zeros) when
/// `use_bias`.
///
/// Errors: ConfigError for a non-positive size (`num_contexts must be positive, got 0`); ShapeError
/// naming the argument for an input that is not `[B, input_dim]` / `[B, T, input_dim]`, ids whose count
/// is not B, an id outside [0, num_contexts) (`context_attention: context id 7 (item 1) is out of range
/// [0, 5)`), and a context row that is not `[B, num_contexts]`.
///
/// No attention mask: the attention is over features, not keys. The softmax subtracts the row max, so
/// logits of any magnitude give finite weights.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/linear.hpp"

namespace attn {

struct ContextAttentionConfig {
  int num_contexts = 0;
  int input_dim = 0;
  int output_dim = 0;
  bool use_bias = true;

  static constexpr std::string_view type_name = "context_attention";
  static constexpr std::string_view class_name = "ContextAttention";
  static constexpr std::string_view description =
      "Per-context attention over input features from an embedding table, then a dense layer on the glimpse.";
  static constexpr std::string_view use_case =
      "Small models whose feature weighting depends on a discrete context (task, user, domain id).";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = ContextAttentionConfig;
    return std::array{
        Field<C>{.name = "num_contexts", .member = member<&C::num_contexts>, .required = true, .example = "3",
                 .range = positive, .doc = "Number of context ids (rows of the embedding table)."},
        Field<C>{.name = "input_dim", .member = member<&C::input_dim>, .required = true, .example = "6",
                 .range = positive, .doc = "Features of the input, attended over."},
        Field<C>{.name = "output_dim", .member = member<&C::output_dim>, .required = true, .example = "4",
                 .range = positive, .doc = "Features of the output."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>, .doc = "A bias on the output layer."},
    };
  }
  void check(Problems& /*p*/) const {}
};
static_assert(config_table_is_sound<ContextAttentionConfig>());

/// The output and the attention `[B, input_dim]` of ContextAttention.
template <class T, int R>
struct ContextAttentionResult {
  Tensor<T, R> output;
  Tensor<T, 2> attention;
};

template <class T = float>
class ContextAttention : public LayerBase<ContextAttention<T>, ContextAttentionConfig, T> {
  using Base = LayerBase<ContextAttention, ContextAttentionConfig, T>;
  friend Base;

public:
  using Config = ContextAttentionConfig;
  using Scalar = T;
  /// The factory's door: x `[B, input_dim]` and context weights `[B, num_contexts]`.
  static constexpr std::array<int, 2> input_ranks{2, 2};

  explicit ContextAttention(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x, const Shape& context) const {
    check_x(x);
    check_shape(Config::type_name, "context", context, {x[0], config_.num_contexts},
                "([batch, num_contexts], weights of the contexts)");
    Shape out = x;
    out.back() = config_.output_dim;
    return out;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    return {{2, c.input_dim}, {2, c.num_contexts}};
  }

  /// y `[B, output_dim]` (or `[B, T, output_dim]`) of x `[B, input_dim]` (or `[B, T, input_dim]`) and
  /// one context id per item.
  template <class X>
    requires(TensorOf<X, T, 2> || TensorOf<X, T, 3>)
  [[nodiscard]] auto forward(const X& x, std::span<const Index> ids) const {
    return forward_with_attention(x, ids).output;
  }
  /// The output and the attention `[B, input_dim]`.
  template <class X>
    requires(TensorOf<X, T, 2> || TensorOf<X, T, 3>)
  [[nodiscard]] auto forward_with_attention(const X& x, std::span<const Index> ids) const {
    constexpr int R = std::remove_cvref_t<X>::NumIndices;
    const auto v = view_of<T, R>(x);
    check_x(shape_of(v));
    this->check_weights();
    const Index B = v.dimension(0);
    if (static_cast<Index>(ids.size()) != B)
      throw ShapeError(fmt::format("{}: context ids must have {} entries (one per batch item), got {}",
                                   Config::type_name, B, ids.size()));
    for (Index b = 0; b < B; ++b)
      if (ids[static_cast<std::size_t>(b)] < 0 || ids[static_cast<std::size_t>(b)] >= config_.num_contexts)
        throw ShapeError(fmt::format("{}: context id {} (item {}) is out of range [0, {})", Config::type_name,
                                     ids[static_cast<std::size_t>(b)], b, config_.num_contexts));
    const Index D = config_.input_dim;
    Tensor<T, 2> logits(B, D);
    const T* e = this->weight(slots_.embedding).data.data();
    for (Index b = 0; b < B; ++b)
      std::copy(e + ids[static_cast<std::size_t>(b)] * D, e + (ids[static_cast<std::size_t>(b)] + 1) * D,
                logits.data() + b * D);
    return finish<R>(v, std::move(logits));
  }

  /// The factory's door: x `[B, input_dim]`, context weights `[B, num_contexts]` (one-hot: the ids).
  template <class X, class C>
    requires TensorOf<X, T, 2> && TensorOf<C, T, 2>
  [[nodiscard]] Tensor<T, 2> forward(const X& x, const C& context) const {
    return forward_with_attention(x, context).output;
  }
  template <class X, class C>
    requires TensorOf<X, T, 2> && TensorOf<C, T, 2>
  [[nodiscard]] ContextAttentionResult<T, 2> forward_with_attention(const X& x, const C& context) const {
    const auto v = view_of<T, 2>(x);
    const auto c = view_of<T, 2>(context);
    (void)output_shape(shape_of(v), shape_of(c));
    this->check_weights();
    const Index B = v.dimension(0);
    Tensor<T, 2> logits(B, config_.input_dim);
    const Index K = config_.num_contexts, D = config_.input_dim;
    ops::gemm<T>(B, D, K, c.data(), K, this->weight(slots_.embedding).data.data(), D, /*b_trans=*/false,
                 logits.data(), D);
    return finish<2>(v, std::move(logits));
  }

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot embedding, kernel, bias;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    Slots s;
    s.embedding = w.add("context_embedding", {config_.num_contexts, config_.input_dim}, "glorot_uniform", seed);
    s.kernel = w.add("output/kernel", {config_.input_dim, config_.output_dim}, "glorot_uniform", seed);
    if (config_.use_bias) s.bias = w.add("output/bias", {config_.output_dim}, "zeros", seed);
    slots_ = s;
  }

  void check_x(const Shape& x) const {
    if (x.size() == 2)
      check_shape(Config::type_name, "input", x, {-1, config_.input_dim}, "([batch, input_dim])");
    else
      check_shape(Config::type_name, "input", x, {-1, -1, config_.input_dim}, "([batch, seq, input_dim])");
  }

  /// Softmax of the logits rows in place, the glimpse and the output layer.
  template <int R>
  ContextAttentionResult<T, R> finish(const ConstTensorView<T, R>& x, Tensor<T, 2> logits) const {
    const Index B = x.dimension(0), D = config_.input_dim, O = config_.output_dim;
    const Index per = R == 3 ? x.dimension(1) : 1;
    for (Index b = 0; b < B; ++b) {
      T* a = logits.data() + b * D;
      const T mx = *std::max_element(a, a + D);
      T sum = 0;
      for (Index i = 0; i < D; ++i) sum += (a[i] = std::exp(a[i] - mx));
      for (Index i = 0; i < D; ++i) a[i] /= sum;
    }
    std::vector<T> glimpse(static_cast<std::size_t>(B * per * D));
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < per; ++t)
        for (Index i = 0; i < D; ++i)
          glimpse[static_cast<std::size_t>((b * per + t) * D + i)] = x.data()[(b * per + t) * D + i] * logits(b, i);
    ContextAttentionResult<T, R> r;
    auto dims = x.dimensions();
    dims[R - 1] = O;
    r.output = Tensor<T, R>(dims);
    ops::dense(glimpse.data(), B * per, this->weight(slots_.kernel), this->optional_weight(slots_.bias),
               r.output.data());
    r.attention = std::move(logits);
    return r;
  }

  Slots slots_;
};

}  // namespace attn
