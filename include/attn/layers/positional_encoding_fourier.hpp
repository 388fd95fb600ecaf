/// \file
/// `positional_encoding_fourier` — a fixed 2-D sine/cosine position code projected by a learned linear
/// map and added to the features (EdgeNeXt's `PositionalEncodingFourier`; Maaz et al., 2022,
/// "EdgeNeXt: Efficiently Amalgamated CNN-Transformer Architecture for Mobile Vision Applications";
/// spec kcam_attention_layers.md §4.9, Appendix B.6).
///
/// Shapes: input `[B, H, W, C]` (rank 4, any H, W; C = `channels`), output the same shape.
/// Code (fixed, `fourier_code(H, W)` → `[H, W, 2·filters]`, computed in double): `ε = 1e-6`,
///   `py[i] = (i + 1)/(H + ε)·2π`, `px[j] = (j + 1)/(W + ε)·2π`,
///   `dim_t[m] = temperature^(2·⌊m/2⌋/filters)`,
///   `enc(v)[m] = sin(v/dim_t[m])` (m even), `cos(v/dim_t[m])` (m odd),
///   `PE[y, x] = concat(enc(py[y]), enc(px[x]))` (height code first).
/// Forward: `y = x + (PE·ww + bb)` (broadcast over the batch).
///
/// Weights (reference names, Keras layout): `ww [2·filters, C]` (glorot_uniform), `bb [C]` (zeros; the
/// seed era drew it from glorot too). Their shapes do not depend on H, W, so the layer takes any grid
/// and has no `load_resized_weights`.
/// Parameters: `channels` (required; the reference builds from the input), `filters` (default 32, must
/// be positive and even: "filters must be even, got 31"), `temperature` (default 1e4, positive).
/// Differs from the reference: the code is computed in double for both scalar types (the reference
/// computes it in float32; Appendix B.6 was printed that way and differs from the exact values by up
/// to 5.7e-7).
///
/// API for the blocks: `encoding(H, W)` is the projected code `[H, W, C]` that forward adds.
/// Errors: ConfigError for the config, ShapeError for an input of another rank or channel count,
/// WeightsError for a weight changed through parameters().
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"

namespace attn {

struct PositionalEncodingFourierConfig {
  int channels = 0;
  int filters = 32;
  double temperature = 1e4;

  static constexpr std::string_view type_name = "positional_encoding_fourier";
  static constexpr std::string_view class_name = "PositionalEncodingFourier";
  static constexpr std::string_view description =
      "Fixed 2-D sine/cosine position code through a learned linear projection, added to the features "
      "(EdgeNeXt).";
  static constexpr std::string_view use_case =
      "Absolute positions for feature maps of any size (the weights do not depend on the grid).";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = PositionalEncodingFourierConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "8",
                 .range = positive, .doc = "Input channels C (the last axis)."},
        Field<C>{.name = "filters", .member = member<&C::filters>, .range = positive,
                 .doc = "Code width per spatial axis (even); the code has 2*filters channels."},
        Field<C>{.name = "temperature", .member = member<&C::temperature>, .range = positive,
                 .doc = "Base of the frequencies: dim_t[m] = temperature^(2*floor(m/2)/filters)."},
    };
  }

  void check(Problems& p) const {
    if (filters > 0 && filters % 2 != 0)
      p.push_back({"filters", fmt::format("filters must be even, got {}", filters)});
  }
};
static_assert(config_table_is_sound<PositionalEncodingFourierConfig>());

template <class T = float>
class PositionalEncodingFourier
    : public LayerBase<PositionalEncodingFourier<T>, PositionalEncodingFourierConfig, T> {
  using Base = LayerBase<PositionalEncodingFourier, PositionalEncodingFourierConfig, T>;
  friend Base;

public:
  using Config = PositionalEncodingFourierConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit PositionalEncodingFourier(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 3, 5, c.channels}}; }

  /// The fixed code `[H, W, 2·filters]` (file comment), in double.
  [[nodiscard]] static Tensor<double, 3> fourier_code(Index h, Index w, int filters, double temperature) {
    const Index f = filters;
    Tensor<double, 3> pe(h, w, 2 * f);
    constexpr double eps = 1e-6, scale = 2.0 * std::numbers::pi;
    const auto enc = [&](double v, Index m) {
      const double d = std::pow(temperature, 2.0 * static_cast<double>(m / 2) / static_cast<double>(f));
      return m % 2 == 0 ? std::sin(v / d) : std::cos(v / d);
    };
    for (Index y = 0; y < h; ++y)
      for (Index x = 0; x < w; ++x)
        for (Index m = 0; m < f; ++m) {
          pe(y, x, m) = enc(static_cast<double>(y + 1) / (static_cast<double>(h) + eps) * scale, m);
          pe(y, x, f + m) = enc(static_cast<double>(x + 1) / (static_cast<double>(w) + eps) * scale, m);
        }
    return pe;
  }
  [[nodiscard]] Tensor<double, 3> fourier_code(Index h, Index w) const {
    return fourier_code(h, w, config_.filters, config_.temperature);
  }

  /// The projected code `PE·ww + bb`, `[H, W, C]`.
  [[nodiscard]] Tensor<T, 3> encoding(Index h, Index w) const {
    this->check_weights();
    const Index f2 = 2 * static_cast<Index>(config_.filters), c = config_.channels;
    const Tensor<double, 3> pe = fourier_code(h, w);
    const Weight<T>& ww = this->weight(ww_);
    const Weight<T>& bb = this->weight(bb_);
    Tensor<T, 3> out(h, w, c);
    std::vector<double> acc(static_cast<std::size_t>(c));
    for (Index p = 0; p < h * w; ++p) {
      for (Index k = 0; k < c; ++k) acc[static_cast<std::size_t>(k)] = static_cast<double>(bb.data[static_cast<std::size_t>(k)]);
      for (Index m = 0; m < f2; ++m) {
        const double e = pe.data()[p * f2 + m];
        const T* row = ww.data.data() + m * c;
        for (Index k = 0; k < c; ++k) acc[static_cast<std::size_t>(k)] += e * static_cast<double>(row[k]);
      }
      for (Index k = 0; k < c; ++k) out.data()[p * c + k] = static_cast<T>(acc[static_cast<std::size_t>(k)]);
    }
    return out;
  }

  /// x `[B, H, W, C]` plus the projected code.
  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    const ConstTensorView<T, 4> v = view_of<T, 4>(x);
    check_input(shape_of(v));
    const Tensor<T, 3> e = encoding(v.dimension(1), v.dimension(2));
    Tensor<T, 4> y(v.dimensions());
    const Index per = e.size();
    for (Index b = 0; per > 0 && b < v.dimension(0); ++b)
      for (Index i = 0; i < per; ++i) y.data()[b * per + i] = v.data()[b * per + i] + e.data()[i];
    return y;
  }

private:
  using Base::config_, Base::weights_;

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index f2 = 2 * static_cast<Index>(config_.filters), c = config_.channels;
    const std::size_t ww = w.add("ww", {f2, c}, "glorot_uniform", seed);
    const std::size_t bb = w.add("bb", {c}, "zeros", seed);
    ww_ = ww;
    bb_ = bb;
  }

  void check_input(const Shape& x) const {
    check_shape(Config::type_name, "x", x, {-1, -1, -1, config_.channels}, "(an image [B, H, W, channels])");
  }

  WeightSlot ww_, bb_;
};

}  // namespace attn
