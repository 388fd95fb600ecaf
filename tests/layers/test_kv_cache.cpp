// KV cache (attn/kv_cache.hpp): incremental decoding with multi_head, group_query and differential.
// Oracles: the identity "a step's output equals the corresponding rows of a causal forward over the
// item's whole sequence" (the full forward runs on the attention core, the cached one on
// ops::cache_attention: no shared attention code), in float and double, over ragged schedules with
// active subsets and resets; ops::cache_attention against ops::attention_reference with tilings and
// key splits that put every edge inside the problem (double; and float at every SIMD level through
// every row group of the decode kernels); the half-precision storage bound of the header
// checked element by element; bit-identical results for 1 and 2 threads; typed errors that leave the
// cache unchanged.
#include "support.hpp"

#include <array>
#include <vector>

using namespace attn_test;
namespace ops = attn::ops;
using attn::ActiveItems;
using attn::KVCache;
using attn::KVStorage;

namespace {

/// Restores the thread setting of the process when a test ends.
struct ThreadGuard {
  int saved = attn::num_threads();
  ~ThreadGuard() { attn::set_num_threads(saved); }
};

/// One step of a schedule: `tokens` new tokens for the items `active` flags (empty: all), after
/// resetting item `reset` (-1: none).
struct Step {
  Index tokens;
  std::vector<bool> active{};
  Index reset = -1;
};

/// A ragged schedule over 3 items: prompts of different lengths through active subsets, single-token
/// steps on subsets, a multi-token step on a non-empty cache, a reset of one item mid-way.
std::vector<Step> ragged_schedule() {
  return {{5, {true, false, true}},   // prompts of 5 for items 0 and 2
          {2, {false, true, false}},  // a prompt of 2 for item 1
          {1},                        // decode: lengths 6, 3, 6
          {3, {true, true, false}},   // a chunk of 3 on non-empty items 0 and 1
          {1, {false, true, true}},
          {4, {}, 2},                 // reset item 2, then 4 tokens for every item (item 2: a new prompt)
          {1},
          {1, {true, false, false}}};
}

/// Runs `steps` through a cache of `layer` and requires every active item's output rows to equal the
/// rows of `full(sequence)` (a causal forward over the item's whole sequence, batch 1) for its new
/// tokens; inactive rows are zeros, lengths() follows the schedule.
template <class Layer, class T, class Full>
void check_schedule(const Layer& layer, Index D, const std::vector<Step>& steps, KVStorage storage, double rtol,
                    double atol, Full full, std::uint64_t seed) {
  const Index B = 3;
  KVCache<T> cache = layer.make_cache(B, 32, storage);
  std::vector<std::vector<T>> seq(static_cast<std::size_t>(B));
  for (std::size_t s = 0; s < steps.size(); ++s) {
    const Step& st = steps[s];
    if (st.reset >= 0) {
      cache.reset(st.reset);
      seq[static_cast<std::size_t>(st.reset)].clear();
    }
    const auto x = random_tensor<T, 3>({B, st.tokens, D}, seed + s);
    const ActiveItems active = st.active.empty() ? ActiveItems{} : ActiveItems(st.active);
    const attn::Tensor<T, 3> y = layer.forward(x, cache, active);
    REQUIRE(y.dimension(0) == B);
    REQUIRE(y.dimension(1) == st.tokens);
    for (Index b = 0; b < B; ++b) {
      INFO("step " << s << ", item " << b);
      auto& sq = seq[static_cast<std::size_t>(b)];
      if (!active[b]) {
        for (Index i = 0; i < st.tokens; ++i)
          for (Index c = 0; c < y.dimension(2); ++c) REQUIRE(y(b, i, c) == T(0));
        continue;
      }
      for (Index i = 0; i < st.tokens; ++i)
        for (Index c = 0; c < D; ++c) sq.push_back(x(b, i, c));
      const Index n = static_cast<Index>(sq.size()) / D;
      attn::Tensor<T, 3> whole(1, n, D);
      std::copy(sq.begin(), sq.end(), whole.data());
      const attn::Tensor<T, 3> want = full(whole);
      const Index E = want.dimension(2);
      attn::Tensor<T, 3> got_rows(1, st.tokens, E), want_rows(1, st.tokens, E);
      for (Index i = 0; i < st.tokens; ++i)
        for (Index c = 0; c < E; ++c) {
          got_rows(0, i, c) = y(b, i, c);
          want_rows(0, i, c) = want(0, n - st.tokens + i, c);
        }
      ATTN_REQUIRE_CLOSE(got_rows, want_rows, rtol, atol);
    }
    for (Index b = 0; b < B; ++b)
      REQUIRE(cache.lengths()[static_cast<std::size_t>(b)] ==
              static_cast<Index>(seq[static_cast<std::size_t>(b)].size()) / D);
  }
}

template <class T>
constexpr double tol() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}

/// The causal attention of every item's queries q [B, Tn, Hq, d] over its first lengths[b] cached
/// rows of kc / vc [B, Hkv, cap, d], by the plain reference of the attention core.
template <class U>
attn::Tensor<U, 4> cache_reference(const attn::Tensor<U, 4>& q, const attn::Tensor<U, 4>& kc, const attn::Tensor<U, 4>& vc,
                                   const std::vector<Index>& lengths, U scale) {
  const Index B = q.dimension(0), Tn = q.dimension(1), Hq = q.dimension(2), d = q.dimension(3);
  const Index Hkv = kc.dimension(1), cap = kc.dimension(2);
  attn::Tensor<U, 4> want(B, Tn, Hq, d);
  for (Index b = 0; b < B; ++b) {
    const Index L = lengths[static_cast<std::size_t>(b)];
    const ops::HeadsView<U> Q{q.data() + b * Tn * Hq * d, 1, Tn, Hq, d, Tn * Hq * d, Hq * d, d};
    const ops::HeadsView<U> K{kc.data() + b * Hkv * cap * d, 1, L, Hkv, d, Hkv * cap * d, d, cap * d};
    const ops::HeadsView<U> V{vc.data() + b * Hkv * cap * d, 1, L, Hkv, d, Hkv * cap * d, d, cap * d};
    ops::AttentionMask<U> m;
    m.causal = true;
    ops::attention_reference(Q, K, V, ops::heads_out<U>(want.data() + b * Tn * Hq * d, 1, Tn, Hq, d, Hq * d), scale, m);
  }
  return want;
}
}  // namespace

TEMPLATE_TEST_CASE("kv_cache: multi_head steps equal rows of a full causal forward", "[kv_cache][multi_head]",
                   float, double) {
  using T = TestType;
  for (const bool bias : {false, true}) {
    const attn::MultiHeadAttention<T> layer({.embed_dim = 12, .num_heads = 3, .use_bias = bias, .input_dim = 7},
                                            11);
    INFO("use_bias " << bias);
    check_schedule<attn::MultiHeadAttention<T>, T>(
        layer, 7, ragged_schedule(), KVStorage::same, tol<T>(), tol<T>(),
        [&](const attn::Tensor<T, 3>& x) { return layer.forward(x, {.causal = true}); }, 100);
  }
}

TEMPLATE_TEST_CASE("kv_cache: group_query steps (RoPE positions from the cache length) equal a full forward",
                   "[kv_cache][group_query]", float, double) {
  using T = TestType;
  // GQA 4 query heads on 2 kv heads, partial RoPE; multi-query; RoPE off
  const std::vector<attn::GroupedQueryAttentionConfig> configs{
      {.d_model = 16, .n_head = 4, .n_kv_head = 2, .max_seq_len = 40, .rope_percentage = 0.75, .use_bias = true},
      {.d_model = 12, .n_head = 3, .n_kv_head = 1, .max_seq_len = 40},
      {.d_model = 8, .n_head = 2, .n_kv_head = 2, .max_seq_len = 40, .use_rope = false}};
  for (std::size_t c = 0; c < configs.size(); ++c) {
    INFO("config " << c);
    const attn::GroupedQueryAttention<T> layer(configs[c], 5 + c);
    check_schedule<attn::GroupedQueryAttention<T>, T>(
        layer, configs[c].d_model, ragged_schedule(), KVStorage::same, tol<T>(), tol<T>(),
        [&](const attn::Tensor<T, 3>& x) { return layer.forward(x, {.causal = true}); }, 200 + c);
  }
}

TEMPLATE_TEST_CASE("kv_cache: differential steps equal a full causal forward, both formulations",
                   "[kv_cache][differential]", float, double) {
  using T = TestType;
  for (const std::string_view form : {"reference", "paper"}) {
    INFO("formulation " << form);
    const attn::DifferentialMultiHeadAttention<T> layer(
        {.dim = 10, .num_heads = 2, .head_dim = 3, .layer_idx = 3, .formulation = form}, 8);
    check_schedule<attn::DifferentialMultiHeadAttention<T>, T>(
        layer, 10, ragged_schedule(), KVStorage::same, tol<T>(), tol<T>(),
        [&](const attn::Tensor<T, 3>& x) { return layer.forward(x, {.causal = true}); }, 300);
  }
}

TEST_CASE("kv_cache: cache_attention equals the reference on contiguous keys, every tiling and split",
          "[kv_cache]") {
  using T = double;
  ThreadGuard guard;
  // grouped queries (2 query heads per kv head), and one query row per task (multi-head decode)
  const auto [Hq, Hkv] = GENERATE(std::pair<Index, Index>{4, 2}, std::pair<Index, Index>{2, 2});
  const Index B = 3, d = 3, cap = 23, Tn = 5;
  const std::vector<Index> lengths{cap, 5, 17};  // after the step; item 1 holds only the new tokens
  const auto kc = random_tensor<T, 4>({B, Hkv, cap, d}, 1);
  const auto vc = random_tensor<T, 4>({B, Hkv, cap, d}, 2);
  const auto q = random_tensor<T, 4>({B, Tn, Hq, d}, 3, 2.0);
  const T scale = 0.6;
  // reference per item: queries [1, Tn, Hq, d], keys the item's first lengths[b] cached rows, causal
  const attn::Tensor<T, 4> want = cache_reference(q, kc, vc, lengths, scale);
  for (const auto& opt : {ops::CacheAttentionOptions{.query_rows = 1, .key_block = 1, .split_keys = 1,
                                                     .min_parallel_flops = 0},
                          ops::CacheAttentionOptions{.query_rows = 4, .key_block = 3, .split_keys = 7,
                                                     .min_parallel_flops = 0},
                          ops::CacheAttentionOptions{.query_rows = 8, .key_block = 4, .split_keys = 8,
                                                     .min_parallel_flops = 0},
                          ops::CacheAttentionOptions{}}) {
    INFO("query_rows " << opt.query_rows << " key_block " << opt.key_block << " split " << opt.split_keys);
    std::vector<attn::Tensor<T, 4>> runs;
    for (const int threads : {1, 2}) {
      attn::set_num_threads(threads);
      attn::Tensor<T, 4> got(B, Tn, Hq, d);
      got.setConstant(-7.0);
      ops::cache_attention<T, T>(q.data(), Hq * d, kc.data(), vc.data(), B, Hkv, cap, d, Hq, Tn, lengths.data(), {},
                                 scale, got.data(), Hq * d, opt);
      ATTN_REQUIRE_CLOSE(got, want, 1e-12, 1e-13);
      runs.push_back(got);
    }
    // the splits are fixed by the lengths, not the thread count: bit-identical
    for (Index i = 0; i < runs[0].size(); ++i) REQUIRE(runs[0].data()[i] == runs[1].data()[i]);
  }
  // inactive items' rows are not written
  attn::Tensor<T, 4> got(B, Tn, Hq, d);
  got.setConstant(-7.0);
  ops::cache_attention<T, T>(q.data(), Hq * d, kc.data(), vc.data(), B, Hkv, cap, d, Hq, Tn, lengths.data(),
                             ActiveItems{false, true, false}, scale, got.data(), Hq * d);
  for (Index i = 0; i < Tn * Hq * d; ++i) {
    REQUIRE(got.data()[i] == -7.0);
    REQUIRE(got.data()[2 * Tn * Hq * d + i] == -7.0);
    REQUIRE(got.data()[Tn * Hq * d + i] == Approx(want.data()[Tn * Hq * d + i]).epsilon(1e-12));
  }
}

TEST_CASE("kv_cache: float cache_attention on the row kernels equals the reference, every level and group",
          "[kv_cache][simd]") {
  ATTN_FOR_EACH_SIMD_LEVEL();
  ThreadGuard guard;
  // query rows per kv head through every group of the row kernels (1, 2, 3, 4, 5, 8), head widths with
  // and without a scalar tail, one decode token and a short chunk; keys past one default block of 128
  // (the values' pass asks ahead for the next block's keys) and past small splits
  const auto [Hq, Hkv] = GENERATE(std::pair<Index, Index>{2, 2}, std::pair<Index, Index>{4, 2},
                                  std::pair<Index, Index>{3, 1}, std::pair<Index, Index>{8, 2},
                                  std::pair<Index, Index>{5, 1}, std::pair<Index, Index>{8, 1});
  const Index d = GENERATE(Index(64), Index(19));
  const Index Tn = GENERATE(Index(1), Index(2));
  INFO("Hq " << Hq << ", Hkv " << Hkv << ", d " << d << ", new tokens " << Tn);
  const Index B = 2, cap = 300;
  const std::vector<Index> lengths{cap, 131};
  const auto kc = random_tensor<float, 4>({B, Hkv, cap, d}, 41);
  const auto vc = random_tensor<float, 4>({B, Hkv, cap, d}, 42);
  const auto q = random_tensor<float, 4>({B, Tn, Hq, d}, 43, 2.0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  // the reference in double on the same (float) values
  const auto wide = [](const attn::Tensor<float, 4>& x) { return attn::Tensor<double, 4>(x.cast<double>()); };
  const attn::Tensor<double, 4> want = cache_reference(wide(q), wide(kc), wide(vc), lengths, double(scale));
  for (const auto& opt : {ops::CacheAttentionOptions{.key_block = 16, .split_keys = 64, .min_parallel_flops = 0},
                          ops::CacheAttentionOptions{.min_parallel_flops = 0}}) {
    INFO("key_block " << opt.key_block << " split " << opt.split_keys);
    std::vector<attn::Tensor<float, 4>> runs;
    for (const int threads : {1, 2}) {
      attn::set_num_threads(threads);
      attn::Tensor<float, 4> got(B, Tn, Hq, d);
      got.setConstant(-7.0f);
      ops::cache_attention<float, float>(q.data(), Hq * d, kc.data(), vc.data(), B, Hkv, cap, d, Hq, Tn,
                                         lengths.data(), ActiveItems{true, true}, scale, got.data(), Hq * d, opt);
      const attn::Tensor<double, 4> got_wide = got.cast<double>();
      ATTN_REQUIRE_CLOSE(got_wide, want, 2e-5, 2e-6);
      runs.push_back(got);
    }
    for (Index i = 0; i < runs[0].size(); ++i) REQUIRE(runs[0].data()[i] == runs[1].data()[i]);
  }
}

TEST_CASE("kv_cache: half-precision storage is within the documented bound", "[kv_cache]") {
  // The header's bound, per output element of row (b, i, h): with u the unit roundoff of the storage
  // and eta its absolute floor (float16 subnormals), a logit moves by at most
  //   a_j = scale · sum_c |q_c| (u |k_jc| + eta),  A = max_j a_j,
  // so |ctx_half − ctx_exact| <= (e^{2A} − 1)(max|v| (1 + u) + eta) + u max|v| + eta, plus float rounding.
  using T = float;
  const Index B = 2, Hq = 4, Hkv = 2, d = 16, cap = 300, Tn = 3;
  const std::vector<Index> lengths{cap, 131};
  const auto kc = random_tensor<T, 4>({B, Hkv, cap, d}, 11, 2.0);
  const auto vc = random_tensor<T, 4>({B, Hkv, cap, d}, 12, 3.0);
  const auto q = random_tensor<T, 4>({B, Tn, Hq, d}, 13, 2.0);
  const T scale = 0.25f;
  attn::Tensor<T, 4> exact(B, Tn, Hq, d);
  ops::cache_attention<T, T>(q.data(), Hq * d, kc.data(), vc.data(), B, Hkv, cap, d, Hq, Tn, lengths.data(), {},
                             scale, exact.data(), Hq * d);
  const auto run = [&]<class S>(S, double u, double eta) {
    std::vector<S> k16(static_cast<std::size_t>(kc.size())), v16(static_cast<std::size_t>(vc.size()));
    for (Index i = 0; i < kc.size(); ++i) {
      k16[static_cast<std::size_t>(i)] = static_cast<S>(kc.data()[i]);
      v16[static_cast<std::size_t>(i)] = static_cast<S>(vc.data()[i]);
    }
    attn::Tensor<T, 4> got(B, Tn, Hq, d);
    ops::cache_attention<T, S>(q.data(), Hq * d, k16.data(), v16.data(), B, Hkv, cap, d, Hq, Tn, lengths.data(), {},
                               scale, got.data(), Hq * d);
    double worst_ratio = 0;
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < Tn; ++i)
        for (Index h = 0; h < Hq; ++h) {
          const Index kh = h / (Hq / Hkv), L = lengths[static_cast<std::size_t>(b)] - Tn + i + 1;
          double A = 0, vmax = 0;
          for (Index j = 0; j < L; ++j) {
            double a = 0;
            for (Index c = 0; c < d; ++c)
              a += std::abs(static_cast<double>(q(b, i, h, c))) * (u * std::abs(static_cast<double>(kc(b, kh, j, c))) + eta);
            A = std::max(A, scale * a);
            for (Index c = 0; c < d; ++c) vmax = std::max(vmax, std::abs(static_cast<double>(vc(b, kh, j, c))));
          }
          const double bound = (std::exp(2 * A) - 1) * (vmax * (1 + u) + eta) + u * vmax + eta + 1e-5 * vmax;
          for (Index c = 0; c < d; ++c) {
            const double err = std::abs(static_cast<double>(got(b, i, h, c)) - static_cast<double>(exact(b, i, h, c)));
            REQUIRE(err <= bound);
            worst_ratio = std::max(worst_ratio, err / bound);
          }
        }
    return worst_ratio;
  };
  const double r16 = run(Eigen::half(0.0f), std::ldexp(1.0, -11), std::ldexp(1.0, -25));
  const double rbf = run(Eigen::bfloat16(0.0f), std::ldexp(1.0, -8), 0.0);
  // the storage is really rounded (the bound is not vacuous: errors are a visible share of it)
  REQUIRE(r16 > 1e-3);
  REQUIRE(rbf > 1e-3);
}

TEST_CASE("kv_cache: layers on half-precision storage stay close to float storage", "[kv_cache]") {
  const attn::GroupedQueryAttention<float> layer({.d_model = 16, .n_head = 4, .n_kv_head = 2, .max_seq_len = 64}, 3);
  const auto prompt = random_tensor<float, 3>({2, 20, 16}, 1);
  const auto step = random_tensor<float, 3>({2, 1, 16}, 2);
  for (const KVStorage s : {KVStorage::float16, KVStorage::bfloat16}) {
    INFO(attn::kv_storage_name(s));
    KVCache<float> full = layer.make_cache(2, 32), half = layer.make_cache(2, 32, s);
    REQUIRE(half.bytes_per_token() * 2 == full.bytes_per_token());
    REQUIRE(half.bytes() == std::size_t(2 * 32) * half.bytes_per_token());
    const double tol = s == KVStorage::float16 ? 4e-3 : 3e-2;
    ATTN_REQUIRE_CLOSE(layer.forward(prompt, half), layer.forward(prompt, full), tol, tol);
    ATTN_REQUIRE_CLOSE(layer.forward(step, half), layer.forward(step, full), tol, tol);
  }
}

TEST_CASE("kv_cache: layout, memory per token, reset of one item", "[kv_cache]") {
  const attn::GroupedQueryAttention<double> gqa({.d_model = 16, .n_head = 4, .n_kv_head = 2, .max_seq_len = 64});
  KVCache<double> cache = gqa.make_cache(2, 10);
  REQUIRE(cache.heads() == 2);  // kv heads, not repeated per query head
  REQUIRE(cache.head_dim() == 4);
  REQUIRE(cache.streams() == 1);
  REQUIRE(cache.bytes_per_token() == 2 * 2 * 4 * sizeof(double));
  const attn::DifferentialMultiHeadAttention<float> diff({.dim = 8, .num_heads = 2, .head_dim = 3});
  REQUIRE(diff.make_cache(1, 4).bytes_per_token() == 2 * 2 * 2 * 3 * sizeof(float));
  // reset of item 0 leaves item 1's tokens: item 1's next step equals a run that never touched item 0
  const auto x = random_tensor<double, 3>({2, 3, 16}, 5);
  const auto next = random_tensor<double, 3>({2, 1, 16}, 6);
  (void)gqa.forward(x, cache);
  cache.reset(0);
  REQUIRE(cache.lengths()[0] == 0);
  REQUIRE(cache.lengths()[1] == 3);
  const auto y = gqa.forward(next, cache);
  KVCache<double> again = gqa.make_cache(2, 10);
  (void)gqa.forward(x, again, ActiveItems{false, true});
  const auto y2 = gqa.forward(next, again);
  for (Index c = 0; c < 16; ++c) {
    REQUIRE(y(1, 0, c) == Approx(y2(1, 0, c)).epsilon(1e-12));
    REQUIRE(y(0, 0, c) == Approx(y2(0, 0, c)).epsilon(1e-12));  // item 0 restarted at position 0
  }
  REQUIRE_THROWS_MATCHES(cache.reset(2), attn::ShapeError,
                         Catch::Message("group_query: KV cache reset of item 2, but the cache holds items 0 .. 1"));
  // truncate drops the last tokens of one item: the next step equals a run that never had them
  REQUIRE_THROWS_MATCHES(cache.truncate(1, 5), attn::ShapeError,
                         Catch::Message("group_query: KV cache truncate of item 1 to 5 tokens, but it holds 4"));
  const auto extra = random_tensor<double, 3>({2, 2, 16}, 7);
  (void)gqa.forward(extra, cache);
  cache.truncate(0, 1);
  cache.truncate(1, 4);
  const auto y3 = gqa.forward(next, cache);
  const auto y4 = gqa.forward(next, again);
  for (Index b = 0; b < 2; ++b)
    for (Index c = 0; c < 16; ++c) REQUIRE(y3(b, 0, c) == Approx(y4(b, 0, c)).epsilon(1e-12));
  cache.reset();
  REQUIRE(cache.lengths()[1] == 0);
}

TEST_CASE("kv_cache: errors name both sides and leave the cache unchanged", "[kv_cache]") {
  const attn::MultiHeadAttention<double> mha({.embed_dim = 8, .num_heads = 2}, 1);
  const attn::GroupedQueryAttention<double> gqa({.d_model = 8, .n_head = 2, .n_kv_head = 1, .max_seq_len = 6}, 2);
  KVCache<double> cache = mha.make_cache(2, 5);
  const auto x3 = random_tensor<double, 3>({2, 3, 8}, 3);
  const auto x1 = random_tensor<double, 3>({2, 1, 8}, 4);
  (void)mha.forward(x3, cache);
  // what the next step gives on an untouched copy
  KVCache<double> copy = cache;
  const auto want = mha.forward(x1, copy);
  const auto unchanged = [&] {
    REQUIRE(cache.lengths()[0] == 3);
    REQUIRE(cache.lengths()[1] == 3);
  };
  // overflow: 3 + 3 > 5
  REQUIRE_THROWS_MATCHES(mha.forward(x3, cache), attn::ShapeError,
                         Catch::Message("multi_head: KV cache overflow: item 0 holds 3 tokens, the step appends 3, "
                                        "the capacity is 5"));
  unchanged();
  // batch size
  REQUIRE_THROWS_MATCHES(mha.forward(random_tensor<double, 3>({3, 1, 8}, 5), cache), attn::ShapeError,
                         Catch::Message("multi_head: the input has batch size 3, the KV cache holds 2 items"));
  unchanged();
  // the active mask's size
  REQUIRE_THROWS_MATCHES(mha.forward(x1, cache, ActiveItems{true}), attn::ShapeError,
                         Catch::Message("multi_head: the active-item mask has 1 entries, the KV cache holds 2 items"));
  unchanged();
  // a cache of another layer: head count and dim, stream count
  REQUIRE_THROWS_MATCHES(gqa.forward(x1, cache), attn::ShapeError,
                         Catch::Message("group_query: the KV cache was made for multi_head (1 stream of 2 key/value "
                                        "heads of dim 4), this layer needs 1 stream of 1 key/value heads of dim 4"));
  const attn::DifferentialMultiHeadAttention<double> diff({.dim = 8, .num_heads = 2, .head_dim = 4});
  REQUIRE_THROWS_MATCHES(diff.forward(x1, cache), attn::ShapeError,
                         Catch::Message("differential: the KV cache was made for multi_head (1 stream of 2 key/value "
                                        "heads of dim 4), this layer needs 2 streams of 2 key/value heads of dim 4"));
  unchanged();
  // the input width
  REQUIRE_THROWS_AS(mha.forward(random_tensor<double, 3>({2, 1, 7}, 6), cache), attn::ShapeError);
  unchanged();
  // after every refusal the next step equals the untouched copy's
  ATTN_REQUIRE_CLOSE(mha.forward(x1, cache), want, 0.0, 0.0);
  // an inactive item never overflows; an active one does
  KVCache<double> small = mha.make_cache(2, 4);
  (void)mha.forward(x3, small, ActiveItems{true, false});
  REQUIRE_NOTHROW(mha.forward(x3, small, ActiveItems{false, true}));  // item 0 (3 tokens) is inactive
  REQUIRE_THROWS_MATCHES(mha.forward(x3, small, ActiveItems{false, true}), attn::ShapeError,
                         Catch::Message("multi_head: KV cache overflow: item 1 holds 3 tokens, the step appends 3, "
                                        "the capacity is 4"));
  // group_query: RoPE positions beyond max_seq_len (6)
  KVCache<double> g = gqa.make_cache(2, 10);
  (void)gqa.forward(random_tensor<double, 3>({2, 5, 8}, 7), g);
  REQUIRE_THROWS_MATCHES(gqa.forward(random_tensor<double, 3>({2, 2, 8}, 8), g), attn::ShapeError,
                         Catch::Message("group_query: positions [5, 7) of item 0 exceed max_seq_len (6)"));
  REQUIRE(g.lengths()[0] == 5);
  // construction
  REQUIRE_THROWS_AS(mha.make_cache(0, 4), attn::ConfigError);
  REQUIRE_THROWS_AS(mha.make_cache(1, 0), attn::ConfigError);
  REQUIRE_THROWS_AS(mha.make_cache(1, Index(1) << 40), attn::ConfigError);
}

TEST_CASE("group_query: a position offset shifts RoPE positions (outputs depend on relative positions only)",
          "[kv_cache][group_query]") {
  const attn::GroupedQueryAttention<double> layer({.d_model = 8, .n_head = 2, .n_kv_head = 1, .max_seq_len = 20},
                                                  4);
  const auto x = random_tensor<double, 3>({2, 6, 8}, 9);
  const auto base = layer.forward(x, {.causal = true});
  // q_i · k_j after full-width RoPE depends on i − j only: every offset gives the same output
  ATTN_REQUIRE_CLOSE(layer.forward(x, {.causal = true}, 14), base, 1e-11, 1e-12);
  // the offset selects the table rows: with rows 0 .. 8 of the stored tables overwritten, offset 9
  // still gives the same output while offset 0 does not
  attn::GroupedQueryAttention<double> tampered = layer;
  for (auto& w : tampered.parameters())
    if (w.name == "rope/cos_cached" || w.name == "rope/sin_cached")
      std::fill(w.data.begin(), w.data.begin() + 9 * w.shape[1], 0.5);
  ATTN_REQUIRE_CLOSE(tampered.forward(x, {.causal = true}, 9), base, 1e-11, 1e-12);
  REQUIRE(!compare(tampered.forward(x, {.causal = true}), base, 1e-6, 1e-6).ok);
  REQUIRE_THROWS_MATCHES(layer.forward(x, {}, 15), attn::ShapeError,
                         Catch::Message("group_query: positions [15, 21) exceed max_seq_len (20)"));
  REQUIRE_THROWS_AS(layer.forward(x, {}, -1), attn::ShapeError);
}
