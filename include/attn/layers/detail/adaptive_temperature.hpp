/// \file
/// The adaptive-temperature softmax (ATS) of `adaptive_multi_head`: the temperature of every attention
/// row from the entropy of its softmax, computed blockwise over the keys so that no [T, S] map is held.
///
/// For a row of logits z (scaled, masked; a masked key's probability is 0):
///   p = softmax(z),  p̃ = clip(p, eps, 1 − eps),  H = − Σ_j p̃_j ln p̃_j   (over all S keys)
///   τ = min_temp + (max_temp − min_temp)·clip(P(H), 0, 1)  if H > entropy_threshold, else 1
/// with P the polynomial of `coeffs` (highest degree first, Horner). The row's output is then
/// softmax(z / max(τ, eps)), which the caller computes with the attention core on Q / τ.
///
/// `ats_temperatures` makes two passes over key blocks per (batch, head, block of query rows): the
/// first the row max and the sum of exponentials (online), the second the clipped entropy (the clip
/// needs the final max and sum, so it cannot be folded into one online pass). Logits come from the
/// same products and row passes as the attention core (ops/kernels.hpp), masks per its contract
/// (ops/attention_core.hpp). Keys a row cannot see count as p = 0, clipped to eps, as the reference's
/// replaced logits do. A row whose every key is masked gets τ = 1 (the core then yields zeros).
/// Working memory O(threads × query_block × key_block); tasks are independent, so results are
/// bit-identical for any thread count.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "attn/core/parallel.hpp"
#include "attn/core/tensor.hpp"
#include "attn/ops/heads.hpp"
#include "attn/ops/kernels.hpp"

namespace attn::detail {

/// The reference's default polynomial P(H), highest degree first.
inline constexpr std::array<double, 5> ats_default_coeffs{-1.791, 4.917, -2.3, 0.481, -0.037};

/// The ATS schedule: the temperature of a row of entropy H.
struct AtsSchedule {
  double min_temp = 0.1;
  double max_temp = 1.0;
  double entropy_threshold = 0.5;
  double eps = 1e-7;
  std::span<const double> coeffs{ats_default_coeffs};

  [[nodiscard]] double polynomial(double h) const noexcept {
    double r = 0.0;
    for (double c : coeffs) r = r * h + c;
    return r;
  }
  [[nodiscard]] double temperature(double h) const noexcept {
    if (!(h > entropy_threshold)) return 1.0;
    return min_temp + (max_temp - min_temp) * std::clamp(polynomial(h), 0.0, 1.0);
  }
  /// −p̃ ln p̃ of one probability (clipped to [eps, 1 − eps]).
  [[nodiscard]] double entropy_term(double p) const noexcept {
    const double c = std::clamp(p, eps, 1.0 - eps);
    return -c * std::log(c);
  }
};

/// Writes tau[(b·H + h)·T + t] for Q [B, T, H, d], K [B, S, Hkv, d] (logits Q·Kᵀ·scale + bias, masked
/// per `mask`).
template <class T>
void ats_temperatures(const ops::HeadsView<T>& q, const ops::HeadsView<T>& k, T scale,
                      const ops::AttentionMask<T>& mask, const AtsSchedule& sched, double* tau,
                      Index query_block = 64, Index key_block = 256) {
  const Index B = q.batch, Tq = q.len, S = k.len, H = q.heads, d = q.dim;
  const Index group = k.heads > 0 ? H / k.heads : 1;
  const Index nqb = Tq == 0 ? 0 : (Tq + query_block - 1) / query_block;
  const Index tasks = B * H * nqb;
  if (tasks == 0) return;
  const auto& kern = ops::kernels<T>();
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  const double eps_term = sched.entropy_term(0.0);  // a masked key: p = 0, clipped to eps
  const auto key_end = [&](Index len_b, Index i) {
    const Index e = mask.causal ? std::clamp<Index>(i + (S - Tq) + 1, 0, S) : S;
    return std::min(len_b, e);
  };
  const auto run_task = [&](Index task, std::vector<T, Eigen::aligned_allocator<T>>& z, std::vector<T>& e,
                            std::vector<T>& m, std::vector<T>& l, std::vector<double>& ent) {
    const Index qb = task % nqb, bh = task / nqb, h = bh % H, b = bh / H, kh = h / group;
    const Index i0 = qb * query_block, rows = std::min(query_block, Tq - i0);
    const Index len_b = mask.key_lengths != nullptr ? std::clamp<Index>(mask.key_lengths[b], 0, S) : S;
    const Index end = key_end(len_b, i0 + rows - 1);
    const auto block = [&](Index j0, Index cols) {  // z[r, c] = the prepared logits; returns nothing
      kern.gemm(rows, cols, d, q.at(b, i0, h), q.s_len, k.at(b, j0, kh), k.s_len, /*b_trans=*/true, z.data(), cols,
                /*accumulate=*/false, /*direct=*/true);
    };
    const auto prepare = [&](Index r, Index j0, Index cols) {
      const Index i = i0 + r;
      const Index ce = std::clamp<Index>(key_end(len_b, i) - j0, 0, cols);
      const T* bias = mask.bias == nullptr ? nullptr
                                           : mask.bias + b * mask.bias_sb + h * mask.bias_sh + i * mask.bias_st + j0;
      const bool* keep = mask.keep == nullptr
                             ? nullptr
                             : mask.keep + b * mask.keep_sb + h * mask.keep_sh + i * mask.keep_st + j0;
      return kern.prepare(z.data() + r * cols, cols, ce, scale, bias, keep);
    };
    std::fill_n(m.begin(), rows, neg_inf);
    std::fill_n(l.begin(), rows, T(0));
    std::fill_n(ent.begin(), rows, 0.0);
    for (Index j0 = 0; j0 < end; j0 += key_block) {  // pass 1: row max and sum of exponentials
      const Index cols = std::min(key_block, end - j0);
      block(j0, cols);
      for (Index r = 0; r < rows; ++r) {
        const T mx = prepare(r, j0, cols);
        const T m_new = std::max(m[r], mx);
        if (m_new == neg_inf || std::isnan(mx)) {
          if (std::isnan(mx)) l[r] = std::numeric_limits<T>::quiet_NaN();
          continue;
        }
        l[r] = std::exp(m[r] - m_new) * l[r] + kern.exp_sum(z.data() + r * cols, cols, m_new);
        m[r] = m_new;
      }
    }
    // pass 2: the clipped entropy, −p ln p = −p·((z − m) − ln l) where eps < p < 1 − eps (no log per key)
    const double lo = sched.eps, hi = 1.0 - sched.eps;
    const double lo_term = sched.entropy_term(0.0), hi_term = sched.entropy_term(1.0);
    for (Index j0 = 0; j0 < end; j0 += key_block) {
      const Index cols = std::min(key_block, end - j0);
      block(j0, cols);
      for (Index r = 0; r < rows; ++r) {
        if (!(l[r] > T(0))) continue;
        T* zr = z.data() + r * cols;
        prepare(r, j0, cols);
        std::copy_n(zr, cols, e.data());
        kern.exp_sum(e.data(), cols, m[r]);
        // in double: near the steep part of the schedule τ moves ~12x as fast as H
        const double inv = 1.0 / static_cast<double>(l[r]);
        const double shift = static_cast<double>(m[r]) + std::log(static_cast<double>(l[r]));
        double acc = 0;
        for (Index c = 0; c < cols; ++c) {
          const double p = static_cast<double>(e[static_cast<std::size_t>(c)]) * inv;
          acc += p <= lo ? lo_term : p >= hi ? hi_term : -p * (static_cast<double>(zr[c]) - shift);
        }
        ent[r] += acc;
      }
    }
    for (Index r = 0; r < rows; ++r) {
      double t = 1.0;
      if (std::isnan(l[r])) t = std::numeric_limits<double>::quiet_NaN();
      else if (l[r] > T(0)) t = sched.temperature(ent[r] + static_cast<double>(S - end) * eps_term);
      tau[(b * H + h) * Tq + i0 + r] = t;
    }
  };
  const double flops = 4.0 * static_cast<double>(B * H) * static_cast<double>(Tq) * static_cast<double>(S) *
                       static_cast<double>(d);
  const int shares = flops < double(1 << 21) ? 1 : shares_for(tasks);
  std::atomic<Index> next{0};
  parallel_shares(shares, [&](int, int) {
    std::vector<T, Eigen::aligned_allocator<T>> z(static_cast<std::size_t>(query_block * key_block));
    std::vector<T> e(static_cast<std::size_t>(key_block));
    std::vector<T> m(static_cast<std::size_t>(query_block)), l(static_cast<std::size_t>(query_block));
    std::vector<double> ent(static_cast<std::size_t>(query_block));
    for (Index t = next.fetch_add(1, std::memory_order_relaxed); t < tasks;
         t = next.fetch_add(1, std::memory_order_relaxed))
      run_task(t, z, e, m, l, ent);
  });
}

}  // namespace attn::detail
