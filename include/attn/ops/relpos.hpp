/// \file
/// 2-D relative-position index tables and the gather of a relative-position bias table into the
/// `[heads, T, S]` bias of the attention core (spec kcam_attention_layers.md §4.6, Appendix B.1).
///
/// - relative_position_index(H, W): the raster-geometric index of Swin / official BEiT for an H×W grid
///   of N = H·W tokens in raster order (token n = y·W + x): `I[p, q] = (Δy + H − 1)(2W − 1) + (Δx + W − 1)`
///   with Δ = query p − key q; values in [0, (2H − 1)(2W − 1)). `[N, N]`, row-major.
/// - kcam_relative_position_index(H, W, with_cls_token, num_keys): KCAM's
///   `MultiHeadRelativePositionalEmbedding` index, reproduced for weight parity: token p has
///   `a = p mod H`, `b = p div H` (the fast axis taken to have length H: not the raster geometry when
///   H ≠ W), `I[p, q] = (a_p − a_q + H − 1) + (b_p − b_q + W − 1)(2H − 1)`; with fewer keys than queries
///   (`num_keys` patch keys, e.g. CMT's reduced keys) only the LAST num_keys columns are kept; with a class
///   token a first row of `R − 3`, a first column of `R − 2` and `I[0, 0] = R − 1` are added,
///   `R = (2H − 1)(2W − 1) + 3`. For square grids both indices agree. `[c + H·W, c + num_keys]`.
/// - gather_relative_bias(table, index) → `[heads, T, S]`, `out[h, t, s] = table[h, I[t, s]]`; the table is
///   `[heads, R]` (KCAM's `positional_embedding`) or `[R, heads]` (Swin's
///   `relative_position_bias_table`, `heads_first = false`). An index outside [0, R) is a ShapeError
///   (the reference would misindex silently; spec errata §4.4).
///
/// - nat_pad_bias(n, k, r) and nat_relative_position_index(H, W, k, r_h, r_w): NAT's
///   `MultiHeadRelativePositionalKernelBias` index `[H·W, k²]` into the `(2k − 1)²` table (spec §4.5,
///   Appendix B.3): `pad_bias(n, r) = [0]·r ++ … ++ [⌊k/2⌋ − 1]·r ++ [⌊k/2⌋]·(n − 2r⌊k/2⌋) ++ [⌊k/2⌋ + 1]·r ++ …
///   ++ [k − 1]·r`, `J0[(y, x), a·k + b] = (bh[y] + a)·P + (bw[x] + b)` with `P = 2k − 1`, and the rows
///   reversed: `J[n] = J0[N − 1 − n]` (as the reference builds it; equal to the offset of the `(a, b)`-th
///   neighbour of NAT's clamped window, `((y' − y)/r_h + k − 1)·P + ((x' − x)/r_w + k − 1)`).
/// - swin_v2_relative_coords_table(wh, ww, sy, sx): Swin-V2's log-spaced table `[(2wh − 1)(2ww − 1), 2]`
///   (spec §4.7.a, Appendix B.5): row `(Δy + wh − 1)(2ww − 1) + (Δx + ww − 1)` holds
///   `(sign(u)·log2(1 + |u|)/3, sign(v)·log2(1 + |v|)/3)`, `u = 8Δy/(sy − 1)`, `v = 8Δx/(sx − 1)`, in double.
///
/// Errors: ConfigError for grid extents below 1 or num_keys outside [1, H·W] (naming `layer`), for an
/// even or non-positive NAT kernel, a dilation below 1 or an axis shorter than `2r⌊k/2⌋`, and for a
/// Swin-V2 scale below 2 (the reference divides by zero); ShapeError as above.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/parallel.hpp"
#include "attn/core/tensor.hpp"

namespace attn::ops {

/// An integer table `[rows, cols]`, row-major.
struct IndexTable {
  Index rows = 0, cols = 0;
  std::vector<Index> values;
  [[nodiscard]] Index operator()(Index r, Index c) const { return values[static_cast<std::size_t>(r * cols + c)]; }
};

namespace detail {
inline void check_grid(std::string_view layer, Index h, Index w) {
  if (h < 1 || w < 1)
    throw ConfigError(fmt::format("{}: the grid must be at least 1x1, got {}x{}", layer, h, w), std::string(layer),
                      "grid");
}
}  // namespace detail

/// The raster-geometric index `[H·W, H·W]` (file comment).
inline IndexTable relative_position_index(Index h, Index w, std::string_view layer = "relative_position_index") {
  detail::check_grid(layer, h, w);
  const Index n = h * w;
  IndexTable t{n, n, std::vector<Index>(static_cast<std::size_t>(n * n))};
  for (Index p = 0; p < n; ++p)
    for (Index q = 0; q < n; ++q)
      t.values[static_cast<std::size_t>(p * n + q)] = (p / w - q / w + h - 1) * (2 * w - 1) + (p % w - q % w + w - 1);
  return t;
}

/// KCAM's index (file comment). num_keys < 0: as many patch keys as queries.
inline IndexTable kcam_relative_position_index(Index h, Index w, bool with_cls_token, Index num_keys = -1,
                                               std::string_view layer = "kcam_relative_position_index") {
  detail::check_grid(layer, h, w);
  const Index n = h * w, c = with_cls_token ? 1 : 0;
  if (num_keys < 0) num_keys = n;
  if (num_keys < 1 || num_keys > n)
    throw ConfigError(fmt::format("{}: the number of patch keys must lie in [1, {}], got {}", layer, n, num_keys),
                      std::string(layer), "num_keys");
  const Index r = (2 * h - 1) * (2 * w - 1) + 3 * c;
  IndexTable t{n + c, num_keys + c, std::vector<Index>(static_cast<std::size_t>((n + c) * (num_keys + c)))};
  for (Index p = 0; p < n; ++p)
    for (Index k = 0; k < num_keys; ++k) {
      const Index q = n - num_keys + k;  // the last num_keys columns
      const Index v = (p % h - q % h + h - 1) + (p / h - q / h + w - 1) * (2 * h - 1);
      t.values[static_cast<std::size_t>((p + c) * t.cols + k + c)] = v;
    }
  if (with_cls_token) {
    for (Index k = 0; k < t.cols; ++k) t.values[static_cast<std::size_t>(k)] = r - 3;
    for (Index p = 0; p < t.rows; ++p) t.values[static_cast<std::size_t>(p * t.cols)] = r - 2;
    t.values[0] = r - 1;
  }
  return t;
}

/// out[h, t, s] = table[h, I[t, s]] (heads_first: table `[heads, R]`) or table[I[t, s], h] (`[R, heads]`);
/// out must hold heads·T·S values.
template <class T>
void gather_relative_bias(const T* table, Index heads, Index r, bool heads_first, const IndexTable& index, T* out,
                          std::string_view layer = "gather_relative_bias") {
  for (Index v : index.values)
    if (v < 0 || v >= r)
      throw ShapeError(fmt::format("{}: relative-position index {} lies outside the bias table of {} entries", layer, v,
                                   r));
  const Index ts = index.rows * index.cols;
  parallel_for(heads, [&](std::int64_t hh) {
    const Index h = static_cast<Index>(hh);
    T* o = out + h * ts;
    for (Index i = 0; i < ts; ++i) {
      const Index v = index.values[static_cast<std::size_t>(i)];
      o[i] = heads_first ? table[h * r + v] : table[v * heads + h];
    }
  });
}

/// NAT's `pad_bias` sequence of length n for kernel k and dilation r (file comment); needs odd k and
/// `n ≥ 2r⌊k/2⌋`.
inline std::vector<Index> nat_pad_bias(Index n, Index k, Index r, std::string_view layer = "nat_pad_bias") {
  const Index half = k / 2;
  if (k < 1 || k % 2 == 0 || r < 1 || n < 2 * r * half)
    throw ConfigError(fmt::format("{}: the neighbourhood of kernel {} with dilation {} needs an odd kernel, a "
                                  "dilation of at least 1 and an axis of at least {} positions, got {}",
                                  layer, k, r, 2 * r * half, n),
                      std::string(layer), "input_shape");
  std::vector<Index> out;
  out.reserve(static_cast<std::size_t>(n));
  for (Index v = 0; v < half; ++v) out.insert(out.end(), static_cast<std::size_t>(r), v);
  out.insert(out.end(), static_cast<std::size_t>(n - 2 * r * half), half);
  for (Index v = half + 1; v < k; ++v) out.insert(out.end(), static_cast<std::size_t>(r), v);
  return out;
}

/// NAT's index `[H·W, k²]` (file comment).
inline IndexTable nat_relative_position_index(Index h, Index w, Index k, Index rh, Index rw,
                                              std::string_view layer = "nat_relative_position_index") {
  detail::check_grid(layer, h, w);
  const std::vector<Index> bh = nat_pad_bias(h, k, rh, layer), bw = nat_pad_bias(w, k, rw, layer);
  const Index n = h * w, kk = k * k, p = 2 * k - 1;
  IndexTable t{n, kk, std::vector<Index>(static_cast<std::size_t>(n * kk))};
  for (Index i = 0; i < n; ++i) {
    const Index src = n - 1 - i, y = src / w, x = src % w;
    for (Index a = 0; a < k; ++a)
      for (Index b = 0; b < k; ++b)
        t.values[static_cast<std::size_t>(i * kk + a * k + b)] =
            (bh[static_cast<std::size_t>(y)] + a) * p + (bw[static_cast<std::size_t>(x)] + b);
  }
  return t;
}

/// Swin-V2's log-spaced relative coordinates `[(2wh − 1)(2ww − 1), 2]`, row-major (file comment).
inline std::vector<double> swin_v2_relative_coords_table(Index wh, Index ww, Index sy, Index sx,
                                                         std::string_view layer = "swin_v2_relative_coords_table") {
  detail::check_grid(layer, wh, ww);
  if (sy < 2 || sx < 2)
    throw ConfigError(fmt::format("{}: the coordinate scale (pos_scale or the window) must be at least 2 on both "
                                  "axes (the reference divides by scale - 1), got ({}, {})",
                                  layer, sy, sx),
                      std::string(layer), "pos_scale");
  const auto code = [](double u) { return (u > 0 ? 1.0 : u < 0 ? -1.0 : 0.0) * std::log2(1.0 + std::abs(u)) / 3.0; };
  std::vector<double> t;
  t.reserve(static_cast<std::size_t>((2 * wh - 1) * (2 * ww - 1) * 2));
  for (Index dy = -wh + 1; dy < wh; ++dy)
    for (Index dx = -ww + 1; dx < ww; ++dx) {
      t.push_back(code(static_cast<double>(dy) * 8.0 / static_cast<double>(sy - 1)));
      t.push_back(code(static_cast<double>(dx) * 8.0 / static_cast<double>(sx - 1)));
    }
  return t;
}

}  // namespace attn::ops
