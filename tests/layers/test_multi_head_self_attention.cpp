// multi_head_self_attention (UniFormer, spec §5.10): an independent loop implementation (dense, head
// split, attention with an additive position bias, in double), tokens against the feature map, the
// upstream shape test (Appendix C.1), messages, shape errors, threads, and golden parity with torch
// matmul / softmax.
#include <attn/layers/multi_head_self_attention.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::MultiHeadSelfAttention<double>;

namespace {

const attn::Weight<double>* find(const L& l, const std::string& name) { return l.parameters().find(name); }

/// The forward from the spec's formulas on tokens [B, N, C]; pos: [h | 1, N, N] or empty.
std::pair<attn::Tensor<double, 3>, attn::Tensor<double, 4>> naive(const L& layer, const attn::Tensor<double, 3>& x,
                                                                  const attn::Tensor<double, 3>* pos) {
  const auto& c = layer.config();
  const Index B = x.dimension(0), N = x.dimension(1), h = c.num_heads;
  const Index d = c.key_dim > 0 ? c.key_dim : c.channels / h, E = h * d;
  const Index O = c.out_weight ? c.out_shape.value_or(c.channels) : c.channels, dv = O / h;
  const auto t = naive_dense(x, *find(layer, "qkv/kernel"), find(layer, "qkv/bias"));
  attn::Tensor<double, 3> q(B, N, E), k(B, N, E), v(B, N, O);
  for (Index b = 0; b < B; ++b)
    for (Index n = 0; n < N; ++n) {
      for (Index j = 0; j < E; ++j) {
        q(b, n, j) = t(b, n, j);
        k(b, n, j) = t(b, n, E + j);
      }
      for (Index j = 0; j < O; ++j) v(b, n, j) = t(b, n, 2 * E + j);
    }
  Bias bias = nullptr;
  if (pos != nullptr)
    bias = [pos](Index, Index hd, Index i, Index j) { return (*pos)(pos->dimension(0) == 1 ? 0 : hd, i, j); };
  auto [ctx, p] = naive_attention(split_heads(q, h), split_heads(k, h), split_heads(v, h), 1.0 / std::sqrt(double(d)),
                                  nullptr, bias);
  auto y = merge_heads(ctx);
  (void)dv;
  if (c.out_weight) y = naive_dense(y, *find(layer, "output/kernel"), find(layer, "output/bias"));
  return {y, p};
}

attn::Tensor<double, 3> tokens_of(const attn::Tensor<double, 4>& x) {
  attn::Tensor<double, 3> t(x.dimension(0), x.dimension(1) * x.dimension(2), x.dimension(3));
  std::copy(x.data(), x.data() + x.size(), t.data());
  return t;
}

}  // namespace

TEST_CASE("multi_head_self_attention: weights have the reference's names, shapes and order", "[multi_head_self_attention]") {
  const L a({.channels = 16});
  REQUIRE(a.parameters().size() == 2);
  REQUIRE(a.parameters()[0].name == "qkv/kernel");
  REQUIRE(a.parameters()[0].shape == Shape{16, 48});
  REQUIRE(a.parameters()[1].name == "output/kernel");
  REQUIRE(a.parameters()[1].shape == Shape{16, 16});
  // glorot_uniform on [16, 48]: |w| <= sqrt(6 / 64)
  for (double v : a.parameters()[0].data) REQUIRE(std::abs(v) <= std::sqrt(6.0 / 64.0));
  const L b({.channels = 10, .num_heads = 3, .key_dim = 6, .out_shape = 12, .qkv_bias = true, .out_bias = true});
  std::vector<std::string> names;
  for (const auto& w : b.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"qkv/kernel", "qkv/bias", "output/kernel", "output/bias"});
  REQUIRE(b.parameters()[0].shape == Shape{10, 2 * 18 + 12});
  REQUIRE(b.parameters()[2].shape == Shape{12, 12});
  for (double v : b.parameters()[1].data) REQUIRE(v == 0.0);
  const L c({.channels = 8, .num_heads = 2, .out_shape = 6, .out_weight = false, .out_bias = true});
  REQUIRE(c.parameters().size() == 1);  // no output Dense; O forced to the channels
  REQUIRE(c.parameters()[0].shape == Shape{8, 24});
  REQUIRE(c.output_shape({2, 3, 4, 8}) == Shape{2, 3, 4, 8});
}

TEST_CASE("multi_head_self_attention: validation messages", "[multi_head_self_attention]") {
  const auto msg = [](const attn::Json& j) {
    const auto p = attn::check_attention_config("multi_head_self_attention", j);
    return p.empty() ? std::string() : p.front().message;
  };
  REQUIRE(msg({{"channels", 0}}) == "Parameter 'channels' must be positive, got 0");
  REQUIRE(msg({{"channels", 8}, {"num_heads", -2}}) == "Parameter 'num_heads' must be positive, got -2");
  REQUIRE(msg({{"channels", 3}}) == "channels (3) must be at least num_heads (4) when key_dim is 0");
  REQUIRE(msg({{"channels", 3}, {"key_dim", 2}}) == "channels (3) must be divisible by num_heads (4)");  // O = C
  REQUIRE(msg({{"channels", 8}, {"out_shape", 6}}) == "out_shape (6) must be divisible by num_heads (4)");
  REQUIRE(msg({{"channels", 6}, {"out_weight", false}, {"key_dim", 2}}) ==
          "channels (6) must be divisible by num_heads (4)");
  REQUIRE_FALSE(msg({{"channels", 8}, {"key_dim", -1}}).empty());
  REQUIRE_FALSE(msg({{"channels", 8}, {"attn_dropout", 1.5}}).empty());
  REQUIRE_THROWS_AS(L({.channels = 8, .out_shape = 6}), attn::ConfigError);
}

TEST_CASE("multi_head_self_attention: equals an independent loop implementation", "[multi_head_self_attention]") {
  const std::vector<L::Config> configs{
      {.channels = 16},
      {.channels = 10, .num_heads = 3, .key_dim = 6, .out_shape = 12, .qkv_bias = true, .out_bias = true},
      {.channels = 8, .num_heads = 2, .out_weight = false},
      {.channels = 5, .num_heads = 1, .key_dim = 3, .out_shape = 7},
  };
  std::uint64_t seed = 1;
  for (const auto& c : configs) {
    INFO("config " << seed);
    L layer(c, seed);
    randomize_weights(layer, 100 * seed);
    const auto x = random_tensor<double, 4>({2, 7, 9, c.channels}, seed);
    const auto r = layer.forward_with_weights(x);
    const auto [y, p] = naive(layer, tokens_of(x), nullptr);
    REQUIRE(r.output.dimension(3) == y.dimension(2));
    ATTN_REQUIRE_CLOSE(tokens_of(r.output), y, 1e-12, 1e-12);
    ATTN_REQUIRE_CLOSE(r.weights, p, 1e-12, 1e-12);
    // a position bias per head, and one shared by every head, against the oracle; tokens equal the map
    for (Index ph : {Index(c.num_heads), Index(1)}) {
      const auto pos = random_tensor<double, 3>({ph, 63, 63}, seed + 7, 2.0);
      const auto rt = layer.forward_with_weights(tokens_of(x), pos);
      const auto [yp, pp] = naive(layer, tokens_of(x), &pos);
      ATTN_REQUIRE_CLOSE(rt.output, yp, 1e-12, 1e-12);
      ATTN_REQUIRE_CLOSE(rt.weights, pp, 1e-12, 1e-12);
      const auto ym = layer.forward(x, pos);
      REQUIRE(std::equal(ym.data(), ym.data() + ym.size(), rt.output.data()));
    }
    ++seed;
  }
}

TEST_CASE("multi_head_self_attention: the upstream shape test", "[multi_head_self_attention]") {
  // tests/test_layers.py: [2, 14, 16, 256], num_heads 4, out_shape 384 -> [2, 14, 16, 384]
  const auto layer = attn::create_attention_layer<float>(
      "multi_head_self_attention", {{"channels", 256}, {"num_heads", 4}, {"out_shape", 384}});
  const auto y = layer.forward(attn::AnyTensor<float>(random_tensor<float, 4>({2, 14, 16, 256}, 3)));
  REQUIRE(y.shape() == Shape{2, 14, 16, 384});
  REQUIRE(all_finite(y.data(), y.size()));
}

TEST_CASE("multi_head_self_attention: bad shapes give ShapeErrors naming the layer", "[multi_head_self_attention]") {
  const L layer({.channels = 8});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 3, 3, 4}, 1)),
                      "multi_head_self_attention: input must have shape [*, *, *, 8] ([batch, height, width, "
                      "channels]), got [1, 3, 3, 4]");
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 3>({1, 3, 4}, 1)),
                      "multi_head_self_attention: input must have shape [*, *, 8] ([batch, tokens, channels]), "
                      "got [1, 3, 4]");
  const auto pos = random_tensor<double, 3>({2, 9, 9}, 1);
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 3, 3, 8}, 1), pos),
                      "multi_head_self_attention: pos_emb must have shape [4 or 1, 9, 9], got [2, 9, 9]");
  L tampered = layer;
  tampered.parameters()[0].shape = {8, 23};
  REQUIRE_THROWS_AS(tampered.forward(random_tensor<double, 4>({1, 3, 3, 8}, 1)), attn::WeightsError);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 3, 3, 8)).dimension(0) == 0);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(2, 0, 3, 8)).size() == 0);
}

TEST_CASE("multi_head_self_attention: 1 and 2 threads give bit-identical results",
          "[multi_head_self_attention][threads]") {
  const attn::MultiHeadSelfAttention<float> layer({.channels = 64, .num_heads = 4}, 2);
  const auto x = random_tensor<float, 4>({2, 15, 13, 64}, 8);
  REQUIRE(same_bits_for_1_and_2_threads([&] { return layer.forward(x); }));
}

// ---- golden parity (tools/golden/multi_head_self_attention.py, tests/data/multi_head_self_attention/) ----

TEMPLATE_TEST_CASE("golden: multi_head_self_attention matches torch matmul and softmax",
                   "[golden][multi_head_self_attention]", float, double) {
  using T = TestType;
  for_each_golden<T>("multi_head_self_attention", [](const Golden& g) {
    attn::MultiHeadSelfAttention<T> layer(g.config.get<attn::MultiHeadSelfAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto x = input<T, 4>(g, "x");
    attn::Tensor<T, 3> pos;
    if (g.file.contains("input/pos_emb")) pos = input<T, 3>(g, "pos_emb");
    const auto r = layer.forward_with_weights(x, pos);  // an empty pos_emb: none
    check<T>(g, "output", r.output);
    if (g.file.contains("expected/weights")) check<T>(g, "weights", r.weights);
    if (pos.size() == 0) {
      auto any = attn::create_attention_layer<T>("multi_head_self_attention", g.config);
      attn::load_weights(any, g.file, "weights");
      check<T>(g, "output", any.forward(attn::AnyTensor<T>(x)).template view<4>());
    }
  });
}
