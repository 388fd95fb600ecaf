/// \file
/// `positional_embedding` — a learned absolute position embedding added to the features (VOLO's
/// `PositionalEmbedding`; Yuan et al., 2021, "VOLO: Vision Outlooker for Visual Recognition"; spec
/// kcam_attention_layers.md §4.8).
///
/// Shapes: `input_shape` (required) is the input without its batch axis, the shape the reference
/// builds the weight from: `[H, W, C]` for images `[B, H, W, C]` or `[N, C]` for tokens `[B, N, C]`.
/// Output: the input's shape, `y = x + positional_embedding` (broadcast over the batch). Through the
/// factory (AnyLayer) the input is rank 4, so an `[N, C]` layer is used through the typed class
/// (`forward` on a rank-3 tensor); an input of the other rank or other extents is a ShapeError naming
/// the layer.
///
/// Weight (reference name, Keras layout): `positional_embedding [1, *input_shape]`, initialised from
/// TruncatedNormal(0, 0.2) (the reference's stddev, ten times the usual 0.02; only training from
/// scratch sees it).
///
/// `input_height` (default -1): only used by `load_resized_weights` on tokens, the target grid height
/// (-1: ⌊sqrt(N)⌋). Values other than -1 must be positive ("input_height must be -1 or positive, got 0").
///
/// `load_resized_weights(source, shape, method = ResizeMethod::bilinear)` (the reference's, HEAD's default
/// method; the seed-era default was nearest) replaces the weight by a resized old one:
///   - images: the old `[1, h_s, w_s, C]` is resized to `(H, W)` (TF2 half-pixel bilinear or nearest,
///     ops/resize.hpp; = PyTorch `interpolate(..., align_corners=False)`, resp. `nearest-exact`);
///   - tokens: from the old `[1, N_s, C]`, `side = ⌊sqrt(N_s)⌋`; the LAST `side²` tokens are a square
///     `side × side` image resized to `(Hg, Wg)`, `Hg = input_height` or `⌊sqrt(N)⌋`, `Wg = N // Hg` (the
///     reference's rule), and the `N_s − side²` leading (class) tokens are copied in front unchanged.
/// Beyond the reference (spec errata): the reference's default grid height counts the class tokens and
/// gives a wrong grid for non-square targets; here `Hg·Wg` must equal `N` minus the source's leading
/// tokens (so source and target have the same number of leading tokens), else a ShapeError that asks
/// for `input_height`. A source of the wrong rank, channels, or non-positive extents is a ShapeError;
/// on any error the weight is unchanged.
///
/// API for the blocks: `embedding()` is the weight `[1, *input_shape]` itself (nothing to compute).
/// Errors: ConfigError for the config (through the factory with the reference's wrapping), ShapeError
/// for inputs and resize sources, WeightsError for a weight changed through parameters().
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/positional.hpp"

namespace attn {

struct PositionalEmbeddingConfig {
  IntList input_shape{};
  int input_height = -1;

  static constexpr std::string_view type_name = "positional_embedding";
  static constexpr std::string_view class_name = "PositionalEmbedding";
  static constexpr std::string_view description =
      "Learned absolute position embedding of the input's full shape, added to the features (VOLO).";
  static constexpr std::string_view use_case =
      "Absolute positions for ViT-style token sequences or feature maps; resizable to a new input "
      "resolution with load_resized_weights.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = PositionalEmbeddingConfig;
    return std::array{
        Field<C>{.name = "input_shape", .member = member<&C::input_shape>, .required = true,
                 .example = "[4, 5, 8]", .range = positive, .length = {.min = 2, .max = 3},
                 .doc = "The input's extents without the batch axis: [H, W, C] (images) or [N, C] (tokens); "
                        "the weight is [1, *input_shape]."},
        Field<C>{.name = "input_height", .member = member<&C::input_height>, .range = {.min = at_least(-1)},
                 .doc = "Grid height of a token input for load_resized_weights; -1: floor(sqrt(N))."},
    };
  }

  void check(Problems& p) const {
    if (input_height == 0)
      p.push_back({"input_height", fmt::format("input_height must be -1 or positive, got {}", input_height)});
  }
};
static_assert(config_table_is_sound<PositionalEmbeddingConfig>());

template <class T = float>
class PositionalEmbedding : public LayerBase<PositionalEmbedding<T>, PositionalEmbeddingConfig, T> {
  using Base = LayerBase<PositionalEmbedding, PositionalEmbeddingConfig, T>;
  friend Base;

public:
  using Config = PositionalEmbeddingConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit PositionalEmbedding(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  /// The input's shape.
  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    Shape s{2};
    s.insert(s.end(), c.input_shape.begin(), c.input_shape.end());
    return {s};
  }

  /// x `[B, H, W, C]` (a layer built for `[H, W, C]`) plus the embedding.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    return add<4>(view_of<T, 4>(x));
  }
  /// x `[B, N, C]` (a layer built for `[N, C]`) plus the embedding.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x) const {
    return add<3>(view_of<T, 3>(x));
  }

  /// The weight `[1, *input_shape]`.
  [[nodiscard]] const Weight<T>& embedding() const {
    this->check_weights();
    return this->weight(slot_);
  }

  /// Replaces the weight by the resized `source` (file comment): `shape` is the old weight's shape,
  /// `[1, h_s, w_s, C]` or `[1, N_s, C]`, `values` its row-major values.
  void load_resized_weights(std::span<const T> values, const Shape& shape,
                            ResizeMethod method = ResizeMethod::bilinear) {
    const std::string_view L = Config::type_name;
    this->check_weights();
    const auto& in = config_.input_shape;
    detail::posemb::check_source<T>(L, "positional_embedding", shape, values, in.size() + 1);
    const Index C = in[in.size() - 1];
    if (shape[0] != 1 || shape.back() != C)
      throw ShapeError(fmt::format("{}: load_resized_weights: the source 'positional_embedding' must have shape "
                                   "[1, ..., {}], got {}",
                                   L, C, shape_str(shape)));
    std::vector<T> out;
    if (in.size() == 3) {
      const Tensor<T, 4> r =
          detail::posemb::resize<T>(values.data(), 1, shape[1], shape[2], C, in[0], in[1], method, L);
      out.assign(r.data(), r.data() + r.size());
    } else {
      const Index ns = shape[1], side = detail::posemb::isqrt(ns), lead = ns - side * side, n = in[0];
      const Index hg = config_.input_height > 0 ? config_.input_height : detail::posemb::isqrt(n);
      const Index wg = n / hg;
      if (wg < 1 || hg * wg + lead != n)
        throw ShapeError(fmt::format("{}: load_resized_weights: the source has {} leading token(s) before a {}x{} "
                                     "grid, so the target's {} tokens need a grid of {}; the grid {}x{} (height "
                                     "from input_height = {}) does not fit: set input_height",
                                     L, lead, side, side, n, n - lead, hg, wg, config_.input_height));
      const Tensor<T, 4> r =
          detail::posemb::resize<T>(values.data() + lead * C, 1, side, side, C, hg, wg, method, L);
      out.assign(values.begin(), values.begin() + lead * C);
      out.insert(out.end(), r.data(), r.data() + r.size());
    }
    this->weights_[slot_.index].data = std::move(out);
  }
  void load_resized_weights(const Weight<T>& source, ResizeMethod method = ResizeMethod::bilinear) {
    load_resized_weights(std::span<const T>(source.data), source.shape, method);
  }

private:
  using Base::config_, Base::weights_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    Shape s{1};
    s.insert(s.end(), config_.input_shape.begin(), config_.input_shape.end());
    const std::size_t slot = w.add("positional_embedding", s, "zeros", seed);
    detail::posemb::fill_truncated_normal(w[slot], 0.2, seed);
    slot_ = slot;
  }

  void check_input(const Shape& x) const {
    const Shape built(config_.input_shape.begin(), config_.input_shape.end());
    detail::posemb::check_built(Config::type_name, "x", x, built, "(the input_shape the layer was built for)");
  }

  template <int R>
  Tensor<T, R> add(const ConstTensorView<T, R>& x) const {
    check_input(shape_of(x));
    this->check_weights();
    Tensor<T, R> y(x.dimensions());
    const Index per = static_cast<Index>(this->weight(slot_).data.size());
    const T* pe = this->weight(slot_).data.data();
    for (Index b = 0; per > 0 && b < x.dimension(0); ++b)
      for (Index i = 0; i < per; ++i) y.data()[b * per + i] = x.data()[b * per + i] + pe[i];
    return y;
  }

  WeightSlot slot_;
};

}  // namespace attn
