/// \file
/// `multi_head_relative_positional_embedding` — a learned relative-position bias table per head,
/// gathered by a relative index and added to attention scores (BEiT's
/// `MultiHeadRelativePositionalEmbedding`; Bao et al., 2021, "BEiT: BERT Pre-Training of Image
/// Transformers"; spec kcam_attention_layers.md §4.6, Appendix B.1).
///
/// Shapes: input the scores `[B, h, Nq, Nk]`; `input_shape` (required) = `[h, Nq, Nk]`, the extents
/// the reference builds from. Output the same shape: `y[b, hd, i, j] = x[b, hd, i, j] + table[hd, I[i, j]]`.
/// With `with_cls_token` (default true) token 0 of queries and keys is a class token (`c = 1`).
/// Grid: `H = attn_height`, or `⌊sqrt(Nq − c)⌋` when -1; `W = ⌊(Nq − c)/H⌋`; `H·W` must equal `Nq − c`
/// and `Nk − c` must lie in `[1, H·W]` (ConfigError otherwise: the reference's index would not match
/// the scores).
///
/// Weight (reference name): `positional_embedding [heads, R]`, `R = (2H − 1)(2W − 1) + 3c`, zeros init
/// (the layer starts as the identity); `heads = num_heads` when not -1, else `h`. A table of 1 head
/// broadcasts over the input's heads; other head counts that differ from `h` are a ConfigError (the
/// reference would broadcast the scores to the table's heads and change the output shape).
///
/// Index `I [Nq, Nk]` (ops/relpos.hpp `kcam_relative_position_index`, reproduced for weight parity):
/// patch token p has `a = p mod H`, `b = p div H`; `I[p, q] = (a_p − a_q + H − 1) + (b_p − b_q + W − 1)(2H − 1)`;
/// with fewer keys than queries only the LAST `Nk − c` patch columns are kept (CMT's reduced keys; no
/// geometric meaning); the class token adds a first row `R − 3`, a first column `R − 2` and
/// `I[0, 0] = R − 1`. For square grids this is the raster index of Swin/BEiT; for `H ≠ W` the fast axis
/// is taken to have length H, which is not the raster geometry (as the reference).
///
/// `load_resized_weights(values, shape, method = ResizeMethod::bilinear)` (HEAD's default; nearest in the
/// seed era): the old table `[heads, R_s]`; `side = ⌊sqrt(R_s − 3c)⌋` (the old relative grid assumed
/// square); its first `side²` entries per head, an image `side × side`, are resized (TF2 half-pixel,
/// ops/resize.hpp) to `(t_h, t_w)`: `t_h = t_w = ⌊sqrt(R − 3c)⌋` when `attn_height` is -1, else
/// `t_h = 2·attn_height − 1`, `t_w = ⌊(R − 3c)/t_h⌋`; with a class token the old last 3 entries are
/// appended. The resize lays the table out in raster order while the index reads it with the height
/// axis fastest, so for a non-square grid a resized table is transposed relative to the index, as in
/// the reference (spec errata). A source whose heads differ, whose entries are not `side² + 3c`, or whose
/// result does not fill the table (`t_h·t_w ≠ R − 3c`) is a ShapeError; the weight is then unchanged.
///
/// API for the blocks: `attention_bias()` is the gathered bias `[heads, Nq, Nk]` (the layout of the
/// attention core; an `AttnBias` of shape `[1, heads, Nq, Nk]`), computed once per call instead of a
/// pass over `[B, h, Nq, Nk]`; `relative_position_index()` is `I`.
#pragma once

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
#include "attn/ops/relpos.hpp"

namespace attn {

struct MultiHeadRelativePositionalEmbeddingConfig {
  IntList input_shape{};
  bool with_cls_token = true;
  int attn_height = -1;
  int num_heads = -1;

  static constexpr std::string_view type_name = "multi_head_relative_positional_embedding";
  static constexpr std::string_view class_name = "MultiHeadRelativePositionalEmbedding";
  static constexpr std::string_view description =
      "Learned relative-position bias table per head (BEiT / Swin style, with class-token entries), "
      "gathered by a relative index and added to attention scores [B, h, Nq, Nk].";
  static constexpr std::string_view use_case =
      "Relative position bias of ViT-style attention over a 2-D token grid (BEiT, CoAtNet, CMT); "
      "resizable to a new input resolution with load_resized_weights.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = MultiHeadRelativePositionalEmbeddingConfig;
    return std::array{
        Field<C>{.name = "input_shape", .member = member<&C::input_shape>, .required = true,
                 .example = "[2, 17, 17]", .range = positive, .length = exact_length(3),
                 .doc = "The scores' extents without the batch axis: [heads, Nq, Nk]."},
        Field<C>{.name = "with_cls_token", .member = member<&C::with_cls_token>,
                 .doc = "Token 0 is a class token (3 extra table entries)."},
        Field<C>{.name = "attn_height", .member = member<&C::attn_height>, .range = {.min = at_least(-1)},
                 .doc = "Grid height H; -1: floor(sqrt(Nq - class token))."},
        Field<C>{.name = "num_heads", .member = member<&C::num_heads>, .range = {.min = at_least(-1)},
                 .doc = "Heads of the table; -1: the input's heads."},
    };
  }

  [[nodiscard]] Index cls() const { return with_cls_token ? 1 : 0; }
  [[nodiscard]] Index grid_height() const {
    return attn_height > 0 ? attn_height : detail::posemb::isqrt(input_shape[1] - cls());
  }
  [[nodiscard]] Index grid_width() const {
    const Index h = grid_height();
    return h > 0 ? (input_shape[1] - cls()) / h : 0;
  }
  [[nodiscard]] Index table_heads() const { return num_heads > 0 ? num_heads : input_shape[0]; }
  [[nodiscard]] Index table_size() const {
    return (2 * grid_height() - 1) * (2 * grid_width() - 1) + 3 * cls();
  }

  void check(Problems& p) const {
    if (attn_height == 0) p.push_back({"attn_height", "attn_height must be -1 or positive, got 0"});
    if (num_heads == 0) p.push_back({"num_heads", "num_heads must be -1 or positive, got 0"});
    if (!p.empty() || input_shape.size() != 3) return;
    const Index c = cls(), nq = input_shape[1], nk = input_shape[2], h = grid_height(), w = grid_width();
    if (nq - c < 1 || h < 1 || w < 1 || h * w != nq - c) {
      p.push_back({"input_shape", fmt::format("{} query tokens{} do not form a grid of height {} (attn_height = {})",
                                              nq, c ? " after the class token" : "", h, attn_height)});
      return;
    }
    if (nk - c < 1 || nk - c > h * w)
      p.push_back({"input_shape", fmt::format("the keys (Nk = {}) must number between {} and {} (the queries' grid "
                                              "{}x{}{})",
                                              nk, 1 + c, h * w + c, h, w, c ? " plus the class token" : "")});
    if (num_heads > 0 && num_heads != 1 && num_heads != input_shape[0])
      p.push_back({"num_heads", fmt::format("num_heads must be -1, 1 or the input's heads ({}), got {}", input_shape[0],
                                            num_heads)});
  }
};
static_assert(config_table_is_sound<MultiHeadRelativePositionalEmbeddingConfig>());

template <class T = float>
class MultiHeadRelativePositionalEmbedding
    : public LayerBase<MultiHeadRelativePositionalEmbedding<T>, MultiHeadRelativePositionalEmbeddingConfig, T> {
  using Base = LayerBase<MultiHeadRelativePositionalEmbedding, MultiHeadRelativePositionalEmbeddingConfig, T>;
  friend Base;

public:
  using Config = MultiHeadRelativePositionalEmbeddingConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit MultiHeadRelativePositionalEmbedding(const Config& config, std::uint64_t seed = 0)
      : Base(config), index_(make_index(config)) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) {
    return {{2, c.input_shape[0], c.input_shape[1], c.input_shape[2]}};
  }

  /// The index `I [Nq, Nk]` (file comment).
  [[nodiscard]] const ops::IndexTable& relative_position_index() const noexcept { return index_; }

  /// The gathered bias `[heads, Nq, Nk]`.
  [[nodiscard]] Tensor<T, 3> attention_bias() const {
    this->check_weights();
    const Index heads = config_.table_heads();
    Tensor<T, 3> out(heads, index_.rows, index_.cols);
    ops::gather_relative_bias(this->weight(slot_).data.data(), heads, config_.table_size(), true, index_, out.data(),
                              Config::type_name);
    return out;
  }

  /// Scores `[B, h, Nq, Nk]` plus the gathered bias.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    const ConstTensorView<T, 4> v = view_of<T, 4>(x);
    check_input(shape_of(v));
    const Tensor<T, 3> bias = attention_bias();
    Tensor<T, 4> y(v.dimensions());
    const Index h = v.dimension(1), per = index_.rows * index_.cols, step = bias.dimension(0) == 1 ? 0 : per;
    for (Index b = 0; b < v.dimension(0); ++b)
      for (Index n = 0; n < h; ++n) {
        const Index o = (b * h + n) * per;
        for (Index i = 0; i < per; ++i) y.data()[o + i] = v.data()[o + i] + bias.data()[n * step + i];
      }
    return y;
  }

  /// Replaces the table by the resized old table `[heads, R_s]` (file comment).
  void load_resized_weights(std::span<const T> values, const Shape& shape,
                            ResizeMethod method = ResizeMethod::bilinear) {
    const std::string_view L = Config::type_name;
    this->check_weights();
    detail::posemb::check_source<T>(L, "positional_embedding", shape, values, 2);
    const Index heads = config_.table_heads(), cp = 3 * config_.cls(), r = config_.table_size();
    const Index side = detail::posemb::isqrt(shape[1] - cp);
    if (shape[0] != heads || shape[1] - cp < 1 || side * side + cp != shape[1])
      throw ShapeError(fmt::format("{}: load_resized_weights: the source 'positional_embedding' must be [{}, s² + {}] "
                                   "(a square relative grid{}), got {}",
                                   L, heads, cp, cp ? " and the 3 class-token entries" : "", shape_str(shape)));
    const Index th = config_.attn_height > 0 ? 2 * static_cast<Index>(config_.attn_height) - 1
                                             : detail::posemb::isqrt(r - cp);
    const Index tw = (r - cp) / th;
    if (th * tw != r - cp)
      throw ShapeError(fmt::format("{}: load_resized_weights: the resized grid {}x{} does not fill the table's {} "
                                   "entries",
                                   L, th, tw, r - cp));
    // [heads, side, side] with heads as channels: [1, side, side, heads]
    Tensor<T, 4> img(1, side, side, heads);
    for (Index n = 0; n < heads; ++n)
      for (Index i = 0; i < side * side; ++i) img.data()[i * heads + n] = values[static_cast<std::size_t>(n * shape[1] + i)];
    const Tensor<T, 4> res = detail::posemb::resize<T>(img.data(), 1, side, side, heads, th, tw, method, L);
    std::vector<T> out(static_cast<std::size_t>(heads * r));
    for (Index n = 0; n < heads; ++n) {
      for (Index i = 0; i < th * tw; ++i) out[static_cast<std::size_t>(n * r + i)] = res.data()[i * heads + n];
      for (Index k = 0; k < cp; ++k)
        out[static_cast<std::size_t>(n * r + th * tw + k)] = values[static_cast<std::size_t>(n * shape[1] + shape[1] - cp + k)];
    }
    this->weights_[slot_.index].data = std::move(out);
  }
  void load_resized_weights(const Weight<T>& source, ResizeMethod method = ResizeMethod::bilinear) {
    load_resized_weights(std::span<const T>(source.data), source.shape, method);
  }

private:
  using Base::config_, Base::weights_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    slot_ = w.add("positional_embedding", {config_.table_heads(), config_.table_size()}, "zeros", seed);
  }

  void check_input(const Shape& x) const {
    const Shape built{config_.input_shape[0], config_.input_shape[1], config_.input_shape[2]};
    detail::posemb::check_built(Config::type_name, "x", x, built, "(scores [B, heads, Nq, Nk] of the input_shape)");
  }

  static ops::IndexTable make_index(const Config& c) {
    const Shape s{c.input_shape[0], c.input_shape[1], c.input_shape[2]};
    detail::posemb::check_table(Config::type_name, "the relative-position index", {s[1], s[2]}, sizeof(Index));
    detail::posemb::check_table(Config::type_name, "the gathered bias", {c.table_heads(), s[1], s[2]}, sizeof(T));
    return ops::kcam_relative_position_index(c.grid_height(), c.grid_width(), c.with_cls_token, s[2] - c.cls(),
                                             Config::type_name);
  }

  ops::IndexTable index_;
  WeightSlot slot_;
};

}  // namespace attn
