/// \file
/// `multi_head_positional_embedding` — LeViT's attention bias: a learned table per head indexed by the
/// absolute offsets between (strided) query and key positions (`MultiHeadPositionalEmbedding`; Graham
/// et al., 2021, "LeViT: a Vision Transformer in ConvNet's Clothing for Faster Inference"; spec
/// kcam_attention_layers.md §4.4, Appendix B.2 and the errata).
///
/// Shapes: input the scores `[B, h, Nq, Nk]` (`input_shape = [h, Nq, Nk]`) or, single head, `[B, Nq, Nk]`
/// (`input_shape = [Nq, Nk]`, through the typed class: the factory's door takes rank 4); output the same
/// shape, `y = x + bias`, `bias[hd, p, m] = table[I[p, m], hd]` (broadcast over the batch).
///
/// Weight (reference name): `positional_embedding [Nk, h]` (rank 4) or `[Nk]` (rank 3), zeros init (the
/// layer starts as the identity).
/// Index `I [Nq, Nk]` (built once): `q_h = query_height`, or `⌊sqrt(Nq)⌋` when -1, `q_w = Nq / q_h`;
/// stride `s = ⌈sqrt(Nk / Nq)⌉`; `k_h = key_height`, or (-1) the first of `q_h·s, q_h·s − 1, …` that
/// divides Nk, `k_w = Nk / k_h`; query p: `ax = p mod q_h`, `ay = p div q_h`; key m: `bx = m mod k_h`,
/// `by = m div k_h`; `I[p, m] = |bx − s·ax| + k_h·|by − s·ay|`. For square grids this is LeViT's
/// `(|Δcol|, |Δrow|)` table with queries at `s·(row, col)`; for non-square grids `ax` cycles with the
/// height (not the raster column), reproduced as is for weight parity.
/// Differs from the reference (spec errata): the reference can build an index past the table (e.g. a
/// 3×8 input with stride 2 finds `k_h = 4`; max I = 27 ≥ Nk = 24) and then misindexes silently; here
/// such a config, and grids that do not factor (`q_h·q_w ≠ Nq`, `key_height` not dividing Nk), are a
/// ConfigError at validation (the extents are part of the config; the message asks for `key_height`).
///
/// `load_resized_weights(values, shape, method = ResizeMethod::bilinear)` (HEAD's default; nearest in the
/// seed era): old table `[Nk_s, h]` (or `[Nk_s]`), `side = ⌊sqrt(Nk_s)⌋` (square, else a ShapeError): a
/// copy when `side = k_h = k_w`, else the `[side, side, h]` image is resized (TF2 half-pixel,
/// ops/resize.hpp) to `(k_h, k_w)`. The resize lays the table out in raster order (`[k_h, k_w]`, fast
/// axis last) while the index reads `I = Δx + k_h·Δy`, so a resized non-square table is transposed
/// relative to the index — as in the reference (spec errata). Other heads: ShapeError, weight unchanged.
///
/// API for the blocks: `attention_bias()` is the gathered bias `[h, Nq, Nk]` (`[1, Nq, Nk]` for rank 3),
/// the layout of the attention core (an `AttnBias` `[1, h, Nq, Nk]`), computed once per call;
/// `relative_position_index()` is `I`, `stride()`, `key_grid()` the derived sizes.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <span>
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

struct MultiHeadPositionalEmbeddingConfig {
  IntList input_shape{};
  int query_height = -1;
  int key_height = -1;

  static constexpr std::string_view type_name = "multi_head_positional_embedding";
  static constexpr std::string_view class_name = "MultiHeadPositionalEmbedding";
  static constexpr std::string_view description =
      "LeViT's attention bias: a learned table per head indexed by the absolute offsets between strided "
      "query and key grid positions, added to scores [B, h, Nq, Nk].";
  static constexpr std::string_view use_case =
      "Position bias of LeViT attention (also with strided, subsampled queries); resizable to a new "
      "input resolution with load_resized_weights.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = MultiHeadPositionalEmbeddingConfig;
    return std::array{
        Field<C>{.name = "input_shape", .member = member<&C::input_shape>, .required = true,
                 .example = "[2, 16, 49]", .range = positive, .length = {.min = 2, .max = 3},
                 .doc = "The scores' extents without the batch axis: [heads, Nq, Nk], or [Nq, Nk] for a "
                        "single head."},
        Field<C>{.name = "query_height", .member = member<&C::query_height>, .range = {.min = at_least(-1)},
                 .doc = "Query grid height; -1: floor(sqrt(Nq))."},
        Field<C>{.name = "key_height", .member = member<&C::key_height>, .range = {.min = at_least(-1)},
                 .doc = "Key grid height; -1: the reference's search from query height x stride down to a "
                        "divisor of Nk."},
    };
  }

  [[nodiscard]] Index nq() const { return input_shape[input_shape.size() - 2]; }
  [[nodiscard]] Index nk() const { return input_shape[input_shape.size() - 1]; }
  [[nodiscard]] Index heads() const { return input_shape.size() == 3 ? input_shape[0] : 1; }
  [[nodiscard]] Index q_h() const { return query_height > 0 ? query_height : detail::posemb::isqrt(nq()); }
  [[nodiscard]] Index stride() const {
    return static_cast<Index>(std::ceil(std::sqrt(static_cast<double>(nk()) / static_cast<double>(nq()))));
  }
  [[nodiscard]] Index k_h() const {
    if (key_height > 0) return key_height;
    Index k = q_h() * stride();
    while (k > 1 && nk() % k != 0) --k;
    return k;
  }

  /// The index I [Nq, Nk] (file comment), unchecked.
  [[nodiscard]] ops::IndexTable index() const {
    const Index n = nq(), m = nk(), qh = q_h(), s = stride(), kh = k_h();
    ops::IndexTable t{n, m, std::vector<Index>(static_cast<std::size_t>(n * m))};
    for (Index p = 0; p < n; ++p)
      for (Index k = 0; k < m; ++k)
        t.values[static_cast<std::size_t>(p * m + k)] =
            std::abs(k % kh - s * (p % qh)) + kh * std::abs(k / kh - s * (p / qh));
    return t;
  }

  void check(Problems& p) const {
    if (query_height == 0) p.push_back({"query_height", "query_height must be -1 or positive, got 0"});
    if (key_height == 0) p.push_back({"key_height", "key_height must be -1 or positive, got 0"});
    if (!p.empty() || input_shape.size() < 2) return;
    const Index qh = q_h(), kh = k_h();
    if (nq() % qh != 0) {
      p.push_back({"query_height", fmt::format("the {} queries do not form a grid of height {}", nq(), qh)});
      return;
    }
    if (nk() % kh != 0) {
      p.push_back({"key_height", fmt::format("the {} keys do not form a grid of height {}", nk(), kh)});
      return;
    }
    const auto bytes = checked_bytes(checked_shape_size({nq(), nk()}).value_or(-1), sizeof(Index));
    if (!bytes || *bytes > allocation_limit()) return;  // the constructor refuses the table
    Index biggest = 0;
    for (Index v : index().values) biggest = std::max(biggest, v);
    if (biggest >= nk())
      p.push_back({"key_height",
                   fmt::format("the index reaches {} but the table has {} entries (query grid {}x{}, stride {}, key "
                               "grid {}x{}): pass the key grid's height as key_height",
                               biggest, nk(), qh, nq() / qh, stride(), kh, nk() / kh)});
  }
};
static_assert(config_table_is_sound<MultiHeadPositionalEmbeddingConfig>());

template <class T = float>
class MultiHeadPositionalEmbedding
    : public LayerBase<MultiHeadPositionalEmbedding<T>, MultiHeadPositionalEmbeddingConfig, T> {
  using Base = LayerBase<MultiHeadPositionalEmbedding, MultiHeadPositionalEmbeddingConfig, T>;
  friend Base;

public:
  using Config = MultiHeadPositionalEmbeddingConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit MultiHeadPositionalEmbedding(const Config& config, std::uint64_t seed = 0)
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

  [[nodiscard]] const ops::IndexTable& relative_position_index() const noexcept { return index_; }
  [[nodiscard]] Index stride() const { return config_.stride(); }
  /// (k_h, k_w)
  [[nodiscard]] std::pair<Index, Index> key_grid() const { return {config_.k_h(), config_.nk() / config_.k_h()}; }

  /// The gathered bias `[h, Nq, Nk]` (`[1, Nq, Nk]` for a rank-3 layer).
  [[nodiscard]] Tensor<T, 3> attention_bias() const {
    this->check_weights();
    const Index h = config_.heads();
    Tensor<T, 3> out(h, index_.rows, index_.cols);
    ops::gather_relative_bias(this->weight(slot_).data.data(), h, config_.nk(), false, index_, out.data(),
                              Config::type_name);
    return out;
  }

  /// Scores `[B, h, Nq, Nk]` plus the bias.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    return add<4>(view_of<T, 4>(x));
  }
  /// Single-head scores `[B, Nq, Nk]` plus the bias.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x) const {
    return add<3>(view_of<T, 3>(x));
  }

  /// Replaces the table by the resized old table `[Nk_s, h]` or `[Nk_s]` (file comment).
  void load_resized_weights(std::span<const T> values, const Shape& shape,
                            ResizeMethod method = ResizeMethod::bilinear) {
    const std::string_view L = Config::type_name;
    this->check_weights();
    const bool heads_axis = config_.input_shape.size() == 3;
    detail::posemb::check_source<T>(L, "positional_embedding", shape, values, heads_axis ? 2 : 1);
    const Index h = config_.heads(), side = detail::posemb::isqrt(shape[0]);
    if ((heads_axis && shape[1] != h) || side * side != shape[0])
      throw ShapeError(fmt::format("{}: load_resized_weights: the source 'positional_embedding' must be [s²{}] (a "
                                   "square key grid), got {}",
                                   L, heads_axis ? fmt::format(", {}", h) : std::string(), shape_str(shape)));
    const auto [kh, kw] = key_grid();
    std::vector<T> out;
    if (side == kh && side == kw) {
      out.assign(values.begin(), values.end());
    } else {
      const Tensor<T, 4> r = detail::posemb::resize<T>(values.data(), 1, side, side, h, kh, kw, method, L);
      out.assign(r.data(), r.data() + r.size());
    }
    this->weights_[slot_.index].data = std::move(out);
  }
  void load_resized_weights(const Weight<T>& source, ResizeMethod method = ResizeMethod::bilinear) {
    load_resized_weights(std::span<const T>(source.data), source.shape, method);
  }

private:
  using Base::config_, Base::weights_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Shape s = config_.input_shape.size() == 3 ? Shape{config_.nk(), config_.heads()} : Shape{config_.nk()};
    slot_ = w.add("positional_embedding", s, "zeros", seed);
  }

  void check_input(const Shape& x) const {
    const Shape built(config_.input_shape.begin(), config_.input_shape.end());
    detail::posemb::check_built(Config::type_name, "x", x, built, "(scores of the input_shape)");
  }

  template <int R>
  Tensor<T, R> add(const ConstTensorView<T, R>& x) const {
    check_input(shape_of(x));
    const Tensor<T, 3> bias = attention_bias();
    Tensor<T, R> y(x.dimensions());
    const Index per = bias.size();
    for (Index b = 0; per > 0 && b < x.dimension(0); ++b)
      for (Index i = 0; i < per; ++i) y.data()[b * per + i] = x.data()[b * per + i] + bias.data()[i];
    return y;
  }

  static ops::IndexTable make_index(const Config& c) {
    detail::posemb::check_table(Config::type_name, "the index", {c.nq(), c.nk()}, sizeof(Index));
    detail::posemb::check_table(Config::type_name, "the gathered bias", {c.heads(), c.nq(), c.nk()}, sizeof(T));
    return c.index();
  }

  ops::IndexTable index_;
  WeightSlot slot_;
};

}  // namespace attn
