/// \file
/// `non_local` — a non-local block (Wang et al., 2018, "Non-local Neural Networks"): global
/// self-attention over every position of a feature map, after a depthwise convolution and a norm.
///
/// Shapes: input x `[B, H, W, C]` (C = `input_channels`, default `attention_channels`; H, W >= 1);
/// output `[B, H, W, C_out]`, C_out = `output_channels` if > 0, else C. No residual (as in the
/// reference). Optional attention weights `[B, 1, H·W, H·W]` (one head; positions row-major, r·W + c).
/// Forward (C_a = attention_channels):
///   u = act_i(DepthwiseConv_{kh×kw, stride 1, Keras 'same'}(x) [+ b])        act_i = intermediate_activation
///   u = BatchNorm(u) (inference: moving statistics, ε = 1e-5) | LayerNorm(u) (over channels, ε = 1e-5) | u
///   Q = u·Wq [+ bq],  K = act_i(u·Wk [+ bk]),  V = u·Wv [+ bv]       (1×1 convolutions, widths C_kv)
///   dot_product: P = softmax(s · Q Kᵀ)  with s the learnable scalar `attention/scale` (init 1), no 1/√d
///   gaussian:    P = softmax(Q Kᵀ)      (embedded Gaussian: raw dot products)
///   out = act_o((P V)·Wo [+ bo])                                        act_o = output_activation
/// with C_kv = C_a in dot_product mode and max(1, C_a / 8) in gaussian mode (Q, K and V alike).
/// No mask (as the reference). `forward_with_weights` returns the weights on the typed layer; the
/// factory's forward door does not (its weights are `[B, heads, T, S]` of sequence inputs).
///
/// Weights (Keras layouts; the reference's sub-layers are unnamed, so its attribute names are used with
/// Keras's variable names), in this order: `depthwise_conv/kernel [kh, kw, C, 1]`,
/// `depthwise_conv/bias [C]` (with use_bias); with normalization 'batch' `normalization_layer/gamma`,
/// `/beta`, `/moving_mean`, `/moving_variance` `[C]` (the last two non-trainable; ones, zeros, zeros,
/// ones), with 'layer' `normalization_layer/gamma`, `/beta`; `query_conv/kernel [1, 1, C, C_kv]`,
/// `key_conv/kernel`, `value_conv/kernel` (same shape), each with `/bias [C_kv]` when use_bias;
/// `attention/scale` (a scalar, shape [], init 1; dot_product mode only); `output_conv/kernel
/// [1, 1, C_kv, C_out]`, `output_conv/bias [C_out]` (use_bias). Kernels from kernel_initializer
/// (glorot_normal), biases from bias_initializer.
///
/// Validation: "attention_channels must be positive" (the reference's text, no value);
/// `kernel_size` an int or [kh, kw], each > 0; `dropout_rate` in [0, 1] (factory wording, checked first)
/// and then "dropout_rate must be in [0, 1)"; `normalization` one of 'batch', 'layer', 'none' or null
/// (null and 'none': no normalization); `attention_mode` one of 'gaussian', 'dot_product'; the
/// activations are Keras activation names (ops/activation.hpp). `input_channels` (beyond the
/// reference, which builds from the first input) must be positive when set. Input checks (ShapeError
/// naming non_local): rank 4, C channels, H and W >= 1. `kernel_regularizer`, `bias_regularizer`,
/// `activity_regularizer` are kept for the round trip; dropout is the identity (inference).
///
/// Differences from the reference (deliberate; spec §4.14 "Status" and Observations 1, 2, 4): the
/// reference cannot run at its defaults — `dropout_rate = 0` makes its Keras `Attention` constructor
/// fail, and gaussian mode gives Q `C_a` channels but K `C_a // 8` (a shape error; 0 channels for
/// C_a < 8). Here both modes run at every dropout rate: gaussian mode gives Q, K and V the same width
/// max(1, C_a / 8) (the resolution the reference project itself adopted later), dot_product mode keeps
/// the reference's learnable scale. `kernel_size` given as a JSON list works (the reference wraps a list
/// into a pair of lists and fails). `normalization` and `attention_mode` are validated (the reference
/// treats any unknown value as "none" / "gaussian"). The input width is a parameter, since weights
/// exist before the first call.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/param.hpp"
#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/layers/detail/vision_layers.hpp"
#include "attn/ops/activation.hpp"
#include "attn/ops/conv.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/norm.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

inline constexpr std::array<std::string_view, 3> non_local_normalizations{"batch", "layer", "none"};
inline constexpr std::array<std::string_view, 2> non_local_modes{"gaussian", "dot_product"};

struct NonLocalAttentionConfig {
  int attention_channels = 0;
  Size2 kernel_size{7, 7};
  bool use_bias = false;
  std::optional<std::string_view> normalization = "batch";
  std::string_view intermediate_activation = "relu";
  std::string_view output_activation = "linear";
  int output_channels = -1;
  double dropout_rate = 0.0;
  std::string_view attention_mode = "gaussian";
  std::string_view kernel_initializer = "glorot_normal";
  std::string_view bias_initializer = "zeros";
  std::optional<int> input_channels{};

  static constexpr std::string_view type_name = "non_local";
  static constexpr std::string_view class_name = "NonLocalAttention";
  static constexpr std::string_view description =
      "Non-local block: global self-attention over every position of a feature map, after a depthwise "
      "convolution and a norm.";
  static constexpr std::string_view use_case = "Long-range dependencies (global context) in vision CNNs.";
  static constexpr std::array<std::string_view, 3> training_only{"kernel_regularizer", "bias_regularizer",
                                                                 "activity_regularizer"};

  static constexpr auto fields() {
    using C = NonLocalAttentionConfig;
    return std::array{
        Field<C>{.name = "attention_channels", .member = member<&C::attention_channels>, .required = true,
                 .example = "16", .doc = "Width of Q/K/V in dot_product mode (gaussian: max(1, value / 8)); > 0."},
        Field<C>{.name = "kernel_size", .member = member<&C::kernel_size>, .range = positive,
                 .doc = "Depthwise convolution size (rows, cols); an int means a square kernel."},
        Field<C>{.name = "use_bias", .member = member<&C::use_bias>,
                 .doc = "Biases on the depthwise and all 1x1 convolutions."},
        Field<C>{.name = "normalization", .member = member<&C::normalization>, .choices = non_local_normalizations,
                 .doc = "Norm after the depthwise convolution: 'batch' (inference statistics), 'layer', or "
                        "'none' / null."},
        Field<C>{.name = "intermediate_activation", .member = member<&C::intermediate_activation>,
                 .choices = ops::keras_activation_names,
                 .doc = "Activation after the depthwise convolution and after the key convolution."},
        Field<C>{.name = "output_activation", .member = member<&C::output_activation>,
                 .choices = ops::keras_activation_names, .doc = "Activation after the output convolution."},
        Field<C>{.name = "output_channels", .member = member<&C::output_channels>,
                 .doc = "Output channels; <= 0 means the input channels."},
        Field<C>{.name = "dropout_rate", .member = member<&C::dropout_rate>, .wording = Wording::factory,
                 .range = unit_interval,
                 .doc = "Dropout on the attention weights and the output (identity at inference); < 1."},
        Field<C>{.name = "attention_mode", .member = member<&C::attention_mode>, .choices = non_local_modes,
                 .doc = "'gaussian' (raw dot products) or 'dot_product' (a learnable scale)."},
        Field<C>{.name = "kernel_initializer", .member = member<&C::kernel_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the convolution kernels."},
        Field<C>{.name = "bias_initializer", .member = member<&C::bias_initializer>,
                 .choices = initializer_names, .doc = "Initializer of the convolution biases."},
        Field<C>{.name = "input_channels", .member = member<&C::input_channels>, .range = positive,
                 .doc = "Channels of the input (null: attention_channels). Beyond the reference."},
    };
  }

  void check(Problems& p) const {
    if (attention_channels <= 0) p.push_back({"attention_channels", "attention_channels must be positive"});
    if (!(dropout_rate < 1.0)) p.push_back({"dropout_rate", "dropout_rate must be in [0, 1)"});
  }
  [[nodiscard]] bool dot_product() const noexcept { return attention_mode == "dot_product"; }
  [[nodiscard]] Index in_channels() const noexcept { return input_channels.value_or(attention_channels); }
  [[nodiscard]] Index kv_channels() const noexcept {
    return dot_product() ? attention_channels : std::max(1, attention_channels / 8);
  }
  [[nodiscard]] Index out_channels() const noexcept { return output_channels > 0 ? output_channels : in_channels(); }
  [[nodiscard]] std::string_view norm() const noexcept { return normalization.value_or("none"); }
};
static_assert(config_table_is_sound<NonLocalAttentionConfig>());

template <class T = float>
class NonLocalAttention : public LayerBase<NonLocalAttention<T>, NonLocalAttentionConfig, T>,
                          public detail::MapDoor<NonLocalAttention<T>, T> {
  using Base = LayerBase<NonLocalAttention, NonLocalAttentionConfig, T>;
  friend Base;
  friend detail::MapDoor<NonLocalAttention<T>, T>;

public:
  using Config = NonLocalAttentionConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{4};

  explicit NonLocalAttention(const Config& config, std::uint64_t seed = 0)
      : Base(config), inter_(ops::Activation::from_name(config.intermediate_activation, "non_local")),
        out_act_(ops::Activation::from_name(config.output_activation, "non_local")) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return {x[0], x[1], x[2], config_.out_channels()};
  }
  static std::vector<Shape> example_input_shapes(const Config& c) { return {{2, 5, 6, c.in_channels()}}; }

  // forward(x): out `[B, H, W, C_out]` of x `[B, H, W, C]`.
  // forward_with_weights(x): also the attention weights `[B, 1, H·W, H·W]` (detail::MapDoor).

private:
  using Base::config_, Base::weights_;

  struct Slots {
    WeightSlot dw_kernel, dw_bias, gamma, beta, mean, var, q_kernel, q_bias, k_kernel, k_bias, v_kernel, v_bias,
        scale, o_kernel, o_bias;
  };

  void add_weights(WeightSet<T>& w, std::uint64_t seed) {
    const Index C = config_.in_channels(), kv = config_.kv_channels(), co = config_.out_channels();
    const Index kh = config_.kernel_size[0], kw = config_.kernel_size[1];
    const auto ki = config_.kernel_initializer, bi = config_.bias_initializer;
    const bool bias = config_.use_bias;
    Slots s;
    s.dw_kernel = w.add("depthwise_conv/kernel", {kh, kw, C, 1}, ki, seed);
    if (bias) s.dw_bias = w.add("depthwise_conv/bias", {C}, bi, seed);
    if (config_.norm() != "none") {
      s.gamma = w.add("normalization_layer/gamma", {C}, "ones", seed);
      s.beta = w.add("normalization_layer/beta", {C}, "zeros", seed);
      if (config_.norm() == "batch") {
        s.mean = w.add("normalization_layer/moving_mean", {C}, "zeros", seed, /*trainable=*/false);
        s.var = w.add("normalization_layer/moving_variance", {C}, "ones", seed, /*trainable=*/false);
      }
    }
    s.q_kernel = w.add("query_conv/kernel", {1, 1, C, kv}, ki, seed);
    if (bias) s.q_bias = w.add("query_conv/bias", {kv}, bi, seed);
    s.k_kernel = w.add("key_conv/kernel", {1, 1, C, kv}, ki, seed);
    if (bias) s.k_bias = w.add("key_conv/bias", {kv}, bi, seed);
    s.v_kernel = w.add("value_conv/kernel", {1, 1, C, kv}, ki, seed);
    if (bias) s.v_bias = w.add("value_conv/bias", {kv}, bi, seed);
    if (config_.dot_product()) s.scale = w.add("attention/scale", {}, "ones", seed);
    s.o_kernel = w.add("output_conv/kernel", {1, 1, kv, co}, ki, seed);
    if (bias) s.o_bias = w.add("output_conv/bias", {co}, bi, seed);
    slots_ = s;
  }

  void check_input(const Shape& x) const {
    const Index C = config_.in_channels();
    if (x.size() != 4 || x[3] != C || x[1] < 1 || x[2] < 1)
      throw ShapeError(fmt::format("non_local: input must have shape [batch, height >= 1, width >= 1, {}], got {}", C,
                                   shape_str(x)));
  }

  /// y[rows, out] = x[rows, in]·kernel (a [1, 1, in, out] kernel read as [in, out]) + bias.
  void conv1x1(const T* x, Index rows, WeightSlot kernel, WeightSlot bias, T* y) const {
    const Weight<T>& k = this->weight(kernel);
    const Index in = k.shape[2], out = k.shape[3];
    ops::gemm<T>(rows, out, in, x, in, k.data.data(), out, /*b_trans=*/false, y, out);
    if (const Weight<T>* b = this->optional_weight(bias); b != nullptr && rows > 0)
      MatrixMap<T>(y, rows, out).rowwise() += b->row();
  }

  Tensor<T, 4> run(ConstTensorView<T, 4> x, Tensor<T, 4>* weights) const {
    const Shape xs = shape_of(x);
    check_input(xs);
    this->check_weights();
    const Index B = xs[0], Hs = xs[1], Ws = xs[2], C = xs[3], P = Hs * Ws;
    const Index kv = config_.kv_channels(), co = config_.out_channels();
    const ops::AttentionMask<T> no_mask{};
    Tensor<T, 4> y(B, Hs, Ws, co);
    if (weights) *weights = Tensor<T, 4>(B, 1, P, P);
    if (B == 0) return y;
    ScratchFrame scratch;
    T* u = scratch.get<T>(B * P * C);
    const Weight<T>& dw = this->weight(slots_.dw_kernel);
    const Weight<T>* dwb = this->optional_weight(slots_.dw_bias);
    ops::Conv2dOptions opt;
    opt.padding = ops::Padding2d::same();
    opt.layer = "non_local";
    ops::depthwise_conv2d<T>(x.data(), xs, dw.data.data(), dw.shape, dwb ? dwb->data.data() : nullptr, C, u, opt);
    ops::apply_activation<T>(inter_, u, B * P * C, C, {}, "non_local");
    if (config_.norm() == "batch")
      ops::batch_norm<T>(u, B * P, C, this->weight(slots_.gamma).data.data(), this->weight(slots_.beta).data.data(),
                         this->weight(slots_.mean).data.data(), this->weight(slots_.var).data.data(), 1e-5, u,
                         "non_local");
    else if (config_.norm() == "layer")
      ops::layer_norm<T>(u, B * P, C, this->weight(slots_.gamma).data.data(), this->weight(slots_.beta).data.data(),
                         1e-5, u, "non_local");
    T* q = scratch.get<T>(B * P * kv);
    T* k = scratch.get<T>(B * P * kv);
    T* v = scratch.get<T>(B * P * kv);
    T* ctx = scratch.get<T>(B * P * kv);
    conv1x1(u, B * P, slots_.q_kernel, slots_.q_bias, q);
    conv1x1(u, B * P, slots_.k_kernel, slots_.k_bias, k);
    ops::apply_activation<T>(inter_, k, B * P * kv, kv, {}, "non_local");
    conv1x1(u, B * P, slots_.v_kernel, slots_.v_bias, v);
    const T scale = config_.dot_product() ? this->weight(slots_.scale).data[0] : T(1);
    ops::attention(ops::heads_of<T>(q, B, P, 1, kv, kv), ops::heads_of<T>(k, B, P, 1, kv, kv),
                   ops::heads_of<T>(v, B, P, 1, kv, kv), ops::heads_out<T>(ctx, B, P, 1, kv, kv), scale, no_mask,
                   weights ? weights->data() : nullptr);
    conv1x1(ctx, B * P, slots_.o_kernel, slots_.o_bias, y.data());
    ops::apply_activation<T>(out_act_, y.data(), B * P * co, co, {}, "non_local");
    return y;
  }

  ops::Activation inter_, out_act_;
  Slots slots_;
};

}  // namespace attn
