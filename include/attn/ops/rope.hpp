/// \file
/// Rotary position embedding (Su et al., 2021, "RoFormer: Enhanced Transformer with Rotary Position
/// Embedding") as a reusable op: frequency tables, and an in-place rotation of a strided
/// `[B, L, heads, d]` buffer (the head layout of a projection output, see ops/sdpa.hpp).
///
/// Rotated width `r = int(d · rope_percentage)`, minus 1 when odd (so `r` is even, possibly 0); only
/// the first `r` features of each head vector rotate, features `r .. d-1` pass through. Pairs are
/// INTERLEAVED: pair i is features (2i, 2i+1), with frequency `ω_i = theta^(-2i/r)`, i < r/2. At
/// position p:
///   x'_{2i}   = x_{2i}·cos(p·ω_i) − x_{2i+1}·sin(p·ω_i)
///   x'_{2i+1} = x_{2i}·sin(p·ω_i) + x_{2i+1}·cos(p·ω_i)
/// Tables `cos[p, i] = cos(p·ω_i)`, `sin[p, i] = sin(p·ω_i)` have shape `[max_len, max(r/2, 1)]`
/// (one column of zeros when r = 0, as the reference stores them). Angles are computed in double.
///
/// Positions are `offset + l` for the l-th row of the buffer: offset 0 is the reference's behaviour
/// (positions always start at 0); a KV-cache user passes the number of tokens already cached.
#pragma once

#include <algorithm>
#include <cmath>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "attn/core/error.hpp"
#include "attn/core/limits.hpp"
#include "attn/core/log.hpp"
#include "attn/core/param.hpp"
#include "attn/core/tensor.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn::ops {

/// The rotated width: int(head_dim · rope_percentage), decreased by 1 when odd.
inline Index rope_rotary_dim(Index head_dim, double rope_percentage) noexcept {
  Index r = static_cast<Index>(static_cast<double>(head_dim) * rope_percentage);
  if (r % 2 != 0) --r;
  return std::max<Index>(r, 0);
}

/// Columns of the cos/sin tables for a rotated width r: max(r/2, 1).
inline Index rope_table_columns(Index rotary_dim) noexcept { return std::max<Index>(rotary_dim / 2, 1); }

/// Fills `cos` and `sin`, each `[max_len, rope_table_columns(rotary_dim)]` row-major, for rotated width
/// `rotary_dim` (even, >= 0) and base `theta` (> 0). With rotary_dim 0 both are zeros.
template <class T>
void rope_fill_tables(Index rotary_dim, double theta, Index max_len, T* cos, T* sin) {
  if (rotary_dim < 0 || rotary_dim % 2 != 0)
    throw ConfigError(fmt::format("rope: rotary_dim must be even and non-negative, got {}", rotary_dim));
  if (!(theta > 0))
    throw ConfigError(fmt::format("rope_theta must be positive, got {}", attn::detail::py_float(theta)));
  if (max_len < 0) throw ConfigError(fmt::format("rope: max_len must be non-negative, got {}", max_len));
  const Index cols = rope_table_columns(rotary_dim);
  if (rotary_dim == 0) {
    std::fill(cos, cos + max_len * cols, T(0));
    std::fill(sin, sin + max_len * cols, T(0));
    return;
  }
  std::vector<double> omega(static_cast<std::size_t>(cols));
  for (Index i = 0; i < cols; ++i)
    omega[static_cast<std::size_t>(i)] =
        std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(rotary_dim));
  for (Index p = 0; p < max_len; ++p)
    for (Index i = 0; i < cols; ++i) {
      const double angle = static_cast<double>(p) * omega[static_cast<std::size_t>(i)];
      cos[p * cols + i] = static_cast<T>(std::cos(angle));
      sin[p * cols + i] = static_cast<T>(std::sin(angle));
    }
}

/// Read-only view of a pair of tables (e.g. over a layer's stored `rope/cos_cached`, `rope/sin_cached`).
template <class T>
struct RopeTablesView {
  const T* cos = nullptr;
  const T* sin = nullptr;
  Index max_len = 0;     ///< rows: positions 0 .. max_len-1
  Index columns = 1;     ///< row length, >= rotary_dim / 2
  Index rotary_dim = 0;  ///< rotated width r (even)
};

/// Owning tables for (head_dim, rope_percentage, theta, max_len).
template <class T>
struct RopeTables {
  Index head_dim = 0;
  Index rotary_dim = 0;
  Index max_len = 0;
  std::vector<T> cos;  ///< [max_len, rope_table_columns(rotary_dim)]
  std::vector<T> sin;

  [[nodiscard]] Index columns() const noexcept { return rope_table_columns(rotary_dim); }
  [[nodiscard]] RopeTablesView<T> view() const noexcept {
    return {cos.data(), sin.data(), max_len, columns(), rotary_dim};
  }
};

/// Builds the tables; arguments are checked with the reference's messages.
template <class T>
RopeTables<T> rope_tables(Index head_dim, double rope_percentage, double theta, Index max_len) {
  if (head_dim <= 0) throw ConfigError(fmt::format("head_dim must be positive, got {}", head_dim));
  if (max_len <= 0) throw ConfigError(fmt::format("max_seq_len must be positive, got {}", max_len));
  if (!(theta > 0))
    throw ConfigError(fmt::format("rope_theta must be positive, got {}", attn::detail::py_float(theta)));
  if (!(rope_percentage > 0.0 && rope_percentage <= 1.0))
    throw ConfigError(fmt::format("rope_percentage must be in (0, 1], got {}",
                                  attn::detail::py_float(rope_percentage)));
  RopeTables<T> t;
  t.head_dim = head_dim;
  t.rotary_dim = rope_rotary_dim(head_dim, rope_percentage);
  t.max_len = max_len;
  check_allocation(fmt::format("rope: max_seq_len ({}): the two tables [{}, {}]", max_len, max_len, t.columns()),
                   checked_shape_size({2, max_len, t.columns()}), sizeof(T), "", "max_seq_len");
  const auto n = static_cast<std::size_t>(max_len * t.columns());
  t.cos.resize(n);
  t.sin.resize(n);
  rope_fill_tables(t.rotary_dim, theta, max_len, t.cos.data(), t.sin.data());
  return t;
}

/// Rotates the first `tables.rotary_dim` features of every head vector of `x` in place; row l of the
/// sequence axis is at position `offset + l`. Throws ShapeError when the positions leave the table or
/// the tables do not fit the head width.
template <class T>
void apply_rope(const HeadsOut<T>& x, const RopeTablesView<T>& tables, Index offset = 0) {
  const Index r = tables.rotary_dim;
  if (r < 0 || r % 2 != 0 || r > x.dim || tables.columns < rope_table_columns(r))
    throw ShapeError(fmt::format("rope: tables for rotary width {} ({} columns) do not fit heads of "
                                 "width {}",
                                 r, tables.columns, x.dim));
  if (offset < 0 || x.len > tables.max_len - offset)
    throw ShapeError(fmt::format("rope: positions [{}, {}) exceed the table length ({})", offset,
                                 offset + x.len, tables.max_len));
  // Work is proportional to the elements: an empty buffer ([2^36, 0, heads, d] included) returns at once.
  if (r == 0 || x.batch == 0 || x.len == 0 || x.heads == 0) return;
  const Index half = r / 2;
  for (Index b = 0; b < x.batch; ++b)
    for (Index l = 0; l < x.len; ++l) {
      const T* c = tables.cos + (offset + l) * tables.columns;
      const T* s = tables.sin + (offset + l) * tables.columns;
      for (Index h = 0; h < x.heads; ++h) {
        T* v = x.at(b, l, h);
        for (Index i = 0; i < half; ++i) {
          const T x0 = v[2 * i];
          const T x1 = v[2 * i + 1];
          v[2 * i] = x0 * c[i] - x1 * s[i];
          v[2 * i + 1] = x0 * s[i] + x1 * c[i];
        }
      }
    }
}

/// The reference's construction-time log lines of its rotary embedding: a WARNING when head_dim is
/// odd, an INFO line when the rotated width was rounded down to even.
inline void rope_log_construction(Index head_dim, double rope_percentage) {
  if (head_dim % 2 != 0)
    log(LogLevel::warning, "head_dim ({}) is odd, RoPE works best with even dimensions", head_dim);
  const auto raw = static_cast<Index>(static_cast<double>(head_dim) * rope_percentage);
  if (raw % 2 != 0) log(LogLevel::info, "Adjusted rope_dim to {} to ensure even dimension", raw - 1);
}

/// The reference's table-building log line: a WARNING when nothing will be rotated.
inline void rope_log_tables(Index rotary_dim) {
  if (rotary_dim / 2 == 0)
    log(LogLevel::warning, "rope_dim is too small, no rotary embedding will be applied");
}

}  // namespace attn::ops
