/// \file
/// `batchnorm_with_activation` — KCAM's `common_layers.batchnorm_with_activation(inputs, activation=None,
/// zero_gamma=False, epsilon=1e-5, momentum=0.9, axis="auto", act_first=False, use_evo_norm=False,
/// evo_norm_group_size=-1, name=None)` (spec kcam_attention_layers.md §3.3, §1.2 and the errata) at
/// inference: BatchNormalization with moving statistics (Ioffe & Szegedy, 2015) and an activation by
/// name, or an EvoNorm layer (Liu et al., 2020, "Evolving Normalization-Activation Layers").
///
/// Shapes: input x `[B, H, W, C]` with C = `channels` → output of the same shape.
///
/// Forward, BatchNorm path (`use_evo_norm` false):
///   BN(x) = gamma·(x − moving_mean)/sqrt(moving_variance + epsilon) + beta     (per channel)
///   y = act(BN(x)) (default), or y = BN(act(x)) with `act_first`; `activation` null: no activation.
/// EvoNorm path (`use_evo_norm` true; the activation function itself is never applied, only whether it
/// is null matters: nonlinearity = activation is not null): G = C // `evo_norm_group_size` (floor); when
/// G > 0 it is decremented until it divides C.
///   S0  (nonlinearity, G > 0):  y = x·sigmoid(vv·x) / gstd(x) · gamma + beta
///   S0a (none, G > 0):          y = x / gstd(x) · gamma + beta
///   B0  (nonlinearity, G ≤ 0):  y = x / max(sqrt(moving_variance + eps), vv·x + istd(x)) · gamma + beta
///   (none, G ≤ 0):              y = x·gamma + beta   (the reference normalises nothing here)
/// gstd = sqrt(var + eps), var the biased variance per sample over (H, W, the C/G channels of the
/// group); istd = sqrt(var + eps) per sample and channel over (H, W).
///
/// Parameters: `channels` (required, > 0; the reference reads it from the input), `activation` (null;
/// a name of `activation_by_name`), `zero_gamma` (false: gamma starts at ones), `epsilon` (1e-5, not
/// Keras's 1e-3; >= 0), `momentum` (0.9; training only, kept), `axis` ("auto" or -1 / 3), `act_first`
/// (false), `use_evo_norm` (false), `evo_norm_group_size` (-1: the B0 variant).
///
/// Weights (Keras names under the sub-layers): BatchNorm: `bn/gamma`, `bn/beta`, `bn/moving_mean`
/// (zeros), `bn/moving_variance` (ones), each `[C]`; then the activation's (prelu:
/// `<activation>/alpha` `[1, 1, C]`; star_relu: scalars `<activation>/gain`, `<activation>/bias`).
/// EvoNorm: `evo_norm/gamma`, `evo_norm/beta` `[1, 1, 1, C]`, `evo_norm/vv` `[1, 1, 1, C]` (ones; with
/// the nonlinearity), `evo_norm/moving_variance` `[1, 1, 1, C]` (ones; when G ≤ 0). gamma starts at
/// zeros with `zero_gamma`.
///
/// Validation (ConfigError): "Parameter 'channels' must be positive, got 0", "epsilon must be
/// non-negative, got -1.0", "momentum must be between 0.0 and 1.0, got 1.5", the axis and activation
/// messages of layer_norm / activation_by_name, and with `use_evo_norm`: "evo_norm_group_size must not
/// be 0 (the reference divides by it)", "evo_norm_group_size (9) must not exceed channels (8) (the
/// reference would then not normalise)" (spec errata). Input checks (ShapeError): rank 4,
/// C = `channels`; EvoNorm S0 / S0a / B0 need H·W >= 1.
///
/// Differences from the reference: inference only (moving statistics; `momentum` has no effect); the
/// group-size rules above instead of a division by zero or a silent fall-back.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/parallel.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/blocks_common.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/norm.hpp"

namespace attn {

struct BatchnormWithActivationConfig {
  int channels = 0;
  std::optional<ActivationName> activation{};
  bool zero_gamma = false;
  double epsilon = 1e-5;
  double momentum = 0.9;
  ChannelAxis axis{};
  bool act_first = false;
  bool use_evo_norm = false;
  int evo_norm_group_size = -1;

  static constexpr std::string_view type_name = "batchnorm_with_activation";
  static constexpr std::string_view class_name = "BatchnormWithActivation";
  static constexpr std::string_view description =
      "Batch normalization at inference followed (or preceded) by an activation by name, or an EvoNorm "
      "(B0 / S0) layer.";
  static constexpr std::string_view use_case = "The norm-activation pair after the convolutions of CNN blocks.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = BatchnormWithActivationConfig;
    return std::array{
        Field<C>{.name = "channels", .member = member<&C::channels>, .required = true, .example = "8",
                 .wording = Wording::factory, .range = positive, .doc = "Channels C of the input (last axis)."},
        Field<C>{.name = "activation", .member = member<&C::activation>,
                 .doc = "Activation by name (null: none); with use_evo_norm only whether it is null matters."},
        Field<C>{.name = "zero_gamma", .member = member<&C::zero_gamma>, .doc = "Initialise gamma to zeros."},
        Field<C>{.name = "epsilon", .member = member<&C::epsilon>, .range = non_negative,
                 .doc = "Added to the variance."},
        Field<C>{.name = "momentum", .member = member<&C::momentum>, .range = unit_interval,
                 .doc = "Moving-average momentum (training only; kept)."},
        Field<C>{.name = "axis", .member = member<&C::axis>, .doc = "'auto' or the channel axis (-1 or 3)."},
        Field<C>{.name = "act_first", .member = member<&C::act_first>,
                 .doc = "Apply the activation before the normalisation."},
        Field<C>{.name = "use_evo_norm", .member = member<&C::use_evo_norm>, .doc = "EvoNorm instead of BN + act."},
        Field<C>{.name = "evo_norm_group_size", .member = member<&C::evo_norm_group_size>,
                 .doc = "Channels per EvoNorm group: C // size groups; <= 0 groups gives the B0 variant."},
    };
  }

  void check(Problems& p) const {
    if (!use_evo_norm) return;
    if (evo_norm_group_size == 0)
      p.push_back({"evo_norm_group_size", "evo_norm_group_size must not be 0 (the reference divides by it)"});
    else if (evo_norm_group_size > channels)
      p.push_back({"evo_norm_group_size", fmt::format("evo_norm_group_size ({}) must not exceed channels ({}) (the "
                                                      "reference would then not normalise)",
                                                      evo_norm_group_size, channels)});
  }

  /// The EvoNorm group count: C // size (floor), decremented while positive and not dividing C.
  [[nodiscard]] int evo_groups() const noexcept {
    if (evo_norm_group_size == 0) return 0;
    const int q = channels / evo_norm_group_size, r = channels % evo_norm_group_size;
    int g = (r != 0 && ((r < 0) != (evo_norm_group_size < 0))) ? q - 1 : q;  // Python's floor division
    if (g > 0)
      while (channels % g != 0) --g;
    return g;
  }
};
static_assert(config_table_is_sound<BatchnormWithActivationConfig>());

template <class T = float>
class BatchnormWithActivation : public LayerBase<BatchnormWithActivation<T>, BatchnormWithActivationConfig, T> {
  using Base = LayerBase<BatchnormWithActivation, BatchnormWithActivationConfig, T>;
  friend Base;

public:
  using Config = BatchnormWithActivationConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};
  /// The initial weights are constants: the seed does not change them.
  static constexpr bool constant_initial_weights = true;

  explicit BatchnormWithActivation(const Config& config, std::uint64_t seed = 0)
      : Base(config),
        act_(config.activation && !config.use_evo_norm ? config.activation->view() : std::string_view{},
             Config::type_name) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    detail::check_block_input(Config::type_name, x, config_.channels);
    if (config_.use_evo_norm && (config_.activation || config_.evo_groups() > 0) && (x[1] == 0 || x[2] == 0) &&
        x[0] > 0)
      throw ShapeError(fmt::format("{}: EvoNorm's statistics over (height, width) need height and width >= 1, got "
                                   "input shape {}",
                                   Config::type_name, shape_str(x)));
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 5, 6, c.channels}}; }

  template <class X>
    requires TensorOf<X, T, 4>
  [[nodiscard]] Tensor<T, 4> forward(const X& x) const {
    const ConstTensorView<T, 4> v = view_of<T, 4>(x);
    (void)output_shape(shape_of(v));
    this->check_weights();
    Tensor<T, 4> y(v.dimensions());
    const Index C = config_.channels, n = v.size();
    if (n == 0) return y;
    if (config_.use_evo_norm) {
      evo_norm(v, y);
      return y;
    }
    const auto& w = this->parameters();
    const auto bn = [&](const T* in, T* out) {
      ops::batch_norm<T>(in, n / C, C, this->weight(bn_.gamma).data.data(), this->weight(bn_.beta).data.data(),
                         this->weight(bn_.mean).data.data(), this->weight(bn_.var).data.data(), config_.epsilon, out,
                         Config::type_name);
    };
    if (config_.act_first) {
      std::copy_n(v.data(), n, y.data());
      act_.apply(w, act_slots_, y.data(), n, C, Config::type_name);
      bn(y.data(), y.data());
    } else {
      bn(v.data(), y.data());
      act_.apply(w, act_slots_, y.data(), n, C, Config::type_name);
    }
    return y;
  }

private:
  using Base::config_;

  struct BnSlots {
    WeightSlot gamma, beta, mean, var;
  };
  struct EvoSlots {
    WeightSlot gamma, beta, vv, var;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.channels;
    const char* gamma_init = config_.zero_gamma ? "zeros" : "ones";
    BnSlots bn;
    EvoSlots evo;
    detail::BlockActivation::Slots act;
    if (config_.use_evo_norm) {
      const Shape s{1, 1, 1, C};
      evo.gamma = w.add("evo_norm/gamma", s, gamma_init, seed);
      evo.beta = w.add("evo_norm/beta", s, "zeros", seed);
      if (config_.activation) evo.vv = w.add("evo_norm/vv", s, "ones", seed);
      if (config_.evo_groups() <= 0) evo.var = w.add("evo_norm/moving_variance", s, "ones", seed);
    } else {
      bn.gamma = w.add("bn/gamma", {C}, gamma_init, seed);
      bn.beta = w.add("bn/beta", {C}, "zeros", seed);
      bn.mean = w.add("bn/moving_mean", {C}, "zeros", seed);
      bn.var = w.add("bn/moving_variance", {C}, "ones", seed);
      act = act_.add_weights(w, C, seed);
    }
    bn_ = bn;
    evo_ = evo;
    act_slots_ = act;
  }

  /// The EvoNorm variants of the file comment.
  void evo_norm(const ConstTensorView<T, 4>& x, Tensor<T, 4>& y) const {
    const Index B = x.dimension(0), P = x.dimension(1) * x.dimension(2), C = config_.channels;
    const T eps = static_cast<T>(config_.epsilon);
    const T* gamma = this->weight(evo_.gamma).data.data();
    const T* beta = this->weight(evo_.beta).data.data();
    const T* vv = evo_.vv.declared() ? this->weight(evo_.vv).data.data() : nullptr;
    const int G = config_.evo_groups();
    if (G > 0) {
      const Index cg = C / G;
      parallel_for(B * G, [&](std::int64_t task) {
        const Index b = static_cast<Index>(task) / G, g = static_cast<Index>(task) % G;
        const T* xb = x.data() + b * P * C + g * cg;
        T* yb = y.data() + b * P * C + g * cg;
        T mean = 0;
        for (Index p = 0; p < P; ++p)
          for (Index c = 0; c < cg; ++c) mean += xb[p * C + c];
        mean /= static_cast<T>(P * cg);
        T var = 0;
        for (Index p = 0; p < P; ++p)
          for (Index c = 0; c < cg; ++c) var += (xb[p * C + c] - mean) * (xb[p * C + c] - mean);
        var /= static_cast<T>(P * cg);
        const T inv = T(1) / std::sqrt(var + eps);
        for (Index p = 0; p < P; ++p)
          for (Index c = 0; c < cg; ++c) {
            const Index ch = g * cg + c;
            const T xv = xb[p * C + c];
            const T num = vv != nullptr ? xv / (T(1) + std::exp(-vv[ch] * xv)) : xv;
            yb[p * C + c] = num * inv * gamma[ch] + beta[ch];
          }
      });
      return;
    }
    if (vv == nullptr) {  // no nonlinearity, G <= 0: x·gamma + beta
      for (Index i = 0; i < x.size(); ++i) y.data()[i] = x.data()[i] * gamma[i % C] + beta[i % C];
      return;
    }
    const T* mv = this->weight(evo_.var).data.data();
    parallel_for(B, [&](std::int64_t task) {
      const Index b = static_cast<Index>(task);
      const T* xb = x.data() + b * P * C;
      T* yb = y.data() + b * P * C;
      std::vector<T> mean(static_cast<std::size_t>(C), T(0)), var(static_cast<std::size_t>(C), T(0));
      for (Index p = 0; p < P; ++p)
        for (Index c = 0; c < C; ++c) mean[static_cast<std::size_t>(c)] += xb[p * C + c];
      for (auto& m : mean) m /= static_cast<T>(P);
      for (Index p = 0; p < P; ++p)
        for (Index c = 0; c < C; ++c) {
          const T d = xb[p * C + c] - mean[static_cast<std::size_t>(c)];
          var[static_cast<std::size_t>(c)] += d * d;
        }
      for (Index c = 0; c < C; ++c) {
        auto& vc = var[static_cast<std::size_t>(c)];
        vc = std::sqrt(vc / static_cast<T>(P) + eps);  // istd
      }
      for (Index p = 0; p < P; ++p)
        for (Index c = 0; c < C; ++c) {
          const T xv = xb[p * C + c];
          const T den = std::max(std::sqrt(mv[c] + eps), vv[c] * xv + var[static_cast<std::size_t>(c)]);
          yb[p * C + c] = xv / den * gamma[c] + beta[c];
        }
    });
  }

  detail::BlockActivation act_;
  BnSlots bn_;
  EvoSlots evo_;
  detail::BlockActivation::Slots act_slots_;
};

}  // namespace attn
