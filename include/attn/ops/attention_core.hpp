/// \file
/// The attention core: softmax(Q·Kᵀ·scale + bias, masked)·V for every (batch, query head), streaming
/// over key blocks with a running row max and sum (online softmax), in parallel over
/// batch × heads × query blocks. `ops::attention` (sdpa.hpp) dispatches here; every layer calls that.
///
/// Views, masks and weights follow heads.hpp and sdpa.hpp: Q [B, T, Hq, d], K [B, S, Hkv, d], V [B, S, Hkv, dv] and
/// the output [B, T, Hq, dv] are strided views (a projection's output is read in place, the output is
/// written in place); query head h reads K/V head h / (Hq / Hkv) (GQA/MQA without copies). The mask
/// contract: causal is bottom-right aligned per item (query i of item b sees key j iff
/// j <= i + len_b - T, len_b = key_lengths[b] clamped to [0, S], or S without key lengths: the T
/// queries are the last T positions of the item's own sequence, as in a ragged KV cache); key_lengths[b]
/// masks keys j >= len_b; `keep` is read through its strides (0
/// broadcasts) with true = attend; `bias` is added to the scaled logits (read through its strides, and
/// with `bias_period` > 0 item b reads item b mod bias_period's: Swin's windows of several images share
/// one bias per window position). A query row whose every key is
/// masked (or whose every logit is -inf through the bias) yields zeros, never NaN; a NaN or Inf in Q, K or
/// V reaches exactly the rows that see it (see "Non-finite inputs" below).
///
/// Algorithm, per query tile (b, h, block of `query_block` query rows):
///   m = -inf, l = 0, O = 0
///   for each block of `key_block` keys that some row of the tile may see:
///     Z = Q_blk · K_blkᵀ (one GEMM); Z = Z·scale + bias; masked entries -> -inf
///     m' = max(m, rowmax Z);  P = exp(Z - m') (masked -> exactly 0)
///     l = e^(m - m')·l + rowsum P;  O = e^(m - m')·O + P · V_blk (one GEMM)
///   out = O / l   (rows with l = 0, i.e. every key masked: zeros)
/// A task is up to `query_blocks_per_task` consecutive query tiles of one (b, h), run key block by key
/// block: with the packed kernels (avx2, avx512) each key block is copied once per task into a
/// contiguous K_blkᵀ [d, key_block] and V_blk [key_block, dv] that all the task's tiles read. A
/// projection's K and V rows sit a whole projection row apart (6 KiB for a fused QKV of width 512), so
/// read in place one key block spans hundreds of 4 KiB pages, and the Q·Kᵀ product would transpose its
/// K block once per tile. The copies change no value: the products give every element the same chain of
/// operations however their operands are laid out (ops/kernels.hpp), and every row depends only on the
/// key blocking, never on how rows are grouped into tiles and tasks.
/// Non-finite inputs: a NaN or ±Inf that a row can see makes that row non-finite (as PyTorch), never
/// zeros; the zero rule is decided by the mask alone. A masked key is excluded, not weighted by 0:
/// in a block where some row does not see some key and V holds a non-finite value, each row sums
/// over the keys it sees (masked_pv), so garbage behind a mask (padding) reaches no row. Logits of
/// masked keys are replaced, so K behind a mask is excluded too. An additive bias is arithmetic, not
/// a mask: a -inf bias gives weight 0, and 0 · Inf is NaN there as in PyTorch.
/// Key blocks past every row's last visible key (causal, key_lengths) are never visited, and key blocks
/// where a boolean mask keeps nothing are skipped: causal attention costs about half of full attention.
/// Logits are only ever exponentiated after the row max is subtracted, so logits of magnitude 1e4 and
/// beyond are exact to float rounding. Working memory is O(threads × (query_block ×
/// key_block + query_blocks_per_task × query_block × dv + key_block × (d + dv))), independent of the
/// sequence lengths.
///
/// When `weights` is not null (a contiguous [B, Hq, T, S] that the caller owns), each task also writes
/// its [query_block, S] rows of logits there and normalizes them in place (the exact softmax, equal to
/// the reference's); the weights buffer is the only T × S memory. The output is computed by the same
/// streaming pass either way, so asking for the weights never changes a bit of the output.
///
/// Vectorization: the products and the row passes (scale, bias, max, exp, sum) come from the kernel
/// table of the SIMD level in use (ops/kernels.hpp, core/simd.hpp): the AVX-512 or AVX2 kernels chosen
/// at run time on x86-64, else Eigen's products and packet math (SSE2 by default, wider with
/// -march=native). The float exp is a short packet exp for arguments <= 0 (RowOps::exp_nonpositive);
/// double uses Eigen's pexp. One call uses one level throughout.
///
/// Threads: attn::num_threads() shares (core/parallel.hpp) take the tasks in order from a shared counter
/// (causal tasks differ in cost); every task runs the same code with the same blocking on any thread,
/// so results are bit-identical for any thread count. A problem smaller than `min_parallel_flops` runs on the calling thread.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/tensor.hpp"
#include "attn/ops/kernels.hpp"
#include "attn/ops/heads.hpp"

namespace attn::ops {

/// Blocking and threading knobs of the core. The defaults suit head dims 32..128 on x86 caches; results
/// depend on the blocking only through float rounding, never on the thread count.
struct AttentionCoreOptions {
  Index query_block = 128;             ///< query rows per task
  Index key_block = 256;               ///< keys per streamed block
  double min_parallel_flops = 1 << 21;  ///< below this many flops the call stays on one thread
  /// Query tiles of one (batch, head) that share each key block: at most this many, and fewer when the
  /// tiles' outputs would pass 512 KiB or when the tasks would be too few to feed the threads.
  Index query_blocks_per_task = 16;
};

namespace detail {

template <class T>
class Core {
public:
  static constexpr Index kMaxTiles = 16;  ///< query tiles per task at most

  Core(const HeadsView<T>& q, const HeadsView<T>& k, const HeadsView<T>& v, const HeadsOut<T>& out, T scale,
       const AttentionMask<T>& mask, T* weights, const AttentionCoreOptions& opt)
      : q_(q), k_(k), v_(v), out_(out), scale_(scale), mask_(mask), weights_(weights),
        B_(q.batch), T_(q.len), S_(k.len), Hq_(q.heads), group_(k.heads > 0 ? q.heads / k.heads : 1),
        d_(q.dim), dv_(v.dim), bq_(opt.query_block), bk_(opt.key_block),
        nqb_(T_ == 0 ? 0 : (T_ + bq_ - 1) / bq_),
        tpt_(std::clamp<Index>(std::min(opt.query_blocks_per_task, nqb_), 1, kMaxTiles)),
        ngroups_((nqb_ + tpt_ - 1) / tpt_), ostride_((bq_ * dv_ + 15) / 16 * 16), kern_(kernels<T>()),
        // Eigen's products (generic) pack by themselves and may round differently on a copied operand:
        // that level reads K and V in place.
        pack_(kern_.level != Simd::generic), transpose_(transpose_kernel<T>(kern_.level)) {}

  [[nodiscard]] Index tasks() const noexcept { return B_ * Hq_ * ngroups_; }

  /// Scratch of one share. Aligned like Eigen's own storage: with wide packets (-march=native), Eigen's
  /// small products peel differently at different alignments of their destination, and the logits and
  /// output blocks must round the same in every share for results to be thread-count independent.
  struct Workspace {
    std::vector<T, Eigen::aligned_allocator<T>> s, o, kt, vb;
    std::vector<T> m, l, alpha;
    Workspace(Index bq, Index bk, Index d, Index dv, Index tiles, bool pack)
        : s(static_cast<std::size_t>(bq * bk)), o(static_cast<std::size_t>(tiles * ((bq * dv + 15) / 16 * 16))),
          kt(pack ? static_cast<std::size_t>(d * bk) : 0), vb(pack ? static_cast<std::size_t>(bk * dv) : 0),
          m(static_cast<std::size_t>(tiles * bq)), l(static_cast<std::size_t>(tiles * bq)),
          alpha(static_cast<std::size_t>(bq)) {}
  };
  [[nodiscard]] Workspace workspace() const { return Workspace(bq_, bk_, d_, dv_, tpt_, pack_); }

  /// Runs the query tiles of task `task` (see the file comment): key block by key block, each block
  /// packed once (packed kernels) and streamed through every tile that sees some key of it.
  void run_task(Workspace& ws, Index task) const {
    const Index g = task % ngroups_;
    const Index bh = task / ngroups_;
    const Index h = bh % Hq_, b = bh / Hq_;
    const Index len_b = mask_.key_lengths != nullptr ? std::clamp<Index>(mask_.key_lengths[b], 0, S_) : S_;
    const Index qb0 = g * tpt_, ntiles = std::min(tpt_, nqb_ - qb0);
    std::array<Tile, kMaxTiles> tl{};
    Index end = 0;
    for (Index i = 0; i < ntiles; ++i) {
      const Index i0 = (qb0 + i) * bq_, rows = std::min(bq_, T_ - i0);
      tl[static_cast<std::size_t>(i)] = Tile{b, h, h / group_, i0, rows, len_b, key_end(len_b, i0 + rows - 1)};
      end = std::max(end, tl[static_cast<std::size_t>(i)].end);
      const State st = state(ws, i);
      std::fill_n(st.m, rows, neg_inf);
      std::fill_n(st.l, rows, T(0));
      std::fill_n(st.o, rows * dv_, T(0));
    }
    for (Index j0 = 0; j0 < end; j0 += bk_) {
      const Index cols = std::min(bk_, end - j0);
      bool packed = false;
      for (Index i = 0; i < ntiles; ++i) {
        const Tile& t = tl[static_cast<std::size_t>(i)];
        if (t.end <= j0) continue;
        const Index tc = std::min(bk_, t.end - j0);
        if (mask_.keep != nullptr && !keeps_any(t, j0, tc)) continue;
        if (pack_ && !packed) {
          pack_block(t, j0, cols, ws);
          packed = true;
        }
        step(t, state(ws, i), j0, tc, cols, ws);
      }
    }
    for (Index i = 0; i < ntiles; ++i) {
      finish(tl[static_cast<std::size_t>(i)], state(ws, i));
      if (weights_ != nullptr) write_weights(tl[static_cast<std::size_t>(i)]);
    }
  }

private:
  static constexpr T neg_inf = -std::numeric_limits<T>::infinity();

  struct Tile {
    Index b, h, kh, i0, rows, len_b, end;  // end: one past the last key any row of the tile sees
  };
  /// The running softmax state of tile i of a task: row max m, row sum l, unnormalized output O.
  struct State {
    T* m;
    T* l;
    T* o;
  };
  [[nodiscard]] State state(Workspace& ws, Index i) const {
    // Every tile's O starts at a multiple of 16 elements, aligned like the buffer (see Workspace).
    return {ws.m.data() + i * bq_, ws.l.data() + i * bq_, ws.o.data() + i * ostride_};
  }

  /// One past the last key query row i may see: causal is bottom-right aligned to the item's own key
  /// length len_b (S without key lengths), so query i sits at position i + len_b - T.
  [[nodiscard]] Index key_end(Index len_b, Index i) const noexcept {
    const Index e = mask_.causal ? std::clamp<Index>(i + (len_b - T_) + 1, 0, S_) : S_;
    return std::min(len_b, e);
  }
  [[nodiscard]] const bool* keep_row(const Tile& t, Index i) const noexcept {
    return mask_.keep == nullptr
               ? nullptr
               : mask_.keep + t.b * mask_.keep_sb + t.h * mask_.keep_sh + i * mask_.keep_st;
  }
  [[nodiscard]] const T* bias_row(const Tile& t, Index i) const noexcept {
    return mask_.bias == nullptr
               ? nullptr
               : mask_.bias + mask_.bias_item(t.b) * mask_.bias_sb + t.h * mask_.bias_sh + i * mask_.bias_st;
  }

  /// Whether the boolean mask keeps any visible key of the tile in [j0, j0 + cols).
  [[nodiscard]] bool keeps_any(const Tile& t, Index j0, Index cols) const noexcept {
    // Rows see nested prefixes, so with a mask broadcast over queries the last row decides.
    const Index first = mask_.keep_st == 0 ? t.rows - 1 : 0;
    for (Index r = first; r < t.rows; ++r) {
      const Index ce = std::clamp<Index>(key_end(t.len_b, t.i0 + r) - j0, 0, cols);
      const bool* kr = keep_row(t, t.i0 + r) + j0;
      if (std::find(kr, kr + ce, true) != kr + ce) return true;
    }
    return false;
  }

  /// Scales, biases and masks row r of a block of logits at z; returns its max.
  T prepare_row(const Tile& t, Index r, T* z, Index j0, Index cols) const {
    const Index i = t.i0 + r;
    const Index ce = std::clamp<Index>(key_end(t.len_b, i) - j0, 0, cols);
    const T* bias = bias_row(t, i);
    const bool* keep = keep_row(t, i);
    return kern_.prepare(z, cols, ce, scale_, bias ? bias + j0 : nullptr, keep ? keep + j0 : nullptr);
  }

  /// z[rows, cols] (leading dimension ldz) = Q_tile · K[j0, j0 + cols)ᵀ, K read in place
  void logits(const Tile& t, Index j0, Index cols, T* z, Index ldz) const {
    kern_.gemm(t.rows, cols, d_, q_.at(t.b, t.i0, t.h), q_.s_len, k_.at(t.b, j0, t.kh), k_.s_len,
               /*b_trans=*/true, z, ldz, /*accumulate=*/false, /*direct=*/true);
  }
  [[nodiscard]] Strided<T> out_block(const Tile& t) const {
    return {out_.at(t.b, t.i0, t.h), t.rows, dv_, Eigen::OuterStride<>(out_.s_len)};
  }

  /// Copies keys [j0, j0 + cols) of the tile's K/V head into the task's contiguous blocks: ws.kt holds
  /// K_blkᵀ [d, cols] (leading dimension cols), ws.vb holds V_blk [cols, dv].
  void pack_block(const Tile& t, Index j0, Index cols, Workspace& ws) const {
    transpose_(k_.at(t.b, j0, t.kh), k_.s_len, cols, d_, ws.kt.data(), cols);
    for (Index j = 0; j < cols; ++j) {
      const T* row = v_.at(t.b, j0 + j, t.kh);
      std::copy(row, row + dv_, ws.vb.data() + j * dv_);
    }
  }

  /// Whether every value of V rows [j0, j0 + cols) of the tile's head is finite (one pass; x·0 is 0 for
  /// a finite x and NaN otherwise).
  [[nodiscard]] bool values_finite(const Tile& t, Index j0, Index cols) const {
    const ConstStrided<T> V(v_.at(t.b, j0, t.kh), cols, dv_, Eigen::OuterStride<>(v_.s_len));
    return !std::isnan((V.array() * T(0)).sum());
  }

  /// O += P · V_blk for a block in which some row does not see some key, when V_blk holds a non-finite
  /// value: every row sums over the keys it sees only, so a NaN or Inf behind the mask (padding
  /// routinely holds garbage) never reaches a row that cannot see it (0 · NaN would be NaN).
  void masked_pv(const Tile& t, const T* p, Index j0, Index cols, MatrixMap<T>& O) const {
    for (Index r = 0; r < t.rows; ++r) {
      const Index ce = std::clamp<Index>(key_end(t.len_b, t.i0 + r) - j0, 0, cols);
      const bool* keep = keep_row(t, t.i0 + r);
      for (Index c = 0; c < ce; ++c)
        if (keep == nullptr || keep[j0 + c])
          O.row(r) += p[r * cols + c] * ConstMatrixMap<T>(v_.at(t.b, j0 + c, t.kh), 1, dv_);
    }
  }

  /// One key block [j0, j0 + cols) of tile t: logits, the online-softmax update of st, O += P · V_blk.
  /// With packing, ws.kt / ws.vb hold keys [j0, j0 + packed_cols), packed_cols >= cols.
  void step(const Tile& t, const State& st, Index j0, Index cols, Index packed_cols, Workspace& ws) const {
    const Index rows = t.rows;
    T* s = ws.s.data();
    if (pack_)
      kern_.gemm(rows, cols, d_, q_.at(t.b, t.i0, t.h), q_.s_len, ws.kt.data(), packed_cols, /*b_trans=*/false, s,
                 cols, /*accumulate=*/false, /*direct=*/true);
    else
      logits(t, j0, cols, s, cols);
    MatrixMap<T> O(st.o, rows, dv_);
    bool rescale = false;
    for (Index r = 0; r < rows; ++r) {
      T* z = s + r * cols;
      const T m_new = std::max(st.m[r], prepare_row(t, r, z, j0, cols));
      if (m_new == neg_inf) {
        // Nothing finite in this row yet: either every key so far is masked (the row stays empty)
        // or a visible logit is NaN (the max passes NaN over), which must make the row NaN.
        bool nan = false;
        for (Index c = 0; c < cols; ++c) {
          nan = nan || std::isnan(z[c]);
          z[c] = T(0);
        }
        ws.alpha[r] = T(1);
        if (nan) {
          st.l[r] = std::numeric_limits<T>::quiet_NaN();
          ws.alpha[r] = st.l[r];
          rescale = true;
        }
        continue;
      }
      const T a = std::exp(st.m[r] - m_new);  // 0 on the first visible block
      st.l[r] = a * st.l[r] + kern_.exp_sum(z, cols, m_new);
      st.m[r] = m_new;
      ws.alpha[r] = a;
      rescale = rescale || a != T(1);
    }
    if (rescale)
      for (Index r = 0; r < rows; ++r)
        if (ws.alpha[r] != T(1)) O.row(r) *= ws.alpha[r];
    // A block where some row does not see some key (a boolean mask, the causal diagonal) takes the
    // excluding product when its values are not all finite; every other block is one GEMM.
    const bool partial = mask_.keep != nullptr || key_end(t.len_b, t.i0) < j0 + cols;
    if (partial && !values_finite(t, j0, cols))
      masked_pv(t, s, j0, cols, O);
    else if (pack_)
      kern_.gemm(rows, dv_, cols, s, cols, ws.vb.data(), dv_, /*b_trans=*/false, st.o, dv_, /*accumulate=*/true,
                 /*direct=*/true);
    else
      kern_.gemm(rows, dv_, cols, s, cols, v_.at(t.b, j0, t.kh), v_.s_len, /*b_trans=*/false, st.o, dv_,
                 /*accumulate=*/true, /*direct=*/true);
  }

  /// out = O / l for the tile's rows (zeros where every key is masked).
  void finish(const Tile& t, const State& st) const {
    const ConstMatrixMap<T> O(st.o, t.rows, dv_);
    auto out = out_block(t);
    for (Index r = 0; r < t.rows; ++r) {
      // l is 0 only when every key of the row is masked; NaN (a non-finite input) flows through.
      if (st.l[r] == T(0)) out.row(r).setZero();
      else out.row(r) = O.row(r) / st.l[r];
    }
  }

  /// Writes the tile's [rows, S] probabilities into the weights buffer: logits block by block (key
  /// blocks the boolean mask drops entirely are not computed), then an exact row softmax in place.
  void write_weights(const Tile& t) const {
    const Index rows = t.rows;
    T* w = weights_ + ((t.b * Hq_ + t.h) * T_ + t.i0) * S_;
    MatrixMap<T> P(w, rows, S_);
    for (Index j0 = 0; j0 < t.end; j0 += bk_) {
      const Index cols = std::min(bk_, t.end - j0);
      if (mask_.keep != nullptr && !keeps_any(t, j0, cols)) {
        P.block(0, j0, rows, cols).setConstant(neg_inf);
        continue;
      }
      logits(t, j0, cols, w + j0, S_);
      for (Index r = 0; r < rows; ++r) prepare_row(t, r, w + r * S_ + j0, j0, cols);
    }
    for (Index r = 0; r < rows; ++r) {
      T* p = w + r * S_;
      const T mx = kern_.row_max(p, t.end);
      if (mx == neg_inf) {  // every key masked, or a NaN logit that the max passed over
        const bool nan = std::any_of(p, p + t.end, [](T x) { return std::isnan(x); });
        std::fill_n(p, S_, nan ? std::numeric_limits<T>::quiet_NaN() : T(0));
        continue;
      }
      const T sum = kern_.exp_sum(p, t.end, mx);
      for (Index c = 0; c < t.end; ++c) p[c] /= sum;
      std::fill(p + t.end, p + S_, T(0));
    }
  }

  const HeadsView<T>& q_;
  const HeadsView<T>& k_;
  const HeadsView<T>& v_;
  const HeadsOut<T>& out_;
  T scale_;
  const AttentionMask<T>& mask_;
  T* weights_;
  Index B_, T_, S_, Hq_, group_, d_, dv_, bq_, bk_, nqb_, tpt_, ngroups_, ostride_;
  const Kernels<T>& kern_;
  bool pack_;
  TransposeFn<T> transpose_;
};

inline std::string dims_str(Index b, Index l, Index h, Index d) { return shape_str(Shape{b, l, h, d}); }

/// Throws ShapeError unless Q [B, T, Hq, d], K [B, S, Hkv, d], V [B, S, Hkv, dv] and the output
/// [B, T, Hq, dv] agree and Hkv divides Hq; ConfigError for non-positive block sizes.
template <class T>
void check_core_args(const HeadsView<T>& q, const HeadsView<T>& k, const HeadsView<T>& v,
                     const HeadsOut<T>& out, const AttentionCoreOptions& opt) {
  if (opt.query_block < 1 || opt.key_block < 1)
    throw ConfigError(fmt::format("attention: query_block and key_block must be positive, got {} and {}",
                                  opt.query_block, opt.key_block));
  if (opt.query_blocks_per_task < 1)
    throw ConfigError(
        fmt::format("attention: query_blocks_per_task must be positive, got {}", opt.query_blocks_per_task));
  const auto fail = [&](std::string_view why) {
    throw ShapeError(fmt::format("attention: {} (queries {}, keys {}, values {}, output {}, each "
                                 "[batch, len, heads, dim])",
                                 why, dims_str(q.batch, q.len, q.heads, q.dim),
                                 dims_str(k.batch, k.len, k.heads, k.dim),
                                 dims_str(v.batch, v.len, v.heads, v.dim),
                                 dims_str(out.batch, out.len, out.heads, out.dim)));
  };
  for (Index e : {q.batch, q.len, q.heads, q.dim, k.batch, k.len, k.heads, k.dim, v.batch, v.len, v.heads,
                  v.dim, out.batch, out.len, out.heads, out.dim})
    if (e < 0) fail("negative extent");
  if (k.batch != q.batch || v.batch != q.batch || out.batch != q.batch) fail("batch sizes differ");
  if (v.len != k.len) fail("keys and values differ in length");
  if (v.heads != k.heads) fail("keys and values differ in head count");
  if (k.dim != q.dim) fail("queries and keys differ in head dim");
  if (q.heads > 0 && (k.heads == 0 || q.heads % k.heads != 0))
    fail("the query head count must be a multiple of the key/value head count");
  if (out.len != q.len || out.heads != q.heads || out.dim != v.dim)
    fail("the output must be [batch, query len, query heads, value dim]");
}

}  // namespace detail

/// The attention core (see the file comment). `weights`, when not null, receives the probabilities as a
/// contiguous [B, Hq, T, S]. Throws ShapeError when the views disagree (see check_core_args).
template <class T>
void attention_core(const HeadsView<T>& q, const HeadsView<T>& k, const HeadsView<T>& v,
                    const HeadsOut<T>& out, std::type_identity_t<T> scale, const AttentionMask<T>& mask,
                    std::type_identity_t<T>* weights = nullptr, const AttentionCoreOptions& options = {}) {
  detail::check_core_args(q, k, v, out, options);
  const double flops = 2.0 * static_cast<double>(q.batch) * static_cast<double>(q.heads) *
                       static_cast<double>(q.len) * static_cast<double>(k.len) *
                       static_cast<double>(q.dim + v.dim);
  // Tiles per task: enough tasks for every share (four each where the tiles allow), and the tiles'
  // outputs within 512 KiB. Rows never depend on the grouping, so neither do results.
  const Index tiles = q.len == 0 ? 0 : q.batch * q.heads * ((q.len + options.query_block - 1) / options.query_block);
  const int wanted = flops < options.min_parallel_flops ? 1 : shares_for(tiles);
  AttentionCoreOptions opt = options;
  const Index out_bytes = options.query_block * std::max<Index>(v.dim, 1) * static_cast<Index>(sizeof(T));
  opt.query_blocks_per_task = std::clamp<Index>(
      std::min({options.query_blocks_per_task, (Index(512) << 10) / out_bytes, tiles / (4 * Index(wanted))}), 1,
      detail::Core<T>::kMaxTiles);
  const detail::Core<T> core(q, k, v, out, scale, mask, weights, opt);
  const Index tasks = core.tasks();
  if (tasks == 0) return;
  const int shares = flops < options.min_parallel_flops ? 1 : shares_for(tasks);
  std::atomic<Index> next{0};  // tasks go to whichever share is free (results do not depend on it)
  parallel_shares(shares, [&](int, int) {
    auto ws = core.workspace();
    for (Index t = next.fetch_add(1, std::memory_order_relaxed); t < tasks;
         t = next.fetch_add(1, std::memory_order_relaxed))
      core.run_task(ws, t);
  });
}

}  // namespace attn::ops

/// Declares (EXTERN = extern) or defines (EXTERN empty) the attention core for scalar T (at namespace
/// scope); under ATTN_PRECOMPILED_LAYERS it comes compiled from attn::layers (src/precompiled_ops.cpp).
#define ATTN_CORE_INSTANCES(EXTERN, T)                                                                  \
  EXTERN template void attn::ops::attention_core<T>(                                                   \
      const attn::ops::HeadsView<T>&, const attn::ops::HeadsView<T>&, const attn::ops::HeadsView<T>&, \
      const attn::ops::HeadsOut<T>&, T, const attn::ops::AttentionMask<T>&, T*,                      \
      const attn::ops::AttentionCoreOptions&);
#ifdef ATTN_PRECOMPILED_LAYERS
ATTN_CORE_INSTANCES(extern, float)
ATTN_CORE_INSTANCES(extern, double)
#endif
