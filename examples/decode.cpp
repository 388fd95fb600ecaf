// Greedy decoding with a KV cache. A toy one-layer decoder — token embedding, causal `group_query`
// attention (RoPE, 4 query heads sharing 2 key/value heads), logits of its output through the
// embedding table (tied weights) — continues a prompt one token at a time, twice:
//
//   recompute: every step runs the layer over the whole sequence so far (what a model without a
//              cache does: the cost of a step grows with the sequence);
//   cached:    one prefill of the prompt fills an attn::KVCache, then each step runs the layer on the
//              one new token, which attends to the cached keys and values (RoPE positions continue
//              from the cache's length).
//
// Tokens are drawn from the softmax of the logits with the same random numbers in both loops, so both
// must pick the same tokens (the cached step equals the last row of the full causal forward up to
// float rounding). The weights are seeded random ones, so the text is meaningless; the point is the
// loop and its cost.
//
//   decode [steps]        (default 48)
#include <attn/kv_cache.hpp>
#include <attn/layers/group_query.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using attn::Index;
using attn::Tensor;

struct ToyDecoder {
  Index vocab, d_model;
  Tensor<float, 2> embedding;  // [vocab, d_model]
  attn::GroupedQueryAttention<float> attention;

  ToyDecoder(Index v, int d)
      : vocab(v), d_model(d), embedding(v, d), attention({.d_model = d, .n_head = 4, .n_kv_head = 2, .causal = true}, 3) {
    embedding.setRandom();
  }

  /// The embeddings of `tokens` as [1, tokens, d_model].
  [[nodiscard]] Tensor<float, 3> embed(const std::vector<Index>& tokens) const {
    Tensor<float, 3> x(1, Index(tokens.size()), d_model);
    for (Index t = 0; t < x.dimension(1); ++t)
      for (Index c = 0; c < d_model; ++c) x(0, t, c) = embedding(tokens[std::size_t(t)], c);
    return x;
  }

  /// The next token after row `t` of the attention output a: drawn from softmax(a·Eᵀ) with `u`, a
  /// uniform number in [0, 1) (inverse transform sampling).
  [[nodiscard]] Index next_token(const Tensor<float, 3>& a, Index t, double u) const {
    std::vector<double> p(std::size_t(vocab), 0.0);
    double top = -1e300, sum = 0;
    for (Index v = 0; v < vocab; ++v) {
      double logit = 0;
      for (Index c = 0; c < d_model; ++c) logit += double(a(0, t, c)) * double(embedding(v, c));
      p[std::size_t(v)] = logit;
      top = std::max(top, logit);
    }
    for (double& x : p) sum += (x = std::exp(x - top));
    double cdf = 0;
    for (Index v = 0; v < vocab; ++v)
      if ((cdf += p[std::size_t(v)] / sum) > u) return v;
    return vocab - 1;
  }
};

std::string text(const std::vector<Index>& tokens, std::size_t from) {
  std::string s;
  for (std::size_t i = from; i < tokens.size(); ++i) s += fmt::format("{}{}", i > from ? " " : "", tokens[i]);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Index steps = argc > 1 ? std::stol(argv[1]) : 48;
    const ToyDecoder model(/*vocab=*/96, /*d_model=*/64);
    const std::vector<Index> prompt{5, 17, 42, 8, 23, 61, 9};
    using Clock = std::chrono::steady_clock;

    // Without a cache: the whole sequence through the layer at every step.
    std::vector<Index> full = prompt;
    std::mt19937_64 rng_full(2024), rng_cached(2024);  // the same draws for both loops
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    const auto t0 = Clock::now();
    for (Index s = 0; s < steps; ++s) {
      const Tensor<float, 3> x = model.embed(full);
      const Tensor<float, 3> a = model.attention.forward(x);
      full.push_back(model.next_token(a, a.dimension(1) - 1, uniform(rng_full)));
    }
    const double ms_full = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();

    // With a cache: prefill the prompt, then one token per step.
    std::vector<Index> cached = prompt;
    const auto t1 = Clock::now();
    attn::KVCache<float> cache = model.attention.make_cache(/*batch=*/1, /*capacity=*/Index(prompt.size()) + steps);
    Tensor<float, 3> x = model.embed(prompt);
    Tensor<float, 3> a = model.attention.forward(x, cache);  // causal over the prompt, fills the cache
    cached.push_back(model.next_token(a, a.dimension(1) - 1, uniform(rng_cached)));
    for (Index s = 1; s < steps; ++s) {
      x = model.embed({cached.back()});
      a = model.attention.forward(x, cache);  // [1, 1, d_model]: attends to every cached token
      cached.push_back(model.next_token(a, 0, uniform(rng_cached)));
    }
    const double ms_cached = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();

    fmt::print("prompt:            {}\n", text(prompt, 0));
    fmt::print("generated (cache): {}\n", text(cached, prompt.size()));
    fmt::print("cache: {} tokens of {}, {} bytes per token\n", cache.lengths()[0], cache.capacity(),
               cache.bytes_per_token());
    fmt::print("{} steps: recomputing {:.1f} ms, with the cache {:.1f} ms\n", steps, ms_full, ms_cached);
    if (cached != full) {
      fmt::print("the cached loop chose other tokens than the full forward: {}\n", text(full, prompt.size()));
      return 1;
    }
    fmt::print("both loops generated the same tokens\n");
    return 0;
  } catch (const attn::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
