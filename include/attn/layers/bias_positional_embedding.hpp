/// \file
/// `bias_positional_embedding` — a learned additive bias on attention scores, one entry per (head,
/// query, key) by default (CMT's `BiasPositionalEmbedding`; Guo et al., 2022, "CMT: Convolutional
/// Neural Networks Meet Vision Transformers"; spec kcam_attention_layers.md §4.1).
///
/// Shapes: input the attention scores `[B, h, Nq, Nk]` (rank 4), `input_shape` (required) = `[h, Nq,
/// Nk]`, the extents the reference builds the weight from; output the same shape, `y = x + bias`
/// (broadcast over the batch and over the axes the bias does not cover). Another input shape is a
/// ShapeError naming the layer.
///
/// Weight (reference name): `positional_embedding`, initialised by `initializer` (default "zeros", so
/// the layer starts as the identity). Its shape follows `axis` (default `[1, 2, 3]`): the input's
/// extents at the listed axes and 1 elsewhere, batch dropped — `[h, Nq, Nk]` by default, `[1, Nq, Nk]`
/// for `[2, 3]`, ...; `[-1]` is the reference's `axis=-1`, a per-channel bias `[Nk]` (JSON lists only:
/// write `[-1]` for the reference's `-1`). Other lists (axis 0, out of range, repeated, -1 mixed with
/// others) are a ConfigError (spec errata): "axis must be [-1] or distinct axes in [1, 3], got [0, 2]".
/// `attn_height` (default -1) is the query grid height used by `load_resized_weights` only (-1:
/// ⌊sqrt(Nq)⌋); other values must be positive.
///
/// `load_resized_weights(values, shape, method = ResizeMethod::bilinear)` (HEAD's default; the seed era used
/// nearest), for the default `axis` only (else a ConfigError): the old bias `[h, Nq_s, Nk_s]` with
/// square grids `qs = ⌊sqrt(Nq_s)⌋`, `ks = ⌊sqrt(Nk_s)⌋` is resized in two TF2 half-pixel passes
/// (ops/resize.hpp): as h images `qs × qs` with `ks²` channels to the query grid `(q_h, q_w)`
/// (`q_h = attn_height` or `⌊sqrt(Nq)⌋`, `q_w = ⌊Nq / q_h⌋`), then, keys moved to the spatial axes, to
/// the key grid `(kv_h, kv_w)` (`sr = ⌊sqrt(Nq / Nk)⌋`, `kv_h = q_h // sr`, `kv_w = ⌊Nk / kv_h⌋`); the
/// result `[h, q_h·q_w, kv_h·kv_w]` replaces the weight. Where the reference's reshapes would fail or
/// divide by zero (a non-square source grid, other heads, `q_h·q_w ≠ Nq`, `kv_h·kv_w ≠ Nk`, `Nk > Nq` so
/// `sr = 0`) this is a ShapeError and the weight is unchanged.
///
/// API for the blocks: `attention_bias()` returns the bias expanded to `[h, Nq, Nk]` (the layout of
/// the attention core; hand it over as `AttnBias` of shape `[1, h, Nq, Nk]`), computed once, so a
/// block adds it inside the core instead of a separate pass over `[B, h, Nq, Nk]`. One instance may
/// serve every block of a stage, as CMT's "torch" variants share one bias.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "attn/core/init.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/positional.hpp"

namespace attn {

struct BiasPositionalEmbeddingConfig {
  IntList input_shape{};
  IntList axis{1, 2, 3};
  int attn_height = -1;
  std::string_view initializer = "zeros";

  static constexpr std::string_view type_name = "bias_positional_embedding";
  static constexpr std::string_view class_name = "BiasPositionalEmbedding";
  static constexpr std::string_view description =
      "Learned additive bias on attention scores [B, h, Nq, Nk], one entry per head, query and key by "
      "default (CMT).";
  static constexpr std::string_view use_case =
      "A free attention bias per (head, query, key) shared by the blocks of a stage; resizable to a new "
      "input resolution with load_resized_weights.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = BiasPositionalEmbeddingConfig;
    return std::array{
        Field<C>{.name = "input_shape", .member = member<&C::input_shape>, .required = true,
                 .example = "[2, 16, 4]", .range = positive, .length = exact_length(3),
                 .doc = "The scores' extents without the batch axis: [heads, Nq, Nk]."},
        Field<C>{.name = "axis", .member = member<&C::axis>, .range = {.min = at_least(-1), .max = at_most(3)},
                 .length = {.min = 1, .max = 3},
                 .doc = "Input axes that get their own bias entries (others broadcast); [-1]: a bias per "
                        "key (the last axis)."},
        Field<C>{.name = "attn_height", .member = member<&C::attn_height>, .range = {.min = at_least(-1)},
                 .doc = "Query grid height for load_resized_weights; -1: floor(sqrt(Nq))."},
        Field<C>{.name = "initializer", .member = member<&C::initializer>, .choices = initializer_names,
                 .doc = "Initializer of the bias."},
    };
  }

  void check(Problems& p) const {
    bool ok = true;
    if (axis.size() == 1 && axis[0] == -1) {
    } else {
      for (std::size_t i = 0; i < axis.size(); ++i) {
        ok = ok && axis[i] >= 1 && axis[i] <= 3;
        for (std::size_t j = 0; j < i; ++j) ok = ok && axis[i] != axis[j];
      }
    }
    if (!ok)
      p.push_back({"axis", fmt::format("axis must be [-1] or distinct axes in [1, 3], got [{}]",
                                       fmt::join(std::span<const int>(axis), ", "))});
    if (attn_height == 0)
      p.push_back({"attn_height", fmt::format("attn_height must be -1 or positive, got {}", attn_height)});
  }

  /// The weight's shape (file comment).
  [[nodiscard]] Shape bias_shape() const {
    if (axis.size() == 1 && axis[0] == -1) return {input_shape[2]};
    Shape s{1, 1, 1};
    for (int a : axis) s[static_cast<std::size_t>(a - 1)] = input_shape[static_cast<std::size_t>(a - 1)];
    return s;
  }
  [[nodiscard]] bool default_axis() const { return axis == IntList{1, 2, 3}; }
};
static_assert(config_table_is_sound<BiasPositionalEmbeddingConfig>());

template <class T = float>
class BiasPositionalEmbedding : public LayerBase<BiasPositionalEmbedding<T>, BiasPositionalEmbeddingConfig, T> {
  using Base = LayerBase<BiasPositionalEmbedding, BiasPositionalEmbeddingConfig, T>;
  friend Base;

public:
  using Config = BiasPositionalEmbeddingConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit BiasPositionalEmbedding(const Config& config, std::uint64_t seed = 0) : Base(config) {
    detail::posemb::check_table(Config::type_name, "the expanded bias",
                                {config.input_shape[0], config.input_shape[1], config.input_shape[2]}, sizeof(T));
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    return {{2, c.input_shape[0], c.input_shape[1], c.input_shape[2]}};
  }

  /// Scores `[B, h, Nq, Nk]` plus the bias.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    const ConstTensorView<T, 4> v = view_of<T, 4>(x);
    check_input(shape_of(v));
    const Tensor<T, 3> bias = attention_bias();
    Tensor<T, 4> y(v.dimensions());
    const Index per = bias.size();
    for (Index b = 0; per > 0 && b < v.dimension(0); ++b)
      for (Index i = 0; i < per; ++i) y.data()[b * per + i] = v.data()[b * per + i] + bias.data()[i];
    return y;
  }

  /// The bias expanded to `[h, Nq, Nk]`.
  [[nodiscard]] Tensor<T, 3> attention_bias() const {
    this->check_weights();
    const Index h = config_.input_shape[0], nq = config_.input_shape[1], nk = config_.input_shape[2];
    const Weight<T>& w = this->weight(slot_);
    Tensor<T, 3> out(h, nq, nk);
    if (w.shape.size() == 1) {
      for (Index i = 0; i < h * nq; ++i) std::copy_n(w.data.data(), nk, out.data() + i * nk);
      return out;
    }
    const Index sh = w.shape[0] == 1 ? 0 : 1, sq = w.shape[1] == 1 ? 0 : 1, sk = w.shape[2] == 1 ? 0 : 1;
    for (Index a = 0; a < h; ++a)
      for (Index q = 0; q < nq; ++q)
        for (Index k = 0; k < nk; ++k)
          out(a, q, k) = w.data[static_cast<std::size_t>(((a * sh) * w.shape[1] + q * sq) * w.shape[2] + k * sk)];
    return out;
  }

  /// Replaces the bias by the resized old bias `[h, Nq_s, Nk_s]` (file comment).
  void load_resized_weights(std::span<const T> values, const Shape& shape,
                            ResizeMethod method = ResizeMethod::bilinear) {
    const std::string_view L = Config::type_name;
    this->check_weights();
    if (!config_.default_axis())
      throw ConfigError(fmt::format("{}: load_resized_weights needs the default axis [1, 2, 3], the layer has [{}]",
                                    L, fmt::join(std::span<const int>(config_.axis), ", ")),
                        std::string(L), "axis");
    detail::posemb::check_source<T>(L, "positional_embedding", shape, values, 3);
    const Index h = config_.input_shape[0], nq = config_.input_shape[1], nk = config_.input_shape[2];
    const Index qs = detail::posemb::isqrt(shape[1]), ks = detail::posemb::isqrt(shape[2]);
    if (shape[0] != h || qs * qs != shape[1] || ks * ks != shape[2])
      throw ShapeError(fmt::format("{}: load_resized_weights: the source 'positional_embedding' must be [{}, q², k²] "
                                   "(square query and key grids), got {}",
                                   L, h, shape_str(shape)));
    const Index qh = config_.attn_height > 0 ? config_.attn_height : detail::posemb::isqrt(nq), qw = nq / qh;
    const Index sr = static_cast<Index>(std::sqrt(static_cast<double>(nq) / static_cast<double>(nk)));
    const Index kvh = sr > 0 ? qh / sr : 0, kvw = kvh > 0 ? nk / kvh : 0;
    if (qh * qw != nq || sr < 1 || kvh < 1 || kvh * kvw != nk)
      throw ShapeError(fmt::format("{}: load_resized_weights: the target grids do not fit the layer's [{}, {}, {}]: "
                                   "query grid {}x{} (attn_height = {}), spatial reduction {}, key grid {}x{}",
                                   L, h, nq, nk, qh, qw, config_.attn_height, sr, kvh, kvw));
    // 1. h images qs x qs with ks² channels -> (qh, qw)
    const Tensor<T, 4> a = detail::posemb::resize<T>(values.data(), h, qs, qs, ks * ks, qh, qw, method, L);
    // 2. [h, Q, ks, ks] -> [h, ks, ks, Q] -> (kvh, kvw)
    Tensor<T, 4> t(h, ks, ks, nq);
    for (Index n = 0; n < h; ++n)
      for (Index q = 0; q < nq; ++q)
        for (Index k = 0; k < ks * ks; ++k) t.data()[(n * ks * ks + k) * nq + q] = a.data()[(n * nq + q) * ks * ks + k];
    const Tensor<T, 4> b = detail::posemb::resize<T>(t.data(), h, ks, ks, nq, kvh, kvw, method, L);
    // 3. [h, K, Q] -> [h, Q, K]
    std::vector<T> out(static_cast<std::size_t>(h * nq * nk));
    for (Index n = 0; n < h; ++n)
      for (Index k = 0; k < nk; ++k)
        for (Index q = 0; q < nq; ++q)
          out[static_cast<std::size_t>((n * nq + q) * nk + k)] = b.data()[(n * nk + k) * nq + q];
    this->weights_[slot_.index].data = std::move(out);
  }
  void load_resized_weights(const Weight<T>& source, ResizeMethod method = ResizeMethod::bilinear) {
    load_resized_weights(std::span<const T>(source.data), source.shape, method);
  }

private:
  using Base::config_, Base::weights_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    slot_ = w.add("positional_embedding", config_.bias_shape(), config_.initializer, seed);
  }

  void check_input(const Shape& x) const {
    const Shape built{config_.input_shape[0], config_.input_shape[1], config_.input_shape[2]};
    detail::posemb::check_built(Config::type_name, "x", x, built, "(scores [B, heads, Nq, Nk] of the input_shape)");
  }

  WeightSlot slot_;
};

}  // namespace attn
