/// \file
/// `multi_head_relative_positional_kernel_bias` — NAT's relative-position bias of neighbourhood
/// attention: a learned `(2k − 1)²` table per head, gathered by each query's offsets to the `k²` keys of
/// its neighbourhood and added to the scores (`MultiHeadRelativePositionalKernelBias`; Hassani et al.,
/// 2023, "Neighborhood Attention Transformer"; Hassani & Shi, 2022, "Dilated Neighborhood Attention
/// Transformer"; spec kcam_attention_layers.md §4.5, Appendix B.3).
///
/// Shapes: input the scores, `[B, N, h, m, k²]` (the layout of the reference's neighbourhood attention,
/// `is_heads_first = false`) or `[B, h, N, m, k²]` (`is_heads_first = true`), or without the `m` axis
/// (`[B, N, h, k²]`, `[B, h, N, k²]`) through the typed class (the factory's door takes rank 5);
/// `input_shape` (required) is the input without its batch axis. The bias does not depend on `m` and is
/// broadcast over it and over the batch. Output the same shape: `y = x + G`,
/// `G[hd, n, t] = positional_embedding[hd, J[n, t]]`.
/// Grid: `k = ⌊sqrt(last extent)⌋` (the last extent must be `k²` with `k` odd), `H = input_height`, or
/// `⌊sqrt(N)⌋` when -1, `W = N / H`; `H·W` must equal `N`, and each axis must hold the neighbourhood,
/// `H ≥ 2·r_h·⌊k/2⌋`, `W ≥ 2·r_w·⌊k/2⌋` (the reference's `pad_bias` has the wrong length otherwise):
/// ConfigError at validation.
///
/// Weight (reference name): `positional_embedding [h, (2k − 1)²]`, TruncatedNormal(stddev 0.02) (values
/// beyond 2σ re-drawn). Its shape depends only on `h` and `k`, so there is no `load_resized_weights`.
///
/// Index `J [N, k²]` (built once, ops/relpos.hpp `nat_relative_position_index`, the reference's
/// construction): `bh = pad_bias(H, r_h)`, `bw = pad_bias(W, r_w)` with
/// `pad_bias(n, r) = [0]·r ++ [1]·r ++ … ++ [⌊k/2⌋]·(n − 2r⌊k/2⌋) ++ … ++ [k − 1]·r`,
/// `J0[(y, x), a·k + b] = (bh[y] + a)·P + (bw[x] + b)`, `P = 2k − 1`, and `J[n] = J0[N − 1 − n]`. This is
/// the offset `((y' − y)/r_h + k − 1)·P + ((x' − x)/r_w + k − 1)` of tap `(a, b)` of NAT's clamped window
/// (spec §4.5).
///
/// `dilation_rate` (default 1): an int or `(r_h, r_w)`, each at least 1.
///
/// API for the blocks: `attention_bias()` is the gathered bias `[h, N, k²]` — the core's
/// `[heads, Nq, Nk]` with the neighbourhood as the keys — computed once per call instead of a pass
/// over the scores; `relative_position_index()` is `J`, `kernel_size()` and `grid()` the derived sizes.
/// Errors: ConfigError for the config (grids that do not factor, a last extent that is not an odd
/// square, an axis too short for the neighbourhood), ShapeError for an input other than the
/// input_shape, WeightsError for a weight changed through parameters().
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/positional.hpp"
#include "attn/ops/relpos.hpp"

namespace attn {

struct MultiHeadRelativePositionalKernelBiasConfig {
  IntList input_shape{};
  int input_height = -1;
  bool is_heads_first = false;
  Size2 dilation_rate{1, 1};

  static constexpr std::string_view type_name = "multi_head_relative_positional_kernel_bias";
  static constexpr std::string_view class_name = "MultiHeadRelativePositionalKernelBias";
  static constexpr std::string_view description =
      "NAT's relative-position bias of neighbourhood attention: a learned (2k-1)^2 table per head gathered "
      "by each query's offsets to its k*k neighbours, added to the scores [B, N, h, m, k*k].";
  static constexpr std::string_view use_case =
      "Position bias of neighbourhood attention (NAT, DiNAT with dilation); the table does not depend on "
      "the input resolution.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = MultiHeadRelativePositionalKernelBiasConfig;
    return std::array{
        Field<C>{.name = "input_shape", .member = member<&C::input_shape>, .required = true,
                 .example = "[20, 2, 1, 9]", .range = positive, .length = {.min = 3, .max = 4},
                 .doc = "The scores' extents without the batch axis: [N, heads, m, k*k] ([heads, N, m, k*k] "
                        "heads first), or without the m axis."},
        Field<C>{.name = "input_height", .member = member<&C::input_height>, .range = {.min = at_least(-1)},
                 .doc = "Grid height H; -1: floor(sqrt(N))."},
        Field<C>{.name = "is_heads_first", .member = member<&C::is_heads_first>,
                 .doc = "The scores are [B, heads, N, ..., k*k] instead of [B, N, heads, ..., k*k]."},
        Field<C>{.name = "dilation_rate", .member = member<&C::dilation_rate>, .range = positive,
                 .doc = "Dilation of the neighbourhood (height, width)."},
    };
  }

  [[nodiscard]] Index tokens() const { return input_shape[is_heads_first ? 1 : 0]; }
  [[nodiscard]] Index heads() const { return input_shape[is_heads_first ? 0 : 1]; }
  [[nodiscard]] Index kernel() const { return detail::posemb::isqrt(input_shape[input_shape.size() - 1]); }
  [[nodiscard]] Index grid_height() const { return input_height > 0 ? input_height : detail::posemb::isqrt(tokens()); }
  [[nodiscard]] Index grid_width() const { return tokens() / grid_height(); }

  void check(Problems& p) const {
    if (input_height == 0) p.push_back({"input_height", "input_height must be -1 or positive, got 0"});
    if (!p.empty() || input_shape.size() < 3) return;
    const Index kk = input_shape[input_shape.size() - 1], k = kernel();
    if (k * k != kk || k % 2 == 0) {
      p.push_back({"input_shape", fmt::format("the last extent must be k*k for an odd kernel size k, got {}", kk)});
      return;
    }
    const Index n = tokens(), h = grid_height();
    if (n % h != 0) {
      p.push_back({"input_height", fmt::format("the {} tokens do not form a grid of height {}", n, h)});
      return;
    }
    const Index w = n / h, half = k / 2;
    for (int a = 0; a < 2; ++a) {
      const Index extent = a == 0 ? h : w, need = 2 * Index(dilation_rate[a]) * half;
      if (extent < need)
        p.push_back({a == 0 ? "input_height" : "input_shape",
                     fmt::format("the grid {}x{} is too small for kernel {} with dilation ({}, {}): the {} must be at "
                                 "least {}",
                                 h, w, k, dilation_rate[0], dilation_rate[1], a == 0 ? "height" : "width", need)});
    }
  }
};
static_assert(config_table_is_sound<MultiHeadRelativePositionalKernelBiasConfig>());

template <class T = float>
class MultiHeadRelativePositionalKernelBias
    : public LayerBase<MultiHeadRelativePositionalKernelBias<T>, MultiHeadRelativePositionalKernelBiasConfig, T> {
  using Base = LayerBase<MultiHeadRelativePositionalKernelBias, MultiHeadRelativePositionalKernelBiasConfig, T>;
  friend Base;

public:
  using Config = MultiHeadRelativePositionalKernelBiasConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{5};

  explicit MultiHeadRelativePositionalKernelBias(const Config& config, std::uint64_t seed = 0)
      : Base(config), index_(make_index(config)) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    Shape s{2};
    s.insert(s.end(), c.input_shape.begin(), c.input_shape.end());
    return {s};
  }

  /// The index `J [N, k²]` (file comment).
  [[nodiscard]] const ops::IndexTable& relative_position_index() const noexcept { return index_; }
  /// The neighbourhood's kernel size k.
  [[nodiscard]] Index kernel_size() const { return config_.kernel(); }
  /// The grid (H, W).
  [[nodiscard]] std::pair<Index, Index> grid() const { return {config_.grid_height(), config_.grid_width()}; }

  /// The gathered bias `[h, N, k²]`.
  [[nodiscard]] Tensor<T, 3> attention_bias() const {
    this->check_weights();
    const Index h = config_.heads(), p = 2 * config_.kernel() - 1;
    Tensor<T, 3> out(h, index_.rows, index_.cols);
    ops::gather_relative_bias(this->weight(slot_).data.data(), h, p * p, true, index_, out.data(), Config::type_name);
    return out;
  }

  /// Scores `[B, N, h, m, k²]` (`[B, h, N, m, k²]` heads first) plus the bias.
  template <class X>
    requires TensorOf<X, T, 5>
  [[nodiscard]] Tensor<T, 5> forward(const X& x) const {
    return add<5>(view_of<T, 5>(x));
  }
  /// Scores `[B, N, h, k²]` (`[B, h, N, k²]` heads first) plus the bias.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    return add<4>(view_of<T, 4>(x));
  }

private:
  using Base::config_, Base::weights_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index p = 2 * config_.kernel() - 1;
    const std::size_t slot = w.add("positional_embedding", {config_.heads(), p * p}, "zeros", seed);
    detail::posemb::fill_truncated_normal(w[slot], 0.02, seed);
    slot_ = slot;
  }

  void check_input(const Shape& x) const {
    const Shape built(config_.input_shape.begin(), config_.input_shape.end());
    detail::posemb::check_built(Config::type_name, "x", x, built,
                                config_.is_heads_first ? "(scores [B, heads, N, ..., k*k] of the input_shape)"
                                                       : "(scores [B, N, heads, ..., k*k] of the input_shape)");
  }

  template <int R>
  Tensor<T, R> add(const ConstTensorView<T, R>& x) const {
    check_input(shape_of(x));
    const Tensor<T, 3> g = attention_bias();  // [h, N, kk]
    Tensor<T, R> y(x.dimensions());
    const Index n = config_.tokens(), kk = index_.cols;
    const Index m = R == 5 ? x.dimension(3) : 1, outer = x.dimension(1) * x.dimension(2);
    const Index per = outer * m * kk;
    for (Index b = 0; b < x.dimension(0); ++b)
      for (Index o = 0; o < outer; ++o) {
        const Index i1 = o / x.dimension(2), i2 = o % x.dimension(2);
        const Index hd = config_.is_heads_first ? i1 : i2, tok = config_.is_heads_first ? i2 : i1;
        const T* bias = g.data() + (hd * n + tok) * kk;
        for (Index j = 0; j < m; ++j) {
          const Index off = b * per + (o * m + j) * kk;
          for (Index t = 0; t < kk; ++t) y.data()[off + t] = x.data()[off + t] + bias[t];
        }
      }
    return y;
  }

  static ops::IndexTable make_index(const Config& c) {
    detail::posemb::check_table(Config::type_name, "the kernel index", {c.tokens(), c.kernel() * c.kernel()},
                                sizeof(Index));
    detail::posemb::check_table(Config::type_name, "the gathered bias", {c.heads(), c.tokens(), c.kernel() * c.kernel()},
                                sizeof(T));
    return ops::nat_relative_position_index(c.grid_height(), c.grid_width(), c.kernel(), c.dilation_rate[0],
                                            c.dilation_rate[1], Config::type_name);
  }

  ops::IndexTable index_;
  WeightSlot slot_;
};

}  // namespace attn
