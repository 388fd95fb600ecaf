// shared_weights_cross: an independent loop implementation of both split forms, the spec's
// permutation test, four-way with no query tokens equals two-way, messages, shape errors, threads,
// large logits and golden data from PyTorch operators.
#include <attn/layers/shared_weights_cross.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::SharedWeightsCrossAttention<double>;

namespace {

/// Heads [B, H, len, d] of block `blk` (0 Q, 1 K, 2 V) of the fused projection, tokens [t0, t0 + len).
attn::Tensor<double, 4> block(const attn::Tensor<double, 3>& qkv, int blk, Index t0, Index len, Index H) {
  const Index B = qkv.dimension(0), E = qkv.dimension(2) / 3, d = E / H;
  attn::Tensor<double, 4> out(B, H, len, d);
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index t = 0; t < len; ++t)
        for (Index c = 0; c < d; ++c) out(b, h, t, c) = qkv(b, t0 + t, blk * E + h * d + c);
  return out;
}

attn::Tensor<double, 3> oracle(const L& l, const attn::Tensor<double, 3>& x, std::vector<int> s) {
  const auto& w = l.parameters();
  const bool bias = l.config().use_bias;
  const Index H = l.config().num_heads, E = l.config().dim, N = x.dimension(1), d = E / H;
  const auto qkv = naive_dense(x, w[0], bias ? &w[1] : nullptr);
  Index na = s[0], ka0 = 0, nka = s[0], kb0 = s[0], nkb = s[1];
  if (s.size() == 4) {
    na = s[0] + s[1];
    nka = s[0];
    kb0 = na;
    nkb = s[2];
  }
  const double scale = 1.0 / std::sqrt(double(d));
  const auto oa = naive_attention(block(qkv, 0, 0, na, H), block(qkv, 1, kb0, nkb, H), block(qkv, 2, kb0, nkb, H), scale).first;
  const auto ob = naive_attention(block(qkv, 0, na, N - na, H), block(qkv, 1, ka0, nka, H), block(qkv, 2, ka0, nka, H), scale).first;
  attn::Tensor<double, 4> o = oa.concatenate(ob, 2);
  return naive_dense(merge_heads(o), w[bias ? 2 : 1], bias ? &w[3] : nullptr);
}

void randomize_biases(L& l) {
  std::uint64_t seed = 17;
  for (auto& w : l.parameters())
    if (w.shape.size() == 1) {
      const auto r = random_tensor<double, 1>({w.size()}, seed++, 0.3);
      std::copy(r.data(), r.data() + r.size(), w.data.begin());
    }
}

}  // namespace

TEST_CASE("shared_weights_cross: weights have the reference's names, shapes and order", "[shared_weights_cross]") {
  const L biased({.dim = 8, .num_heads = 2});
  std::vector<std::string> names;
  for (const auto& w : biased.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"qkv/kernel", "qkv/bias", "proj/kernel", "proj/bias"});
  REQUIRE(biased.parameters()[0].shape == Shape{8, 24});
  REQUIRE(biased.parameters()[1].shape == Shape{24});
  REQUIRE(biased.parameters()[2].shape == Shape{8, 8});
  // glorot_uniform: |w| <= sqrt(6 / (fan_in + fan_out))
  for (double v : biased.parameters()[0].data) REQUIRE(std::abs(v) <= std::sqrt(6.0 / 32.0));
  const L plain({.dim = 8, .num_heads = 2, .use_bias = false});
  REQUIRE(plain.parameters().size() == 2);
  REQUIRE(plain.parameters()[1].name == "proj/kernel");
}

TEST_CASE("shared_weights_cross: validation messages and order", "[shared_weights_cross]") {
  const auto msg = [](attn::Json p) {
    const auto problems = attn::check_attention_config("shared_weights_cross", p);
    return problems.empty() ? std::string() : problems.front().message;
  };
  REQUIRE(msg({{"dim", 8}}).empty());
  REQUIRE(msg({{"dim", 0}}) == "Parameter 'dim' must be positive, got 0");
  REQUIRE(msg({{"dim", 8}, {"num_heads", 0}}) == "Parameter 'num_heads' must be positive, got 0");
  REQUIRE(msg({{"dim", 10}, {"num_heads", 4}}) == "dim (10) must be divisible by num_heads (4)");
  REQUIRE(msg({{"dim", 8}, {"dropout_rate", 1.5}}) == "Parameter 'dropout_rate' must be between 0.0 and 1.0, got 1.5");
  REQUIRE_THAT(msg({{"dim", 8}, {"num_head", 2}}),
               Catch::StartsWith("Unknown parameter 'num_head' for 'shared_weights_cross'. Did you mean 'num_heads'?"));
  REQUIRE(msg({{"dim", 8}, {"split_sizes", {1, 2, 3}}}) == "split_sizes must have length 2 or 4");
  REQUIRE_THAT(msg({{"dim", 8}, {"split_sizes", {0, 3}}}), Catch::StartsWith("split_sizes[0] must be positive"));
  REQUIRE(msg({{"dim", 8}, {"split_sizes", {2, 0, 3, 0}}}).empty());
  REQUIRE(msg({{"dim", 8}, {"kernel_regularizer", "l2"}, {"bias_regularizer", nullptr}}).empty());
}

TEST_CASE("shared_weights_cross: equals an independent loop implementation", "[shared_weights_cross]") {
  for (bool bias : {true, false}) {
    L l({.dim = 12, .num_heads = 3, .use_bias = bias}, 5);
    randomize_biases(l);
    const auto x = random_tensor<double, 3>({2, 9, 12}, 4);
    for (const std::vector<int>& s : std::vector<std::vector<int>>{{4, 5}, {1, 8}, {4, 4, 1}, {2, 1, 3, 3}, {1, 3, 4, 1}}) {
      if (s.size() == 3) continue;
      INFO("splits " << s.size() << " first " << s[0] << " bias " << bias);
      ATTN_REQUIRE_CLOSE(l.forward(x, s), oracle(l, x, s), 1e-12, 1e-12);
    }
    // the config's split sizes, and two equal halves by default
    L halves({.dim = 12, .num_heads = 3, .use_bias = bias}, 5);
    halves.parameters() = l.parameters();
    const auto x8 = random_tensor<double, 3>({1, 8, 12}, 6);
    ATTN_REQUIRE_CLOSE(halves.forward(x8), oracle(l, x8, {4, 4}), 1e-12, 1e-12);
    L fixed({.dim = 12, .num_heads = 3, .use_bias = bias, .split_sizes = {3, 5}}, 5);
    fixed.parameters() = l.parameters();
    ATTN_REQUIRE_CLOSE(fixed.forward(x8), oracle(l, x8, {3, 5}), 1e-12, 1e-12);
  }
}

TEST_CASE("shared_weights_cross: hand-computed case", "[shared_weights_cross]") {
  // dim 1, one head, identity Q, K, V and projection: with one token per modality each token's output
  // is the other token (softmax over a single key is 1).
  L l({.dim = 1, .num_heads = 1, .use_bias = false});
  l.parameters()[0].data = {1, 1, 1};
  l.parameters()[1].data = {1};
  attn::Tensor<double, 3> x(1, 2, 1);
  x.setValues({{{2.0}, {-3.0}}});
  const auto y = l.forward(x, std::vector<int>{1, 1});
  REQUIRE(y(0, 0, 0) == -3.0);
  REQUIRE(y(0, 1, 0) == 2.0);
  // three tokens [a | b, c]: token a sees b and c with weights softmax(a·[b, c])
  attn::Tensor<double, 3> x3(1, 3, 1);
  x3.setValues({{{1.0}, {0.0}, {2.0}}});
  const auto y3 = l.forward(x3, std::vector<int>{1, 2});
  const double p = std::exp(2.0) / (1.0 + std::exp(2.0));
  REQUIRE(y3(0, 0, 0) == Approx(2.0 * p).epsilon(1e-14));
  REQUIRE(y3(0, 1, 0) == 1.0);
  REQUIRE(y3(0, 2, 0) == 1.0);
}

TEST_CASE("shared_weights_cross: permuting modality B permutes its rows and leaves A's unchanged",
          "[shared_weights_cross]") {
  L l({.dim = 8, .num_heads = 2}, 3);
  randomize_biases(l);
  const auto x = random_tensor<double, 3>({2, 7, 8}, 2);
  const std::vector<int> s{3, 4};
  const std::vector<Index> perm{3, 0, 2, 1};  // new B token i is old B token perm[i]
  attn::Tensor<double, 3> xp = x;
  for (Index b = 0; b < 2; ++b)
    for (Index i = 0; i < 4; ++i)
      for (Index f = 0; f < 8; ++f) xp(b, 3 + i, f) = x(b, 3 + perm[static_cast<std::size_t>(i)], f);
  const auto y = l.forward(x, s), yp = l.forward(xp, s);
  for (Index b = 0; b < 2; ++b)
    for (Index f = 0; f < 8; ++f) {
      for (Index t = 0; t < 3; ++t) REQUIRE(yp(b, t, f) == Approx(y(b, t, f)).margin(1e-13));
      for (Index i = 0; i < 4; ++i)
        REQUIRE(yp(b, 3 + i, f) == Approx(y(b, 3 + perm[static_cast<std::size_t>(i)], f)).margin(1e-13));
    }
  // four-way with no query tokens equals two-way
  ATTN_REQUIRE_CLOSE(l.forward(x, std::vector<int>{3, 0, 4, 0}), y, 1e-14, 1e-14);
}

TEST_CASE("shared_weights_cross: bad shapes and splits give ShapeErrors naming the layer", "[shared_weights_cross]") {
  const L l({.dim = 8, .num_heads = 2});
  const auto x = random_tensor<double, 3>({2, 6, 8}, 1);
  REQUIRE_THROWS_WITH(l.forward(x, std::vector<int>{2, 3}),
                      "shared_weights_cross: Sum of split_sizes (5) must equal total sequence length (6)");
  REQUIRE_THROWS_WITH(l.forward(x, std::vector<int>{6}), "shared_weights_cross: split_sizes must have length 2 or 4, got 1");
  REQUIRE_THROWS_WITH(l.forward(x, std::vector<int>{0, 6}),
                      Catch::StartsWith("shared_weights_cross: split_sizes[0] must be positive, got 0"));
  REQUIRE_THROWS_WITH(l.forward(x, std::vector<int>{3, 3, 0, 0}),
                      Catch::StartsWith("shared_weights_cross: split_sizes[2] must be positive, got 0"));
  REQUIRE_THROWS_WITH(l.forward(x, std::vector<int>{3, -1, 4, 0}),
                      Catch::StartsWith("shared_weights_cross: split_sizes[1] must be non-negative, got -1"));
  REQUIRE_THROWS_WITH(l.forward(random_tensor<double, 3>({2, 6, 7}, 1)),
                      "shared_weights_cross: Last dimension of input (7) must match dim (8)");
  REQUIRE_THROWS_WITH(l.output_shape({2, 6}), "shared_weights_cross: Input must be 3D, got shape [2, 6]");
  REQUIRE_THROWS_WITH(l.forward(random_tensor<double, 3>({2, 5, 8}, 1)),
                      Catch::StartsWith("shared_weights_cross: without split_sizes"));
  REQUIRE(l.forward(attn::Tensor<double, 3>(0, 6, 8)).size() == 0);
}

TEST_CASE("shared_weights_cross: logits of magnitude 1e4 stay finite", "[shared_weights_cross]") {
  attn::SharedWeightsCrossAttention<float> lf({.dim = 4, .num_heads = 1, .use_bias = false}, 2);
  L ld({.dim = 4, .num_heads = 1, .use_bias = false}, 2);
  const auto x = random_tensor<double, 3>({1, 6, 4}, 6, 150.0);
  const attn::Tensor<float, 3> xf = x.cast<float>();
  const auto yf = lf.forward(xf, std::vector<int>{2, 4});
  REQUIRE(all_finite(yf.data(), yf.size()));
  const auto want = oracle(ld, x, {2, 4});
  ATTN_REQUIRE_CLOSE(yf, want, 1e-3, 1e-1);
}

TEST_CASE("shared_weights_cross: 1 and 2 threads give bit-identical results", "[shared_weights_cross][threads]") {
  const L l({.dim = 16, .num_heads = 4}, 2);
  const auto x = random_tensor<double, 3>({3, 300, 16}, 8);
  const int saved = attn::num_threads();
  attn::set_num_threads(1);
  const auto a = l.forward(x, std::vector<int>{100, 50, 120, 30});
  attn::set_num_threads(2);
  const auto b = l.forward(x, std::vector<int>{100, 50, 120, 30});
  attn::set_num_threads(saved);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
}

// ---- golden parity (tools/golden/shared_weights_cross.py, tests/data/shared_weights_cross/) ----

TEMPLATE_TEST_CASE("golden: shared_weights_cross matches PyTorch ops", "[golden][shared_weights_cross]", float, double) {
  using T = TestType;
  for_each_golden<T>("shared_weights_cross", [](const Golden& g) {
    const auto cfg = g.config.get<attn::SharedWeightsCrossAttentionConfig>();
    attn::SharedWeightsCrossAttention<T> layer(cfg);
    attn::load_weights(layer, g.file, "weights");
    const std::vector<int> split(cfg.split_sizes.begin(), cfg.split_sizes.end());
    check<T>(g, "output", layer.forward(input<T, 3>(g, "x"), split));
    auto any = attn::create_attention_layer<T>("shared_weights_cross", g.config);  // the config's split
    attn::load_weights(any, g.file, "weights");
    check<T>(g, "output", any.forward(attn::AnyTensor<T>(input<T, 3>(g, "x"))).template view<3>());
  });
}
