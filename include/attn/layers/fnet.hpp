/// \file
/// `fnet` — FNetFourierTransform: parameter-free token mixing by the real part of the 2-D discrete
/// Fourier transform over the sequence and hidden axes (Lee-Thorp et al., 2021, "FNet: Mixing Tokens
/// with Fourier Transforms").
///
/// Shapes: input x `[B, N, D]` with any N, D >= 1; output `[B, N, D]`:
///   y[b, k, l] = s · Re Σ_n Σ_d x[b, n, d] · e^{−2πi·nk/N} · e^{−2πi·dl/D},  s = 1/√(N·D) with
///   `normalize_dft` (the orthonormal transform, each 1-D DFT scaled by 1/√size), else 1.
/// An optional token mask `[B, N]` (`KeyPaddingMask`, true = a real token) zeroes the output rows of
/// masked tokens after the mixing, as the reference does (masked tokens still take part in the mix).
/// No weights, no attention scores.
///
/// The transform is ops::fourier_mix (ops/dft.hpp): Eigen's FFT over D, then over N, O(N·D·log(N·D))
/// per sample, bit-identical for any thread count.
///
/// Errors: ConfigError with the reference's messages for `epsilon` (`epsilon must be positive, got
/// 0.0`); `implementation` must be 'matrix' or 'fft' (the house's wording for choices, with a
/// did-you-mean: `Parameter 'implementation' of 'fnet' must be one of ['matrix', 'fft'], got 'x'`; the
/// reference words it `implementation must be one of ['matrix', 'fft'], got 'x'`). ShapeError for an
/// input that is not rank 3, an empty sequence or hidden axis, and a mask that is not `[B, N]`.
///
/// Differences from the reference (deliberate):
/// - No fixed N or D: the reference builds `(N, N, 2)` and `(D, D, 2)` DFT matrices as non-trainable
///   weights at its first call and fails on any other size; here any N and D work on every call and
///   there are no weights (a checkpoint's `dft_matrix_seq` / `dft_matrix_hidden` are constants of the
///   sizes: load with `allow_extra`).
/// - Both `implementation` values compute the same transform (in the reference both are the dense
///   matrix products); here both take the FFT. `epsilon` is validated and kept; it is unused, as in
///   the reference.
/// - The reference computes the angles in float32; here the FFT's twiddles are computed in T.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/dft.hpp"
#include "attn/ops/masks.hpp"

namespace attn {

inline constexpr std::array<std::string_view, 2> fnet_implementations{"matrix", "fft"};

struct FNetFourierTransformConfig {
  std::string_view implementation = "matrix";
  bool normalize_dft = true;
  double epsilon = 1e-12;

  static constexpr std::string_view type_name = "fnet";
  static constexpr std::string_view class_name = "FNetFourierTransform";
  static constexpr std::string_view description =
      "Parameter-free token mixing: the real part of the 2-D Fourier transform over sequence and hidden axes.";
  static constexpr std::string_view use_case = "A cheap replacement for self-attention in sequence models.";
  static constexpr std::array<std::string_view, 0> training_only{};

  static constexpr auto fields() {
    using C = FNetFourierTransformConfig;
    return std::array{
        Field<C>{.name = "implementation", .member = member<&C::implementation>, .choices = fnet_implementations,
                 .doc = "'matrix' or 'fft': the same transform (the FFT here)."},
        Field<C>{.name = "normalize_dft", .member = member<&C::normalize_dft>,
                 .doc = "Scale each 1-D transform by 1/sqrt(size) (orthonormal)."},
        Field<C>{.name = "epsilon", .member = member<&C::epsilon>, .range = positive,
                 .doc = "Validated and kept; unused (as in the reference)."},
    };
  }
  void check(Problems& /*p*/) const {}
};
static_assert(config_table_is_sound<FNetFourierTransformConfig>());

template <class T = float>
class FNetFourierTransform : public LayerBase<FNetFourierTransform<T>, FNetFourierTransformConfig, T> {
  using Base = LayerBase<FNetFourierTransform, FNetFourierTransformConfig, T>;
  friend Base;

public:
  using Config = FNetFourierTransformConfig;
  using Scalar = T;
  static constexpr std::array<int, 1> input_ranks{3};

  explicit FNetFourierTransform(const Config& config, std::uint64_t seed = 0) : Base(config) {
    this->reset_parameters(seed);
  }

  [[nodiscard]] Shape output_shape(const Shape& x) const {
    check_input(x);
    return x;
  }
  static std::vector<Shape> example_input_shapes(const Config& /*c*/) { return {{2, 5, 6}}; }

  /// y `[B, N, D]` of x `[B, N, D]`.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x) const {
    return run(view_of<T, 3>(x), KeyPaddingMask{});
  }
  /// The same with the rows of tokens whose mask entry is false zeroed after the mixing.
  template <class X>
    requires TensorOf<X, T, 3>
  [[nodiscard]] Tensor<T, 3> forward(const X& x, const KeyPaddingMask& mask) const {
    return run(view_of<T, 3>(x), mask);
  }

private:
  using Base::config_, Base::weights_;

  void add_weights(WeightSet<T>& /*w*/, std::uint64_t /*seed*/) {}

  void check_input(const Shape& x) const {
    if (x.size() != 3)
      throw ShapeError(fmt::format("{}: FNetFourierTransform expects 3D input (batch, sequence, hidden), got shape "
                                   "with {} dimensions: {}",
                                   Config::type_name, x.size(), shape_str(x)));
  }

  Tensor<T, 3> run(ConstTensorView<T, 3> x, const KeyPaddingMask& mask) const {
    check_input(shape_of(x));
    this->check_weights();
    const Index B = x.dimension(0), N = x.dimension(1), D = x.dimension(2);
    if (mask.given()) {
      detail::check_mask_data(Config::type_name, "mask", mask.data(), mask.shape());
      check_shape(Config::type_name, "mask", mask.shape(), {B, N}, "([batch, sequence], true = a real token)");
    }
    Tensor<T, 3> y(B, N, D);
    if (B == 0) return y;
    if (N == 0 || D == 0)
      throw ShapeError(fmt::format("{}: sequence and hidden dimension must be at least 1, got input shape {}",
                                   Config::type_name, shape_str(shape_of(x))));
    ops::fourier_mix(x.data(), B, N, D, y.data(), ops::DftMethod::automatic, Config::type_name);
    const T s = config_.normalize_dft ? static_cast<T>(1.0 / std::sqrt(static_cast<double>(N) * static_cast<double>(D)))
                                      : T(1);
    for (Index b = 0; b < B; ++b)
      for (Index n = 0; n < N; ++n) {
        T* row = y.data() + (b * N + n) * D;
        if (mask.given() && !mask.data()[b * N + n]) std::fill(row, row + D, T(0));  // zeros, even after a NaN
        else
          for (Index d = 0; d < D; ++d) row[d] *= s;
      }
    return y;
  }
};

}  // namespace attn
