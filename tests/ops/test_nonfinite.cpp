// Non-finite inputs in the attention core and every layer that calls it:
// - a NaN or Inf that a row can see makes that row non-finite (as PyTorch), never zeros;
// - a NaN or Inf behind a mask (boolean, causal, key padding) reaches no row: masked keys are excluded.
// Oracles: identities (a masked key's value cannot matter, so garbage there must give the same rows as
// zeros there; truncating the keys to the visible ones gives the same rows) and the plain reference path.
#include "support.hpp"

using namespace attn_test;

namespace {

template <class T>
constexpr T nan_v = std::numeric_limits<T>::quiet_NaN();
template <class T>
constexpr T inf_v = std::numeric_limits<T>::infinity();

template <class T, int R>
bool all_nan(const attn::Tensor<T, R>& t) {
  for (Index i = 0; i < t.size(); ++i)
    if (!std::isnan(t.data()[i])) return false;
  return t.size() > 0;
}

/// Rows [0, rows) of a [1, T, D] tensor are all finite.
template <class T>
bool rows_finite(const attn::Tensor<T, 3>& t, Index first, Index last) {
  for (Index i = first; i < last; ++i)
    for (Index c = 0; c < t.dimension(2); ++c)
      if (!std::isfinite(t(0, i, c))) return false;
  return true;
}
template <class T>
bool row_has_nonfinite(const attn::Tensor<T, 3>& t, Index i) {
  for (Index c = 0; c < t.dimension(2); ++c)
    if (!std::isfinite(t(0, i, c))) return true;
  return false;
}

}  // namespace

TEMPLATE_TEST_CASE("nonfinite: one NaN in a layer's input never gives zeros", "[nonfinite]", float, double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  // The smallest case: multi_head E = 8, H = 2, B = 1, T = 3, NaN at x[0, 1, 0]. Every row sees
  // key 1, whose K and V are NaN: PyTorch gives NaN everywhere.
  auto x = random_tensor<T, 3>({1, 3, 8}, 7);
  x(0, 1, 0) = nan_v<T>;
  SECTION("multi_head") {
    attn::MultiHeadAttention<T> layer({.embed_dim = 8, .num_heads = 2});
    REQUIRE(all_nan(layer.forward(x)));
    REQUIRE(all_nan(layer.forward_with_weights(x).weights));
  }
  SECTION("self_attention") {
    attn::SelfAttention<T> layer({.embed_dim = 8, .num_heads = 2});
    REQUIRE(all_nan(layer.forward(x)));
  }
  SECTION("group_query") {
    attn::GroupedQueryAttention<T> layer({.d_model = 8, .n_head = 2, .n_kv_head = 1});
    REQUIRE(all_nan(layer.forward(x)));
  }
  SECTION("cross_attention: NaN in the context reaches every query") {
    attn::CrossAttention<T> layer({.embed_dim = 8, .num_heads = 2, .output_projection = true});
    const auto q = random_tensor<T, 3>({1, 2, 8}, 8);
    REQUIRE(all_nan(layer.forward(q, x)));
  }
  SECTION("multi_head causal: NaN at position 1 reaches rows 1 and 2 only") {
    attn::MultiHeadAttention<T> layer({.embed_dim = 8, .num_heads = 2, .causal = true});
    const auto y = layer.forward(x);
    REQUIRE(rows_finite(y, 0, 1));
    REQUIRE(row_has_nonfinite(y, 1));
    REQUIRE(row_has_nonfinite(y, 2));
  }
}

TEMPLATE_TEST_CASE("nonfinite: NaN and Inf through the core, against the reference path", "[nonfinite]", float,
                   double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  // Long enough for several key blocks (256) and query blocks (128): the NaN sits in a later key block,
  // after the running max is finite, and in the first block of a causal row.
  const Index T_ = 300, S = 600, d = 4;
  const T scale = T(0.5);
  auto q = random_tensor<T, 3>({1, T_, d}, 1);
  auto k = random_tensor<T, 3>({1, S, d}, 2);
  auto v = random_tensor<T, 3>({1, S, d}, 3);
  const auto run = [&](const attn::ops::AttentionMask<T>& m, bool core) {
    attn::Tensor<T, 3> out(1, T_, d);
    const auto qv = attn::ops::heads_of<T>(q.data(), 1, T_, 1, d, d);
    const auto kv = attn::ops::heads_of<T>(k.data(), 1, S, 1, d, d);
    const auto vv = attn::ops::heads_of<T>(v.data(), 1, S, 1, d, d);
    const auto ov = attn::ops::heads_out<T>(out.data(), 1, T_, 1, d, d);
    if (core) attn::ops::attention_core(qv, kv, vv, ov, scale, m);
    else attn::ops::attention_reference(qv, kv, vv, ov, scale, m);
    return out;
  };
  SECTION("NaN in K at key 400: every row NaN (unmasked)") {
    k(0, 400, 2) = nan_v<T>;
    const auto y = run({}, true);
    REQUIRE(all_nan(y));
    REQUIRE(all_nan(run({}, false)));
  }
  SECTION("NaN in Q row 5: that row NaN, the others as without it") {
    const auto clean = run({}, true);
    q(0, 5, 0) = nan_v<T>;
    const auto y = run({}, true);
    for (Index i = 0; i < T_; ++i) {
      if (i == 5) {
        REQUIRE(row_has_nonfinite(y, i));
        continue;
      }
      for (Index c = 0; c < d; ++c) REQUIRE(y(0, i, c) == clean(0, i, c));
    }
  }
  SECTION("+Inf in V at key 10: every row non-finite in that feature") {
    v(0, 10, 1) = inf_v<T>;
    const auto y = run({}, true);
    for (Index i = 0; i < T_; ++i) REQUIRE(!std::isfinite(y(0, i, 1)));
  }
  SECTION("causal, NaN in K at key 350: rows that see it are NaN, the rows before are clean") {
    attn::ops::AttentionMask<T> m;
    m.causal = true;
    const auto clean = run(m, true);
    k(0, 350, 0) = nan_v<T>;
    v(0, 350, 0) = nan_v<T>;
    const auto y = run(m, true);
    const auto ref = run(m, false);
    const Index first_seeing = 350 - (S - T_);  // query i sees key j iff j <= i + S - T
    for (Index i = 0; i < T_; ++i) {
      INFO("row " << i);
      if (i >= first_seeing) {
        REQUIRE(row_has_nonfinite(y, i));
        REQUIRE(row_has_nonfinite(ref, i));
      } else {  // the diagonal block now takes the excluding product: equal up to rounding
        for (Index c = 0; c < d; ++c) REQUIRE(y(0, i, c) == Approx(clean(0, i, c)).epsilon(1e-5).margin(1e-6));
      }
    }
  }
}

TEMPLATE_TEST_CASE("nonfinite: garbage behind a mask reaches no row", "[nonfinite]", float, double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  const int which = GENERATE(0, 1, 2);
  const T garbage = which == 0 ? nan_v<T> : which == 1 ? inf_v<T> : -inf_v<T>;
  INFO("garbage " << garbage);
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;

  SECTION("the issue's case: sdpa, q [1, 3, 2], k and v [1, 4, 2], a mask dropping key 3") {
    auto q = random_tensor<T, 3>({1, 3, 2}, 1);
    auto k = random_tensor<T, 3>({1, 4, 2}, 2);
    auto v = random_tensor<T, 3>({1, 4, 2}, 3);
    attn::Tensor<bool, 2> keep(1, 4);  // [T, S] broadcast over the queries
    keep.setValues({{true, true, true, false}});
    v(0, 3, 0) = v(0, 3, 1) = garbage;
    k(0, 3, 0) = garbage;
    attn::SdpaOptions<T> opt;
    opt.attn_mask = attn::AttnMask(keep);
    const auto r = attn::scaled_dot_product_attention(q, k, v, opt);
    // Oracle: the same attention over keys 0..2 only.
    attn::Tensor<T, 3> k3 = k.slice(std::array<Index, 3>{0, 0, 0}, std::array<Index, 3>{1, 3, 2});
    attn::Tensor<T, 3> v3 = v.slice(std::array<Index, 3>{0, 0, 0}, std::array<Index, 3>{1, 3, 2});
    const auto r3 = attn::scaled_dot_product_attention(q, k3, v3);
    ATTN_REQUIRE_CLOSE(r.output, r3.output, tol, tol);
    for (Index i = 0; i < 3; ++i) REQUIRE(r.weights(0, i, 3) == T(0));
  }
  SECTION("the issue's causal case: T = S = 4, garbage in v at key 3 poisons row 3 only") {
    auto q = random_tensor<T, 3>({1, 4, 2}, 4);
    auto k = random_tensor<T, 3>({1, 4, 2}, 5);
    auto v = random_tensor<T, 3>({1, 4, 2}, 6);
    attn::SdpaOptions<T> opt;
    opt.causal = true;
    const auto clean = attn::scaled_dot_product_attention(q, k, v, opt);
    v(0, 3, 0) = garbage;
    const auto r = attn::scaled_dot_product_attention(q, k, v, opt);
    for (Index i = 0; i < 3; ++i)
      for (Index c = 0; c < 2; ++c) REQUIRE(r.output(0, i, c) == Approx(clean.output(0, i, c)).epsilon(tol));
    REQUIRE(!std::isfinite(r.output(0, 3, 0)));
  }
  SECTION("key lengths") {
    auto q = random_tensor<T, 3>({2, 3, 2}, 7);
    auto k = random_tensor<T, 3>({2, 4, 2}, 8);
    auto v = random_tensor<T, 3>({2, 4, 2}, 9);
    const std::array<Index, 2> lengths{2, 3};
    attn::SdpaOptions<T> opt;
    opt.key_lengths = std::span<const Index>(lengths);
    const auto clean = attn::scaled_dot_product_attention(q, k, v, opt);
    v(0, 2, 1) = v(0, 3, 0) = v(1, 3, 1) = garbage;
    k(0, 3, 0) = garbage;
    const auto r = attn::scaled_dot_product_attention(q, k, v, opt);
    ATTN_REQUIRE_CLOSE(r.output, clean.output, tol, tol);
  }
  SECTION("several blocks: a [B, T, S] mask dropping scattered keys, garbage at every dropped key") {
    const Index T_ = 140, S = 530, d = 3;
    auto q = random_tensor<T, 3>({1, T_, d}, 10);
    auto k = random_tensor<T, 3>({1, S, d}, 11);
    auto v = random_tensor<T, 3>({1, S, d}, 12);
    attn::Tensor<bool, 3> keep(1, T_, S);
    for (Index i = 0; i < T_; ++i)
      for (Index j = 0; j < S; ++j) keep(0, i, j) = (i * 7 + j * 3) % 5 != 0;
    attn::SdpaOptions<T> opt;
    opt.attn_mask = attn::AttnMask(keep);
    const auto clean = attn::scaled_dot_product_attention(q, k, v, opt);
    // Garbage in the value of key 5, which row i sees iff (7i + 15) % 5 != 0, i.e. iff i % 5 != 0.
    const Index j_bad = 5;  // (0·7 + 5·3) % 5 == 0: row 0 does not see key 5
    v(0, j_bad, 0) = garbage;
    const auto r = attn::scaled_dot_product_attention(q, k, v, opt);
    for (Index i = 0; i < T_; ++i) {
      INFO("row " << i);
      if (keep(0, i, j_bad)) {
        REQUIRE(!std::isfinite(r.output(0, i, 0)));
      } else {
        for (Index c = 0; c < d; ++c) REQUIRE(r.output(0, i, c) == Approx(clean.output(0, i, c)).epsilon(tol).margin(tol));
      }
    }
  }
}

TEMPLATE_TEST_CASE("nonfinite: layers with padding masks ignore garbage in padded positions", "[nonfinite]", float,
                   double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  const T garbage = GENERATE(0, 1) == 0 ? nan_v<T> : inf_v<T>;
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  // B = 2, T = 5; item 0 has 3 real tokens, item 1 has 5. Padded positions hold garbage.
  auto x = random_tensor<T, 3>({2, 5, 8}, 21);
  attn::Tensor<bool, 2> pad(2, 5);
  for (Index j = 0; j < 5; ++j) {
    pad(0, j) = j < 3;
    pad(1, j) = true;
  }
  attn::AttentionMasks<T> masks;
  masks.key_padding = attn::KeyPaddingMask(pad);
  auto dirty = x;
  for (Index j = 3; j < 5; ++j)
    for (Index c = 0; c < 8; ++c) dirty(0, j, c) = garbage;
  const auto check = [&](const attn::Tensor<T, 3>& clean, const attn::Tensor<T, 3>& y) {
    for (Index i = 0; i < 3; ++i)
      for (Index c = 0; c < clean.dimension(2); ++c)
        REQUIRE(y(0, i, c) == Approx(clean(0, i, c)).epsilon(tol).margin(tol));
    for (Index i = 0; i < 5; ++i)
      for (Index c = 0; c < clean.dimension(2); ++c) REQUIRE(y(1, i, c) == clean(1, i, c));
  };
  SECTION("self_attention") {
    attn::SelfAttention<T> layer({.embed_dim = 8, .num_heads = 2});
    check(layer.forward(x, masks), layer.forward(dirty, masks));
  }
  SECTION("multi_head") {
    attn::MultiHeadAttention<T> layer({.embed_dim = 8, .num_heads = 2});
    check(layer.forward(x, masks), layer.forward(dirty, masks));
  }
  SECTION("group_query") {
    attn::GroupedQueryAttention<T> layer({.d_model = 8, .n_head = 2, .n_kv_head = 1});
    check(layer.forward(x, masks), layer.forward(dirty, masks));
  }
}
