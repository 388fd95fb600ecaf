/// \file
/// Dense projections on the fast path: Eigen matrix products over tensor storage.
#pragma once

#include <algorithm>
#include <cstdint>

#include "attn/core/parallel.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"

namespace attn::ops {

/// y[rows, out] = x[rows, in] · kernel[in, out] (+ bias[out]). `y` must not alias `x`.
/// Rows are cut into fixed chunks of 256 that run on attn's threads (core/parallel.hpp): the chunks
/// do not depend on the thread count, so neither do the results.
template <class T>
void dense(const T* x, Index rows, const Weight<T>& kernel, const Weight<T>* bias, T* y) {
  const Index in = kernel.shape.at(0);
  const Index out = kernel.shape.at(1);
  constexpr Index chunk = 256;
  const auto run = [&](Index r0, Index n) {
    MatrixMap<T> Y(y + r0 * out, n, out);
    Y.noalias() = ConstMatrixMap<T>(x + r0 * in, n, in) * kernel.matrix();
    if (bias != nullptr) Y.rowwise() += bias->row();
  };
  if (rows <= chunk) {
    run(0, rows);
    return;
  }
  parallel_for((rows + chunk - 1) / chunk, [&](std::int64_t t) {
    const Index r0 = static_cast<Index>(t) * chunk;
    run(r0, std::min(chunk, rows - r0));
  });
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
