/// \file
/// Normalisations at inference, on the last (channel) axis of row-major data, float and double, with
/// Keras's semantics (spec kcam_attention_layers.md §1.2):
///
/// - layer_norm: x `[rows, C]` → y, per row `y = gamma·(x − μ)/sqrt(σ² + eps) + beta`, μ and the biased
///   variance σ² over the C channels (two passes). `gamma` / `beta` `[C]` may be null (Keras `scale=False`
///   / `center=False`). Keras LayerNormalization's default eps is 1e-3, PyTorch's 1e-5, KCAM's
///   `layer_norm` helper 1e-5 (§3.6): it is always explicit here.
/// - batch_norm: inference with moving statistics, x `[rows, C]`:
///   `y = gamma·(x − moving_mean)/sqrt(moving_variance + eps) + beta`, computed as `x·a + b` with
///   per-channel `a = gamma/sqrt(var + eps)`, `b = beta − mean·a`. gamma / beta may be null. eps differs by
///   source (Keras BatchNormalization 1e-3; KCAM's helper and PyTorch 1e-5): always explicit.
/// - group_norm: x `[B, P, C]` (P = H·W pixels) with `groups` contiguous channel groups; mean and biased
///   variance per (sample, group) over the P·C/groups values; per-channel gamma / beta (may be null).
///   Keras GroupNormalization; PyTorch F.group_norm on NCHW computes the same.
/// - l2_normalize: TensorFlow's `tf.math.l2_normalize(x, axis=-1, epsilon)`:
///   `y = x / sqrt(max(Σ x², eps))` — eps clamps the *squared* norm (TF's default 1e-12). PyTorch's
///   F.normalize clamps the norm itself instead (`max(‖x‖, eps)`): different for near-zero rows only.
///
/// Rows (or sample-groups) are tasks on attn's pool, computed the same way on any thread: results are
/// bit-identical for any thread count. y may alias x (in place).
/// Errors: ConfigError for a negative eps or groups below 1 / not dividing C (naming `layer`).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/tensor.hpp"

namespace attn::ops {

namespace detail {
inline void check_eps(std::string_view layer, double eps) {
  if (!(eps >= 0))
    throw ConfigError(fmt::format("{}: epsilon must be non-negative, got {}", layer, eps), std::string(layer),
                      "epsilon");
}
/// Runs f(r0, r1) over row chunks of a fixed size (from the row width alone).
template <class F>
void for_row_chunks(Index rows, Index width, F&& f) {
  const Index chunk = std::max<Index>(1, (Index(1) << 14) / std::max<Index>(width, 1));
  parallel_for((rows + chunk - 1) / chunk, [&](std::int64_t t) {
    const Index r0 = static_cast<Index>(t) * chunk;
    f(r0, std::min(rows, r0 + chunk));
  });
}
}  // namespace detail

/// LayerNormalization over the last axis (see the file comment).
template <class T>
void layer_norm(const T* x, Index rows, Index channels, const T* gamma, const T* beta, double eps, T* y,
                std::string_view layer = "layer_norm") {
  detail::check_eps(layer, eps);
  if (channels == 0) return;
  detail::for_row_chunks(rows, channels, [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r) {
      const T* xr = x + r * channels;
      T* yr = y + r * channels;
      T mean = 0;
      for (Index c = 0; c < channels; ++c) mean += xr[c];
      mean /= static_cast<T>(channels);
      T var = 0;
      for (Index c = 0; c < channels; ++c) var += (xr[c] - mean) * (xr[c] - mean);
      var /= static_cast<T>(channels);
      const T inv = T(1) / std::sqrt(var + static_cast<T>(eps));
      for (Index c = 0; c < channels; ++c) {
        T v = (xr[c] - mean) * inv;
        if (gamma != nullptr) v *= gamma[c];
        if (beta != nullptr) v += beta[c];
        yr[c] = v;
      }
    }
  });
}

/// BatchNormalization at inference over the last axis (see the file comment). mean and var `[C]` are
/// required.
template <class T>
void batch_norm(const T* x, Index rows, Index channels, const T* gamma, const T* beta, const T* moving_mean,
                const T* moving_variance, double eps, T* y, std::string_view layer = "batch_norm") {
  detail::check_eps(layer, eps);
  std::vector<T> a(static_cast<std::size_t>(channels)), b(static_cast<std::size_t>(channels));
  for (Index c = 0; c < channels; ++c) {
    const T s = T(1) / std::sqrt(moving_variance[c] + static_cast<T>(eps));
    a[static_cast<std::size_t>(c)] = gamma != nullptr ? gamma[c] * s : s;
    b[static_cast<std::size_t>(c)] = (beta != nullptr ? beta[c] : T(0)) - moving_mean[c] * a[static_cast<std::size_t>(c)];
  }
  if (channels == 0) return;
  detail::for_row_chunks(rows, channels, [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r) {
      const T* xr = x + r * channels;
      T* yr = y + r * channels;
      for (Index c = 0; c < channels; ++c) yr[c] = xr[c] * a[static_cast<std::size_t>(c)] + b[static_cast<std::size_t>(c)];
    }
  });
}

/// GroupNormalization: x `[batch, pixels, C]` (see the file comment).
template <class T>
void group_norm(const T* x, Index batch, Index pixels, Index channels, Index groups, const T* gamma, const T* beta,
                double eps, T* y, std::string_view layer = "group_norm") {
  detail::check_eps(layer, eps);
  if (groups < 1 || channels % groups != 0)
    throw ConfigError(fmt::format("{}: groups ({}) must be positive and divide the channels ({})", layer, groups,
                                  channels),
                      std::string(layer), "groups");
  const Index cg = channels / groups;
  if (cg == 0) return;
  parallel_for(batch * groups, [&](std::int64_t task) {
    const Index b = static_cast<Index>(task) / groups, grp = static_cast<Index>(task) % groups;
    const T* xb = x + b * pixels * channels + grp * cg;
    T* yb = y + b * pixels * channels + grp * cg;
    const T n = static_cast<T>(pixels * cg);
    T mean = 0;
    for (Index p = 0; p < pixels; ++p)
      for (Index c = 0; c < cg; ++c) mean += xb[p * channels + c];
    mean /= n;
    T var = 0;
    for (Index p = 0; p < pixels; ++p)
      for (Index c = 0; c < cg; ++c) {
        const T d = xb[p * channels + c] - mean;
        var += d * d;
      }
    var /= n;
    const T inv = T(1) / std::sqrt(var + static_cast<T>(eps));
    for (Index p = 0; p < pixels; ++p)
      for (Index c = 0; c < cg; ++c) {
        T v = (xb[p * channels + c] - mean) * inv;
        if (gamma != nullptr) v *= gamma[grp * cg + c];
        if (beta != nullptr) v += beta[grp * cg + c];
        yb[p * channels + c] = v;
      }
  });
}

/// TensorFlow's l2_normalize over the last axis: y = x / sqrt(max(Σx², eps)) (eps default 1e-12).
template <class T>
void l2_normalize(const T* x, Index rows, Index channels, T* y, double eps = 1e-12,
                  std::string_view layer = "l2_normalize") {
  detail::check_eps(layer, eps);
  if (channels == 0) return;
  detail::for_row_chunks(rows, channels, [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r) {
      const T* xr = x + r * channels;
      T* yr = y + r * channels;
      T ss = 0;
      for (Index c = 0; c < channels; ++c) ss += xr[c] * xr[c];
      const T inv = T(1) / std::sqrt(std::max(ss, static_cast<T>(eps)));
      for (Index c = 0; c < channels; ++c) yr[c] = xr[c] * inv;
    }
  });
}

}  // namespace attn::ops
