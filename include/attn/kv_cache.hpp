/// \file
/// `KVCache<T>` — a key/value cache for incremental (autoregressive) decoding with `multi_head`,
/// `group_query` and `differential`, and the attention over it (`ops::cache_attention`).
///
///   attn::GroupedQueryAttention<float> gqa(cfg);
///   attn::KVCache<float> cache = gqa.make_cache(/*batch=*/4, /*capacity=*/8192);
///   auto y0 = gqa.forward(prompt, cache);      // prefill [B, T0, D]: fills the cache, causal
///   auto y1 = gqa.forward(next_token, cache);  // decode [B, 1, D]: appends, attends to every cached key
///
/// Layout: for each stream (one per attention of the layer: 1 for multi_head and group_query, 2 for
/// differential's two branches) K and V after the projection (and after RoPE for group_query) as
/// `[B, H_kv, capacity, head_dim]`, row-major, key/value heads not repeated for grouped queries. The
/// keys of one head of one item are contiguous, so a decode step streams them in one pass.
/// Memory: `bytes_per_token()` = streams · 2 · H_kv · head_dim · sizeof(storage) per item and token;
/// `bytes()` = batch · capacity · bytes_per_token(), allocated (zeroed) at construction.
///
/// Lengths: item b holds `lengths()[b]` tokens; a forward with T new tokens appends them at positions
/// lengths()[b] .. lengths()[b] + T − 1 of every ACTIVE item (all by default, or the items an
/// `ActiveItems` mask marks) and leaves the other items untouched (their output rows are zeros).
/// `reset(b)` empties item b only, `reset()` every item. Attention over the cache is always causal:
/// the T new queries of item b are its last T positions and see keys j <= lengths()[b] − T + i (the
/// per-item bottom-right rule of the core, ops/masks.hpp). A cached forward takes no other mask: the
/// padding of a ragged batch is each item's own length.
///
/// Storage (`KVStorage`): `same` stores T; `float16` (Eigen::half) and `bfloat16` (Eigen::bfloat16)
/// store half-precision values and compute in T, halving the bytes a decode step reads (for T = float).
/// The only error is the rounding of each stored K and V element: |k̃ − k| <= u·|k| + η with unit
/// roundoff u = 2^-11, η = 2^-25 (float16, η for its subnormals) or u = 2^-8, η = 0 (bfloat16). Bound
/// (checked element by element in tests/layers/test_kv_cache.cpp): for a query row q that sees keys
/// j < L, with A = max_j scale·Σ_c |q_c|·(u·|k_jc| + η) the largest move of a logit and
/// V = max_j,c |v_jc|, every output element differs from the T-storage result by at most
///   (e^{2A} − 1)·(V·(1 + u) + η) + u·V + η      (plus T's own rounding)
/// (each probability moves by a factor within e^{±2A}; the weighted values by u·V + η). float16
/// overflows above 65504 (stored as inf): keep activations in range or use bfloat16. Conversion to T
/// happens per key block (F16C for float16 on CPUs with AVX2, a shift for bfloat16).
///
/// Threads: a forward's attention runs tasks (item, kv head, block of new tokens, split of the key
/// axis) over attn::num_threads() shares; the key axis is split into fixed spans of `split_keys`
/// keys (default 2048), each computing a partial softmax (row max, sum, unnormalised output) that are
/// then combined exactly (rescaled by exp(m_split − m_max)). The splits are fixed by the lengths, not
/// by the thread count, so results are bit-identical for any thread count; a single decode stream
/// (B = 1) uses every core once the cache holds more than `split_keys` tokens or has several kv heads.
///
/// Speed: a decode step (up to 8 query rows per kv head: multi_head and differential have one,
/// group_query its group) streams K and V once through AVX-512 / AVX2 row kernels (ops/simd/rowvec.inl,
/// run-time dispatch): one row through ops::matvec and ops::vecmat_acc (32 rows ahead); several
/// through ops::matvec_rows and ops::vecmat_acc_rows, which load each key and value row once for all
/// query rows of its kv head and ask 32 rows ahead into the stream "this block's keys, its values,
/// the next block's keys", so the memory does not idle between passes; longer steps go through the
/// packed matrix product. The step is bound by memory bandwidth:
/// benchmarks/bench_decode.cpp reports it as a share of a STREAM-like triad.
///
/// Errors (typed, the cache unchanged): ShapeError when the batch size differs from the cache's, when
/// a step would overflow the capacity (naming the item, its length, the step and the capacity), when
/// the cache was made by a layer of another head count, head width or stream count (naming both
/// sides), when the active mask's size differs from the batch, or for a reset of an item out of range;
/// ConfigError for a non-positive batch or capacity at construction or above attn::allocation_limit().
///
/// Not in the reference layers (which have no cache): the whole file is beyond the reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <atomic>
#include <initializer_list>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "attn/core/eigen.hpp"
#include "attn/core/error.hpp"
#include "attn/core/limits.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/simd.hpp"
#include "attn/core/tensor.hpp"
#include "attn/ops/kernels.hpp"

#if ATTN_SIMD_DISPATCH
#include <immintrin.h>
#endif

namespace attn {

/// The element type a `KVCache` stores: the layer's scalar, or a 16-bit float (compute stays in T).
enum class KVStorage { same, float16, bfloat16 };

/// "same", "float16" or "bfloat16".
[[nodiscard]] inline std::string_view kv_storage_name(KVStorage s) noexcept {
  switch (s) {
    case KVStorage::float16: return "float16";
    case KVStorage::bfloat16: return "bfloat16";
    default: return "same";
  }
}

/// Which batch items a cached forward appends to: default all; otherwise one flag per item
/// (true = append this step). Copies the flags.
class ActiveItems {
public:
  ActiveItems() = default;
  ActiveItems(std::initializer_list<bool> flags) : flags_(flags.begin(), flags.end()), given_(true) {}
  ActiveItems(std::span<const bool> flags)  // NOLINT(google-explicit-constructor)
      : flags_(flags.begin(), flags.end()), given_(true) {}
  ActiveItems(const std::vector<bool>& flags)  // NOLINT(google-explicit-constructor)
      : flags_(flags.begin(), flags.end()), given_(true) {}
  [[nodiscard]] bool given() const noexcept { return given_; }
  [[nodiscard]] Index size() const noexcept { return static_cast<Index>(flags_.size()); }
  /// Whether item b is active (every item is when no flags were given).
  [[nodiscard]] bool operator[](Index b) const noexcept {
    return !given_ || flags_[static_cast<std::size_t>(b)] != 0;
  }

private:
  std::vector<char> flags_;
  bool given_ = false;
};

template <class T>
class KVCache {
public:
  /// An empty cache for `streams` attentions of `heads` key/value heads of width `head_dim`, `batch`
  /// items of up to `capacity` tokens each; `owner` (a layer type name) is quoted in errors. Layers
  /// build theirs with `make_cache`. Throws ConfigError for non-positive extents or above
  /// attn::allocation_limit().
  KVCache(std::string_view owner, Index batch, Index capacity, Index streams, Index heads, Index head_dim,
          KVStorage storage = KVStorage::same)
      : owner_(owner), batch_(batch), capacity_(capacity), streams_(streams), heads_(heads), dim_(head_dim),
        storage_(storage) {
    if (batch < 1 || capacity < 1 || streams < 1 || heads < 1 || head_dim < 1)
      throw ConfigError(fmt::format("{}: a KV cache needs a positive batch, capacity, stream count, head count "
                                    "and head dim, got batch {}, capacity {}, streams {}, heads {}, head dim {}",
                                    owner_, batch, capacity, streams, heads, head_dim),
                        owner_, batch < 1 ? "batch" : "capacity");
    const std::optional<Index> count = checked_shape_size({2, streams, batch, heads, capacity, head_dim});
    check_allocation(fmt::format("{}: a KV cache of batch {} and capacity {} ({} bytes per token)", owner_, batch,
                                 capacity, bytes_per_token()),
                     count, element_bytes(), owner_, "capacity");
    const auto n = static_cast<std::size_t>(*count);
    switch (storage_) {
      case KVStorage::same: same_.assign(n, T(0)); break;
      case KVStorage::float16: f16_.assign(n, Eigen::half(0.0f)); break;
      case KVStorage::bfloat16: bf16_.assign(n, Eigen::bfloat16(0.0f)); break;
    }
    lengths_.assign(static_cast<std::size_t>(batch), 0);
  }

  [[nodiscard]] const std::string& owner() const noexcept { return owner_; }
  [[nodiscard]] Index batch() const noexcept { return batch_; }
  [[nodiscard]] Index capacity() const noexcept { return capacity_; }
  [[nodiscard]] Index streams() const noexcept { return streams_; }
  [[nodiscard]] Index heads() const noexcept { return heads_; }
  [[nodiscard]] Index head_dim() const noexcept { return dim_; }
  [[nodiscard]] KVStorage storage() const noexcept { return storage_; }
  /// Tokens held per item.
  [[nodiscard]] std::span<const Index> lengths() const noexcept { return lengths_; }
  /// Bytes of one stored K or V element.
  [[nodiscard]] std::size_t element_bytes() const noexcept {
    return storage_ == KVStorage::same ? sizeof(T) : std::size_t(2);
  }
  /// Bytes held per item and token: streams · 2 (K and V) · heads · head_dim · element_bytes().
  [[nodiscard]] std::size_t bytes_per_token() const noexcept {
    return static_cast<std::size_t>(2 * streams_ * heads_ * dim_) * element_bytes();
  }
  /// Bytes allocated: batch · capacity · bytes_per_token().
  [[nodiscard]] std::size_t bytes() const noexcept {
    return static_cast<std::size_t>(batch_ * capacity_) * bytes_per_token();
  }

  /// Empties item b (its length becomes 0); the other items are untouched. ShapeError when b is out of
  /// range.
  void reset(Index b) {
    if (b < 0 || b >= batch_)
      throw ShapeError(fmt::format("{}: KV cache reset of item {}, but the cache holds items 0 .. {}", owner_, b,
                                   batch_ - 1));
    lengths_[static_cast<std::size_t>(b)] = 0;
  }
  /// Empties every item.
  void reset() noexcept { std::fill(lengths_.begin(), lengths_.end(), Index(0)); }
  /// Drops the tokens of item b past `length` (e.g. rejected speculative tokens); the others are
  /// untouched. ShapeError when b is out of range or `length` is not in [0, lengths()[b]].
  void truncate(Index b, Index length) {
    if (b < 0 || b >= batch_)
      throw ShapeError(fmt::format("{}: KV cache truncate of item {}, but the cache holds items 0 .. {}", owner_, b,
                                   batch_ - 1));
    const Index len = lengths_[static_cast<std::size_t>(b)];
    if (length < 0 || length > len)
      throw ShapeError(fmt::format("{}: KV cache truncate of item {} to {} tokens, but it holds {}", owner_, b,
                                   length, len));
    lengths_[static_cast<std::size_t>(b)] = length;
  }

  // ---- for the layers ------------------------------------------------------------------------------

  /// Throws ShapeError unless this cache fits a layer `who` with `streams` attentions of `heads`
  /// key/value heads of width `head_dim`, a step of `batch` items and `steps` new tokens on the
  /// `active` items, positions below `max_positions` (0: no limit). Checks everything before a layer
  /// changes anything.
  void check_step(std::string_view who, Index streams, Index heads, Index head_dim, Index batch, Index steps,
                  const ActiveItems& active, Index max_positions = 0) const {
    if (streams != streams_ || heads != heads_ || head_dim != dim_)
      throw ShapeError(fmt::format("{}: the KV cache was made for {} ({} stream{} of {} key/value heads of dim {}), "
                                   "this layer needs {} stream{} of {} key/value heads of dim {}",
                                   who, owner_, streams_, streams_ == 1 ? "" : "s", heads_, dim_, streams,
                                   streams == 1 ? "" : "s", heads, head_dim));
    if (batch != batch_)
      throw ShapeError(fmt::format("{}: the input has batch size {}, the KV cache holds {} items", who, batch,
                                   batch_));
    if (active.given() && active.size() != batch_)
      throw ShapeError(fmt::format("{}: the active-item mask has {} entries, the KV cache holds {} items", who,
                                   active.size(), batch_));
    for (Index b = 0; b < batch_; ++b) {
      if (!active[b]) continue;
      const Index len = lengths_[static_cast<std::size_t>(b)];
      if (steps > capacity_ - len)
        throw ShapeError(fmt::format("{}: KV cache overflow: item {} holds {} tokens, the step appends {}, the "
                                     "capacity is {}",
                                     who, b, len, steps, capacity_));
      if (max_positions > 0 && steps > max_positions - len)
        throw ShapeError(fmt::format("{}: positions [{}, {}) of item {} exceed max_seq_len ({})", who, len,
                                     len + steps, b, max_positions));
    }
  }

  /// Writes rows i = 0 .. steps−1 of item b's new keys and values (k(i, h) = k + i·row_stride + h·dim,
  /// likewise v) at positions lengths()[b] + i of stream s. Does not change the lengths (commit does).
  void write(Index s, Index b, const T* k, const T* v, Index row_stride, Index steps) {
    visit([&](auto* base) {
      using S = std::remove_pointer_t<decltype(base)>;
      const Index len = lengths_[static_cast<std::size_t>(b)];
      for (Index h = 0; h < heads_; ++h) {
        S* kd = base + offset(s, 0, b, h, len);
        S* vd = base + offset(s, 1, b, h, len);
        for (Index i = 0; i < steps; ++i)
          for (Index c = 0; c < dim_; ++c) {
            kd[i * dim_ + c] = static_cast<S>(k[i * row_stride + h * dim_ + c]);
            vd[i * dim_ + c] = static_cast<S>(v[i * row_stride + h * dim_ + c]);
          }
      }
    });
  }
  /// Adds `steps` to the length of every active item.
  void commit(Index steps, const ActiveItems& active) noexcept {
    for (Index b = 0; b < batch_; ++b)
      if (active[b]) lengths_[static_cast<std::size_t>(b)] += steps;
  }
  /// Element offset of stream s, K (kv = 0) or V (kv = 1), item b, head h, position p.
  [[nodiscard]] Index offset(Index s, Index kv, Index b, Index h, Index p) const noexcept {
    return ((((s * 2 + kv) * batch_ + b) * heads_ + h) * capacity_ + p) * dim_;
  }
  /// Calls f(S* base) with the storage's typed pointer.
  template <class F>
  decltype(auto) visit(F&& f) {
    switch (storage_) {
      case KVStorage::float16: return f(f16_.data());
      case KVStorage::bfloat16: return f(bf16_.data());
      default: return f(same_.data());
    }
  }
  template <class F>
  decltype(auto) visit(F&& f) const {
    switch (storage_) {
      case KVStorage::float16: return f(static_cast<const Eigen::half*>(f16_.data()));
      case KVStorage::bfloat16: return f(static_cast<const Eigen::bfloat16*>(bf16_.data()));
      default: return f(static_cast<const T*>(same_.data()));
    }
  }

private:
  std::string owner_;
  Index batch_, capacity_, streams_, heads_, dim_;
  KVStorage storage_;
  std::vector<T> same_;
  std::vector<Eigen::half> f16_;
  std::vector<Eigen::bfloat16> bf16_;
  std::vector<Index> lengths_;
};

namespace ops {

/// Blocking of `cache_attention`. The results depend on these (float rounding), never on the thread
/// count.
struct CacheAttentionOptions {
  Index query_rows = 128;    ///< rows per task: new tokens × the group's query heads (at least one token)
  Index key_block = 128;     ///< keys per streamed block
  Index split_keys = 2048;   ///< keys per split of the key axis (partial softmax, combined exactly)
  double min_parallel_flops = 1 << 20;  ///< below this many flops the call stays on one thread
};

namespace detail {

#if ATTN_SIMD_DISPATCH
/// float16 -> float with F16C (every AVX2 CPU has it), 8 at a time, asking for the storage
/// 2·kStreamAhead rows of width d ahead (as ops/simd/rowvec.inl does for bfloat16).
__attribute__((target("avx,f16c"))) inline void widen_f16c(const Eigen::half* src, Index n, Index d, float* dst) {
  Index i = 0;
  for (; i + 8 <= n; i += 8) {
    if (i % 32 == 0) x86::avx2::prefetch(src + i, 2 * x86::avx2::kStreamAhead, d);
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}
#endif

/// Converts n elements of storage type S to T (no copy when S is T): bfloat16 -> float is a shift
/// (AVX-512 / AVX2 with prefetch through ops/simd/rowvec.inl, scalar otherwise), float16 -> float
/// uses F16C when the CPU has AVX2, else Eigen's conversion.
template <class T, class S>
const T* as_compute(const S* src, Index n, Index d, T* buf) {
  (void)d;  // the row width, for prefetching
  if constexpr (std::is_same_v<S, T>) {
    (void)n;
    (void)buf;
    return src;
  } else if constexpr (std::is_same_v<T, float> && std::is_same_v<S, Eigen::bfloat16>) {
    Index i = 0;
#if ATTN_SIMD_DISPATCH
    static_assert(sizeof(Eigen::bfloat16) == sizeof(std::uint16_t));  // the value's bits, nothing else
    if (simd() == Simd::avx512) i = x86::avx512::widen_bf16(src, n, d, buf);
    else if (simd() == Simd::avx2) i = x86::avx2::widen_bf16(src, n, d, buf);
#endif
    for (; i < n; ++i) buf[i] = std::bit_cast<float>(static_cast<std::uint32_t>(src[i].value) << 16);
    return buf;
  } else if constexpr (ATTN_SIMD_DISPATCH && std::is_same_v<T, float> && std::is_same_v<S, Eigen::half>) {
#if ATTN_SIMD_DISPATCH
    if (simd_available(Simd::avx2)) {
      widen_f16c(src, n, d, buf);
      return buf;
    }
#endif
    using A = Eigen::Array<S, Eigen::Dynamic, 1>;
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(buf, n) = Eigen::Map<const A>(src, n).template cast<T>();
    return buf;
  } else {
    using A = Eigen::Array<S, Eigen::Dynamic, 1>;
    using B = Eigen::Array<T, Eigen::Dynamic, 1>;
    Eigen::Map<B>(buf, n) = Eigen::Map<const A>(src, n).template cast<T>();
    return buf;
  }
}

}  // namespace detail

/// Causal attention of T new queries per item over a KV cache (see the file comment): for every
/// active item b with L_b = lengths[b] keys (the new ones included) and query head h,
///   ctx[b, i, h] = softmax_j<=L_b−T+i(scale · q[b, i, h] · K[b, h/g, j]) · V[b, h/g, j]
/// with q at `q + (b·T + i)·q_row + h·d`, ctx at `ctx + (b·T + i)·ctx_row + h·d`, K and V of
/// `[B, H_kv, capacity, d]` stored as S (`k`, `v`: item 0, head 0, position 0 of a stream) and
/// g = Hq / H_kv. Rows of inactive items are not written.
template <class T, class S>
void cache_attention(const T* q, Index q_row, const S* k, const S* v, Index B, Index Hkv, Index capacity,
                     Index d, Index Hq, Index Tn, const Index* lengths, const ActiveItems& active, T scale, T* ctx,
                     Index ctx_row, const CacheAttentionOptions& opt = {}) {
  if (B == 0 || Tn == 0 || Hq == 0) return;
  // up to this many query rows per task (a decode step's query heads of one kv head) go through the
  // row kernels, which stream the block once per row from cache; more through the packed product
  constexpr Index kRowKernelRows = 8;
  const Index g = Hq / Hkv;
  const Index tb = std::max<Index>(1, opt.query_rows / g), bk = std::max<Index>(1, opt.key_block);
  const Index split = std::max<Index>(bk, (opt.split_keys + bk - 1) / bk * bk);  // a whole number of blocks
  const Index nchunks = (Tn + tb - 1) / tb;
  Index max_len = 0;
  for (Index b = 0; b < B; ++b)
    if (active[b]) max_len = std::max(max_len, lengths[b]);
  const Index nsplit = std::max<Index>(1, (max_len + split - 1) / split);
  const Index rmax = std::min(tb, Tn) * g;
  const Index tasks = B * Hkv * nchunks * nsplit;
  // partial results of every task: O [rmax, d], then m [rmax], l [rmax]
  const Index part = rmax * (d + 2);
  std::vector<T> partial(static_cast<std::size_t>(tasks * part));
  const Kernels<T>& kern = kernels<T>();
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();

  const auto run_task = [&](Index task, std::vector<T, Eigen::aligned_allocator<T>>& ws) {
    Index rest = task;
    const Index sp = rest % nsplit;
    rest /= nsplit;
    const Index ch = rest % nchunks;
    rest /= nchunks;
    const Index kh = rest % Hkv;
    const Index b = rest / Hkv;
    T* O = partial.data() + task * part;
    T* m = O + rmax * d;
    T* l = m + rmax;
    std::fill_n(O, rmax * d, T(0));
    std::fill_n(m, rmax, neg_inf);
    std::fill_n(l, rmax, T(0));
    if (!active[b]) return;
    const Index len = lengths[b], past = len - Tn;  // query i sees keys j < past + i + 1
    const Index i0 = ch * tb, ni = std::min(tb, Tn - i0), rows = ni * g;
    const Index k0 = sp * split, k1 = std::min(past + i0 + ni, k0 + split);  // the last row's end
    if (k0 >= k1) return;
    // workspace: Qg [rows, d], Z [rows, bk], Kc [bk, d], Vc [bk, d], alpha [rows]
    T* Qg = ws.data();
    T* Z = Qg + rmax * d;
    T* Kc = Z + rmax * bk;
    T* Vc = Kc + bk * d;
    T* alpha = Vc + bk * d;
    for (Index i = 0; i < ni; ++i)  // row r = i·g + hl: query head kh·g + hl of token i0 + i
      for (Index hl = 0; hl < g; ++hl)
        std::copy_n(q + (b * Tn + i0 + i) * q_row + (kh * g + hl) * d, d, Qg + (i * g + hl) * d);
    const Index head = (b * Hkv + kh) * capacity;
    for (Index j0 = k0; j0 < k1; j0 += bk) {
      const Index cols = std::min(bk, k1 - j0);
      const T* K = detail::as_compute<T, S>(k + (head + j0) * d, cols * d, d, Kc);
      const T* V = detail::as_compute<T, S>(v + (head + j0) * d, cols * d, d, Vc);
      // stored as T, K and V are read in place: the keys' pass asks ahead for the values, the values'
      // pass for the next block's keys (one stream without pauses between passes)
      const T* next_k = nullptr;
      const T* next_v = nullptr;
      if constexpr (std::is_same_v<S, T>) {
        next_k = V;
        // after the task's last block, the keys of the next split (on one thread the next task)
        if (j0 + bk < k1) next_v = k + (head + j0 + bk) * d;
        else if (k0 + split < len) next_v = k + (head + k0 + split) * d;
      }
      // a few query rows (decode): every key row loaded once for all of them
      if (rows <= kRowKernelRows)
        matvec_rows(K, cols, d, Qg, rows, Z, cols, next_k);
      else
        kern.gemm(rows, cols, d, Qg, d, K, d, /*b_trans=*/true, Z, cols, /*accumulate=*/false, /*direct=*/true);
      bool partial_block = false;
      for (Index r = 0; r < rows; ++r) {
        const Index ce = std::clamp<Index>(past + i0 + r / g + 1 - j0, 0, cols);
        partial_block = partial_block || ce < cols;
        T* z = Z + r * cols;
        const T mx = kern.prepare(z, cols, ce, scale, nullptr, nullptr);
        const T m_new = std::max(m[r], mx);
        if (m_new == neg_inf) {  // no finite visible logit: NaN logits make the row NaN
          bool nan = false;
          for (Index c = 0; c < cols; ++c) {
            nan = nan || std::isnan(z[c]);
            z[c] = T(0);
          }
          alpha[r] = T(1);
          if (nan) l[r] = alpha[r] = std::numeric_limits<T>::quiet_NaN();
          continue;
        }
        const T a = std::exp(m[r] - m_new);
        l[r] = a * l[r] + kern.exp_sum(z, cols, m_new);
        m[r] = m_new;
        alpha[r] = a;
      }
      for (Index r = 0; r < rows; ++r)
        if (alpha[r] != T(1))
          for (Index c = 0; c < d; ++c) O[r * d + c] *= alpha[r];
      const bool finite = !partial_block || std::isfinite(Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(V, cols * d).sum());
      if (finite && rows <= kRowKernelRows) {
        vecmat_acc_rows(Z, cols, V, cols, d, rows, O, next_v);
      } else if (finite) {
        kern.gemm(rows, d, cols, Z, cols, V, d, /*b_trans=*/false, O, d, /*accumulate=*/true, /*direct=*/true);
      } else {  // a masked key's non-finite value reaches no row that does not see it
        for (Index r = 0; r < rows; ++r) {
          const Index ce = std::clamp<Index>(past + i0 + r / g + 1 - j0, 0, cols);
          for (Index c = 0; c < ce; ++c)
            for (Index e = 0; e < d; ++e) O[r * d + e] += Z[r * cols + c] * V[c * d + e];
        }
      }
    }
  };

  const double flops = 4.0 * static_cast<double>(B) * static_cast<double>(Hq) * static_cast<double>(Tn) *
                       static_cast<double>(max_len) * static_cast<double>(d);
  const int shares = flops < opt.min_parallel_flops ? 1 : shares_for(tasks);
  const auto ws_size = static_cast<std::size_t>(rmax * d + rmax * bk + 2 * bk * d + rmax);
  std::atomic<Index> next{0};
  parallel_shares(shares, [&](int, int) {
    std::vector<T, Eigen::aligned_allocator<T>> ws(ws_size);
    for (Index t = next.fetch_add(1, std::memory_order_relaxed); t < tasks;
         t = next.fetch_add(1, std::memory_order_relaxed))
      run_task(t, ws);
  });

  // combine the splits of every (item, kv head, chunk, row): exact rescaling by exp(m_s - M)
  for (Index b = 0; b < B; ++b) {
    if (!active[b]) continue;
    for (Index kh = 0; kh < Hkv; ++kh)
      for (Index ch = 0; ch < nchunks; ++ch) {
        const Index i0 = ch * tb, ni = std::min(tb, Tn - i0);
        const T* base = partial.data() + ((b * Hkv + kh) * nchunks + ch) * nsplit * part;
        for (Index r = 0; r < ni * g; ++r) {
          T M = neg_inf;
          bool nan = false;
          for (Index s = 0; s < nsplit; ++s) {
            const T ms = base[s * part + rmax * d + r];
            const T ls = base[s * part + rmax * d + rmax + r];
            nan = nan || std::isnan(ls);
            M = std::max(M, ms);
          }
          T* out = ctx + (b * Tn + i0 + r / g) * ctx_row + (kh * g + r % g) * d;
          if (nan) {
            std::fill_n(out, d, std::numeric_limits<T>::quiet_NaN());
            continue;
          }
          if (M == neg_inf) {  // no visible key
            std::fill_n(out, d, T(0));
            continue;
          }
          T L = 0;
          std::fill_n(out, d, T(0));
          for (Index s = 0; s < nsplit; ++s) {
            const T* Os = base + s * part;
            const T ms = Os[rmax * d + r];
            if (ms == neg_inf) continue;
            const T w = std::exp(ms - M);
            L += w * Os[rmax * d + rmax + r];
            for (Index c = 0; c < d; ++c) out[c] += w * Os[r * d + c];
          }
          for (Index c = 0; c < d; ++c) out[c] /= L;
        }
      }
  }
}

}  // namespace ops
}  // namespace attn
