/// \file
/// The kernels of the CBAM gates (Woo et al., 2018, "CBAM: Convolutional Block Attention Module"),
/// shared by the `channel`, `spatial` and `cbam` layers: global average/max pooling over space,
/// per-pixel mean/max over channels, a stride-1 2-D convolution with TensorFlow 'same' zero padding,
/// the logistic sigmoid. The gates built from them, with their weight names, are in
/// layers/detail/cbam_gates.hpp (an op knows no layer's weight names).
///
/// Layout: images are `[B, H, W, C]`, row-major (channels-last); a conv kernel is Keras's
/// `[kh, kw, C_in, C_out]`; a dense kernel is `[in, out]`.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "attn/core/error.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/ops/linear.hpp"

namespace attn::ops {

/// 1 / (1 + e^-z), without overflow for large |z|.
template <class T>
T sigmoid(T z) noexcept {
  if (z >= T(0)) return T(1) / (T(1) + std::exp(-z));
  const T e = std::exp(z);
  return e / (T(1) + e);
}

/// Applies the sigmoid to `n` values in place.
template <class T>
void sigmoid_inplace(T* p, Index n) noexcept {
  for (Index i = 0; i < n; ++i) p[i] = sigmoid(p[i]);
}

/// Global pooling over space: x `[B, P, C]` (P = H·W >= 1 pixels) gives avg `[B, C]` (the mean over
/// the pixels) and max `[B, C]`.
template <class T>
void global_avg_max_pool(const T* x, Index batch, Index pixels, Index channels, T* avg, T* max) {
  for (Index b = 0; b < batch; ++b) {
    const ConstMatrixMap<T> X(x + b * pixels * channels, pixels, channels);
    Eigen::Map<RowVector<T>>(avg + b * channels, channels) = X.colwise().sum() / static_cast<T>(pixels);
    Eigen::Map<RowVector<T>>(max + b * channels, channels) = X.colwise().maxCoeff();
  }
}

/// Per-pixel pooling over channels: x `[N, C]` (C >= 1) gives z `[N, 2]` with z[n, 0] the mean and
/// z[n, 1] the max of row n.
template <class T>
void channel_avg_max(const T* x, Index n, Index channels, T* z) {
  const ConstMatrixMap<T> X(x, n, channels);
  for (Index i = 0; i < n; ++i) {
    z[2 * i] = X.row(i).sum() / static_cast<T>(channels);
    z[2 * i + 1] = X.row(i).maxCoeff();
  }
}

/// Stride-1 2-D convolution (cross-correlation, as Keras's Conv2D) with 'same' zero padding in the
/// TensorFlow convention: the output has the input's H and W; the total padding k − 1 of an axis is
/// split floor((k − 1)/2) before and the rest after.
///   y[b, r, c, o] = bias[o] + Σ_{i, j, ci} x[b, r + i − pt, c + j − pl, ci] · kernel[i, j, ci, o]
/// x `[B, H, W, C_in]`, kernel `[kh, kw, C_in, C_out]`, bias `[C_out]` or null, y `[B, H, W, C_out]`
/// (must not alias x). The caller checks the kernel against C_in.
/// Per (image, output channel) the sum is built plane by plane: each kernel tap adds a scaled,
/// shifted input plane to the output plane over the rows and columns where it stays inside the image
/// (contiguous row segments, so the inner loop vectorises; padding is never materialised).
template <class T>
void conv2d_same(const T* x, Index batch, Index height, Index width, const Weight<T>& kernel,
                 const Weight<T>* bias, T* y) {
  using Plane = Eigen::Array<T, Eigen::Dynamic, 1>;
  using Strided = Eigen::Map<const Plane, 0, Eigen::InnerStride<>>;
  using StridedOut = Eigen::Map<Plane, 0, Eigen::InnerStride<>>;
  const Index kh = kernel.shape.at(0), kw = kernel.shape.at(1);
  const Index cin = kernel.shape.at(2), cout = kernel.shape.at(3);
  const Index pt = (kh - 1) / 2, pl = (kw - 1) / 2;
  const Index hw = height * width;
  if (hw == 0 || cout == 0) return;
  const T* K = kernel.data.data();
  Plane in(hw), acc(hw);
  for (Index b = 0; b < batch; ++b) {
    const T* xb = x + b * hw * cin;
    T* yb = y + b * hw * cout;
    for (Index o = 0; o < cout; ++o) {
      acc.setConstant(bias != nullptr ? bias->data[static_cast<std::size_t>(o)] : T(0));
      for (Index ci = 0; ci < cin; ++ci) {
        in = Strided(xb + ci, hw, Eigen::InnerStride<>(cin));
        for (Index i = 0; i < kh; ++i) {
          // output rows r whose input row r + i − pt lies inside the image
          const Index r0 = std::max<Index>(0, pt - i), r1 = std::min<Index>(height, height + pt - i);
          for (Index j = 0; j < kw; ++j) {
            const Index c0 = std::max<Index>(0, pl - j), c1 = std::min<Index>(width, width + pl - j);
            if (c1 <= c0) continue;
            const T w = K[((i * kw + j) * cin + ci) * cout + o];
            for (Index r = r0; r < r1; ++r)
              acc.segment(r * width + c0, c1 - c0) +=
                  w * in.segment((r + i - pt) * width + c0 + j - pl, c1 - c0);
          }
        }
      }
      StridedOut(yb + o, hw, Eigen::InnerStride<>(cout)) = acc;
    }
  }
}

/// Shape checks shared by the gate layers, with the reference's build-time wording prefixed by the
/// layer type. `channels` < 0 accepts any channel count. `need_space`: global pooling over space
/// needs H, W >= 1; `need_channels`: pooling over channels needs C >= 1.
inline void check_image_input(std::string_view layer, const Shape& x, Index channels, bool need_space,
                              bool need_channels) {
  if (x.size() != 4)
    throw ShapeError(fmt::format("{}: Expected 4D input shape (batch, height, width, channels), got {}D: {}",
                                 layer, x.size(), shape_str(x)));
  if (channels >= 0 && x[3] != channels)
    throw ShapeError(
        fmt::format("{}: Expected input channels ({}) to match layer channels ({}); input "
                    "shape {}",
                    layer, x[3], channels, shape_str(x)));
  if (need_space && (x[1] == 0 || x[2] == 0))
    throw ShapeError(
        fmt::format("{}: global pooling over space needs height and width >= 1, got input "
                    "shape {}",
                    layer, shape_str(x)));
  if (need_channels && x[3] == 0)
    throw ShapeError(fmt::format("{}: pooling over channels needs at least 1 channel, got input shape {}",
                                 layer, shape_str(x)));
}

}  // namespace attn::ops
