// self_attention: against loop oracles built from the layer's weights, the seed's single-head form,
// masks, causal, weights, errors.
#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using SA = attn::SelfAttention<double>;

namespace {
/// Loop oracle of the whole layer (optionally with a keep predicate).
attn::Tensor<double, 3> oracle(const SA& l, const attn::Tensor<double, 3>& x, const Keep& keep = nullptr,
                               attn::Tensor<double, 4>* weights = nullptr) {
  const auto& c = l.config();
  const auto& w = l.parameters();
  const std::size_t st = c.use_bias ? 2 : 1;
  const auto b = [&](std::size_t i) { return c.use_bias ? &w[i + 1] : nullptr; };
  const Index H = c.num_heads;
  auto q = split_heads(naive_dense(x, w[0], b(0)), H);
  auto k = split_heads(naive_dense(x, w[st], b(st)), H);
  auto v = split_heads(naive_dense(x, w[2 * st], b(2 * st)), H);
  auto [o, p] = naive_attention(q, k, v, 1.0 / std::sqrt(double(c.embed_dim / H)), keep);
  if (weights) *weights = p;
  auto y = merge_heads(o);
  return c.output_projection ? naive_dense(y, w[3 * st], b(3 * st)) : y;
}
void randomize_biases(SA& l) {
  for (auto& w : l.parameters())
    if (w.shape.size() == 1)
      for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.05 * double(i % 5) - 0.1;
}
}  // namespace

TEST_CASE("self_attention: weights, names and shapes", "[self_attention]") {
  const SA a({.embed_dim = 6, .num_heads = 2, .output_projection = true});
  std::vector<std::string> names;
  for (const auto& w : a.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"query/kernel", "query/bias", "key/kernel", "key/bias", "value/kernel",
                                            "value/bias", "output/kernel", "output/bias"});
  for (const auto& w : a.parameters()) REQUIRE(w.shape == (w.shape.size() == 2 ? Shape{6, 6} : Shape{6}));
  const SA b({.embed_dim = 6, .use_bias = false});
  REQUIRE(b.parameters().size() == 3);
  // glorot_uniform bound sqrt(6 / (6 + 6)) = sqrt(0.5)
  for (double v : b.parameters()[0].data) REQUIRE(std::abs(v) <= std::sqrt(0.5));
}

TEST_CASE("self_attention: equals the loop oracle (heads, biases, output projection)", "[self_attention]") {
  for (int heads : {1, 3})
    for (bool bias : {false, true})
      for (bool proj : {false, true}) {
        SA l({.embed_dim = 6, .num_heads = heads, .use_bias = bias, .output_projection = proj}, 9);
        randomize_biases(l);
        const auto x = random_tensor<double, 3>({2, 5, 6}, 3);
        INFO("heads " << heads << " bias " << bias << " proj " << proj);
        ATTN_REQUIRE_CLOSE(l.forward(x), oracle(l, x), 1e-12, 1e-13);
      }
}

TEST_CASE("self_attention: the seed's formula, hand-computed", "[self_attention]") {
  // identity projections, no bias, D = 2: y = softmax(x xᵀ / sqrt 2) x
  SA l({.embed_dim = 2, .use_bias = false});
  for (std::size_t i = 0; i < 3; ++i) l.parameters()[i].data = {1, 0, 0, 1};
  attn::Tensor<double, 3> x(1, 2, 2);
  x.setValues({{{2, 0}, {0, 1}}});
  // row 0 logits: [4, 0]/sqrt 2; row 1: [0, 1]/sqrt 2
  const double a = std::exp(4 / std::sqrt(2.0)), c = std::exp(1 / std::sqrt(2.0));
  const auto y = l.forward(x);
  REQUIRE(y(0, 0, 0) == Approx(2 * a / (a + 1)).epsilon(1e-13));
  REQUIRE(y(0, 0, 1) == Approx(1 / (a + 1)).epsilon(1e-13));
  REQUIRE(y(0, 1, 0) == Approx(2 / (1 + c)).epsilon(1e-13));
  REQUIRE(y(0, 1, 1) == Approx(c / (1 + c)).epsilon(1e-13));
}

TEST_CASE("self_attention: causal and padding masks, weights", "[self_attention]") {
  SA causal({.embed_dim = 4, .num_heads = 2, .causal = true}, 2);
  const auto x = random_tensor<double, 3>({2, 5, 4}, 4);
  attn::Tensor<double, 4> w;
  const auto expected = oracle(causal, x, [](Index, Index, Index i, Index j) { return j <= i; }, &w);
  const auto r = causal.forward_with_weights(x);
  ATTN_REQUIRE_CLOSE(r.output, expected, 1e-12, 1e-13);
  ATTN_REQUIRE_CLOSE(r.weights, w, 1e-12, 1e-13);
  // causal: the first token's output depends on itself only
  auto x2 = x;
  for (Index f = 0; f < 4; ++f) x2(0, 4, f) += 1.0;
  const auto y2 = causal.forward(x2);
  for (Index f = 0; f < 4; ++f) REQUIRE(y2(0, 0, f) == r.output(0, 0, f));
  // padding mask [B, T]
  SA l({.embed_dim = 4, .num_heads = 2}, 2);
  attn::Tensor<bool, 2> pad(2, 5);
  pad.setConstant(true);
  pad(1, 3) = pad(1, 4) = false;
  ATTN_REQUIRE_CLOSE(l.forward(x, {.key_padding = attn::KeyPaddingMask(pad)}), oracle(l, x, [&](Index b, Index, Index, Index j) { return pad(b, j); }),
                     1e-12, 1e-13);
}

TEST_CASE("self_attention: errors", "[self_attention]") {
  REQUIRE_THROWS_WITH(SA({.embed_dim = 6, .num_heads = 4}), "embed_dim (6) must be divisible by num_heads (4)");
  const SA l({.embed_dim = 4});
  REQUIRE_THROWS_WITH(l.forward(random_tensor<double, 3>({1, 2, 3}, 1)),
                      "self_attention: input must have shape [*, *, 4] ([batch, seq, embed_dim]), got [1, 2, 3]");
}

// ---- golden parity (tools/golden/self_attention.py, tests/data/self_attention/) ----

TEMPLATE_TEST_CASE("golden: self_attention matches PyTorch linear, matmul and softmax", "[golden][self_attention]", float,
                   double) {
  using T = TestType;
  for_each_golden<T>("self_attention", [](const Golden& g) {
    attn::SelfAttention<T> layer(g.config.get<attn::SelfAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto mask = mask_of(g, "input/mask");
    const auto r = layer.forward_with_weights(input<T, 3>(g, "x"), mask.masks<T>());
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("self_attention", g.config);
    attn::load_weights(any, g.file, "weights");
    check_through_door<T>(g, any, {attn::AnyTensor<T>(input<T, 3>(g, "x"))}, mask);
  });
}
