/// \file
/// Attention with separate query / key / value projections (and an optional output projection),
/// shared by the `self_attention` and `cross_attention` layers. The layer builds one `Projected`
/// from its config at construction (sizes, switches, the logit scale), declares the weights through it
/// and keeps the returned slots; each forward then only binds the masks and runs.
///
/// Weight names (the seed's and Keras's: `query`, `key`, `value`, `output`, each with `/kernel`
/// `[in, out]` and `/bias`) and order: query/kernel [Dq, E], query/bias [E], key/kernel [Dc, E],
/// key/bias, value/kernel [Dc, E], value/bias, then output/kernel [E, E], output/bias when
/// `output_projection` (biases only with `use_bias`).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "attn/core/scratch.hpp"
#include "attn/core/tensor.hpp"
#include "attn/core/weights.hpp"
#include "attn/layers/detail/layer_base.hpp"
#include "attn/ops/heads.hpp"
#include "attn/ops/linear.hpp"
#include "attn/ops/masks.hpp"
#include "attn/ops/sdpa.hpp"

namespace attn::detail {

/// Sizes and switches of a projected attention, fixed at the layer's construction.
struct Projected {
  Index query_dim = 0;    ///< width of the query input
  Index context_dim = 0;  ///< width of the key/value input
  Index embed_dim = 0;    ///< width of Q, K, V and of the output
  Index num_heads = 1;
  bool use_bias = true;
  bool output_projection = false;
  double scale = 1.0;

  struct Slots {
    WeightSlot wq, bq, wk, bk, wv, bv, wo, bo;
  };

  /// Declares the weights in their documented order; returns their slots.
  template <class T>
  Slots add_weights(WeightSet<T>& w, std::string_view kernel_init, std::string_view bias_init,
                    std::uint64_t seed) const {
    Slots s;
    const Index e = embed_dim;
    const auto add = [&](std::string_view name, Index in, WeightSlot& kernel, WeightSlot& bias) {
      kernel = w.add(std::string(name) + "/kernel", {in, e}, kernel_init, seed);
      if (use_bias) bias = w.add(std::string(name) + "/bias", {e}, bias_init, seed);
    };
    add("query", query_dim, s.wq, s.bq);
    add("key", context_dim, s.wk, s.bk);
    add("value", context_dim, s.wv, s.bv);
    if (output_projection) add("output", e, s.wo, s.bo);
    return s;
  }

  /// y = [merge(softmax(Q Kᵀ·scale masked) V)]·Wo (+ bo), Q = x·Wq (+ bq), K = c·Wk (+ bk), V = c·Wv (+ bv).
  /// The caller checked the shapes (x [B, T, Dq], c [B, S, Dc]) and the weights, and bound the masks.
  template <class T>
  AttentionResult<T> run(const WeightSet<T>& w, const Slots& s, ConstTensorView<T, 3> x, ConstTensorView<T, 3> c,
                         const ops::AttentionMask<T>& mask, bool want_weights) const {
    const Index B = x.dimension(0), Tq = x.dimension(1), S = c.dimension(1), E = embed_dim, H = num_heads;
    const Index d = E / H;
    const auto opt = [&](WeightSlot slot) { return slot.declared() ? &w[slot.index] : nullptr; };
    AttentionResult<T> r;
    r.output = Tensor<T, 3>(B, Tq, E);
    if (want_weights) r.weights = Tensor<T, 4>(B, H, Tq, S);
    if (B == 0 || Tq == 0) return r;
    ScratchFrame scratch;  // q, k, v and the context: reused across calls (core/scratch.hpp)
    T* q = scratch.get<T>(B * Tq * E);
    T* k = scratch.get<T>(B * S * E);
    T* v = scratch.get<T>(B * S * E);
    ops::dense(x.data(), B * Tq, w[s.wq.index], opt(s.bq), q);
    ops::dense(c.data(), B * S, w[s.wk.index], opt(s.bk), k);
    ops::dense(c.data(), B * S, w[s.wv.index], opt(s.bv), v);
    T* ctx = output_projection ? scratch.get<T>(B * Tq * E) : r.output.data();
    ops::attention(ops::heads_of<T>(q, B, Tq, H, d, E), ops::heads_of<T>(k, B, S, H, d, E),
                   ops::heads_of<T>(v, B, S, H, d, E), ops::heads_out<T>(ctx, B, Tq, H, d, E),
                   static_cast<T>(scale), mask, want_weights ? r.weights.data() : nullptr);
    if (output_projection) ops::dense(ctx, B * Tq, w[s.wo.index], opt(s.bo), r.output.data());
    return r;
  }
};

}  // namespace attn::detail
