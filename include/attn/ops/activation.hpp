/// \file
/// Activations by name, as KCAM's `activation_by_name` resolves them (spec kcam_attention_layers.md §3.1
/// and its errata), element-wise on row-major data whose last axis is the channel axis, float and double.
///
/// Name rules, in this order (the first match wins; the special names are compared lower-cased):
///
/// | name (lower-cased) | f(x) | parameters |
/// |---|---|---|
/// | `hard_swish` | x·relu6(x + 3)/6 | |
/// | `leaky_relu` | x ≥ 0 ? x : 0.3·x (Keras's slope 0.3, not PyTorch's 0.01) | |
/// | `mish` | x·tanh(softplus(x)) | |
/// | `phish` | x·tanh(gelu(x)), exact (erf) GELU | |
/// | `prelu` | x ≥ 0 ? x : α_c·x | `alpha` [C] per channel (Keras weight `[1, 1, C]` for NHWC) |
/// | starts with `gelu/app` | 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) | |
/// | starts with `gelu/linear` | x·(sign(x)·e + 0.5), e = 0.5 − 0.1444·relu(1.769 − 0.7071·\|x\|)² | |
/// | starts with `gelu/quick` | x·sigmoid(1.702·x) | |
/// | starts with `leaky_relu/` | LeakyReLU with the slope after the slash (`leaky_relu/0.01`) | |
/// | `hard_sigmoid_torch` | clip(x/6 + 0.5, 0, 1) (PyTorch Hardsigmoid) | |
/// | `squaredrelu`, `squared_relu` | relu(x)² | |
/// | `starrelu`, `star_relu` | s·relu(x)² + b | scalars `gain` s (init 1) and `bias` b (init 0) |
///
/// Any other name is a Keras activation looked up by the ORIGINAL (case-sensitive) string; exactly these:
/// `relu`, `relu6`, `gelu` (exact erf form), `swish` and `silu` (x·sigmoid(x)), `sigmoid`, `tanh`,
/// `softmax` (over the last axis), `softplus` (log(1 + eˣ)), `elu` (α = 1), `selu`, `linear`,
/// `hard_sigmoid` (the TF-Keras 2.x form clip(0.2·x + 0.5, 0, 1), which KCAM targets; Keras 3's
/// relu6(x + 3)/6 is available as `hard_sigmoid_torch`). So `"ReLU"` is unknown, as in the reference.
/// An unknown name, or a `leaky_relu/` slope that is not a number, is a ConfigError naming the layer and
/// the parameter `activation`, with a did-you-mean and the list of known names.
///
/// Vectorised through Eigen's array functions (packet exp, tanh, erf, logistic at the build's
/// instruction set); the work is cut into chunks of a fixed size that run on attn's pool, so results are
/// bit-identical for any thread count. `apply_activation` may run in place.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"

namespace attn::ops {

/// The functions of activation_by_name.
enum class ActivationKind {
  linear,
  relu,
  relu6,
  gelu,
  gelu_tanh,    ///< gelu/app
  gelu_linear,  ///< gelu/linear
  gelu_quick,   ///< gelu/quick
  swish,        ///< swish, silu
  sigmoid,
  tanh,
  softmax,
  softplus,
  elu,
  selu,
  hard_sigmoid,        ///< TF-Keras 2.x
  hard_sigmoid_torch,  ///< PyTorch Hardsigmoid
  hard_swish,
  leaky_relu,
  mish,
  phish,
  prelu,
  squared_relu,
  star_relu,
};

/// The Keras names accepted by the case-sensitive fallback.
inline constexpr std::array<std::string_view, 13> keras_activation_names{
    "relu", "relu6", "gelu", "swish", "silu", "sigmoid", "tanh", "softmax", "softplus", "elu", "selu", "linear",
    "hard_sigmoid"};
/// The special names matched lower-cased (prefix forms shown with their slash).
inline constexpr std::array<std::string_view, 14> special_activation_names{
    "hard_swish", "leaky_relu", "mish",     "phish",       "prelu",        "gelu/app",  "gelu/linear",
    "gelu/quick", "leaky_relu/<slope>", "hard_sigmoid_torch", "squaredrelu", "squared_relu", "starrelu",
    "star_relu"};

/// A resolved activation name.
struct Activation {
  ActivationKind kind = ActivationKind::linear;
  double slope = 0.3;  ///< leaky_relu
  std::string name;    ///< as given

  /// Resolves `name` by the rules of the file comment. `layer` is named in errors.
  static Activation from_name(std::string_view name, std::string_view layer = "activation_by_name") {
    Activation a;
    a.name = std::string(name);
    std::string low(name);
    std::transform(low.begin(), low.end(), low.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    const std::string_view l(low);
    using K = ActivationKind;
    const auto set = [&](K k) {
      a.kind = k;
      return a;
    };
    if (l == "hard_swish") return set(K::hard_swish);
    if (l == "leaky_relu") return set(K::leaky_relu);
    if (l == "mish") return set(K::mish);
    if (l == "phish") return set(K::phish);
    if (l == "prelu") return set(K::prelu);
    if (l.starts_with("gelu/app")) return set(K::gelu_tanh);
    if (l.starts_with("gelu/linear")) return set(K::gelu_linear);
    if (l.starts_with("gelu/quick")) return set(K::gelu_quick);
    if (l.starts_with("leaky_relu/")) {
      const std::string_view num = l.substr(11);
      double v = 0;
      const auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
      if (num.empty() || ec != std::errc() || end != num.data() + num.size() || !std::isfinite(v))
        throw ConfigError(fmt::format("{}: activation '{}': the slope after 'leaky_relu/' must be a number, got '{}'",
                                      layer, name, name.substr(11)),
                          std::string(layer), "activation");
      a.slope = v;
      return set(K::leaky_relu);
    }
    if (l == "hard_sigmoid_torch") return set(K::hard_sigmoid_torch);
    if (l == "squaredrelu" || l == "squared_relu") return set(K::squared_relu);
    if (l == "starrelu" || l == "star_relu") return set(K::star_relu);
    // the Keras fallback: the original string, case-sensitive
    static constexpr std::array<ActivationKind, 13> keras_kinds{K::relu,    K::relu6, K::gelu,     K::swish, K::swish,
                                                                K::sigmoid, K::tanh,  K::softmax,  K::softplus,
                                                                K::elu,     K::selu,  K::linear,   K::hard_sigmoid};
    for (std::size_t i = 0; i < keras_activation_names.size(); ++i)
      if (name == keras_activation_names[i]) return set(keras_kinds[i]);
    std::vector<std::string> known;
    for (auto s : special_activation_names) known.emplace_back(s);
    for (auto s : keras_activation_names) known.emplace_back(s);
    const auto near = attn::detail::closest(low, known);
    throw ConfigError(fmt::format("{}: unknown activation '{}'.{} Known activations: {}", layer, name,
                                  near.empty() ? "" : fmt::format(" Did you mean '{}'?", near.front()),
                                  fmt::join(known, ", ")),
                      std::string(layer), "activation");
  }
};

/// Weights of the parametric activations: prelu's per-channel `alpha` [C]; star_relu's scalars.
template <class T>
struct ActivationParams {
  const T* alpha = nullptr;  ///< prelu: [channels]
  T gain = T(1);             ///< star_relu
  T bias = T(0);             ///< star_relu
};

namespace detail {

template <class T>
using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using ArrMap = Eigen::Map<Arr<T>>;
template <class T>
using ConstArrMap = Eigen::Map<const Arr<T>>;

inline constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2/π)
inline constexpr double kSqrtHalf = 0.70710678118654752440;     // 1/sqrt(2)

/// log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|)
template <class Expr>
auto softplus(const Expr& x) {
  return x.max(0) + (-x.abs()).exp().log1p();
}

/// f on n contiguous values, element-wise (not softmax, not prelu).
template <class T>
void activation_chunk(const Activation& a, const T* x, T* y, Index n, const ActivationParams<T>& p) {
  using K = ActivationKind;
  const ConstArrMap<T> X(x, n);
  ArrMap<T> Y(y, n);
  const T half(0.5), one(1);
  switch (a.kind) {
    case K::linear: Y = X; return;
    case K::relu: Y = X.max(T(0)); return;
    case K::relu6: Y = X.max(T(0)).min(T(6)); return;
    case K::gelu: Y = half * X * (-X * T(kSqrtHalf)).erfc(); return;  // 1 + erf(z) = erfc(-z): exact tails
    case K::gelu_tanh:
      Y = half * X * (one + (T(kSqrt2OverPi) * (X + T(0.044715) * X * X * X)).tanh());
      return;
    case K::gelu_linear: {
      const Arr<T> r = (T(1.769) - T(0.7071) * X.abs()).max(T(0));
      const Arr<T> e = half - T(0.1444) * r * r;
      Y = X * (X.sign() * e + half);
      return;
    }
    case K::gelu_quick: Y = X * (T(1.702) * X).logistic(); return;
    case K::swish: Y = X * X.logistic(); return;
    case K::sigmoid: Y = X.logistic(); return;
    case K::tanh: Y = X.tanh(); return;
    case K::softplus: Y = softplus(X); return;
    case K::elu: Y = (X > T(0)).select(X, X.min(T(0)).exp() - one); return;
    case K::selu: {
      const T scale = T(1.0507009873554804934193349852946), alpha = T(1.6732632423543772848170429916717);
      Y = scale * (X > T(0)).select(X, alpha * (X.min(T(0)).exp() - one));
      return;
    }
    case K::hard_sigmoid: Y = (T(0.2) * X + half).max(T(0)).min(one); return;
    case K::hard_sigmoid_torch: Y = (X / T(6) + half).max(T(0)).min(one); return;
    case K::hard_swish: Y = X * (X + T(3)).max(T(0)).min(T(6)) / T(6); return;
    case K::leaky_relu: Y = (X >= T(0)).select(X, static_cast<T>(a.slope) * X); return;
    case K::mish: Y = X * softplus(X).tanh(); return;
    case K::phish: Y = X * (half * X * (-X * T(kSqrtHalf)).erfc()).tanh(); return;
    case K::squared_relu: Y = X.max(T(0)).square(); return;
    case K::star_relu: Y = p.gain * X.max(T(0)).square() + p.bias; return;
    case K::prelu:
    case K::softmax: return;  // per row, see apply_activation
  }
}

}  // namespace detail

/// y = f(x) for `n` values laid out as rows of `channels` (the last axis); y may alias x. prelu reads
/// `params.alpha[channels]` (ShapeError naming `layer` when it is missing), star_relu its scalars; softmax
/// normalises each row of `channels` values.
template <class T>
void apply_activation(const Activation& a, const T* x, T* y, Index n, Index channels,
                      const ActivationParams<T>& params = {}, std::string_view layer = "activation_by_name") {
  if (n <= 0) return;
  using K = ActivationKind;
  const bool per_row = a.kind == K::prelu || a.kind == K::softmax;
  if (per_row && (channels <= 0 || n % channels != 0))
    throw ShapeError(fmt::format("{}: activation '{}' works on rows of {} channels, got {} values", layer, a.name,
                                 channels, n));
  if (a.kind == K::prelu && params.alpha == nullptr)
    throw ShapeError(fmt::format("{}: activation 'prelu' needs its per-channel weight alpha [{}]", layer, channels));
  // chunks of whole rows, of a size fixed by the row width (results do not depend on the threads)
  const Index width = per_row ? channels : 1;
  const Index rows = n / width;
  const Index chunk = std::max<Index>(1, (Index(1) << 14) / width);
  parallel_for((rows + chunk - 1) / chunk, [&](std::int64_t t) {
    const Index r0 = static_cast<Index>(t) * chunk, r1 = std::min(rows, r0 + chunk);
    if (!per_row) {
      detail::activation_chunk(a, x + r0, y + r0, r1 - r0, params);
      return;
    }
    for (Index r = r0; r < r1; ++r) {
      const detail::ConstArrMap<T> X(x + r * channels, channels);
      detail::ArrMap<T> Y(y + r * channels, channels);
      if (a.kind == K::prelu) {
        const detail::ConstArrMap<T> A(params.alpha, channels);
        Y = (X >= T(0)).select(X, A * X);
      } else {
        const T m = X.maxCoeff();
        Y = (X - m).exp();
        Y /= Y.sum();
      }
    }
  });
}

/// In place: x = f(x).
template <class T>
void apply_activation(const Activation& a, T* x, Index n, Index channels, const ActivationParams<T>& params = {},
                      std::string_view layer = "activation_by_name") {
  apply_activation<T>(a, x, x, n, channels, params, layer);
}

}  // namespace attn::ops
