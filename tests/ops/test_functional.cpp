// dot_product_attention and scaled_dot_product_attention: hand-computed cases, a loop oracle over
// GQA / masks / bias / causal with T != S, identities, and shape errors.
#include "support.hpp"

using namespace attn_test;

namespace {
const auto& oracle = naive_attention;
}  // namespace

TEST_CASE("functional: hand-computed dot-product attention", "[functional]") {
  attn::Tensor<double, 3> q(1, 1, 2), k(1, 2, 2), v(1, 2, 2);
  q.setValues({{{1, 0}}});
  k.setValues({{{1, 0}, {0, 1}}});
  v.setValues({{{1, 2}, {3, 4}}});
  const auto r = attn::dot_product_attention(q, k, v);
  const double e = std::exp(1.0);
  const double p = e / (e + 1);
  REQUIRE(r.weights(0, 0, 0) == Approx(p).epsilon(1e-14));
  REQUIRE(r.weights(0, 0, 1) == Approx(1 - p).epsilon(1e-14));
  REQUIRE(r.output(0, 0, 0) == Approx(p * 1 + (1 - p) * 3).epsilon(1e-14));
  REQUIRE(r.output(0, 0, 1) == Approx(p * 2 + (1 - p) * 4).epsilon(1e-14));
  // scaled by 1/sqrt(2): logits [1/sqrt 2, 0]
  const auto s = attn::scaled_dot_product_attention(q, k, v);
  const double a = std::exp(1.0 / std::sqrt(2.0));
  REQUIRE(s.weights(0, 0, 0) == Approx(a / (a + 1)).epsilon(1e-14));
}

TEST_CASE("functional: scaled equals dot-product on pre-scaled queries", "[functional]") {
  const auto q = random_tensor<double, 4>({2, 3, 4, 5}, 1);
  const auto k = random_tensor<double, 4>({2, 3, 6, 5}, 2);
  const auto v = random_tensor<double, 4>({2, 3, 6, 7}, 3);
  attn::Tensor<double, 4> qs = q * (1.0 / std::sqrt(5.0));
  ATTN_REQUIRE_CLOSE(attn::scaled_dot_product_attention(q, k, v).output,
                     attn::dot_product_attention(qs, k, v).output, 1e-13, 1e-14);
}

TEST_CASE("functional: GQA, masks, bias, causal and key lengths against loops", "[functional]") {
  const Index B = 2, H = 4, Hkv = 2, d = 3, dv = 5;
  for (auto ts : {std::pair<Index, Index>{4, 6}, {6, 4}, {5, 5}}) {
    const Index T = ts.first, S = ts.second;  // plain locals: lambdas capture them
    const auto q = random_tensor<double, 4>({B, H, T, d}, 10 + T);
    const auto k = random_tensor<double, 4>({B, Hkv, S, d}, 20 + S);
    const auto v = random_tensor<double, 4>({B, Hkv, S, dv}, 30);
    const double scale = 1 / std::sqrt(double(d));
    SECTION("no mask") {
      auto r = attn::scaled_dot_product_attention(q, k, v);
      auto [o, w] = oracle(q, k, v, scale, nullptr, nullptr);
      ATTN_REQUIRE_CLOSE(r.output, o, 1e-12, 1e-13);
      ATTN_REQUIRE_CLOSE(r.weights, w, 1e-12, 1e-13);
    }
    SECTION("causal, bottom-right aligned") {
      attn::SdpaOptions<double> opt;
      opt.causal = true;
      auto r = attn::scaled_dot_product_attention(q, k, v, opt);
      auto [o, w] = oracle(q, k, v, scale, [&](Index, Index, Index i, Index j) { return j <= i + S - T; }, nullptr);
      ATTN_REQUIRE_CLOSE(r.output, o, 1e-12, 1e-13);
      ATTN_REQUIRE_CLOSE(r.weights, w, 1e-12, 1e-13);
      if (T > S) {  // the first T - S query rows see no key: zeros
        for (Index c = 0; c < dv; ++c) REQUIRE(r.output(0, 0, 0, c) == 0.0);
      }
    }
    SECTION("boolean masks broadcast from [T, S], [B, 1, T, S] and [1, H, T, S]") {
      attn::Tensor<bool, 2> m2(T, S);
      attn::Tensor<bool, 4> m4(B, 1, T, S);
      attn::Tensor<bool, 4> m3(1, H, T, S);
      attn::Rng rng(5);
      for (Index i = 0; i < m2.size(); ++i) m2.data()[i] = rng.uniform() < 0.7;
      for (Index i = 0; i < m4.size(); ++i) m4.data()[i] = rng.uniform() < 0.7;
      for (Index i = 0; i < m3.size(); ++i) m3.data()[i] = rng.uniform() < 0.7;
      attn::SdpaOptions<double> o2, o4, o3;
      o2.attn_mask = attn::AttnMask(m2);
      o4.attn_mask = attn::AttnMask(m4);
      o3.attn_mask = attn::AttnMask(m3);
      auto [a, wa] = oracle(q, k, v, scale, [&](Index, Index, Index i, Index j) { return m2(i, j); }, nullptr);
      ATTN_REQUIRE_CLOSE(attn::scaled_dot_product_attention(q, k, v, o2).output, a, 1e-12, 1e-13);
      auto [b, wb] = oracle(q, k, v, scale, [&](Index bb, Index, Index i, Index j) { return m4(bb, 0, i, j); }, nullptr);
      ATTN_REQUIRE_CLOSE(attn::scaled_dot_product_attention(q, k, v, o4).output, b, 1e-12, 1e-13);
      auto [c, wc] = oracle(q, k, v, scale, [&](Index, Index h, Index i, Index j) { return m3(0, h, i, j); }, nullptr);
      ATTN_REQUIRE_CLOSE(attn::scaled_dot_product_attention(q, k, v, o3).weights, wc, 1e-12, 1e-13);
    }
    SECTION("additive bias [1, H, T, S] and [B, H, T, S], key lengths, explicit scale") {
      const auto bias3 = random_tensor<double, 4>({1, H, T, S}, 40, 3.0);
      const auto bias4 = random_tensor<double, 4>({B, H, T, S}, 41, 3.0);
      const std::vector<Index> lens{S - 1, 2};
      attn::SdpaOptions<double> o;
      o.bias = bias3;
      o.key_lengths = lens;
      o.scale = 0.3;
      auto [a, wa] = oracle(q, k, v, 0.3, [&](Index bb, Index, Index, Index j) { return j < lens[std::size_t(bb)]; },
                            [&](Index, Index h, Index i, Index j) { return bias3(0, h, i, j); });
      ATTN_REQUIRE_CLOSE(attn::scaled_dot_product_attention(q, k, v, o).output, a, 1e-12, 1e-13);
      attn::SdpaOptions<double> o4;
      o4.bias = bias4;
      auto [b, wb] = oracle(q, k, v, scale, nullptr, [&](Index bb, Index h, Index i, Index j) { return bias4(bb, h, i, j); });
      ATTN_REQUIRE_CLOSE(attn::scaled_dot_product_attention(q, k, v, o4).weights, wb, 1e-12, 1e-13);
    }
  }
}

TEST_CASE("functional: fully masked rows give zeros, huge logits stay finite", "[functional]") {
  const auto q = random_tensor<double, 3>({1, 3, 4}, 1, 1e4);
  const auto k = random_tensor<double, 3>({1, 5, 4}, 2, 1e4);
  const auto v = random_tensor<double, 3>({1, 5, 2}, 3);
  attn::Tensor<bool, 3> m(1, 3, 5);
  m.setConstant(true);
  for (Index j = 0; j < 5; ++j) m(0, 1, j) = false;
  attn::SdpaOptions<double> o;
  o.attn_mask = attn::AttnMask(m);
  const auto r = attn::scaled_dot_product_attention(q, k, v, o);
  REQUIRE(all_finite(r.output.data(), r.output.size()));
  REQUIRE(all_finite(r.weights.data(), r.weights.size()));
  for (Index c = 0; c < 2; ++c) REQUIRE(r.output(0, 1, c) == 0.0);
  for (Index j = 0; j < 5; ++j) REQUIRE(r.weights(0, 1, j) == 0.0);
  double s = 0;
  for (Index j = 0; j < 5; ++j) s += r.weights(0, 0, j);
  REQUIRE(s == Approx(1.0).epsilon(1e-12));
  // float agrees with double
  attn::Tensor<float, 3> qf = q.cast<float>(), kf = k.cast<float>(), vf = v.cast<float>();
  attn::SdpaOptions<float> of;
  of.attn_mask = attn::AttnMask(m);
  const auto rf = attn::scaled_dot_product_attention(qf, kf, vf, of);
  REQUIRE(all_finite(rf.output.data(), rf.output.size()));
}

TEST_CASE("functional: shape errors name the function, the argument and both shapes", "[functional]") {
  const auto q = random_tensor<double, 4>({1, 4, 3, 8}, 1);
  const auto k = random_tensor<double, 4>({1, 3, 5, 8}, 2);
  const auto v = random_tensor<double, 4>({1, 3, 5, 8}, 3);
  REQUIRE_THROWS_WITH(attn::scaled_dot_product_attention(q, k, v),
                      "scaled_dot_product_attention: query heads (4) must be a multiple of key/value heads (3)");
  const auto k2 = random_tensor<double, 4>({1, 2, 5, 7}, 2);
  REQUIRE_THROWS_WITH(attn::scaled_dot_product_attention(q, k2, v),
                      "scaled_dot_product_attention: key must have shape [1, *, *, 8] ([B, Hkv, S, d] with q's B "
                      "and d), got [1, 2, 5, 7]");
  const auto k3 = random_tensor<double, 4>({1, 2, 5, 8}, 2);
  REQUIRE_THROWS_AS(attn::scaled_dot_product_attention(q, k3, v), attn::ShapeError);
  const auto v3 = random_tensor<double, 4>({1, 2, 5, 8}, 3);
  attn::Tensor<bool, 2> bad(3, 4);
  bad.setConstant(true);
  attn::SdpaOptions<double> o;
  o.attn_mask = attn::AttnMask(bad);
  REQUIRE_THROWS_WITH(attn::scaled_dot_product_attention(q, k3, v3, o),
                      "scaled_dot_product_attention: attn_mask of shape [3, 4] does not broadcast to [1, 4, 3, 5] (the "
                      "key axis must equal S)");
  attn::Tensor<bool, 2> bad2(2, 5);
  bad2.setConstant(true);
  o.attn_mask = attn::AttnMask(bad2);
  REQUIRE_THROWS_WITH(attn::scaled_dot_product_attention(q, k3, v3, o),
                      "scaled_dot_product_attention: attn_mask of shape [2, 5] does not broadcast to [1, 4, 3, 5] (an "
                      "extent is neither 1 nor equal)");
  const std::vector<Index> lens{1, 2};
  attn::SdpaOptions<double> ol;
  ol.key_lengths = lens;
  REQUIRE_THROWS_WITH(attn::scaled_dot_product_attention(q, k3, v3, ol),
                      "scaled_dot_product_attention: key_lengths must have 1 entries (one per batch item), got 2");
}

TEST_CASE("functional: the mask kinds of the layers, ambiguous shapes refused, null masks refused",
          "[functional][masks]") {
  const Index B = 2, H = 3, T = 4, S = 5, d = 3;
  const auto q = random_tensor<double, 4>({B, H, T, d}, 1);
  const auto k = random_tensor<double, 4>({B, H, S, d}, 2);
  const auto v = random_tensor<double, 4>({B, H, S, d}, 3);
  const double scale = 1 / std::sqrt(double(d));
  // key padding [B, S] and an attention mask [T, S] together: both apply
  attn::Tensor<bool, 2> pad(B, S), m2(T, S);
  pad.setConstant(true);
  pad(1, 4) = pad(1, 2) = false;
  for (Index i = 0; i < T; ++i)
    for (Index j = 0; j < S; ++j) m2(i, j) = (i * j) % 3 != 1;
  attn::SdpaOptions<double> o;
  o.key_padding = attn::KeyPaddingMask(pad);
  o.attn_mask = attn::AttnMask(m2);
  const auto r = attn::scaled_dot_product_attention(q, k, v, o);
  const auto [want, ww] =
      oracle(q, k, v, scale, [&](Index b, Index, Index i, Index j) { return pad(b, j) && m2(i, j); }, nullptr);
  ATTN_REQUIRE_CLOSE(r.output, want, 1e-12, 1e-13);
  ATTN_REQUIRE_CLOSE(r.weights, ww, 1e-12, 1e-13);
  // dot_product_attention takes the same masks (unscaled)
  attn::AttentionMasks<double> m;
  m.key_padding = attn::KeyPaddingMask(pad);
  const auto [u, uw] = oracle(q, k, v, 1.0, [&](Index b, Index, Index, Index j) { return pad(b, j); }, nullptr);
  ATTN_REQUIRE_CLOSE(attn::dot_product_attention(q, k, v, m).output, u, 1e-12, 1e-13);

  // rank 3 on rank-4 inputs could mean [B, T, S] or [H, T, S]: refused, whichever extents it has
  attn::Tensor<bool, 3> m3(B, T, S);
  m3.setConstant(true);
  attn::SdpaOptions<double> a;
  a.attn_mask = attn::AttnMask(m3);
  REQUIRE_THROWS_WITH(attn::scaled_dot_product_attention(q, k, v, a),
                      "scaled_dot_product_attention: attn_mask must have rank 2 [T, S], or 4 [B, 1|H, T, S], got "
                      "rank 3 with shape [2, 4, 5] (rank 3 is ambiguous for rank-4 inputs: [B, T, S] or [H, T, S]; "
                      "pass rank 4)");
  const auto bias3 = random_tensor<double, 3>({H, T, S}, 4);
  attn::SdpaOptions<double> ab;
  ab.bias = bias3;
  REQUIRE_THROWS_AS(attn::scaled_dot_product_attention(q, k, v, ab), attn::ShapeError);
  // rank 1 is no kind of attention mask
  attn::Tensor<bool, 1> m1(S);
  m1.setConstant(true);
  attn::SdpaOptions<double> a1;
  a1.attn_mask = attn::AttnMask(m1);
  REQUIRE_THROWS_AS(attn::scaled_dot_product_attention(q, k, v, a1), attn::ShapeError);
  // on rank-3 inputs a rank-3 mask is [B, T, S]
  const auto q3 = random_tensor<double, 3>({B, T, d}, 5);
  const auto k3 = random_tensor<double, 3>({B, S, d}, 6);
  const auto v3 = random_tensor<double, 3>({B, S, d}, 7);
  for (Index i = 0; i < m3.size(); ++i) m3.data()[i] = (i % 4) != 1;
  attn::SdpaOptions<double> r3;
  r3.attn_mask = attn::AttnMask(m3);
  const std::array<Index, 4> one_head_q{B, 1, T, d}, one_head_k{B, 1, S, d};
  const attn::Tensor<double, 4> q4 = q3.reshape(one_head_q), k4 = k3.reshape(one_head_k), v4 = v3.reshape(one_head_k);
  const auto [o3, w3] = oracle(q4, k4, v4, scale, [&](Index b, Index, Index i, Index j) { return m3(b, i, j); }, nullptr);
  const attn::Tensor<double, 4> got3 = attn::scaled_dot_product_attention(q3, k3, v3, r3).output.reshape(one_head_q);
  ATTN_REQUIRE_CLOSE(got3, o3, 1e-12, 1e-13);

  // a mask given with null data is a ShapeError, never "no mask"; a default one is no mask
  attn::SdpaOptions<double> n1;
  n1.attn_mask = attn::AttnMask(nullptr, Shape{T, S});
  REQUIRE_THROWS_WITH(attn::scaled_dot_product_attention(q, k, v, n1),
                      "scaled_dot_product_attention: attn_mask of shape [4, 5] was given with null data; pass a "
                      "default-constructed mask for no mask");
  attn::SdpaOptions<double> n2;
  n2.key_padding = attn::KeyPaddingMask(attn::BoolMask(nullptr, Shape{B, S}));
  REQUIRE_THROWS_AS(attn::scaled_dot_product_attention(q, k, v, n2), attn::ShapeError);
  attn::SdpaOptions<double> n3;
  n3.bias = attn::AttnBias<double>(nullptr, Shape{T, S});
  REQUIRE_THROWS_AS(attn::scaled_dot_product_attention(q, k, v, n3), attn::ShapeError);
  attn::SdpaOptions<double> n4;  // a default-constructed tensor as a mask: shape [0, 0], not [T, S]
  const attn::Tensor<bool, 2> empty;
  n4.attn_mask = attn::AttnMask(empty);
  REQUIRE_THROWS_AS(attn::scaled_dot_product_attention(q, k, v, n4), attn::ShapeError);
  attn::SdpaOptions<double> n5;  // given key lengths with no entries
  n5.key_lengths = std::vector<Index>{};
  REQUIRE_THROWS_WITH(attn::scaled_dot_product_attention(q, k, v, n5),
                      "scaled_dot_product_attention: key_lengths must have 2 entries (one per batch item), got 0");
  attn::SdpaOptions<double> none;
  ATTN_REQUIRE_CLOSE(attn::scaled_dot_product_attention(q, k, v, none).output,
                     attn::scaled_dot_product_attention(q, k, v).output, 0.0, 0.0);
}
