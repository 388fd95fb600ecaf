// context_attention: a plain-loop oracle of the seed's network (embedding row, softmax, glimpse, dense),
// a hand-computed case, ids against the one-hot door, sequences, messages, errors and golden data from
// a PyTorch module (nn.Embedding, softmax, multiply, nn.Linear).
#include <attn/layers/context_attention.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::ContextAttention<double>;

namespace {
/// {output [B, O], attention [B, D]} from the formula, x [B, D].
std::pair<attn::Tensor<double, 2>, attn::Tensor<double, 2>> oracle(const L& l, const attn::Tensor<double, 2>& x,
                                                                   const std::vector<Index>& ids) {
  const auto& c = l.config();
  const auto& e = l.parameters()[0];
  const auto& k = l.parameters()[1];
  const Index B = x.dimension(0), D = c.input_dim, O = c.output_dim;
  attn::Tensor<double, 2> a(B, D), y(B, O);
  for (Index b = 0; b < B; ++b) {
    double sum = 0;
    for (Index i = 0; i < D; ++i) sum += std::exp(e.data[static_cast<std::size_t>(ids[static_cast<std::size_t>(b)] * D + i)]);
    for (Index i = 0; i < D; ++i)
      a(b, i) = std::exp(e.data[static_cast<std::size_t>(ids[static_cast<std::size_t>(b)] * D + i)]) / sum;
    for (Index o = 0; o < O; ++o) {
      double s = c.use_bias ? l.parameters()[2].data[static_cast<std::size_t>(o)] : 0.0;
      for (Index i = 0; i < D; ++i) s += x(b, i) * a(b, i) * k.data[static_cast<std::size_t>(i * O + o)];
      y(b, o) = s;
    }
  }
  return {y, a};
}
}  // namespace

TEST_CASE("context_attention: weights, names and validation messages", "[context_attention]") {
  const L l({.num_contexts = 3, .input_dim = 4, .output_dim = 2});
  REQUIRE(l.parameters().size() == 3);
  REQUIRE(l.parameters()[0].name == "context_embedding");
  REQUIRE(l.parameters()[0].shape == Shape{3, 4});
  REQUIRE(l.parameters()[1].name == "output/kernel");
  REQUIRE(l.parameters()[1].shape == Shape{4, 2});
  REQUIRE(l.parameters()[2].name == "output/bias");
  REQUIRE(L({.num_contexts = 3, .input_dim = 4, .output_dim = 2, .use_bias = false}).parameters().size() == 2);
  const auto msg = [](attn::Json p) {
    const auto problems = attn::check_attention_config("context_attention", p);
    return problems.empty() ? std::string() : problems.front().message;
  };
  REQUIRE(msg({{"num_contexts", 3}, {"input_dim", 4}, {"output_dim", 2}}).empty());
  REQUIRE(msg({{"num_contexts", 0}, {"input_dim", 4}, {"output_dim", 2}}) == "num_contexts must be positive, got 0");
  REQUIRE(msg({{"num_contexts", 3}, {"input_dim", 4}}) ==
          "Required parameters for 'context_attention' are missing: ['output_dim']. Required: ['num_contexts', "
          "'input_dim', 'output_dim']");
  REQUIRE_THAT(msg({{"num_context", 3}, {"input_dim", 4}, {"output_dim", 2}}),
               Catch::StartsWith("Unknown parameter 'num_context' for 'context_attention'. Did you mean 'num_contexts'?"));
}

TEST_CASE("context_attention: hand-computed case", "[context_attention]") {
  // two features; context 1 has logits [ln 3, 0] -> attention [0.75, 0.25]; identity kernel, bias [1, -1]
  L l({.num_contexts = 2, .input_dim = 2, .output_dim = 2});
  l.parameters()[0].data = {0, 0, std::log(3.0), 0};
  l.parameters()[1].data = {1, 0, 0, 1};
  l.parameters()[2].data = {1, -1};
  attn::Tensor<double, 2> x(2, 2);
  x.setValues({{4, 8}, {4, 8}});
  const std::vector<Index> ids{1, 0};
  const auto r = l.forward_with_attention(x, ids);
  REQUIRE(r.attention(0, 0) == Approx(0.75).epsilon(1e-14));
  REQUIRE(r.output(0, 0) == Approx(4.0).epsilon(1e-14));  // 4·0.75 + 1
  REQUIRE(r.output(0, 1) == Approx(1.0).epsilon(1e-14));  // 8·0.25 − 1
  REQUIRE(r.output(1, 0) == Approx(3.0).epsilon(1e-14));  // 4·0.5 + 1
  REQUIRE(r.output(1, 1) == Approx(3.0).epsilon(1e-14));  // 8·0.5 − 1
}

TEST_CASE("context_attention: equals the loop oracle, on sequences too, and the one-hot door equals the ids",
          "[context_attention]") {
  L l({.num_contexts = 4, .input_dim = 5, .output_dim = 3}, 6);
  l.parameters()[2].data = {0.1, -0.2, 0.3};
  const auto x = random_tensor<double, 2>({3, 5}, 2);
  const std::vector<Index> ids{3, 0, 3};
  const auto r = l.forward_with_attention(x, ids);
  const auto [y, a] = oracle(l, x, ids);
  ATTN_REQUIRE_CLOSE(r.output, y, 1e-13, 1e-13);
  ATTN_REQUIRE_CLOSE(r.attention, a, 1e-13, 1e-13);
  attn::Tensor<double, 2> onehot(3, 4);
  onehot.setZero();
  for (Index b = 0; b < 3; ++b) onehot(b, ids[static_cast<std::size_t>(b)]) = 1.0;
  ATTN_REQUIRE_CLOSE(l.forward(x, onehot), y, 1e-13, 1e-13);
  // a sequence: every position uses its item's attention
  const auto xs = random_tensor<double, 3>({3, 2, 5}, 3);
  const auto ys = l.forward(xs, ids);
  for (Index t = 0; t < 2; ++t) {
    attn::Tensor<double, 2> xt(3, 5), yt(3, 3);
    for (Index b = 0; b < 3; ++b) {
      for (Index i = 0; i < 5; ++i) xt(b, i) = xs(b, t, i);
      for (Index o = 0; o < 3; ++o) yt(b, o) = ys(b, t, o);
    }
    ATTN_REQUIRE_CLOSE(yt, oracle(l, xt, ids).first, 1e-13, 1e-13);
  }
  // logits of magnitude 1e4: finite, one-hot attention
  l.parameters()[0].data[0] = 1e4;
  const auto big = l.forward_with_attention(x, std::vector<Index>{0, 0, 0});
  REQUIRE(all_finite(big.output.data(), big.output.size()));
  REQUIRE(big.attention(0, 0) == 1.0);
}

TEST_CASE("context_attention: bad ids and shapes give ShapeErrors naming the layer", "[context_attention]") {
  const L l({.num_contexts = 5, .input_dim = 3, .output_dim = 2});
  const auto x = random_tensor<double, 2>({2, 3}, 1);
  REQUIRE_THROWS_WITH(l.forward(x, std::vector<Index>{0, 7}), "context_attention: context id 7 (item 1) is out of range [0, 5)");
  REQUIRE_THROWS_WITH(l.forward(x, std::vector<Index>{-1, 0}), "context_attention: context id -1 (item 0) is out of range [0, 5)");
  REQUIRE_THROWS_WITH(l.forward(x, std::vector<Index>{0}),
                      "context_attention: context ids must have 2 entries (one per batch item), got 1");
  REQUIRE_THROWS_WITH(l.forward(random_tensor<double, 2>({2, 4}, 1), std::vector<Index>{0, 1}),
                      "context_attention: input must have shape [*, 3] ([batch, input_dim]), got [2, 4]");
  REQUIRE_THROWS_WITH(l.forward(x, random_tensor<double, 2>({2, 4}, 1)),
                      "context_attention: context must have shape [2, 5] ([batch, num_contexts], weights of the "
                      "contexts), got [2, 4]");
}

TEST_CASE("context_attention: 1 and 2 threads give bit-identical results", "[context_attention][threads]") {
  const L l({.num_contexts = 4, .input_dim = 64, .output_dim = 64}, 2);
  const auto x = random_tensor<double, 3>({8, 300, 64}, 8);
  const std::vector<Index> ids{0, 1, 2, 3, 3, 2, 1, 0};
  const int saved = attn::num_threads();
  attn::set_num_threads(1);
  const auto a = l.forward(x, ids);
  attn::set_num_threads(2);
  const auto b = l.forward(x, ids);
  attn::set_num_threads(saved);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
}

// ---- golden parity (tools/golden/context_attention.py, tests/data/context_attention/) ----

TEMPLATE_TEST_CASE("golden: context_attention matches a PyTorch module (Embedding, softmax, Linear)",
                   "[golden][context_attention]", float, double) {
  using T = TestType;
  for_each_golden<T>("context_attention", [](const Golden& g) {
    attn::ContextAttention<T> layer(g.config.get<attn::ContextAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    std::vector<Index> ids;
    for (double v : g.file.values<double>("input/ids")) ids.push_back(static_cast<Index>(v));
    if (g.file.at("input/x").shape.size() == 2) {
      const auto r = layer.forward_with_attention(input<T, 2>(g, "x"), ids);
      check<T>(g, "output", r.output);
      check<T>(g, "attention", r.attention);
    } else {
      const auto r = layer.forward_with_attention(input<T, 3>(g, "x"), ids);
      check<T>(g, "output", r.output);
      check<T>(g, "attention", r.attention);
    }
  });
}
