/// \file
/// `mlp_pairwise_positional_embedding` — Swin-V2's continuous relative position bias: a log-spaced
/// table of 2-D window offsets through a small MLP (2 → hidden_dim → heads), gathered by a relative
/// index, squashed by `16·sigmoid` and added to the attention scores (`MlpPairwisePositionalEmbedding`,
/// the seed era's `PairWiseRelativePositionalEmbedding` plus its caller's `meta_dense_1/2`; Liu et al.,
/// 2022, "Swin Transformer V2: Scaling Up Capacity and Resolution"; spec kcam_attention_layers.md §4.7,
/// Appendix A.1, B.5 and the errata).
///
/// Relative mode (`use_absolute_pos = false`, default): input the scores `[B, h, Nq, Nq]`,
/// `input_shape = [h, Nq, Nq]` (required). Window `wh = attn_height` (or `⌊sqrt(Nq)⌋` when -1),
/// `ww = attn_width` (or `Nq // wh`); `pad = Nq − wh·ww ≥ 0` leading tokens (e.g. a class token) get
/// bias 0 in their rows and columns. Scale `(sy, sx) = (wh, ww)` when `pos_scale` is -1, else
/// `pos_scale` (an int or `(height, width)`: the window the weights were trained with).
///   - table `T [(2wh − 1)(2ww − 1), 2]` (ops/relpos.hpp `swin_v2_relative_coords_table`): row
///     `(Δy + wh − 1)(2ww − 1) + (Δx + ww − 1)` holds `sign(u)·log2(1 + |u|)/3` for `u = 8Δy/(sy − 1)` and
///     likewise `v = 8Δx/(sx − 1)`;
///   - `E = relu(T·hidden_weight + hidden_bias)·out` `[R, h]`; `G[hd, i, j] = 16·sigmoid(E[I[i, j], hd])`;
///   - `y = x + G` (broadcast over the batch).
/// Index `I [wh·ww, wh·ww]`: `relative_index = "reference"` (default) is the reference's
/// (ops/relpos.hpp `kcam_relative_position_index`: token p has `a = p mod wh`, `b = p div wh`,
/// `I = (a_p − a_q + wh − 1) + (b_p − b_q + ww − 1)(2wh − 1)`), which for non-square windows does not match
/// the table's `(Δy, Δx)` order (spec §4.7.a: it scrambles offsets; kept for weight parity);
/// `relative_index = "raster"` is the raster-correct index (ops/relpos.hpp `relative_position_index`:
/// offsets query − key, `(Δy + wh − 1)(2ww − 1) + (Δx + ww − 1)`). Both agree for square windows.
///
/// Absolute mode (`use_absolute_pos = true`, not used by Swin-V2): input `[B, H, W, C]`
/// (`input_shape = [H, W, C]`) or, through the typed class, `[B, N, C]` (`[N, C]`, grid
/// `H = attn_height` or `⌊sqrt(N)⌋`, `W = attn_width` or `N // H`, `H·W = N`);
/// `y = x + relu(coords·hidden_weight + hidden_bias)·out` with `coords[y, x] = (y/⌊H/2⌋ − 1, x/⌊W/2⌋ − 1)`.
///
/// Weights (reference names, Keras layout): `hidden_weight [2, hidden_dim]` (glorot_uniform),
/// `hidden_bias [hidden_dim]` (zeros), `out [hidden_dim, h]` (relative) or `[hidden_dim, C]` (absolute;
/// glorot_uniform). Deploy mode (`is_deploy_mode = true`): the single weight `deploy_bias
/// [1, *input_shape]` (zeros until set) replaces them and the forward is `x + deploy_bias`;
/// `switch_to_deploy()` turns a trained layer into one (the bias computed once, as the reference does by
/// running the layer on zeros). Seed era: `PairWiseRelativePositionalEmbedding<T>` names the same class;
/// `load_pair_wise_weights(meta_dense_1/kernel, meta_dense_1/bias, meta_dense_2/kernel)` takes the
/// seed-era caller's weights (same math, spec Appendix A.1), and `relative_coords_table()` /
/// `relative_position_index()` are the seed-era layer's outputs `T` and `I`. The factory knows the type
/// by its HEAD name only.
///
/// Differs from the reference (spec errata): a window of size 1 on an axis with `pos_scale` -1, a
/// `pos_scale` of 1, or `⌊H/2⌋ = 0` / `⌊W/2⌋ = 0` in absolute mode divide by zero there and are a
/// ConfigError here; so are `Nq ≠ Nk` and a window larger than the tokens.
///
/// API for the blocks: `attention_bias()` is `G` `[h, Nq, Nq]` (the core's `[heads, Nq, Nk]`), computed
/// once per call (relative mode only; ConfigError in absolute mode).
/// Errors: ConfigError for the config, ShapeError for inputs other than the input_shape and for
/// seed-era weights of the wrong shape, WeightsError for weights changed through parameters().
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/positional.hpp"
#include "attn/ops/relpos.hpp"

namespace attn {

inline constexpr std::array<std::string_view, 2> mlp_pairwise_index_names{"reference", "raster"};

struct MlpPairwisePositionalEmbeddingConfig {
  IntList input_shape{};
  int hidden_dim = 512;
  int attn_height = -1;
  int attn_width = -1;
  Size2 pos_scale{-1, -1};
  bool use_absolute_pos = false;
  bool is_deploy_mode = false;
  std::string_view relative_index = "reference";

  static constexpr std::string_view type_name = "mlp_pairwise_positional_embedding";
  static constexpr std::string_view class_name = "MlpPairwisePositionalEmbedding";
  static constexpr std::string_view description =
      "Swin-V2's continuous relative position bias: log-spaced window offsets through an MLP, gathered, "
      "16*sigmoid, added to scores [B, h, N, N] (or an MLP of absolute coordinates added to features).";
  static constexpr std::string_view use_case =
      "Position bias of Swin-V2 window attention, transferable across window sizes (pos_scale); deploy "
      "mode precomputes the bias.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = MlpPairwisePositionalEmbeddingConfig;
    return std::array{
        Field<C>{.name = "input_shape", .member = member<&C::input_shape>, .required = true,
                 .example = "[2, 12, 12]", .range = positive, .length = {.min = 2, .max = 3},
                 .doc = "The input's extents without the batch axis: scores [heads, N, N] (relative mode), "
                        "[H, W, C] or [N, C] (absolute mode)."},
        Field<C>{.name = "hidden_dim", .member = member<&C::hidden_dim>, .range = positive,
                 .doc = "Width of the MLP's hidden layer."},
        Field<C>{.name = "attn_height", .member = member<&C::attn_height>, .range = {.min = at_least(-1)},
                 .doc = "Window (grid) height; -1: floor(sqrt(N))."},
        Field<C>{.name = "attn_width", .member = member<&C::attn_width>, .range = {.min = at_least(-1)},
                 .doc = "Window (grid) width; -1: N // height."},
        Field<C>{.name = "pos_scale", .member = member<&C::pos_scale>, .range = {.min = at_least(-1)},
                 .doc = "Window size the offsets are normalised by (height, width); -1: the window."},
        Field<C>{.name = "use_absolute_pos", .member = member<&C::use_absolute_pos>,
                 .doc = "An MLP of absolute coordinates added to features instead of a relative bias."},
        Field<C>{.name = "is_deploy_mode", .member = member<&C::is_deploy_mode>,
                 .doc = "A precomputed 'deploy_bias' weight replaces the MLP."},
        Field<C>{.name = "relative_index", .member = member<&C::relative_index>,
                 .choices = mlp_pairwise_index_names,
                 .doc = "'reference': the reference's index (scrambles non-square windows); 'raster': the "
                        "raster-correct index."},
    };
  }

  [[nodiscard]] Index n_tokens() const {
    return use_absolute_pos ? (input_shape.size() == 3 ? input_shape[0] * input_shape[1] : input_shape[0])
                            : input_shape[1];
  }
  /// The window / grid (height, width).
  [[nodiscard]] std::pair<Index, Index> grid() const {
    if (use_absolute_pos && input_shape.size() == 3) return {input_shape[0], input_shape[1]};
    const Index n = n_tokens(), h = attn_height > 0 ? attn_height : detail::posemb::isqrt(n);
    return {h, attn_width > 0 ? Index(attn_width) : (h > 0 ? n / h : 0)};
  }
  [[nodiscard]] std::pair<Index, Index> scale() const {
    const auto [h, w] = grid();
    return {pos_scale[0] == -1 ? h : pos_scale[0], pos_scale[1] == -1 ? w : pos_scale[1]};
  }
  [[nodiscard]] Index out_width() const { return use_absolute_pos ? input_shape[input_shape.size() - 1] : input_shape[0]; }

  void check(Problems& p) const {
    if (attn_height == 0) p.push_back({"attn_height", "attn_height must be -1 or positive, got 0"});
    if (attn_width == 0) p.push_back({"attn_width", "attn_width must be -1 or positive, got 0"});
    for (int v : pos_scale)
      if (v == 0 || v == 1)
        p.push_back({"pos_scale", fmt::format("pos_scale must be -1 or at least 2 (the offsets are divided by "
                                              "pos_scale - 1), got ({}, {})",
                                              pos_scale[0], pos_scale[1])});
    if (!p.empty() || input_shape.size() < 2) return;
    const auto [h, w] = grid();
    if (!use_absolute_pos) {
      if (input_shape.size() != 3 || input_shape[1] != input_shape[2]) {
        p.push_back({"input_shape", fmt::format("relative mode takes square scores [heads, N, N], got {}",
                                                shape_str(Shape(input_shape.begin(), input_shape.end())))});
        return;
      }
      if (h < 1 || w < 1 || h * w > n_tokens()) {
        p.push_back({"attn_height", fmt::format("the window {}x{} does not fit the {} tokens", h, w, n_tokens())});
        return;
      }
      const auto [sy, sx] = scale();
      if (sy < 2 || sx < 2)
        p.push_back({"pos_scale", fmt::format("the window {}x{} has an axis of size 1: the offsets would be divided "
                                              "by zero; set pos_scale (at least 2) for it",
                                              h, w)});
    } else {
      if (h < 1 || w < 1 || h * w != n_tokens()) {
        p.push_back({"attn_height", fmt::format("the {} tokens do not form a grid {}x{}", n_tokens(), h, w)});
        return;
      }
      if (h / 2 == 0 || w / 2 == 0)
        p.push_back({"input_shape", fmt::format("absolute mode needs a grid of at least 2x2 (coordinates are "
                                                "divided by floor(size / 2)), got {}x{}",
                                                h, w)});
    }
  }
};
static_assert(config_table_is_sound<MlpPairwisePositionalEmbeddingConfig>());

template <class T = float>
class MlpPairwisePositionalEmbedding
    : public LayerBase<MlpPairwisePositionalEmbedding<T>, MlpPairwisePositionalEmbeddingConfig, T> {
  using Base = LayerBase<MlpPairwisePositionalEmbedding, MlpPairwisePositionalEmbeddingConfig, T>;
  friend Base;

public:
  using Config = MlpPairwisePositionalEmbeddingConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit MlpPairwisePositionalEmbedding(const Config& config, std::uint64_t seed = 0)
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

  /// The relative index `I [wh·ww, wh·ww]` of the configured `relative_index` (empty in absolute mode).
  [[nodiscard]] const ops::IndexTable& relative_position_index() const noexcept { return index_; }
  /// The log-spaced table `T [(2wh − 1)(2ww − 1), 2]` (the seed-era layer's output; empty in absolute mode).
  [[nodiscard]] Tensor<T, 2> relative_coords_table() const {
    if (config_.use_absolute_pos) return Tensor<T, 2>(0, 2);
    const auto [wh, ww] = config_.grid();
    const auto [sy, sx] = config_.scale();
    const std::vector<double> t = ops::swin_v2_relative_coords_table(wh, ww, sy, sx, Config::type_name);
    Tensor<T, 2> out(static_cast<Index>(t.size() / 2), 2);
    for (std::size_t i = 0; i < t.size(); ++i) out.data()[i] = static_cast<T>(t[i]);
    return out;
  }

  /// The bias `G [h, Nq, Nq]` (relative mode).
  [[nodiscard]] Tensor<T, 3> attention_bias() const {
    if (config_.use_absolute_pos)
      throw ConfigError(fmt::format("{}: attention_bias() needs relative mode (use_absolute_pos = false)",
                                    Config::type_name),
                        std::string(Config::type_name), "use_absolute_pos");
    const std::vector<T> b = additive();
    Tensor<T, 3> out(config_.input_shape[0], config_.input_shape[1], config_.input_shape[2]);
    std::copy(b.begin(), b.end(), out.data());
    return out;
  }

  /// x `[B, h, Nq, Nq]` (relative) or `[B, H, W, C]` (absolute) plus the bias.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    return add<4>(view_of<T, 4>(x));
  }
  /// Absolute mode on tokens: x `[B, N, C]` plus the embedding.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x) const {
    return add<3>(view_of<T, 3>(x));
  }

  /// Turns the layer into its deploy form: the bias is computed once from the MLP weights and kept as
  /// `deploy_bias [1, *input_shape]`, the only weight afterwards (`is_deploy_mode` set). No-op when
  /// already deployed.
  void switch_to_deploy() {
    if (config_.is_deploy_mode) return;
    std::vector<T> bias = additive();
    config_.is_deploy_mode = true;
    this->reset_parameters(0);
    this->weights_[deploy_.index].data = std::move(bias);
  }

  /// Loads the seed-era weights (`meta_dense_1/kernel [2, hidden_dim]`, `meta_dense_1/bias [hidden_dim]`,
  /// `meta_dense_2/kernel [hidden_dim, h]`) into `hidden_weight`, `hidden_bias`, `out` (same math, spec
  /// Appendix A.1). ShapeError (weights unchanged) for other shapes or a deployed layer.
  void load_pair_wise_weights(const Weight<T>& meta_dense_1_kernel, const Weight<T>& meta_dense_1_bias,
                              const Weight<T>& meta_dense_2_kernel) {
    this->check_weights();
    if (config_.is_deploy_mode)
      throw ShapeError(fmt::format("{}: load_pair_wise_weights: a deployed layer has no MLP weights",
                                   Config::type_name));
    const Weight<T>* src[3] = {&meta_dense_1_kernel, &meta_dense_1_bias, &meta_dense_2_kernel};
    const WeightSlot dst[3] = {hidden_weight_, hidden_bias_, out_};
    constexpr std::array<std::string_view, 3> names{"meta_dense_1/kernel", "meta_dense_1/bias", "meta_dense_2/kernel"};
    for (int i = 0; i < 3; ++i) {
      const Weight<T>& d = this->weight(dst[i]);
      if (src[i]->shape != d.shape || src[i]->size() != d.size())
        throw ShapeError(fmt::format("{}: load_pair_wise_weights: '{}' must have shape {} (for '{}'), got {}",
                                     Config::type_name, names[static_cast<std::size_t>(i)], shape_str(d.shape), d.name,
                                     shape_str(src[i]->shape)));
    }
    for (int i = 0; i < 3; ++i) this->weights_[dst[i].index].data = src[i]->data;
  }

private:
  using Base::config_, Base::weights_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    if (config_.is_deploy_mode) {
      Shape s{1};
      s.insert(s.end(), config_.input_shape.begin(), config_.input_shape.end());
      const std::size_t slot = w.add("deploy_bias", s, "zeros", seed);
      w[slot].trainable = false;  // as the reference's
      deploy_ = slot;
      hidden_weight_ = hidden_bias_ = out_ = WeightSlot{};
      return;
    }
    const Index hd = config_.hidden_dim;
    const std::size_t hw = w.add("hidden_weight", {2, hd}, "glorot_uniform", seed);
    const std::size_t hb = w.add("hidden_bias", {hd}, "zeros", seed);
    const std::size_t o = w.add("out", {hd, config_.out_width()}, "glorot_uniform", seed);
    hidden_weight_ = hw;
    hidden_bias_ = hb;
    out_ = o;
    deploy_ = WeightSlot{};
  }

  void check_input(const Shape& x) const {
    const Shape built(config_.input_shape.begin(), config_.input_shape.end());
    detail::posemb::check_built(Config::type_name, "x", x, built,
                                config_.use_absolute_pos ? "(features of the input_shape)"
                                                         : "(scores [B, heads, N, N] of the input_shape)");
  }

  /// relu(rows·hidden_weight + hidden_bias)·out for `n` coordinate pairs, `[n, width]`, in double.
  std::vector<double> mlp(const std::vector<double>& coords) const {
    const Weight<T>& hw = this->weight(hidden_weight_);
    const Weight<T>& hb = this->weight(hidden_bias_);
    const Weight<T>& o = this->weight(out_);
    const Index hd = config_.hidden_dim, width = config_.out_width(), n = static_cast<Index>(coords.size() / 2);
    std::vector<double> out(static_cast<std::size_t>(n * width), 0.0), hidden(static_cast<std::size_t>(hd));
    for (Index r = 0; r < n; ++r) {
      const double u = coords[static_cast<std::size_t>(2 * r)], v = coords[static_cast<std::size_t>(2 * r + 1)];
      for (Index j = 0; j < hd; ++j) {
        const auto J = static_cast<std::size_t>(j);
        hidden[J] = std::max(0.0, u * double(hw.data[J]) + v * double(hw.data[static_cast<std::size_t>(hd + j)]) +
                                      double(hb.data[J]));
      }
      double* row = out.data() + r * width;
      for (Index j = 0; j < hd; ++j) {
        const double a = hidden[static_cast<std::size_t>(j)];
        if (a == 0.0) continue;
        const T* orow = o.data.data() + j * width;
        for (Index c = 0; c < width; ++c) row[c] += a * double(orow[c]);
      }
    }
    return out;
  }

  /// The term added to every batch item, `input_shape` row-major.
  std::vector<T> additive() const {
    this->check_weights();
    if (config_.is_deploy_mode) return this->weight(deploy_).data;
    const auto [wh, ww] = config_.grid();
    if (config_.use_absolute_pos) {
      std::vector<double> coords;
      coords.reserve(static_cast<std::size_t>(2 * wh * ww));
      for (Index y = 0; y < wh; ++y)
        for (Index x = 0; x < ww; ++x) {
          coords.push_back(static_cast<double>(y) / static_cast<double>(wh / 2) - 1.0);
          coords.push_back(static_cast<double>(x) / static_cast<double>(ww / 2) - 1.0);
        }
      const std::vector<double> e = mlp(coords);
      return std::vector<T>(e.begin(), e.end());
    }
    const auto [sy, sx] = config_.scale();
    const std::vector<double> e = mlp(ops::swin_v2_relative_coords_table(wh, ww, sy, sx, Config::type_name));
    const Index heads = config_.input_shape[0], nq = config_.input_shape[1], pad = nq - wh * ww, n = wh * ww;
    const Index r = (2 * wh - 1) * (2 * ww - 1);
    std::vector<T> table(static_cast<std::size_t>(heads * r));  // [heads, R], 16·sigmoid applied
    for (Index t = 0; t < r; ++t)
      for (Index hd = 0; hd < heads; ++hd)
        table[static_cast<std::size_t>(hd * r + t)] =
            static_cast<T>(16.0 / (1.0 + std::exp(-e[static_cast<std::size_t>(t * heads + hd)])));
    std::vector<T> g(static_cast<std::size_t>(heads * n * n));
    ops::gather_relative_bias(table.data(), heads, r, true, index_, g.data(), Config::type_name);
    if (pad == 0) return g;
    std::vector<T> out(static_cast<std::size_t>(heads * nq * nq), T(0));
    for (Index hd = 0; hd < heads; ++hd)
      for (Index i = 0; i < n; ++i)
        std::copy_n(g.data() + (hd * n + i) * n, n, out.data() + (hd * nq + pad + i) * nq + pad);
    return out;
  }

  template <int R>
  Tensor<T, R> add(const ConstTensorView<T, R>& x) const {
    check_input(shape_of(x));
    const std::vector<T> b = additive();
    Tensor<T, R> y(x.dimensions());
    const Index per = static_cast<Index>(b.size());
    for (Index i = 0; per > 0 && i < x.dimension(0); ++i)
      for (Index k = 0; k < per; ++k) y.data()[i * per + k] = x.data()[i * per + k] + b[static_cast<std::size_t>(k)];
    return y;
  }

  static ops::IndexTable make_index(const Config& c) {
    if (c.use_absolute_pos) return {};
    const auto [wh, ww] = c.grid();
    detail::posemb::check_table(Config::type_name, "the relative index", {wh * ww, wh * ww}, sizeof(Index));
    detail::posemb::check_table(Config::type_name, "the bias", {c.input_shape[0], c.input_shape[1], c.input_shape[2]},
                                sizeof(T));
    return c.relative_index == "raster" ? ops::relative_position_index(wh, ww, Config::type_name)
                                        : ops::kcam_relative_position_index(wh, ww, false, -1, Config::type_name);
  }

  ops::IndexTable index_;
  WeightSlot hidden_weight_, hidden_bias_, out_, deploy_;
};

/// The seed era's name of the layer (spec §4.7.b): the same class (see load_pair_wise_weights).
template <class T = float>
using PairWiseRelativePositionalEmbedding = MlpPairwisePositionalEmbedding<T>;

}  // namespace attn
