/// \file
/// The hot kernels of attn behind one dispatch table: a single-threaded matrix product on row-major
/// strided operands, and the attention core's row passes (scale/bias/mask + max, exp + sum, max). Each
/// instruction-set level of core/simd.hpp has a table; `kernels<T>()` returns the one in use.
///
/// - generic: RowOps on Eigen's packet math (SSE2 by default, wider with -march=native, NEON on ARM);
///   the product is the packed one of ops/simd/gemm.inl on SSE2 registers in a build with run-time
///   dispatch (x86-64: it costs a user's translation unit far less to compile than Eigen's product),
///   Eigen's matrix product over Maps with outer strides otherwise (other CPUs).
/// - avx2 / avx512 (x86-64, GCC/Clang): the packed register-tiled product of ops/simd/gemm.inl for
///   float and double; the row passes of ops/simd/kernels.inl for float (double keeps the generic row
///   passes).
///
/// Every product fixes its k blocking from k alone, so the value of an output element does not depend on
/// how a caller cuts the output into blocks: callers may tile by the thread count and stay bit-identical.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "attn/core/simd.hpp"
#include "attn/core/tensor.hpp"
#include "attn/ops/simd/x86.hpp"

namespace attn::ops {

namespace detail {

template <class T>
using ConstStrided = Eigen::Map<const Matrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using Strided = Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>;

// Eigen's packet types carry vector attributes that GCC drops (and warns about) in template arguments.
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

/// Row passes of the core on Eigen's packet math, with a scalar tail.
template <class T>
struct RowOps {
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  static constexpr Index W = Eigen::internal::unpacket_traits<Packet>::size;
  static constexpr T neg_inf = -std::numeric_limits<T>::infinity();

  /// z[0, ce) = z·scale (+ bias), then z[ce, n) = -inf and z[c] = -inf where keep[c] is false (c < ce);
  /// returns max z[0, n).
  static T prepare(T* z, Index n, Index ce, T scale, const T* bias, const bool* keep) {
    Index c = 0;
    T mx = neg_inf;
    if constexpr (W > 1) {
      namespace ei = Eigen::internal;
      const Packet vs = ei::pset1<Packet>(scale);
      Packet vmax = ei::pset1<Packet>(neg_inf);
      if (bias != nullptr) {
        for (; c + W <= ce; c += W) {
          const Packet x = ei::padd(ei::pmul(ei::ploadu<Packet>(z + c), vs), ei::ploadu<Packet>(bias + c));
          ei::pstoreu(z + c, x);
          vmax = ei::pmax(vmax, x);
        }
      } else {
        for (; c + W <= ce; c += W) {
          const Packet x = ei::pmul(ei::ploadu<Packet>(z + c), vs);
          ei::pstoreu(z + c, x);
          vmax = ei::pmax(vmax, x);
        }
      }
      mx = hmax(vmax);
    }
    for (; c < ce; ++c) {
      T x = z[c] * scale;
      if (bias != nullptr) x += bias[c];
      z[c] = x;
      mx = std::max(mx, x);
    }
    std::fill(z + ce, z + n, neg_inf);
    if (keep == nullptr) return mx;
    bool masked = false;
    for (c = 0; c < ce; ++c)
      if (!keep[c]) {
        z[c] = neg_inf;
        masked = true;
      }
    return masked ? row_max(z, ce) : mx;
  }

  // Horizontal max and sum through memory, in lane order: GCC 12 warns (-Wuninitialized, GCC bug
  // 105593) inside the AVX-512 intrinsics of Eigen's predux_max/predux under -march=native.
  static T hmax(const Packet& p) {
    T lanes[W];
    Eigen::internal::pstoreu(lanes, p);
    T m = lanes[0];
    for (Index i = 1; i < W; ++i) m = std::max(m, lanes[i]);
    return m;
  }
  static T hsum(const Packet& p) {
    T lanes[W];
    Eigen::internal::pstoreu(lanes, p);
    T s = lanes[0];
    for (Index i = 1; i < W; ++i) s += lanes[i];
    return s;
  }

  static T row_max(const T* z, Index n) {
    Index c = 0;
    T mx = neg_inf;
    if constexpr (W > 1) {
      namespace ei = Eigen::internal;
      Packet vmax = ei::pset1<Packet>(neg_inf);
      for (; c + W <= n; c += W) vmax = ei::pmax(vmax, ei::ploadu<Packet>(z + c));
      mx = hmax(vmax);
    }
    for (; c < n; ++c) mx = std::max(mx, z[c]);
    return mx;
  }

  /// exp(x) for x <= 0 (-inf included; the caller masks those lanes). float: Cody-Waite reduction
  /// x = n·ln2 + r with n rounded by the 1.5·2^23 shifter, Eigen's (Cephes) degree-5 polynomial for
  /// e^r and 2^n built in the exponent bits; x is clamped at -87, so results below 2^-126 come out as
  /// about 1.6e-38 instead of underflowing (irrelevant next to the row sum >= 1). double: Eigen's pexp.
  static Packet exp_nonpositive(const Packet& x_in) {
    namespace ei = Eigen::internal;
    if constexpr (std::is_same_v<T, float>) {
      using PacketI = typename ei::unpacket_traits<Packet>::integer_packet;
      const Packet shifter = ei::pset1<Packet>(12582912.0f);  // 1.5·2^23
      // pmax returns its first argument when either is NaN (std::max's rule): a NaN stays NaN.
      const Packet x = ei::pmax(x_in, ei::pset1<Packet>(-87.0f));
      const Packet t = ei::pmadd(x, ei::pset1<Packet>(1.44269504088896341f), shifter);
      const Packet nf = ei::psub(t, shifter);  // round(x / ln2)
      Packet r = ei::pmadd(nf, ei::pset1<Packet>(-0.693359375f), x);
      r = ei::pmadd(nf, ei::pset1<Packet>(2.12194440e-4f), r);
      Packet y = ei::pmadd(ei::pset1<Packet>(1.9875691500e-4f), r, ei::pset1<Packet>(1.3981999507e-3f));
      y = ei::pmadd(y, r, ei::pset1<Packet>(8.3334519073e-3f));
      y = ei::pmadd(y, r, ei::pset1<Packet>(4.1665795894e-2f));
      y = ei::pmadd(y, r, ei::pset1<Packet>(1.6666665459e-1f));
      y = ei::pmadd(y, r, ei::pset1<Packet>(5.0000001201e-1f));
      y = ei::pmadd(y, ei::pmul(r, r), ei::padd(r, ei::pset1<Packet>(1.0f)));
      const PacketI n = ei::psub(ei::preinterpret<PacketI>(t), ei::preinterpret<PacketI>(shifter));
      const PacketI bits = ei::plogical_shift_left<23>(ei::padd(n, ei::pset1<PacketI>(127)));
      return ei::pmul(y, ei::preinterpret<Packet>(bits));
    } else {
      return ei::pexp(x_in);
    }
  }

  /// z[c] = exp(z[c] - m), exactly 0 where z[c] is -inf and NaN where z[c] is NaN (so a NaN logit
  /// makes the sum NaN); returns the sum. m must be finite.
  static T exp_sum(T* z, Index n, T m) {
    Index c = 0;
    T sum = 0;
    if constexpr (W > 1) {
      namespace ei = Eigen::internal;
      const Packet vm = ei::pset1<Packet>(m);
      const Packet ninf = ei::pset1<Packet>(neg_inf);
      Packet vsum = ei::pset1<Packet>(T(0));
      for (; c + W <= n; c += W) {
        const Packet x = ei::ploadu<Packet>(z + c);
        const Packet e = ei::pandnot(exp_nonpositive(ei::psub(x, vm)), ei::pcmp_eq(x, ninf));
        ei::pstoreu(z + c, e);
        vsum = ei::padd(vsum, e);
      }
      sum = hsum(vsum);
    }
    for (; c < n; ++c) {
      const T e = z[c] == neg_inf ? T(0) : std::exp(z[c] - m);
      z[c] = e;
      sum += e;
    }
    return sum;
  }
};

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif


/// The generic product without run-time dispatch (CPUs other than x86-64): Eigen over strided Maps
/// (see Kernels::gemm).
template <class T>
void generic_gemm(Index m, Index n, Index k, const T* a, Index lda, const T* b, Index ldb, bool b_trans, T* c,
                  Index ldc, bool accumulate, bool /*direct*/) {
  if (m <= 0 || n <= 0) return;
  Strided<T> C(c, m, n, Eigen::OuterStride<>(ldc));
  if (k <= 0) {
    if (!accumulate) C.setZero();
    return;
  }
  const ConstStrided<T> A(a, m, k, Eigen::OuterStride<>(lda));
  if (b_trans) {
    const ConstStrided<T> Bt(b, n, k, Eigen::OuterStride<>(ldb));
    if (accumulate) C.noalias() += A * Bt.transpose();
    else C.noalias() = A * Bt.transpose();
  } else {
    const ConstStrided<T> B(b, k, n, Eigen::OuterStride<>(ldb));
    if (accumulate) C.noalias() += A * B;
    else C.noalias() = A * B;
  }
}

}  // namespace detail

/// One instruction-set level's kernels for scalar T.
template <class T>
struct Kernels {
  Simd level;
  /// C[m, n] = A[m, k] · B[k, n], or C += A · B when `accumulate`; row-major with leading dimensions
  /// lda, ldb, ldc; when `b_trans`, b holds Bᵀ (row-major [n, k], leading dimension ldb). C must not
  /// overlap A or B. Single-threaded. `direct` hints that B is small and in cache (the packed kernels,
  /// which always read full tiles of A in place, then read an untransposed B in place too); it never
  /// changes a result.
  void (*gemm)(Index m, Index n, Index k, const T* a, Index lda, const T* b, Index ldb, bool b_trans, T* c,
               Index ldc, bool accumulate, bool direct);
  /// RowOps<T>::prepare, row_max, exp_sum (see there)
  T (*prepare)(T* z, Index n, Index ce, T scale, const T* bias, const bool* keep);
  T (*row_max)(const T* z, Index n);
  T (*exp_sum)(T* z, Index n, T m);
};

/// The kernels of `level` (generic when this build or CPU lacks it).
template <class T>
[[nodiscard]] const Kernels<T>& kernels(Simd level) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "attn kernels exist for float and double");
  using R = detail::RowOps<T>;
#if ATTN_SIMD_DISPATCH
  static const Kernels<T> generic{Simd::generic, &x86::baseline::gemm<T>, &R::prepare, &R::row_max, &R::exp_sum};
#else
  static const Kernels<T> generic{Simd::generic, &detail::generic_gemm<T>, &R::prepare, &R::row_max, &R::exp_sum};
#endif
#if ATTN_SIMD_DISPATCH
  if (simd_available(level)) {
    if constexpr (std::is_same_v<T, float>) {
      static const Kernels<T> avx2{Simd::avx2, &x86::avx2::gemm<T>, &x86::avx2::prepare, &x86::avx2::row_max,
                                   &x86::avx2::exp_sum};
      static const Kernels<T> avx512{Simd::avx512, &x86::avx512::gemm<T>, &x86::avx512::prepare,
                                     &x86::avx512::row_max, &x86::avx512::exp_sum};
      if (level == Simd::avx512) return avx512;
      if (level == Simd::avx2) return avx2;
    } else {
      static const Kernels<T> avx2{Simd::avx2, &x86::avx2::gemm<T>, &R::prepare, &R::row_max, &R::exp_sum};
      static const Kernels<T> avx512{Simd::avx512, &x86::avx512::gemm<T>, &R::prepare, &R::row_max, &R::exp_sum};
      if (level == Simd::avx512) return avx512;
      if (level == Simd::avx2) return avx2;
    }
  }
#endif
  return generic;
}

/// An out-of-place transpose, dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols (the attention
/// core packs its K blocks with it); `transpose_kernel<T>(level)` gives the one of an instruction-set
/// level (AVX for float on x86-64, else a plain loop). Copies only: no value changes.
template <class T>
using TransposeFn = void (*)(const T* src, Index lds, Index rows, Index cols, T* dst, Index ldd);

namespace detail {
template <class T>
void generic_transpose(const T* src, Index lds, Index rows, Index cols, T* dst, Index ldd) {
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
}
}  // namespace detail

template <class T>
[[nodiscard]] TransposeFn<T> transpose_kernel(Simd level) {
#if ATTN_SIMD_DISPATCH
  if (simd_available(level)) {
    if (level == Simd::avx512) return &x86::avx512::transpose<T>;
    if (level == Simd::avx2) return &x86::avx2::transpose<T>;
  }
#endif
  return &detail::generic_transpose<T>;
}

/// The kernels of the level in use (attn::simd()).
template <class T>
[[nodiscard]] const Kernels<T>& kernels() {
  return kernels<T>(simd());
}

/// z[c] = K[c, :]·q for c < cols, K row-major [cols, d] (a matrix times one vector: a decode step's
/// logits). For float at the AVX-512 / AVX2 levels (attn::simd()) the kernels of ops/simd/rowvec.inl,
/// which stream K once with software prefetch; plain loops otherwise. Single-threaded.
template <class T>
void matvec(const T* K, Index cols, Index d, const T* q, T* z) {
#if ATTN_SIMD_DISPATCH
  if constexpr (std::is_same_v<T, float>) {
    if (simd() == Simd::avx512) return x86::avx512::matvec(K, cols, d, q, z);
    if (simd() == Simd::avx2) return x86::avx2::matvec(K, cols, d, q, z);
  }
#endif
  for (Index c = 0; c < cols; ++c) {
    T s = 0;
    for (Index e = 0; e < d; ++e) s = std::fma(K[c * d + e], q[e], s);
    z[c] = s;
  }
}

/// o[0, d) += Σ_c z[c]·V[c, 0, d) for c < cols, V row-major with row stride ld >= d (one vector times a
/// matrix: a decode step's weighted values, a dense layer on one token). float at the AVX levels: each
/// output is one chain of fused multiply-adds in c order, V streamed once with software prefetch;
/// plain loops otherwise (the same chains). Single-threaded.
template <class T>
void vecmat_acc(const T* z, const T* V, Index cols, Index d, Index ld, T* o) {
#if ATTN_SIMD_DISPATCH
  if constexpr (std::is_same_v<T, float>) {
    if (simd() == Simd::avx512) return x86::avx512::vecmat_acc(z, V, cols, d, ld, o);
    if (simd() == Simd::avx2) return x86::avx2::vecmat_acc(z, V, cols, d, ld, o);
  }
#endif
  for (Index c = 0; c < cols; ++c)
    for (Index e = 0; e < d; ++e) o[e] = std::fma(z[c], V[c * ld + e], o[e]);
}

/// Z[r·ldz + c] = K[c, :]·Q[r, :] for r < rows, c < cols: several query rows (a decode step's query
/// heads of one kv head) against one block of keys, K row-major [cols, d], Q row-major [rows, d].
/// `next` (may be null) points at the rows [·, d] the caller reads after K (the block's values): the
/// kernel asks for them ahead once K's end is near, so the memory stream does not pause between
/// passes. float at the AVX-512 / AVX2 levels: each key row is loaded once for up to four query rows
/// (ops/simd/rowvec.inl; a single row four keys at a time, as ops::matvec); plain loops otherwise.
/// Single-threaded.
template <class T>
void matvec_rows(const T* K, Index cols, Index d, const T* Q, Index rows, T* Z, Index ldz, const T* next = nullptr) {
  // one row: ops::matvec, whose loop measured faster than the several-row kernel's single-row pass
  // on data in cache (1k keys)
  if (rows == 1) return matvec(K, cols, d, Q, Z);
#if ATTN_SIMD_DISPATCH
  if constexpr (std::is_same_v<T, float>) {
    if (simd() == Simd::avx512) return x86::avx512::matvec_rows(K, cols, d, Q, rows, Z, ldz, next);
    if (simd() == Simd::avx2) return x86::avx2::matvec_rows(K, cols, d, Q, rows, Z, ldz, next);
  }
#endif
  (void)next;
  for (Index r = 0; r < rows; ++r) matvec(K, cols, d, Q + r * d, Z + r * ldz);
}

/// O[r, e] += Σ_c Z[r·ldz + c]·V[c, e] for r < rows, e < d: several rows of weights against one block
/// of values, V row-major [cols, d], O row-major [rows, d]; `next` as for matvec_rows (the next block's
/// keys). Each output element is one chain of fused multiply-adds in c order: the values of
/// ops::vecmat_acc row by row, at every level. float at the AVX levels: each value row loaded once
/// for up to four rows; plain loops otherwise. Single-threaded.
template <class T>
void vecmat_acc_rows(const T* Z, Index ldz, const T* V, Index cols, Index d, Index rows, T* O,
                     const T* next = nullptr) {
  if (rows == 1) return vecmat_acc(Z, V, cols, d, d, O);  // as matvec_rows
#if ATTN_SIMD_DISPATCH
  if constexpr (std::is_same_v<T, float>) {
    if (simd() == Simd::avx512) return x86::avx512::vecmat_acc_rows(Z, ldz, V, cols, d, rows, O, next);
    if (simd() == Simd::avx2) return x86::avx2::vecmat_acc_rows(Z, ldz, V, cols, d, rows, O, next);
  }
#endif
  (void)next;
  for (Index r = 0; r < rows; ++r) vecmat_acc(Z + r * ldz, V, cols, d, d, O + r * d);
}

}  // namespace attn::ops

/// Declares (EXTERN = extern) or defines (EXTERN empty) the kernel tables for scalar T (at namespace
/// scope). Under ATTN_PRECOMPILED_LAYERS they come compiled from attn::layers (src/precompiled_ops.cpp):
/// every translation unit that runs a forward would otherwise compile the packed products of every
/// SIMD level again.
#define ATTN_KERNEL_INSTANCES(EXTERN, T) \
  EXTERN template const attn::ops::Kernels<T>& attn::ops::kernels<T>(attn::Simd);
#ifdef ATTN_PRECOMPILED_LAYERS
ATTN_KERNEL_INSTANCES(extern, float)
ATTN_KERNEL_INSTANCES(extern, double)
#endif
