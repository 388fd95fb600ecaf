/// \file
/// Helpers shared by the sequence layers `differential`, `hopfield`, `shared_weights_cross`, `fnet`
/// and `context_attention`: a dense projection whose kernel is stored in a Keras layout of any rank
/// (`[in, heads, head_dim]` for Keras MultiHeadAttention's query/key/value kernels, `[heads, head_dim,
/// out]` for its output kernel), and head views over a sub-range of a projection's rows.
#pragma once

#include <string_view>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/ops/heads.hpp"
#include "attn/ops/linear.hpp"

namespace attn::detail {

/// y[rows, out] = x[rows, in] · kernel + bias, where the kernel's first `in_axes` extents multiply to
/// `in` and the rest to `out` (row-major flattening: a Keras EinsumDense kernel `[in, h, d]` is the
/// matrix `[in, h·d]`, an output kernel `[h, d, out]` (in_axes 2) the matrix `[h·d, out]`). The bias
/// (any rank) has `out` values. Runs through ops::gemm (bit-identical for any thread count).
template <class T>
void dense_flat(const T* x, Index rows, const Weight<T>& kernel, const Weight<T>* bias, T* y, int in_axes = 1) {
  Index in = 1;
  for (int i = 0; i < in_axes; ++i) in *= kernel.shape.at(static_cast<std::size_t>(i));
  const Index out = in == 0 ? 0 : kernel.size() / in;
  ops::gemm<T>(rows, out, in, x, in, kernel.data.data(), out, /*b_trans=*/false, y, out);
  if (bias != nullptr && rows > 0) MatrixMap<T>(y, rows, out).rowwise() += bias->row();
}

/// Heads of rows [l0, l0 + len) of a projection `[batch, total_len, row_stride]` whose head h of width
/// `dim` starts at column `col0 + h·dim`.
template <class T>
ops::HeadsView<T> heads_range(const T* base, Index batch, Index total_len, Index l0, Index len, Index heads,
                              Index dim, Index row_stride, Index col0 = 0) {
  return {base + l0 * row_stride + col0, batch, len, heads, dim, total_len * row_stride, row_stride, dim};
}
template <class T>
ops::HeadsOut<T> heads_out_range(T* base, Index batch, Index total_len, Index l0, Index len, Index heads,
                                 Index dim, Index row_stride, Index col0 = 0) {
  return {base + l0 * row_stride + col0, batch, len, heads, dim, total_len * row_stride, row_stride, dim};
}

}  // namespace attn::detail
