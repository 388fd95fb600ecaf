/// \file
/// `mlp_block` — KCAM's `mlp_family.mlp_mixer.mlp_block(inputs, hidden_dim, output_channel=-1,
/// drop_rate=0, use_conv=False, use_bias=True, activation="gelu", name=None)` (spec
/// kcam_attention_layers.md §3.9): the two-layer MLP of transformer and MLP-Mixer blocks (Tolstikhin et
/// al., 2021, "MLP-Mixer"), at inference.
///
/// Shapes: through the factory, tokens x `[B, N, C]` with C = `channels` → `[B, N, O]`; the typed
/// `forward` takes any rank >= 2 with the channels last (e.g. `[B, H, W, C]` → `[B, H, W, O]`), as the
/// reference. O = `output_channel` if > 0, else C.
///   y = act(x·W0 + b0)·W1 + b1        (dropout after the activation and at the end: identity here)
/// A 1×1 convolution (`use_conv`) is the same product on the last axis, so both forms take any rank.
///
/// Parameters: `channels` (required, > 0; the reference reads it from the input), `hidden_dim`
/// (required, > 0), `output_channel` (-1: C), `drop_rate` (0, in [0, 1]; inference: no effect, kept),
/// `use_conv` (false), `use_bias` (true), `activation` ("gelu": the exact erf form; null: none; any name
/// of `activation_by_name`).
///
/// Weights (Keras names under the sub-layers, Keras default init: kernels glorot_uniform, biases zeros):
/// `use_conv` false: `Dense_0/kernel` `[C, hidden_dim]`, `Dense_0/bias` `[hidden_dim]`, `Dense_1/kernel`
/// `[hidden_dim, O]`, `Dense_1/bias` `[O]`; `use_conv` true: `Conv_0/kernel` `[1, 1, C, hidden_dim]`,
/// `Conv_0/bias`, `Conv_1/kernel` `[1, 1, hidden_dim, O]`, `Conv_1/bias`; biases only with `use_bias`.
/// A parametric activation adds its weights after the first projection (prelu: `<activation>/alpha`
/// `[1, hidden_dim]`, the shape for token inputs; star_relu: its scalars).
///
/// Validation (ConfigError): "Parameter 'channels' must be positive, got 0", "Parameter 'hidden_dim'
/// must be positive, got 0", "drop_rate must be between 0.0 and 1.0, got 1.5", an unknown activation.
/// Input checks (ShapeError): rank >= 2 (typed) / 3 (factory), last extent = `channels`.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/blocks_common.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/linear.hpp"

namespace attn {

struct MlpBlockConfig {
  int channels = 0;
  int hidden_dim = 0;
  int output_channel = -1;
  double drop_rate = 0.0;
  bool use_conv = false;
  bool use_bias = true;
  std::optional<ActivationName> activation = ActivationName("gelu");

  static constexpr std::string_view type_name = "mlp_block";
  static constexpr std::string_view class_name = "MlpBlock";
  static constexpr std::string_view description =
      "Two-layer MLP on the channels: dense (or 1x1 conv) to hidden_dim, activation, dense to output_channel.";
  static constexpr std::string_view use_case = "The feed-forward part of transformer, MLP-Mixer and CNN blocks.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = MlpBlockConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "8",
                 .wording = Wording::factory, .range = positive, .doc = "Channels C of the input (last axis)."},
        Field<C>{.name = "hidden_dim", .member = member<&C::hidden_dim>, .required = true, .example = "16",
                 .wording = Wording::factory, .range = positive, .doc = "Width of the hidden layer."},
        Field<C>{.name = "output_channel", .member = member<&C::output_channel>,
                 .doc = "Output channels; values <= 0 mean the input's channels."},
        Field<C>{.name = "drop_rate", .member = member<&C::drop_rate>, .range = unit_interval,
                 .doc = "Dropout rate (training only; kept)."},
        Field<C>{.name = "use_conv", .member = member<&C::use_conv>,
                 .doc = "1x1 convolutions instead of dense layers (weight names and shapes)."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>, .doc = "Biases in both projections."},
        Field<C>{.name = "activation", .member = member<&C::activation>,
                 .doc = "Activation by name after the first projection (null: none)."},
    };
  }
  void check(Problems& /*p*/) const {}
  [[nodiscard]] int out_channels() const noexcept { return output_channel > 0 ? output_channel : channels; }
};
static_assert(config_table_is_sound<MlpBlockConfig>());

template <class T = float>
class MlpBlock : public LayerBase<MlpBlock<T>, MlpBlockConfig, T> {
  using Base = LayerBase<MlpBlock, MlpBlockConfig, T>;
  friend Base;

public:
  using Config = MlpBlockConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{3};

  explicit MlpBlock(const Config& config, std::uint64_t seed = 0)
      : Base(config), act_(config.activation ? config.activation->view() : std::string_view{}, Config::type_name) {
    this->reset_parameters(seed);
  }

  /// The input's shape with the last extent O.
  [[nodiscard]] Shape output_shape(const Shape& x) const {
    if (x.size() < 2)
      throw ShapeError(fmt::format("{}: input x must have rank >= 2 [..., channels], got shape {}", Config::type_name,
                                   shape_str(x)));
    if (x.back() != config_.channels)
      throw ShapeError(fmt::format("{}: input x must have {} channels (the last axis), got shape {}", Config::type_name,
                                   config_.channels, shape_str(x)));
    Shape y = x;
    y.back() = config_.out_channels();
    return y;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 7, c.channels}}; }

  template <class X>
    requires(std::remove_cvref_t<X>::NumIndices >= 2) && TensorOf<X, T, std::remove_cvref_t<X>::NumIndices>
  [[nodiscard]] auto forward(const X& x) const {
    constexpr int R = std::remove_cvref_t<X>::NumIndices;
    const ConstTensorView<T, R> v = view_of<T, R>(x);
    const Shape out = output_shape(shape_of(v));
    this->check_weights();
    auto dims = v.dimensions();
    dims[R - 1] = config_.out_channels();
    Tensor<T, R> y(dims);
    const Index C = config_.channels, Hd = config_.hidden_dim, O = config_.out_channels();
    const Index rows = v.size() / C;
    if (rows == 0) return y;
    std::vector<T> h(static_cast<std::size_t>(rows * Hd));
    ops::gemm<T>(rows, Hd, C, v.data(), C, this->weight(slots_.k0).data.data(), Hd, false, h.data(), Hd);
    if (const Weight<T>* b0 = this->optional_weight(slots_.b0)) MatrixMap<T>(h.data(), rows, Hd).rowwise() += b0->row();
    act_.apply(this->parameters(), act_slots_, h.data(), rows * Hd, Hd, Config::type_name);
    ops::gemm<T>(rows, O, Hd, h.data(), Hd, this->weight(slots_.k1).data.data(), O, false, y.data(), O);
    if (const Weight<T>* b1 = this->optional_weight(slots_.b1)) MatrixMap<T>(y.data(), rows, O).rowwise() += b1->row();
    (void)out;
    return y;
  }

private:
  using Base::config_;

  struct Slots {
    WeightSlot k0, b0, k1, b1;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels, Hd = config_.hidden_dim, O = config_.out_channels();
    const bool conv = config_.use_conv;
    const std::string p0 = conv ? "Conv_0/" : "Dense_0/", p1 = conv ? "Conv_1/" : "Dense_1/";
    Slots s;
    s.k0 = w.add(p0 + "kernel", conv ? Shape{1, 1, C, Hd} : Shape{C, Hd}, "glorot_uniform", seed);
    if (config_.use_bias) s.b0 = w.add(p0 + "bias", {Hd}, "zeros", seed);
    const auto as = act_.add_weights(w, Hd, seed, Shape{1, Hd});
    s.k1 = w.add(p1 + "kernel", conv ? Shape{1, 1, Hd, O} : Shape{Hd, O}, "glorot_uniform", seed);
    if (config_.use_bias) s.b1 = w.add(p1 + "bias", {O}, "zeros", seed);
    slots_ = s;
    act_slots_ = as;
  }

  detail::BlockActivation act_;
  Slots slots_;
  detail::BlockActivation::Slots act_slots_;
};

}  // namespace attn
