/// \file
/// Dense projections on the fast path: Eigen matrix products over tensor storage.
#pragma once

#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"

namespace attn::ops {

/// y[rows, out] = x[rows, in] · kernel[in, out] (+ bias[out]). `y` must not alias `x`.
template <class T>
void dense(const T* x, Index rows, const Weight<T>& kernel, const Weight<T>* bias, T* y) {
  const Index in = kernel.shape.at(0);
  const Index out = kernel.shape.at(1);
  MatrixMap<T> Y(y, rows, out);
  Y.noalias() = ConstMatrixMap<T>(x, rows, in) * kernel.matrix();
  if (bias != nullptr) Y.rowwise() += bias->row();
}

/// Applies a dense layer to the last axis of a rank-R tensor.
template <class T, int R, class Input>
Tensor<T, R> dense(const Input& x, const Weight<T>& kernel, const Weight<T>* bias) {
  auto dims = x.dimensions();
  const Index in = dims[R - 1];
  const Index rows = in == 0 ? 0 : x.size() / in;
  dims[R - 1] = kernel.shape.at(1);
  Tensor<T, R> y(dims);
  dense(x.data(), rows, kernel, bias, y.data());
  return y;
}

}  // namespace attn::ops
