/// \file
/// `shared_weights_cross` — SharedWeightsCrossAttention: cross-attention between two modalities that
/// share one fused QKV projection; each modality's tokens attend only to the other modality's tokens
/// (or to its anchor tokens). Multi-head attention as in Vaswani et al. (2017), "Attention Is All You
/// Need", with the weight sharing of multi-modal co-attention models.
///
/// Shapes: x `[B, N, dim]`, the two modalities concatenated along the tokens; output `[B, N, dim]` in
/// the same token order. `split_sizes` (the reference's required call argument):
/// - `[a, b]` (a + b = N): modality A = tokens [0, a), B = [a, N).
///     O_A = Att(Q_A, K_B, V_B),  O_B = Att(Q_B, K_A, V_A)
/// - `[aA, qA, aB, qB]` (sum N): A = tokens [0, aA + qA) (anchors first), B = the rest.
///     O_A = Att(Q_A, K_B anchors, V_B anchors),  O_B = Att(Q_B, K_A anchors, V_A anchors)
/// with Att(Q, K, V) = softmax(Q Kᵀ/√d) V per head (d = dim / num_heads, the attention core), then
/// y = merge([O_A ; O_B])·W_proj + b_proj. No mask, no attention weights (as the reference).
///
/// Weights (Keras layout, in this order): `qkv/kernel [dim, 3·dim]` (columns Q, K, V; head i owns
/// columns [i·d, (i+1)·d) of each block), `qkv/bias [3·dim]` and `proj/bias [dim]` when `use_bias`,
/// `proj/kernel [dim, dim]`.
///
/// Errors: ConfigError with the reference's messages (`Parameter 'dim' must be positive, got 0`, `dim
/// (10) must be divisible by num_heads (4)`); ShapeError, prefixed with the type, for an input that is
/// not `[B, N, dim]` (`Input must be 3D, got shape [2, 3]`, `Last dimension of input (7) must match dim
/// (8)`) and for bad split sizes (`split_sizes must have length 2 or 4`, `Sum of split_sizes (5) must
/// equal total sequence length (6)`, and a zero or negative size).
///
/// Differences from the reference (deliberate):
/// - A modality with no tokens, or no anchors in the four-way form, is a ShapeError naming the split
///   (the reference takes a softmax over an empty axis: NaN or an empty result); query counts of the
///   four-way form may be 0 (`[a, 0, b, 0]` equals `[a, b]`).
/// - `split_sizes` may also be given in the config (beyond the reference), so that a layer built from
///   JSON runs through the factory's forward door: `forward(x)` uses it, and the default `[]` means two
///   equal halves (N must be even). `forward(x, split_sizes)` takes them per call, as the reference.
/// - The reference batches the equal-size case into one product; here every case takes the general
///   path (the same math).
/// - Dropout is the identity (inference library); `dropout_rate` is validated and kept.
///   Regularizers are accepted and kept for the round trip, with no effect at inference.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
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
#include "attn/layers/detail/sequence_b.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

struct SharedWeightsCrossAttentionConfig {
  int dim = 0;
  int num_heads = 8;
  double dropout_rate = 0.0;
  bool use_bias = true;
  std::string_view kernel_initializer = "glorot_uniform";
  std::string_view bias_initializer = "zeros";
  IntList split_sizes{};

  static constexpr std::string_view type_name = "shared_weights_cross";
  static constexpr std::string_view class_name = "SharedWeightsCrossAttention";
  static constexpr std::string_view description =
      "Cross-attention between two modalities that share one QKV projection; each attends only to the other.";
  static constexpr std::string_view use_case = "Multi-modal models exchanging information between modalities.";
  static constexpr std::array<std::string_view, 2> training_only{"kernel_regularizer", "bias_regularizer"};

  static constexpr auto fields() {
    using C = SharedWeightsCrossAttentionConfig;
    return std::array{
        Field<C>{.name = "dim", .member = member<&C::dim>, .required = true, .example = "16",
                 .wording = Wording::factory, .range = positive, .doc = "Input and output features."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .wording = Wording::factory,
                 .range = positive, .doc = "Number of heads; must divide dim."},
        Field<C>{.name = "dropout_rate", .member = member<&C::dropout_rate>, .wording = Wording::factory,
                 .range = unit_interval, .doc = "Dropout on the attention probabilities (identity at inference)."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>, .doc = "Biases on both projections."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of both kernels."},
        Field<C>{.name = "bias_initializer", .member = member<&C::bias_initializer>,
                 .choices = initializer_names, .doc = "Initializer of both biases."},
        Field<C>{.name = "split_sizes", .member = member<&C::split_sizes>, .range = non_negative,
                 .length = {.min = 0, .max = 4},
                 .doc = "Split used by forward(x) without split sizes: [a, b] or [aA, qA, aB, qB]; [] = two "
                        "equal halves. Beyond the reference (there a call argument only)."},
    };
  }

  void check(Problems& p) const {
    if (num_heads > 0 && dim % num_heads != 0)
      p.push_back({"num_heads", fmt::format("dim ({}) must be divisible by num_heads ({})", dim, num_heads)});
    if (split_sizes.size() != 0 && split_sizes.size() != 2 && split_sizes.size() != 4)
      p.push_back({"split_sizes", "split_sizes must have length 2 or 4"});
    for (std::size_t i = 0; i < split_sizes.size(); ++i)
      if (split_sizes[i] == 0 && (split_sizes.size() == 2 || i % 2 == 0))
        p.push_back({"split_sizes", fmt::format("split_sizes[{}] must be positive (a modality or anchor set with no "
                                                "tokens leaves a softmax over no keys), got 0", i)});
  }
};
static_assert(config_table_is_sound<SharedWeightsCrossAttentionConfig>());

template <class T = float>
class SharedWeightsCrossAttention
    : public LayerBase<SharedWeightsCrossAttention<T>, SharedWeightsCrossAttentionConfig, T> {
  using Base = LayerBase<SharedWeightsCrossAttention, SharedWeightsCrossAttentionConfig, T>;
  friend Base;

public:
  using Config = SharedWeightsCrossAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{3};

  explicit SharedWeightsCrossAttention(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    Index n = 6;
    if (c.split_sizes.size() > 0) {
      n = 0;
      for (int s : c.split_sizes) n += s;
    }
    return {{2, n, c.dim}};
  }

  /// y `[B, N, dim]` with the config's split sizes (`[]`: two equal halves).
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x) const {
    const auto v = view_of<T, 3>(x);
    check_input(shape_of(v));
    if (config_.split_sizes.size() > 0) return run(v, std::span<const int>(config_.split_sizes.begin(), config_.split_sizes.size()));
    const Index n = v.dimension(1);
    if (n % 2 != 0)
      throw ShapeError(fmt::format("{}: without split_sizes (in the call or the config) the tokens are split in two "
                                   "equal halves, so the sequence length must be even, got {}",
                                   Config::type_name, n));
    const std::array<int, 2> halves{static_cast<int>(n / 2), static_cast<int>(n / 2)};
    return run(v, halves);
  }
  /// y `[B, N, dim]` with `split_sizes` `[a, b]` or `[aA, qA, aB, qB]` summing to N.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, std::span<const int> split_sizes) const {
    return run(view_of<T, 3>(x), split_sizes);
  }

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot qkv_kernel, qkv_bias, proj_kernel, proj_bias;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index e = config_.dim;
    Slots s;
    s.qkv_kernel = w.add("qkv/kernel", {e, 3 * e}, config_.kernel_initializer, seed);
    if (config_.use_bias) s.qkv_bias = w.add("qkv/bias", {3 * e}, config_.bias_initializer, seed);
    s.proj_kernel = w.add("proj/kernel", {e, e}, config_.kernel_initializer, seed);
    if (config_.use_bias) s.proj_bias = w.add("proj/bias", {e}, config_.bias_initializer, seed);
    slots_ = s;
  }

  void check_input(const Shape& x) const {
    if (x.size() != 3)
      throw ShapeError(fmt::format("{}: Input must be 3D, got shape {}", Config::type_name, shape_str(x)));
    if (x[2] != config_.dim)
      throw ShapeError(fmt::format("{}: Last dimension of input ({}) must match dim ({})", Config::type_name, x[2],
                                   config_.dim));
  }

  void check_splits(std::span<const int> s, Index n) const {
    if (s.size() != 2 && s.size() != 4)
      throw ShapeError(fmt::format("{}: split_sizes must have length 2 or 4, got {}", Config::type_name, s.size()));
    Index sum = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      // every size feeds a key set except the query counts of the four-way form
      const bool keys = s.size() == 2 || i % 2 == 0;
      if (s[i] < 0 || (keys && s[i] == 0))
        throw ShapeError(fmt::format("{}: split_sizes[{}] must be {}, got {} (split_sizes [{}]{})", Config::type_name,
                                     i, keys ? "positive" : "non-negative", s[i], fmt::join(s, ", "),
                                     keys ? ": an empty modality or anchor set leaves a softmax over no keys" : ""));
      sum += s[i];
    }
    if (sum != n)
      throw ShapeError(fmt::format("{}: Sum of split_sizes ({}) must equal total sequence length ({})",
                                   Config::type_name, sum, n));
  }

  Tensor<T, 3> run(ConstTensorView<T, 3> x, std::span<const int> split) const {
    check_input(shape_of(x));
    const Index B = x.dimension(0), N = x.dimension(1), E = config_.dim, H = config_.num_heads, d = E / H;
    check_splits(split, N);
    this->check_weights();
    Tensor<T, 3> y(B, N, E);
    if (B == 0) return y;
    // modality A = [0, na), B = [na, N); keys of A's queries: [kb0, kb0 + nkb), of B's: [0, nka)
    Index na = split[0], nka = split[0], nkb = split[1];
    if (split.size() == 4) {
      na = split[0] + split[1];
      nka = split[0];
      nkb = split[2];
    }
    const Index nb = N - na;
    ScratchFrame scratch;
    T* qkv = scratch.get<T>(B * N * 3 * E);
    T* ctx = scratch.get<T>(B * N * E);
    ops::dense(x.data(), B * N, this->weight(slots_.qkv_kernel), this->optional_weight(slots_.qkv_bias), qkv);
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
    const ops::AttentionMask<T> none{};
    const Index rs = 3 * E;
    // A attends to B (its anchors in the four-way form)
    ops::attention(detail::heads_range<T>(qkv, B, N, 0, na, H, d, rs, 0),
                   detail::heads_range<T>(qkv, B, N, na, nkb, H, d, rs, E),
                   detail::heads_range<T>(qkv, B, N, na, nkb, H, d, rs, 2 * E),
                   detail::heads_out_range<T>(ctx, B, N, 0, na, H, d, E), scale, none);
    // B attends to A (its anchors)
    ops::attention(detail::heads_range<T>(qkv, B, N, na, nb, H, d, rs, 0),
                   detail::heads_range<T>(qkv, B, N, 0, nka, H, d, rs, E),
                   detail::heads_range<T>(qkv, B, N, 0, nka, H, d, rs, 2 * E),
                   detail::heads_out_range<T>(ctx, B, N, na, nb, H, d, E), scale, none);
    ops::dense(ctx, B * N, this->weight(slots_.proj_kernel), this->optional_weight(slots_.proj_bias), y.data());
    return y;
  }

  Slots slots_;
};

}  // namespace attn
