/// \file
/// `relative_positional_embedding` — query-dependent 2-D relative (or absolute) position logits, the
/// same for every head (BoTNet's `RelativePositionalEmbedding`; Srinivas et al., 2021, "Bottleneck
/// Transformers for Visual Recognition"; spec kcam_attention_layers.md §4.10, Appendix B.8).
///
/// Shapes: input the query `[B, h, H, W, d]` (rank 5; `input_shape` = `[h, H, W, d]`, required, the
/// extents the reference builds from). Key grid: `Ph = position_height` when it exceeds H, else H;
/// `Pw = position_width` (or `position_height` when `position_width` ≤ 0) when it exceeds W, else W.
/// Output `[B, h, H, W, Ph·Pw]`: the reference's `[B, h, H, W, Ph, Pw]` with its last two axes merged
/// (the same memory; key `(ky, kx)` at `ky·Pw + kx`), so `[B, h, H·W, Ph·Pw]` is a reshape of it — the
/// layout its callers add to the scores. With `dynamic_shape` (deprecated in the reference) and
/// `H < Ph` or `W < Pw`, the key grid is cropped to `H × W` (`[B, h, H, W, H·W]`).
///
/// Weights (reference names and order, Keras layout): `r_height [d, 2Ph − 1]`, `r_width [d, 2Pw − 1]`
/// (relative), or `r_height [d, Ph]`, `r_width [d, Pw]` (`use_absolute_pos`); init Normal(0, d^−0.5).
/// Forward, relative:
///   `Lw[…, y, x, kx] = Σ_j q[…, y, x, j]·r_width[j, Pw − 1 + kx − x]`,
///   `Lh[…, y, x, ky] = Σ_j q[…, y, x, j]·r_height[j, Ph − 1 + ky − y]`,
///   `out[…, y, x, ky·Pw + kx] = Lh[…, ky] + Lw[…, kx]`.
/// The reference gets `Lw` by `q·r_width` over the whole `2P − 1` table followed by its "rel_to_abs"
/// reshape trick (flatten, drop `n_q − 1` leading and 1 trailing entries, reshape, slice); here it is
/// the gather `R[x, P − 1 + k − x]` that the trick equals (tested against the trick).
/// Forward, absolute: `Lw = q·r_width`, `Lh = q·r_height`, `out[…, ky·Pw + kx] = Lh[ky] + Lw[kx]`
/// (HEAD's form).
///
/// `load_resized_weights(r_height, r_width, method = ResizeMethod::bilinear)`: each old `[d, L_s]` is an
/// image of height 1, width `L_s` and `d` channels, resized (TF2 half-pixel, ops/resize.hpp) to width
/// `L_t` (the layer's) and transposed back to `[d, L_t]`; both are replaced (or neither, on a
/// ShapeError: other `d`, rank, value count).
///
/// API for the blocks: `logit_factors(q)` returns `Lh [B, h, H, W, Ph']` and `Lw [B, h, H, W, Pw']` (the
/// cropped extents under `dynamic_shape`), so a block can add `Lh[ky] + Lw[kx]` per query inside the
/// attention core without the `[B, h, H·W, Ph·Pw]` tensor; `forward(q)` materialises it.
/// Errors: ConfigError for the config ("position_height must be non-negative, got -1"), ShapeError
/// for inputs and resize sources, WeightsError for a weight changed through parameters().
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/init.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/positional.hpp"

namespace attn {

struct RelativePositionalEmbeddingConfig {
  IntList input_shape{};
  int position_height = 0;
  int position_width = 0;
  bool use_absolute_pos = false;
  bool dynamic_shape = false;

  static constexpr std::string_view type_name = "relative_positional_embedding";
  static constexpr std::string_view class_name = "RelativePositionalEmbedding";
  static constexpr std::string_view description =
      "Query-dependent 2-D relative (or absolute) position logits from two per-axis tables, shared by "
      "all heads (BoTNet); output [B, h, H, W, Ph*Pw].";
  static constexpr std::string_view use_case =
      "The position term of BoTNet / HaloNet style attention over a feature map, added to the scores "
      "[B, h, H*W, Ph*Pw]; resizable to a new input resolution with load_resized_weights.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = RelativePositionalEmbeddingConfig;
    return std::array{
        Field<C>{.name = "input_shape", .member = member<&C::input_shape>, .required = true,
                 .example = "[2, 3, 4, 8]", .range = positive, .length = exact_length(4),
                 .doc = "The query's extents without the batch axis: [heads, H, W, key_dim]."},
        Field<C>{.name = "position_height", .member = member<&C::position_height>, .range = non_negative,
                 .doc = "Key grid height Ph; values <= H mean H."},
        Field<C>{.name = "position_width", .member = member<&C::position_width>, .range = non_negative,
                 .doc = "Key grid width Pw; 0 takes position_height; values <= W mean W."},
        Field<C>{.name = "use_absolute_pos", .member = member<&C::use_absolute_pos>,
                 .doc = "Absolute (content-position) logits instead of relative ones."},
        Field<C>{.name = "dynamic_shape", .member = member<&C::dynamic_shape>,
                 .doc = "Deprecated in the reference: crop the key grid to H x W when it is larger."},
    };
  }

  void check(Problems& /*unused*/) const {}

  [[nodiscard]] Index pos_h() const { return std::max<Index>(position_height, input_shape[1]); }
  [[nodiscard]] Index pos_w() const {
    return std::max<Index>(position_width > 0 ? position_width : position_height, input_shape[2]);
  }
  /// The key grid of the output (cropped under dynamic_shape).
  [[nodiscard]] Index out_h() const { return dynamic_shape ? std::min<Index>(pos_h(), input_shape[1]) : pos_h(); }
  [[nodiscard]] Index out_w() const { return dynamic_shape ? std::min<Index>(pos_w(), input_shape[2]) : pos_w(); }
};
static_assert(config_table_is_sound<RelativePositionalEmbeddingConfig>());

template <class T = float>
class RelativePositionalEmbedding
    : public LayerBase<RelativePositionalEmbedding<T>, RelativePositionalEmbeddingConfig, T> {
  using Base = LayerBase<RelativePositionalEmbedding, RelativePositionalEmbeddingConfig, T>;
  friend Base;

public:
  using Config = RelativePositionalEmbeddingConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{5};

  explicit RelativePositionalEmbedding(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  /// `[B, h, H, W, Ph'·Pw']`.
  [[nodiscard]] Shape output_shape(const Shape& q) const {
    check_input(q);
    return {q[0], q[1], q[2], q[3], config_.out_h() * config_.out_w()};
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    return {{2, c.input_shape[0], c.input_shape[1], c.input_shape[2], c.input_shape[3]}};
  }

  /// The two per-axis logits of `logit_factors`.
  struct Factors {
    Tensor<T, 5> height;  ///< Lh [B, h, H, W, Ph']
    Tensor<T, 5> width;   ///< Lw [B, h, H, W, Pw']
  };

  /// Lh and Lw of query q `[B, h, H, W, d]` (file comment).
  template <class X>
    requires TensorOf<X, T, 5>
  [[nodiscard]] Factors logit_factors(const X& q) const {
    const ConstTensorView<T, 5> v = view_of<T, 5>(q);
    check_input(shape_of(v));
    this->check_weights();
    const Index B = v.dimension(0), h = v.dimension(1), H = v.dimension(2), W = v.dimension(3), d = v.dimension(4);
    const Index m = B * h * H * W;
    const bool rel = !config_.use_absolute_pos;
    const Index ph = config_.pos_h(), pw = config_.pos_w(), oh = config_.out_h(), ow = config_.out_w();
    const Weight<T>& rh = this->weight(rh_);
    const Weight<T>& rw = this->weight(rw_);
    // every query row against the whole table: [m, d] · [d, L]
    const ConstMatrixMap<T> qm(v.data(), m, d);
    const Matrix<T> full_h = qm * rh.matrix();
    const Matrix<T> full_w = qm * rw.matrix();
    Factors f{Tensor<T, 5>(B, h, H, W, oh), Tensor<T, 5>(B, h, H, W, ow)};
    for (Index r = 0; r < m; ++r) {
      const Index x = r % W, y = (r / W) % H;
      for (Index k = 0; k < oh; ++k) f.height.data()[r * oh + k] = full_h(r, rel ? ph - 1 + k - y : k);
      for (Index k = 0; k < ow; ++k) f.width.data()[r * ow + k] = full_w(r, rel ? pw - 1 + k - x : k);
    }
    return f;
  }

  /// The position logits `[B, h, H, W, Ph'·Pw']` of query q `[B, h, H, W, d]`.
  template <class X>
    requires TensorOf<X, T, 5>
  [[nodiscard]] Tensor<T, 5> forward(const X& q) const {
    const Factors f = logit_factors(q);
    const Index oh = config_.out_h(), ow = config_.out_w();
    const Index m = f.height.size() / std::max<Index>(oh, 1);
    Tensor<T, 5> out(f.height.dimension(0), f.height.dimension(1), f.height.dimension(2), f.height.dimension(3),
                     oh * ow);
    for (Index r = 0; r < m; ++r)
      for (Index a = 0; a < oh; ++a)
        for (Index b = 0; b < ow; ++b)
          out.data()[(r * oh + a) * ow + b] = f.height.data()[r * oh + a] + f.width.data()[r * ow + b];
    return out;
  }

  /// Replaces both tables by the resized old ones `[d, L_s]` (file comment).
  void load_resized_weights(const Weight<T>& r_height, const Weight<T>& r_width,
                            ResizeMethod method = ResizeMethod::bilinear) {
    this->check_weights();
    std::vector<T> h = resized(r_height, this->weight(rh_), method);
    std::vector<T> w = resized(r_width, this->weight(rw_), method);
    this->weights_[rh_.index].data = std::move(h);
    this->weights_[rw_.index].data = std::move(w);
  }

private:
  using Base::config_, Base::weights_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index d = config_.input_shape[3];
    const bool rel = !config_.use_absolute_pos;
    const Index lh = rel ? 2 * config_.pos_h() - 1 : config_.pos_h(), lw = rel ? 2 * config_.pos_w() - 1 : config_.pos_w();
    const std::size_t a = w.add("r_height", {d, lh}, "zeros", seed);
    const std::size_t b = w.add("r_width", {d, lw}, "zeros", seed);
    const double stddev = 1.0 / std::sqrt(static_cast<double>(d));
    for (std::size_t i : {a, b}) {
      Rng rng(seed ^ hash_name(w[i].name));
      for (T& v : w[i].data) v = static_cast<T>(rng.normal() * stddev);
    }
    rh_ = a;
    rw_ = b;
  }

  void check_input(const Shape& q) const {
    const Shape built(config_.input_shape.begin(), config_.input_shape.end());
    detail::posemb::check_built(Config::type_name, "query", q, built,
                                "(the query [B, heads, H, W, key_dim] of the input_shape)");
  }

  std::vector<T> resized(const Weight<T>& src, const Weight<T>& dst, ResizeMethod method) const {
    const std::string_view L = Config::type_name;
    detail::posemb::check_source<T>(L, dst.name, src.shape, std::span<const T>(src.data), 2);
    const Index d = dst.shape[0], lt = dst.shape[1], ls = src.shape[1];
    if (src.shape[0] != d)
      throw ShapeError(fmt::format("{}: load_resized_weights: the source '{}' must have shape [{}, *], got {}", L,
                                   dst.name, d, shape_str(src.shape)));
    // [d, ls] -> an image [1, 1, ls, d]
    Tensor<T, 4> img(1, 1, ls, d);
    for (Index j = 0; j < d; ++j)
      for (Index l = 0; l < ls; ++l) img.data()[l * d + j] = src.data[static_cast<std::size_t>(j * ls + l)];
    const Tensor<T, 4> r = detail::posemb::resize<T>(img.data(), 1, 1, ls, d, 1, lt, method, L);
    std::vector<T> out(static_cast<std::size_t>(d * lt));
    for (Index j = 0; j < d; ++j)
      for (Index l = 0; l < lt; ++l) out[static_cast<std::size_t>(j * lt + l)] = r.data()[l * d + j];
    return out;
  }

  WeightSlot rh_, rw_;
};

}  // namespace attn
