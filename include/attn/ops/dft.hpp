/// \file
/// Discrete Fourier transforms for FNet-style token mixing (Lee-Thorp et al., 2021, "FNet: Mixing Tokens
/// with Fourier Transforms"), float and double:
///
/// - dft_rows(x `[rows, n]` real) → re, im `[rows, n]`: `X[k] = Σ_j x[j]·e^{−2πi·jk/n}` per row (the full
///   spectrum, as `torch.fft.fft(x, dim=-1)`).
/// - fourier_mix(x `[B, N, D]`) → y `[B, N, D]` = Re(FFT2 over (N, D)), FNet's mixing sublayer
///   (`torch.fft.fft2(x, dim=(-2, -1)).real`).
///
/// Two algorithms, chosen by `DftMethod`:
/// - `fft`: Eigen's FFT module (unsupported/Eigen/FFT, the header-only kissfft backend; O(n log n) per
///   row, mixed radix 2/3/4/5 and generic factors). fourier_mix transforms every row over D, then every
///   column over N, keeping the real part.
/// - `gemm`: the DFT as matrix products through attn's GEMM kernels (ops::gemm) with the cosine and sine
///   matrices `C[j, k] = cos(2π·(jk mod n)/n)`, `S[j, k] = sin(...)` (angles reduced exactly, so entries
///   are correctly rounded): dft_rows is `re = x·C`, `im = −x·S`; fourier_mix is
///   `Y = C_N·(X·C_D) − S_N·(X·S_D)`, 4·N·D·(N + D) flops per sample against the FFT's O(N·D·log(N·D)).
/// - `automatic` (the default) = `fft`: measured with benchmarks/bench_dft.cpp (fp32, B = 1, AVX-512
///   machine, one thread, busy shared host) the FFT took 25-29 ms against the GEMM's 49-51 ms at
///   (N, D) = (512, 768), and 148-157 ms against 1.10-1.14 s at (4096, 512): the GEMM form does
///   4·N·D·(N + D) flops (2.0 and 38.7 GFLOP), about 50x and 180x the FFT's ~5·N·D·log2(N·D), which
///   attn's GEMM speed cannot make up. The GEMM path stays for checking and for tiny sizes.
///
/// Accuracy: both paths are within a few ulps × log(n) (FFT) or × sqrt(n) (GEMM) of the exact transform.
/// Rows (dft_rows, FFT row pass) and columns (FFT column pass) are tasks on attn's pool with per-task FFT
/// plans, and ops::gemm is thread-count independent: results are bit-identical for any thread count.
/// Errors: ShapeError for empty transform lengths.
#pragma once

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <numbers>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#endif
#include "attn/core/eigen.hpp"
#include <unsupported/Eigen/FFT>
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "attn/core/error.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/tensor.hpp"
#include "attn/ops/linear.hpp"

namespace attn::ops {

/// Algorithm of the DFTs (file comment).
enum class DftMethod { automatic, fft, gemm };

/// The cosine and sine DFT matrices `[n, n]` (row-major): C[j, k] = cos(2π(jk mod n)/n), S likewise.
template <class T>
void dft_matrices(Index n, std::vector<T>& c, std::vector<T>& s) {
  c.resize(static_cast<std::size_t>(n * n));
  s.resize(static_cast<std::size_t>(n * n));
  for (Index j = 0; j < n; ++j)
    for (Index k = 0; k < n; ++k) {
      const double a = 2.0 * std::numbers::pi * static_cast<double>((j * k) % n) / static_cast<double>(n);
      c[static_cast<std::size_t>(j * n + k)] = static_cast<T>(std::cos(a));
      s[static_cast<std::size_t>(j * n + k)] = static_cast<T>(std::sin(a));
    }
}

namespace detail {
inline void check_dft(std::string_view layer, Index n) {
  if (n < 1) throw ShapeError(fmt::format("{}: the transform length must be at least 1, got {}", layer, n));
}
/// fft.fwd, with the length-1 transform (the identity) done here: kissfft does not handle it.
template <class T, class Src>
void fft_fwd(Eigen::FFT<T>& fft, std::complex<T>* dst, const Src* src, Index n) {
  if (n == 1) dst[0] = std::complex<T>(src[0]);
  else fft.fwd(dst, src, n);
}
}  // namespace detail

/// Full complex DFT of every real row of x `[rows, n]` into re, im `[rows, n]`.
template <class T>
void dft_rows(const T* x, Index rows, Index n, T* re, T* im, DftMethod method = DftMethod::automatic,
              std::string_view layer = "dft") {
  detail::check_dft(layer, n);
  if (rows == 0) return;
  if (method == DftMethod::gemm) {
    std::vector<T> c, s;
    dft_matrices<T>(n, c, s);
    gemm<T>(rows, n, n, x, n, c.data(), n, false, re, n);
    gemm<T>(rows, n, n, x, n, s.data(), n, false, im, n);
    for (Index i = 0; i < rows * n; ++i) im[i] = -im[i];
    return;
  }
  const Index chunk = std::max<Index>(1, (Index(1) << 14) / n);
  parallel_for((rows + chunk - 1) / chunk, [&](std::int64_t t) {
    Eigen::FFT<T> fft;
    std::vector<std::complex<T>> out(static_cast<std::size_t>(n));
    const Index r0 = static_cast<Index>(t) * chunk, r1 = std::min(rows, r0 + chunk);
    for (Index r = r0; r < r1; ++r) {
      detail::fft_fwd(fft, out.data(), x + r * n, n);
      for (Index k = 0; k < n; ++k) {
        re[r * n + k] = out[static_cast<std::size_t>(k)].real();
        im[r * n + k] = out[static_cast<std::size_t>(k)].imag();
      }
    }
  });
}

/// FNet mixing: y[b] = Re(FFT2(x[b])) over the last two axes of x `[B, N, D]`; y must not alias x.
template <class T>
void fourier_mix(const T* x, Index batch, Index n, Index d, T* y, DftMethod method = DftMethod::automatic,
                 std::string_view layer = "fourier_mix") {
  detail::check_dft(layer, n);
  detail::check_dft(layer, d);
  if (batch == 0) return;
  if (method == DftMethod::gemm) {
    std::vector<T> cd, sd, cn, sn;
    dft_matrices<T>(d, cd, sd);
    dft_matrices<T>(n, cn, sn);
    std::vector<T> p(static_cast<std::size_t>(n * d)), q(p.size()), t(p.size());
    for (Index b = 0; b < batch; ++b) {
      const T* xb = x + b * n * d;
      T* yb = y + b * n * d;
      gemm<T>(n, d, d, xb, d, cd.data(), d, false, p.data(), d);          // X·C_D
      gemm<T>(n, d, d, xb, d, sd.data(), d, false, q.data(), d);          // X·S_D
      gemm<T>(n, d, n, cn.data(), n, p.data(), d, false, yb, d);          // C_N·X·C_D
      gemm<T>(n, d, n, sn.data(), n, q.data(), d, false, t.data(), d);    // S_N·X·S_D
      for (Index i = 0; i < n * d; ++i) yb[i] -= t[static_cast<std::size_t>(i)];
    }
    return;
  }
  // rows over D (real input), then columns over N (complex), real part kept
  std::vector<std::complex<T>> z(static_cast<std::size_t>(batch * n * d));
  const Index rows = batch * n;
  const Index chunk = std::max<Index>(1, (Index(1) << 14) / d);
  parallel_for((rows + chunk - 1) / chunk, [&](std::int64_t t) {
    Eigen::FFT<T> fft;
    const Index r0 = static_cast<Index>(t) * chunk, r1 = std::min(rows, r0 + chunk);
    for (Index r = r0; r < r1; ++r) detail::fft_fwd(fft, z.data() + r * d, x + r * d, d);
  });
  const Index cols = batch * d;
  const Index cchunk = 16;  // columns per task: contiguous 16-wide gathers
  parallel_for((cols + cchunk - 1) / cchunk, [&](std::int64_t t) {
    Eigen::FFT<T> fft;
    std::vector<std::complex<T>> in(static_cast<std::size_t>(n)), out(static_cast<std::size_t>(n));
    const Index c0 = static_cast<Index>(t) * cchunk, c1 = std::min(cols, c0 + cchunk);
    for (Index c = c0; c < c1; ++c) {
      const Index b = c / d, k = c % d;
      const std::complex<T>* zc = z.data() + b * n * d + k;
      for (Index j = 0; j < n; ++j) in[static_cast<std::size_t>(j)] = zc[j * d];
      detail::fft_fwd(fft, out.data(), in.data(), n);
      T* yc = y + b * n * d + k;
      for (Index j = 0; j < n; ++j) yc[j * d] = out[static_cast<std::size_t>(j)].real();
    }
  });
}

}  // namespace attn::ops
