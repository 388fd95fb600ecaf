/// \file
/// Scaled dot-product attention over strided head views: the interface every attention layer calls
/// (`ops::attention`, which runs the core of attention_core.hpp), and the plain `reference` path (full
/// score matrix per head) that tests compare against. The views and the bound mask are declared in
/// heads.hpp, which both this header and the core include (no include circle).
///
/// Layout: Q is read as [B, T, Hq, d], K as [B, S, Hkv, d], V as [B, S, Hkv, dv], each through
/// strides, so the output of a projection `[B, T, heads·d]` (or a fused `[B, T, 3·D]`) is used in
/// place. Query head h reads K/V head h / (Hq / Hkv) (grouped-query attention without copies).
/// The output is written as [B, T, Hq, dv] through strides: a contiguous `[B, T, Hq·dv]` buffer is the
/// merged-heads layout.
///
/// Masks (one contract): boolean `true` = attend; an additive bias is added to the scaled logits;
/// causal masking is bottom-right aligned when T != S (query i sees key j iff j <= i + S - T), and
/// with key lengths per item to the item's own length (j <= i + key_lengths[b] - T: the queries are
/// the last T positions of each item's sequence, as in a ragged KV cache); key_lengths[b] masks keys
/// j >= key_lengths[b]. A query row whose every key is masked yields zeros.
/// A masked key is excluded (a NaN or Inf behind the mask reaches no row); a NaN or Inf a row can see
/// makes that row non-finite.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "attn/core/tensor.hpp"
#include "attn/ops/attention_core.hpp"
#include "attn/ops/heads.hpp"

namespace attn::ops {

/// The plain path: per (batch, head) the full T x S score matrix, masked row softmax, then P·V.
/// `weights`, when not null, receives the attention probabilities as a contiguous [B, Hq, T, S].
template <class T>
void attention_reference(const HeadsView<T>& q, const HeadsView<T>& k, const HeadsView<T>& v,
                         const HeadsOut<T>& out, T scale, const AttentionMask<T>& mask,
                         T* weights = nullptr) {
  using Strided = Eigen::Map<const Matrix<T>, 0, Eigen::OuterStride<>>;
  using StridedOut = Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>;
  const Index B = q.batch, Tq = q.len, S = k.len, Hq = q.heads, Hkv = k.heads;
  const Index group = Hkv > 0 ? Hq / Hkv : 1;
  const T neg_inf = -std::numeric_limits<T>::infinity();
  Matrix<T> p(Tq, S);
  for (Index b = 0; b < B; ++b) {
    const Index len_b = mask.key_lengths != nullptr ? std::clamp<Index>(mask.key_lengths[b], 0, S) : S;
    for (Index h = 0; h < Hq; ++h) {
      const Index kh = h / group;
      Strided Q(q.at(b, 0, h), Tq, q.dim, Eigen::OuterStride<>(q.s_len));
      Strided K(k.at(b, 0, kh), S, k.dim, Eigen::OuterStride<>(k.s_len));
      Strided V(v.at(b, 0, kh), S, v.dim, Eigen::OuterStride<>(v.s_len));
      p.noalias() = Q * K.transpose();
      for (Index i = 0; i < Tq; ++i) {
        const bool* keep = mask.keep ? mask.keep + b * mask.keep_sb + h * mask.keep_sh + i * mask.keep_st
                                     : nullptr;
        const T* bias = mask.bias ? mask.bias + mask.bias_item(b) * mask.bias_sb + h * mask.bias_sh + i * mask.bias_st
                                  : nullptr;
        const Index causal_end = mask.causal ? std::clamp<Index>(i + (len_b - Tq) + 1, 0, S) : S;
        T row_max = neg_inf;
        bool any_allowed = false, nan = false;
        for (Index j = 0; j < S; ++j) {
          T z = p(i, j) * scale;
          if (bias) z += bias[j];
          const bool allowed = j < len_b && j < causal_end && (keep == nullptr || keep[j]);
          any_allowed = any_allowed || allowed;
          nan = nan || (allowed && std::isnan(z));
          z = allowed ? z : neg_inf;
          p(i, j) = z;
          row_max = std::max(row_max, z);
        }
        if (!any_allowed || (row_max == neg_inf && !nan)) {  // every key masked (or -inf by the bias)
          p.row(i).setZero();
          continue;
        }
        if (nan) {
          p.row(i).setConstant(std::numeric_limits<T>::quiet_NaN());
          continue;
        }
        T sum = 0;
        for (Index j = 0; j < S; ++j) {
          const T e = p(i, j) == neg_inf ? T(0) : std::exp(p(i, j) - row_max);
          p(i, j) = e;
          sum += e;
        }
        p.row(i) /= sum;
      }
      if (weights != nullptr)
        MatrixMap<T>(weights + ((b * Hq + h) * Tq) * S, Tq, S) = p;
      StridedOut O(out.at(b, 0, h), Tq, out.dim, Eigen::OuterStride<>(out.s_len));
      O.noalias() = p * V;
      if (!V.allFinite()) {  // a masked key is excluded, not weighted by 0 (0 · NaN is NaN)
        for (Index i = 0; i < Tq; ++i) {
          const bool* keep = mask.keep ? mask.keep + b * mask.keep_sb + h * mask.keep_sh + i * mask.keep_st
                                       : nullptr;
          const Index causal_end = mask.causal ? std::clamp<Index>(i + (len_b - Tq) + 1, 0, S) : S;
          O.row(i).setZero();
          for (Index j = 0; j < std::min(len_b, causal_end); ++j)
            if (keep == nullptr || keep[j]) O.row(i) += p(i, j) * V.row(j);
        }
      }
    }
  }
}

/// The attention entry point every layer calls: the streaming, multithreaded core of
/// attention_core.hpp (online softmax over key blocks, fully masked blocks skipped, threads from
/// attn::set_num_threads, bit-identical for any thread count). `weights`, when not null, receives the
/// probabilities as a contiguous [B, Hq, T, S]. Throws ShapeError when the views disagree.
template <class T>
void attention(const HeadsView<T>& q, const HeadsView<T>& k, const HeadsView<T>& v,
               const HeadsOut<T>& out, T scale, const AttentionMask<T>& mask, T* weights = nullptr) {
  attention_core(q, k, v, out, scale, mask, weights);
}

}  // namespace attn::ops
