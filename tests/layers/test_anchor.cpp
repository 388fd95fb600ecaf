// anchor: against an independent loop implementation in both modes, the spec's identities (A = N is
// standard attention, anchor rows equal attention over the anchors alone and ignore the other tokens),
// the reference's messages, num_anchor_tokens validation, large logits, threads, golden data.
#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::AnchorAttention<double>;

namespace {
/// Plain loops from the formula (anchors = N for standard mode).
attn::Tensor<double, 3> oracle(const L& l, const attn::Tensor<double, 3>& x, Index anchors) {
  const auto& c = l.config();
  const auto& w = l.parameters();
  const std::size_t st = c.use_bias ? 2 : 1;
  const auto b = [&](std::size_t i) { return c.use_bias ? &w[i + 1] : nullptr; };
  const Index B = x.dimension(0), N = x.dimension(1), E = c.dim, H = c.num_heads, A = anchors;
  const auto qkv = naive_dense(x, w[0], b(0));  // every token (the non-anchor K/V are never read)
  const auto qq = naive_dense(x, w[st], b(st));
  attn::Tensor<double, 3> q(B, N, E), k(B, A, E), v(B, A, E);
  for (Index i = 0; i < B; ++i)
    for (Index t = 0; t < N; ++t)
      for (Index f = 0; f < E; ++f) {
        q(i, t, f) = t < A ? qkv(i, t, f) : qq(i, t, f);
        if (t < A) {
          k(i, t, f) = qkv(i, t, E + f);
          v(i, t, f) = qkv(i, t, 2 * E + f);
        }
      }
  const auto ctx = naive_attention(split_heads(q, H), split_heads(k, H), split_heads(v, H),
                                   1.0 / std::sqrt(static_cast<double>(E / H))).first;
  return naive_dense(merge_heads(ctx), w[2 * st], b(2 * st));
}

void set_biases(L& l) {
  for (auto& w : l.parameters())
    if (w.shape.size() == 1)
      for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.02 * double(i % 9) - 0.07;
}

std::string config_error(const attn::AnchorAttentionConfig& c) {
  try {
    L layer(c);
  } catch (const attn::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST_CASE("anchor: weights have the reference's names, shapes, order and initializers", "[anchor]") {
  const L l({.dim = 8, .num_heads = 2}, 3);
  std::vector<std::string> names;
  for (const auto& w : l.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"qkv/kernel", "qkv/bias", "q_query/kernel", "q_query/bias", "proj/kernel",
                                            "proj/bias"});
  REQUIRE(l.parameters()[0].shape == Shape{8, 24});
  REQUIRE(l.parameters()[1].shape == Shape{24});
  REQUIRE(l.parameters()[2].shape == Shape{8, 8});
  REQUIRE(l.parameters()[4].shape == Shape{8, 8});
  const double lim = std::sqrt(6.0 / 32.0);  // glorot_uniform on [8, 24]
  for (double v : l.parameters()[0].data) REQUIRE(std::abs(v) <= lim);
  for (double v : l.parameters()[1].data) REQUIRE(v == 0.0);
  REQUIRE(L({.dim = 8, .num_heads = 2, .use_bias = false}).parameters().size() == 3);
}

TEST_CASE("anchor: validation messages (the reference's) and num_anchor_tokens", "[anchor]") {
  REQUIRE(config_error({.dim = 8}) == "(no error)");
  REQUIRE(config_error({.dim = -4}) == "Parameter 'dim' must be positive, got -4");
  REQUIRE(config_error({.dim = 8, .num_heads = 0}) == "Parameter 'num_heads' must be positive, got 0");
  REQUIRE(config_error({.dim = 10, .num_heads = 3}) == "dim (10) must be divisible by num_heads (3)");
  REQUIRE(config_error({.dim = 8, .dropout = -0.5}) == "Parameter 'dropout' must be between 0.0 and 1.0, got -0.5");
  REQUIRE(config_error({.dim = 8, .num_anchor_tokens = 0}) == "num_anchor_tokens must be positive, got 0");
  const auto fail = [](const Json& p) -> std::string {
    try {
      attn::validate_attention_config("anchor", p);
    } catch (const attn::ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  };
  REQUIRE_THAT(fail({{"dim", 8}, {"dropuot", 0.1}}),
               Catch::StartsWith("Unknown parameter 'dropuot' for 'anchor'. Did you mean 'dropout'?"));
  const Json all{{"dim", 8},          {"num_heads", 2},
                 {"dropout", 0.0},    {"use_bias", true},
                 {"kernel_initializer", "glorot_uniform"}, {"bias_initializer", "zeros"},
                 {"kernel_regularizer", nullptr},          {"bias_regularizer", nullptr}};
  REQUIRE(fail(all) == "(no error)");
  // the call argument: 0 and negative values are errors (the reference: NaN / slicing from the end), A > N too
  const L l({.dim = 8, .num_heads = 2});
  const auto x = random_tensor<double, 3>({2, 5, 8}, 1);
  REQUIRE_THROWS_MATCHES(l.forward(x, 0), attn::ConfigError,
                         Catch::Matchers::Message("anchor: num_anchor_tokens must be positive, got 0"));
  REQUIRE_THROWS_AS(l.forward(x, -2), attn::ConfigError);
  REQUIRE_THROWS_MATCHES(l.forward(x, 6), attn::ShapeError,
                         Catch::Matchers::Message("anchor: num_anchor_tokens (6) must not exceed the number of tokens "
                                                  "(5) of the input [2, 5, 8]"));
  const L cfg({.dim = 8, .num_heads = 2, .num_anchor_tokens = 6});
  REQUIRE_THROWS_AS(cfg.forward(x), attn::ShapeError);
}

TEST_CASE("anchor: equals an independent loop implementation in both modes", "[anchor]") {
  for (bool bias : {false, true})
    for (int heads : {1, 2}) {
      L l({.dim = 6, .num_heads = heads, .use_bias = bias}, 7);
      set_biases(l);
      const auto x = random_tensor<double, 3>({2, 7, 6}, 3);
      ATTN_REQUIRE_CLOSE(l.forward(x), oracle(l, x, 7), 1e-12, 1e-13);
      for (int a : {1, 3, 6}) {
        INFO("anchors " << a);
        ATTN_REQUIRE_CLOSE(l.forward(x, a), oracle(l, x, a), 1e-12, 1e-13);
      }
    }
  // the config's num_anchor_tokens is used when the call gives none (also through the factory)
  L l({.dim = 8, .num_heads = 2, .num_anchor_tokens = 2}, 5);
  set_biases(l);
  const auto x = random_tensor<double, 3>({1, 5, 8}, 4);
  ATTN_REQUIRE_CLOSE(l.forward(x), oracle(l, x, 2), 1e-12, 1e-13);
  ATTN_REQUIRE_CLOSE(l.forward(x), l.forward(x, 2), 0.0, 0.0);
}

TEST_CASE("anchor: identities: A = N is standard mode, anchor rows ignore the other tokens", "[anchor]") {
  L l({.dim = 8, .num_heads = 2}, 9);
  set_biases(l);
  const auto x = random_tensor<double, 3>({2, 6, 8}, 2);
  ATTN_REQUIRE_CLOSE(l.forward(x, 6), l.forward(x), 0.0, 0.0);
  // rows 0..A-1 equal standard attention over the anchors alone
  const Index A = 3;
  const auto y = l.forward(x, static_cast<int>(A));
  attn::Tensor<double, 3> xa = x.slice(std::array<Index, 3>{0, 0, 0}, std::array<Index, 3>{2, A, 8});
  const auto ya = l.forward(xa);
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < A; ++t)
      for (Index f = 0; f < 8; ++f) REQUIRE(y(b, t, f) == Approx(ya(b, t, f)).margin(1e-13));
  // changing the non-anchor tokens changes no anchor row, and each non-anchor row depends on its own token only
  auto x2 = x;
  for (Index t = A; t < 6; ++t)
    for (Index f = 0; f < 8; ++f) x2(1, t, f) = 3.0 - 0.1 * double(f);
  const auto y2 = l.forward(x2, static_cast<int>(A));
  for (Index t = 0; t < A; ++t)
    for (Index f = 0; f < 8; ++f) REQUIRE(y2(1, t, f) == y(1, t, f));
  auto x3 = x;
  for (Index f = 0; f < 8; ++f) x3(0, 5, f) = -1.0;
  const auto y3 = l.forward(x3, static_cast<int>(A));
  for (Index t = 0; t < 5; ++t)
    for (Index f = 0; f < 8; ++f) REQUIRE(y3(0, t, f) == y(0, t, f));
}

TEST_CASE("anchor: hand-computed case: one anchor gives every token that anchor's value", "[anchor]") {
  // A = 1: the softmax over one key is 1, so every row is V of token 0, projected: y = (x0·Wv + bv)·Wp + bp.
  L l({.dim = 2, .num_heads = 1}, 1);
  auto& w = l.parameters();
  w[0].data = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1};  // Q = K = 0, V = x
  w[1].data = {0, 0, 0, 0, 0.5, -0.5};                // bv = [0.5, -0.5]
  w[4].data = {2, 0, 0, 3};                            // proj = diag(2, 3)
  w[5].data = {1, 1};
  attn::Tensor<double, 3> x(1, 3, 2);
  x.setValues({{{1, 2}, {7, 8}, {-4, 5}}});
  const auto y = l.forward(x, 1);
  for (Index t = 0; t < 3; ++t) {
    REQUIRE(y(0, t, 0) == Approx((1 + 0.5) * 2 + 1).epsilon(1e-14));  // 4
    REQUIRE(y(0, t, 1) == Approx((2 - 0.5) * 3 + 1).epsilon(1e-14));  // 5.5
  }
}

TEST_CASE("anchor: logits of magnitude 1e4 stay finite and match the oracle", "[anchor]") {
  L l({.dim = 4, .num_heads = 1, .use_bias = false}, 2);
  for (auto& w : l.parameters())
    for (auto& v : w.data) v *= 40.0;
  const auto x = random_tensor<double, 3>({1, 6, 4}, 1, 10.0);
  for (int a : {2, 6}) {
    const auto y = l.forward(x, a);
    REQUIRE(all_finite(y.data(), y.size()));
    ATTN_REQUIRE_CLOSE(y, oracle(l, x, a), 1e-9, 1e-9);
  }
  attn::AnchorAttention<float> lf({.dim = 4, .num_heads = 1, .use_bias = false});
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < l.parameters()[i].data.size(); ++j)
      lf.parameters()[i].data[j] = static_cast<float>(l.parameters()[i].data[j]);
  const auto yf = lf.forward(random_tensor<float, 3>({1, 6, 4}, 1, 10.0), 2);
  REQUIRE(all_finite(yf.data(), yf.size()));
}

TEST_CASE("anchor: bad shapes give ShapeErrors naming the layer, empty inputs", "[anchor]") {
  const L l({.dim = 8, .num_heads = 2});
  REQUIRE_THROWS_WITH(l.forward(random_tensor<double, 3>({2, 3, 7}, 1)),
                      "anchor: input must have shape [*, *, 8] ([batch, tokens, dim]), got [2, 3, 7]");
  REQUIRE_THROWS_AS(l.output_shape({2, 3}), attn::ShapeError);
  REQUIRE(l.forward(attn::Tensor<double, 3>(0, 4, 8), 2).dimension(0) == 0);
  REQUIRE(l.forward(attn::Tensor<double, 3>(2, 0, 8)).dimension(1) == 0);
}

TEST_CASE("anchor: 1 and 2 threads give bit-identical results", "[anchor][threads]") {
  const L l({.dim = 16, .num_heads = 4}, 2);
  const auto x = random_tensor<double, 3>({3, 300, 16}, 8);
  const int saved = attn::num_threads();
  attn::set_num_threads(1);
  const auto a = l.forward(x, 40);
  const auto a2 = l.forward(x);
  attn::set_num_threads(2);
  const auto b = l.forward(x, 40);
  const auto b2 = l.forward(x);
  attn::set_num_threads(saved);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
  REQUIRE(std::equal(a2.data(), a2.data() + a2.size(), b2.data()));
}

// ---- golden parity (tools/golden/anchor.py, tests/data/anchor/) ----

TEMPLATE_TEST_CASE("golden: anchor matches PyTorch ops", "[golden][anchor]", float, double) {
  using T = TestType;
  for_each_golden<T>("anchor", [](const Golden& g) {
    const auto cfg = g.config.get<attn::AnchorAttentionConfig>();
    attn::AnchorAttention<T> layer(cfg);
    attn::load_weights(layer, g.file, "weights");
    const auto x = input<T, 3>(g, "x");
    check<T>(g, "output", layer.forward(x));
    if (cfg.num_anchor_tokens) check<T>(g, "output", layer.forward(x, *cfg.num_anchor_tokens));
    auto any = attn::create_attention_layer<T>("anchor", g.config);
    attn::load_weights(any, g.file, "weights");
    check<T>(g, "output", any.forward(attn::AnyTensor<T>(x)).template view<3>());
  });
}
