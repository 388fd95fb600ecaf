/// \file
/// Attention with separate query / key / value projections (and an optional output projection),
/// shared by the `self_attention` and `cross_attention` layers, and the result type of every layer
/// that can return its attention weights.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/masks.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn {

/// Output of the `_with_weights` forms: the layer output and the attention probabilities.
template <class T>
struct AttentionResult {
  Tensor<T, 3> output;
  Tensor<T, 4> weights;  ///< [B, heads, T, S]
};

namespace ops {

/// Sizes and switches of a projected attention.
struct ProjectedSpec {
  Index query_dim = 0;    ///< width of the query input
  Index context_dim = 0;  ///< width of the key/value input
  Index embed_dim = 0;    ///< width of Q, K, V and of the output
  Index num_heads = 1;
  bool use_bias = true;
  bool output_projection = false;
  double scale = 1.0;
  bool causal = false;
};

/// Adds the weights in their stable order: query/kernel [Dq, E], query/bias [E], key/kernel [Dc, E],
/// key/bias, value/kernel [Dc, E], value/bias, then output/kernel [E, E], output/bias when
/// `output_projection` (biases only with `use_bias`).
template <class T>
WeightSet<T> projected_weights(const ProjectedSpec& s, std::string_view kernel_init, std::string_view bias_init,
                               std::uint64_t seed) {
  WeightSet<T> w;
  const Index e = s.embed_dim;
  const auto add = [&](std::string_view name, Index in) {
    w.add(std::string(name) + "/kernel", {in, e}, kernel_init, seed);
    if (s.use_bias) w.add(std::string(name) + "/bias", {e}, bias_init, seed);
  };
  add("query", s.query_dim);
  add("key", s.context_dim);
  add("value", s.context_dim);
  if (s.output_projection) add("output", e);
  return w;
}

/// y = [merge(softmax(Q Kᵀ·scale masked) V)]·Wo (+ bo), Q = x·Wq (+ bq), K = c·Wk (+ bk), V = c·Wv (+ bv).
/// Shapes are checked by the caller (x [B, T, Dq], c [B, S, Dc]).
template <class T>
AttentionResult<T> projected_attention(const WeightSet<T>& w, const ProjectedSpec& s, ConstTensorView<T, 3> x,
                                       ConstTensorView<T, 3> c, const BoolMask& mask, bool want_weights,
                                       std::string_view layer) {
  const Index B = x.dimension(0), Tq = x.dimension(1), S = c.dimension(1), E = s.embed_dim, H = s.num_heads;
  const Index d = E / H;
  const std::size_t step = s.use_bias ? 2 : 1;
  const auto bias = [&](std::size_t i) { return s.use_bias ? &w[i + 1] : nullptr; };
  ScratchFrame scratch;  // q, k, v and the context: reused across calls (core/scratch.hpp)
  T* q = scratch.get<T>(B * Tq * E);
  T* k = scratch.get<T>(B * S * E);
  T* v = scratch.get<T>(B * S * E);
  dense(x.data(), B * Tq, w[0], bias(0), q);
  dense(c.data(), B * S, w[step], bias(step), k);
  dense(c.data(), B * S, w[2 * step], bias(2 * step), v);
  AttentionMask<T> m;
  m.causal = s.causal;
  bind_mask(m, mask, B, H, Tq, S, layer);
  AttentionResult<T> r;
  r.output = Tensor<T, 3>(B, Tq, E);
  T* ctx = s.output_projection ? scratch.get<T>(B * Tq * E) : r.output.data();
  if (want_weights) r.weights = Tensor<T, 4>(B, H, Tq, S);
  attention(heads_of<T>(q, B, Tq, H, d, E), heads_of<T>(k, B, S, H, d, E), heads_of<T>(v, B, S, H, d, E),
            heads_out<T>(ctx, B, Tq, H, d, E), static_cast<T>(s.scale), m,
            want_weights ? r.weights.data() : nullptr);
  if (s.output_projection) dense(ctx, B * Tq, w[3 * step], bias(3 * step), r.output.data());
  return r;
}

}  // namespace ops
}  // namespace attn
