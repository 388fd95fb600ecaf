// The packed matrix product, written once. ops/simd/x86.hpp includes this file once per instruction
// set, inside that set's namespace, after defining there:
//   Vec<T>        the register type and operations zero, set1, load, store, add, fmadd
//   kMR, kNV      register tile: kMR rows x kNV registers of columns
//   kTranspose8x8 whether transpose8x8 (kernels.inl, AVX) packs transposed float panels
//   ATTN_KTARGET  the function attribute that enables the instruction set
// It is not a header of its own (no include guard, no includes).

/// Blocking of the packed matrix product for scalar T.
template <class T>
struct Blocking {
  static constexpr int W = Vec<T>::W;
  static constexpr int MR = kMR;                  ///< rows of a register tile
  static constexpr int NR = kNV * W;              ///< columns of a register tile
  static constexpr Index KC = 16384 / (NR * static_cast<Index>(sizeof(T)));  ///< a B micro-panel: 16 KiB
  static constexpr Index MC = (256 / MR) * MR;    ///< rows of a packed A block
  static constexpr Index NC = 256;                ///< columns of a packed B block (a multiple of NR)
  static_assert(NC % NR == 0);
};

/// Packs rows [0, mc) x columns [0, kc) of a (row-major, leading dimension lda) into micro-panels of MR
/// rows: pa[panel][k][MR], rows past mc zero.
template <class T>
ATTN_KTARGET inline void pack_a(const T* a, Index lda, Index mc, Index kc, T* pa) {
  constexpr int MR = Blocking<T>::MR;
  for (Index i0 = 0; i0 < mc; i0 += MR) {
    const Index mr = std::min<Index>(MR, mc - i0);
    for (Index k = 0; k < kc; ++k, pa += MR) {
      for (Index i = 0; i < mr; ++i) pa[i] = a[(i0 + i) * lda + k];
      for (Index i = mr; i < MR; ++i) pa[i] = T(0);
    }
  }
}

/// Packs B [0, kc) x [0, nc) into micro-panels of NR columns: pb[panel][k][NR], columns past nc zero.
/// B(k, j) is b[k * ldb + j], or b[j * ldb + k] when `trans` (B given as its transpose, row-major).
template <class T>
ATTN_KTARGET inline void pack_b(const T* b, Index ldb, bool trans, Index kc, Index nc, T* pb) {
  constexpr int NR = Blocking<T>::NR;
  for (Index j0 = 0; j0 < nc; j0 += NR, pb += NR * kc) {
    const Index nr = std::min<Index>(NR, nc - j0);
    if (!trans) {
      for (Index k = 0; k < kc; ++k) {
        const T* src = b + k * ldb + j0;
        T* dst = pb + k * NR;
        for (Index j = 0; j < nr; ++j) dst[j] = src[j];
        for (Index j = nr; j < NR; ++j) dst[j] = T(0);
      }
    } else {
      Index k_done = 0;  // float, full panel: 8 x 8 blocks through registers, the k tail below
      if constexpr (std::is_same_v<T, float> && kTranspose8x8) {
        if (nr == NR) {
          k_done = kc / 8 * 8;
          for (Index j = 0; j < NR; j += 8)
            for (Index k = 0; k < k_done; k += 8) transpose8x8(b + (j0 + j) * ldb + k, ldb, pb + k * NR + j, NR);
        }
      }
      for (Index j = 0; j < nr; ++j) {
        const T* src = b + (j0 + j) * ldb;
        for (Index k = k_done; k < kc; ++k) pb[k * NR + j] = src[k];
      }
      for (Index j = nr; j < NR; ++j)
        for (Index k = 0; k < kc; ++k) pb[k * NR + j] = T(0);
    }
  }
}

/// One register tile: C[0, mr) x [0, nr) (+)= A · B over kc, where A(i, k) is pa[i * a_rs + k] when
/// `DirectA` (A read in place, row stride a_rs) and pa[k * MR + i] otherwise (a packed micro-panel), and
/// B(k, j) is pb[k * b_ks + j] (a packed micro-panel: b_ks = NR; in place: the row stride). Every
/// element is the same chain of fused multiply-adds in k order, then one addition to C when
/// accumulating, whether the tile is full or not and however A and B are laid out: results do not
/// depend on where a tile sits or on packing.
template <class T, bool DirectA>
ATTN_KTARGET inline void micro_tile(Index kc, const T* pa, Index a_rs, const T* pb, Index b_ks, T* c, Index ldc,
                                    bool acc, Index mr, Index nr) {
  using V = Vec<T>;
  using P = typename V::P;
  constexpr int MR = Blocking<T>::MR, NV = kNV, W = V::W, NR = Blocking<T>::NR;
  P r[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) r[i][v] = V::zero();
  for (Index k = 0; k < kc; ++k, pb += b_ks) {
    P bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = V::load(pb + v * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const P av = V::set1(DirectA ? pa[i * a_rs + k] : pa[k * MR + i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) r[i][v] = V::fmadd(av, bv[v], r[i][v]);
    }
  }
  if (mr == MR && nr == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        T* p = c + i * ldc + v * W;
        V::store(p, acc ? V::add(r[i][v], V::load(p)) : r[i][v]);
      }
    return;
  }
  alignas(64) T tmp[MR * NR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) V::store(tmp + i * NR + v * W, r[i][v]);
  for (Index i = 0; i < mr; ++i)
    for (Index j = 0; j < nr; ++j) {
      T& out = c[i * ldc + j];
      out = acc ? tmp[i * NR + j] + out : tmp[i * NR + j];
    }
}

/// C[m, n] (+)= A[m, k] · B[k, n], all row-major with leading dimensions; B given as its transpose
/// when `b_trans`. Single-threaded; packs into per-thread buffers. Full register tiles read A in place
/// (its rows are broadcast one element at a time, so a packed copy buys nothing but the copy: packing
/// took a sixth of the time of a large product); only a ragged edge of rows is packed. B is packed into
/// micro-panels, which full tiles reuse across MC rows; with `direct` (operands already in cache, as in
/// the attention core) full panels of an untransposed B are read in place too. The k blocking is fixed
/// (multiples of KC from 0), so an element's value does not depend on m, n, `direct` or on which
/// sub-block a caller hands over.
template <class T>
ATTN_KTARGET inline void gemm(Index m, Index n, Index k, const T* a, Index lda, const T* b, Index ldb,
                              bool b_trans, T* c, Index ldc, bool accumulate, bool direct) {
  using Bk = Blocking<T>;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate)
      for (Index i = 0; i < m; ++i) std::fill_n(c + i * ldc, n, T(0));
    return;
  }
  thread_local std::vector<T> abuf, bbuf;
  if (abuf.size() < static_cast<std::size_t>(Bk::MR * Bk::KC)) abuf.resize(static_cast<std::size_t>(Bk::MR * Bk::KC));
  if (bbuf.size() < static_cast<std::size_t>(Bk::KC * Bk::NC)) bbuf.resize(static_cast<std::size_t>(Bk::KC * Bk::NC));
  T* pa = abuf.data();
  T* pb = bbuf.data();
  const bool direct_b = direct && !b_trans;
  for (Index pc = 0; pc < k; pc += Bk::KC) {
    const Index kc = std::min(Bk::KC, k - pc);
    const bool acc = accumulate || pc > 0;
    for (Index jc = 0; jc < n; jc += Bk::NC) {
      const Index nc = std::min(Bk::NC, n - jc);
      const T* bsrc = b_trans ? b + jc * ldb + pc : b + pc * ldb + jc;
      const Index nfull = nc / Bk::NR * Bk::NR;  // with direct_b, only the ragged panel is packed (at pb)
      if (!direct_b) pack_b(bsrc, ldb, b_trans, kc, nc, pb);
      else if (nfull < nc) pack_b(bsrc + nfull, ldb, false, kc, nc - nfull, pb);
      for (Index ic = 0; ic < m; ic += Bk::MC) {
        const Index mc = std::min(Bk::MC, m - ic);
        const T* asrc = a + ic * lda + pc;
        const Index mfull = mc / Bk::MR * Bk::MR;  // only the ragged panel is packed (at pa)
        if (mfull < mc) pack_a(asrc + mfull * lda, lda, mc - mfull, kc, pa);
        for (Index jr = 0; jr < nc; jr += Bk::NR) {
          const bool b_in_place = direct_b && jr < nfull;
          const T* bp = b_in_place ? bsrc + jr : (direct_b ? pb : pb + jr * kc);
          const Index b_ks = b_in_place ? ldb : Index(Bk::NR);
          const Index nr = std::min<Index>(Bk::NR, nc - jr);
          for (Index ir = 0; ir < mc; ir += Bk::MR) {
            T* cp = c + (ic + ir) * ldc + jc + jr;
            const Index mr = std::min<Index>(Bk::MR, mc - ir);
            if (ir < mfull) micro_tile<T, true>(kc, asrc + ir * lda, lda, bp, b_ks, cp, ldc, acc, mr, nr);
            else micro_tile<T, false>(kc, pa, 0, bp, b_ks, cp, ldc, acc, mr, nr);
          }
        }
      }
    }
  }
}

