// Plain-loop oracles written from the formulas (no attn kernel involved): attention, dense
// projections, head split and merge, all in double.
#pragma once

#include <attn/core/tensor.hpp>
#include <attn/core/weights.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>
#include <vector>

namespace attn_test {

using attn::Index;

using Keep = std::function<bool(Index b, Index h, Index i, Index j)>;
using Bias = std::function<double(Index b, Index h, Index i, Index j)>;

/// softmax(q kᵀ·scale + bias, masked) v on [B, H, T, d] / [B, Hkv, S, d] / [B, Hkv, S, dv], query head
/// h reading kv head h / (H / Hkv); rows with no allowed key give zeros. Returns {output, weights}.
inline std::pair<attn::Tensor<double, 4>, attn::Tensor<double, 4>> naive_attention(
    const attn::Tensor<double, 4>& q, const attn::Tensor<double, 4>& k, const attn::Tensor<double, 4>& v,
    double scale, const Keep& keep = nullptr, const Bias& bias = nullptr) {
  const Index B = q.dimension(0), H = q.dimension(1), T = q.dimension(2), d = q.dimension(3);
  const Index Hkv = k.dimension(1), S = k.dimension(2), dv = v.dimension(3), g = H / Hkv;
  attn::Tensor<double, 4> out(B, H, T, dv), w(B, H, T, S);
  out.setZero();
  w.setZero();
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index i = 0; i < T; ++i) {
        std::vector<double> z(static_cast<std::size_t>(S));
        double mx = -1e300;
        for (Index j = 0; j < S; ++j) {
          double s = 0;
          for (Index c = 0; c < d; ++c) s += q(b, h, i, c) * k(b, h / g, j, c);
          s = s * scale + (bias ? bias(b, h, i, j) : 0.0);
          z[static_cast<std::size_t>(j)] = keep && !keep(b, h, i, j) ? -1e300 : s;
          mx = std::max(mx, z[static_cast<std::size_t>(j)]);
        }
        if (mx <= -1e299) continue;
        double sum = 0;
        for (auto& x : z) sum += (x = x <= -1e299 ? 0 : std::exp(x - mx));
        for (Index j = 0; j < S; ++j) {
          w(b, h, i, j) = z[static_cast<std::size_t>(j)] / sum;
          for (Index c = 0; c < dv; ++c) out(b, h, i, c) += w(b, h, i, j) * v(b, h / g, j, c);
        }
      }
  return {out, w};
}

/// x[B, T, in] · kernel[in, out] (+ bias[out]) with loops.
inline attn::Tensor<double, 3> naive_dense(const attn::Tensor<double, 3>& x, const attn::Weight<double>& kernel,
                                           const attn::Weight<double>* bias = nullptr) {
  const Index B = x.dimension(0), T = x.dimension(1), in = kernel.shape.at(0), out = kernel.shape.at(1);
  attn::Tensor<double, 3> y(B, T, out);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t)
      for (Index o = 0; o < out; ++o) {
        double s = bias ? bias->data[static_cast<std::size_t>(o)] : 0.0;
        for (Index i = 0; i < in; ++i) s += x(b, t, i) * kernel.data[static_cast<std::size_t>(i * out + o)];
        y(b, t, o) = s;
      }
  return y;
}

/// [B, T, H·d] -> [B, H, T, d] (head h owns features [h·d, (h+1)·d)).
inline attn::Tensor<double, 4> split_heads(const attn::Tensor<double, 3>& x, Index H) {
  const Index B = x.dimension(0), T = x.dimension(1), d = x.dimension(2) / H;
  attn::Tensor<double, 4> y(B, H, T, d);
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index t = 0; t < T; ++t)
        for (Index c = 0; c < d; ++c) y(b, h, t, c) = x(b, t, h * d + c);
  return y;
}

/// [B, H, T, d] -> [B, T, H·d].
inline attn::Tensor<double, 3> merge_heads(const attn::Tensor<double, 4>& x) {
  const Index B = x.dimension(0), H = x.dimension(1), T = x.dimension(2), d = x.dimension(3);
  attn::Tensor<double, 3> y(B, T, H * d);
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index t = 0; t < T; ++t)
        for (Index c = 0; c < d; ++c) y(b, t, h * d + c) = x(b, h, t, c);
  return y;
}

}  // namespace attn_test
