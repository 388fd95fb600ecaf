/// \file
/// Matrix products on attn's threads, and dense projections on top of them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "attn/core/parallel.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/ops/kernels.hpp"

namespace attn::ops {

/// C[m, n] = A[m, k] · B[k, n] (row-major, leading dimensions lda/ldb/ldc; B given as Bᵀ when
/// `b_trans`) on attn's threads, with the kernels of the SIMD level in use (ops/kernels.hpp). The output
/// is cut into tiles of 256 rows x 256 columns that run as independent single-threaded products, taken
/// by whichever thread is free (one thread: in order; a tile's C stays in cache over the whole k loop).
/// The packed kernels (avx2, avx512) give every element the same value whatever the tiling, so there
/// the tiles narrow (down to 64 columns) when that leaves fewer than 8 per thread; at the generic level
/// the tiling is fixed (Eigen's products, in builds without run-time dispatch, choose their code path
/// by shape). Either way results are bit-identical for every thread count. Problems under 2^21 flops
/// stay on the calling thread. One row times a B that is not transposed (a decode step's token), in
/// float at the AVX levels, goes through ops::vecmat_acc instead: it streams B once instead of packing
/// it, in blocks of 256 columns over the threads when B has at least 2^20 elements.
template <class T>
void gemm(Index m, Index n, Index k, const T* a, Index lda, const T* b, Index ldb, bool b_trans, T* c,
          Index ldc) {
  if (m <= 0 || n <= 0) return;
  const Kernels<T>& kern = kernels<T>();
  if (m == 1 && !b_trans && std::is_same_v<T, float> && kern.level != Simd::generic) {
    constexpr Index block = 256;
    const auto row = [&](std::int64_t t) {
      const Index j0 = static_cast<Index>(t) * block, nj = std::min(block, n - j0);
      std::fill_n(c + j0, nj, T(0));
      vecmat_acc(a, b + j0, k, nj, ldb, c + j0);
    };
    const Index blocks = (n + block - 1) / block;
    if (k * n < (Index(1) << 20) || shares_for(2) == 1) {
      for (Index t = 0; t < blocks; ++t) row(t);
    } else {
      parallel_for_dynamic(blocks, row);
    }
    return;
  }
  const bool any_tiling = kern.level != Simd::generic;
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const bool serial = flops < double(1 << 21) || shares_for(2) == 1;
  constexpr Index tile_m = 256;
  Index tile_n = 256;
  const Index tm = (m + tile_m - 1) / tile_m;
  if (any_tiling && !serial)
    while (tile_n > 64 && tm * ((n + tile_n - 1) / tile_n) < 8 * static_cast<Index>(num_threads())) tile_n /= 2;
  const Index tn = (n + tile_n - 1) / tile_n;
  const auto run = [&](std::int64_t t) {
    const Index i0 = static_cast<Index>(t) / tn * tile_m, j0 = static_cast<Index>(t) % tn * tile_n;
    const Index mi = std::min(tile_m, m - i0), nj = std::min(tile_n, n - j0);
    kern.gemm(mi, nj, k, a + i0 * lda, lda, b_trans ? b + j0 * ldb : b + j0, ldb, b_trans, c + i0 * ldc + j0, ldc,
              /*accumulate=*/false, /*direct=*/false);
  };
  if (serial) {
    for (Index t = 0; t < tm * tn; ++t) run(t);
    return;
  }
  parallel_for_dynamic(tm * tn, run);
}

/// y[rows, out] = x[rows, in] · kernel[in, out] (+ bias[out]). `y` must not alias `x`. Runs on attn's
/// threads through ops::gemm (bit-identical for every thread count).
template <class T>
void dense(const T* x, Index rows, const Weight<T>& kernel, const Weight<T>* bias, T* y) {
  const Index in = kernel.shape.at(0);
  const Index out = kernel.shape.at(1);
  gemm<T>(rows, out, in, x, in, kernel.data.data(), out, /*b_trans=*/false, y, out);
  if (bias != nullptr && rows > 0) MatrixMap<T>(y, rows, out).rowwise() += bias->row();
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

/// Declares (EXTERN = extern) or defines (EXTERN empty) the threaded product and the dense layer for
/// scalar T (at namespace scope); under ATTN_PRECOMPILED_LAYERS they come compiled from attn::layers
/// (src/precompiled_ops.cpp).
#define ATTN_LINEAR_INSTANCES(EXTERN, T)                                                                   \
  EXTERN template void attn::ops::gemm<T>(attn::Index, attn::Index, attn::Index, const T*, attn::Index,   \
                                          const T*, attn::Index, bool, T*, attn::Index);                  \
  EXTERN template void attn::ops::dense<T>(const T*, attn::Index, const attn::Weight<T>&,                 \
                                           const attn::Weight<T>*, T*);
#ifdef ATTN_PRECOMPILED_LAYERS
ATTN_LINEAR_INSTANCES(extern, float)
ATTN_LINEAR_INSTANCES(extern, double)
#endif
