// multi_head_self_attention_channel (DaViT, spec §5.11): an independent loop implementation (dense, the
// value / query / key split, channel × channel softmax with the d^-0.5 scale, in double), tokens
// against the map, the upstream shape test (Appendix C.1), messages, shape errors, threads, and golden
// parity with torch matmul / softmax.
#include <attn/layers/multi_head_self_attention_channel.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::MultiHeadSelfAttentionChannel<double>;

namespace {

const attn::Weight<double>* find(const L& l, const std::string& name) { return l.parameters().find(name); }

/// The forward from the spec's formulas on tokens [B, N, C]; returns {output, weights [B, h, d, d]}.
std::pair<attn::Tensor<double, 3>, attn::Tensor<double, 4>> naive(const L& layer, const attn::Tensor<double, 3>& x) {
  const auto& c = layer.config();
  const Index B = x.dimension(0), N = x.dimension(1), h = c.num_heads;
  const Index d = c.key_dim > 0 ? c.key_dim : c.channels / h, E = h * d;
  const auto t = naive_dense(x, *find(layer, "qkv/kernel"), find(layer, "qkv/bias"));
  // thirds: value, query, key
  const auto v = [&](Index b, Index n, Index ch) { return t(b, n, ch); };
  const auto q = [&](Index b, Index n, Index ch) { return t(b, n, E + ch); };
  const auto k = [&](Index b, Index n, Index ch) { return t(b, n, 2 * E + ch); };
  attn::Tensor<double, 3> y(B, N, E);
  attn::Tensor<double, 4> a(B, h, d, d);
  for (Index b = 0; b < B; ++b)
    for (Index hd = 0; hd < h; ++hd)
      for (Index i = 0; i < d; ++i) {
        std::vector<double> z(static_cast<std::size_t>(d));
        double mx = -1e300, sum = 0;
        for (Index j = 0; j < d; ++j) {
          double s = 0;
          for (Index n = 0; n < N; ++n) s += q(b, n, hd * d + i) * k(b, n, hd * d + j);
          z[static_cast<std::size_t>(j)] = s / std::sqrt(double(d));
          mx = std::max(mx, z[static_cast<std::size_t>(j)]);
        }
        for (auto& e : z) sum += (e = std::exp(e - mx));
        for (Index j = 0; j < d; ++j) a(b, hd, i, j) = z[static_cast<std::size_t>(j)] / sum;
        for (Index n = 0; n < N; ++n) {
          double s = 0;
          for (Index j = 0; j < d; ++j) s += a(b, hd, i, j) * v(b, n, hd * d + j);
          y(b, n, hd * d + i) = s;
        }
      }
  if (c.out_weight) return {naive_dense(y, *find(layer, "output/kernel"), find(layer, "output/bias")), a};
  return {y, a};
}

attn::Tensor<double, 3> tokens_of(const attn::Tensor<double, 4>& x) {
  attn::Tensor<double, 3> t(x.dimension(0), x.dimension(1) * x.dimension(2), x.dimension(3));
  std::copy(x.data(), x.data() + x.size(), t.data());
  return t;
}

}  // namespace

TEST_CASE("multi_head_self_attention_channel: weights have the reference's names, shapes and order",
          "[multi_head_self_attention_channel]") {
  const L a({.channels = 16});
  REQUIRE(a.parameters().size() == 2);
  REQUIRE(a.parameters()[0].name == "qkv/kernel");
  REQUIRE(a.parameters()[0].shape == Shape{16, 48});
  REQUIRE(a.parameters()[1].name == "output/kernel");
  REQUIRE(a.parameters()[1].shape == Shape{16, 16});
  const L b({.channels = 10, .num_heads = 3, .key_dim = 5, .out_shape = 7, .qkv_bias = true, .out_bias = true});
  std::vector<std::string> names;
  for (const auto& w : b.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"qkv/kernel", "qkv/bias", "output/kernel", "output/bias"});
  REQUIRE(b.parameters()[0].shape == Shape{10, 45});
  REQUIRE(b.parameters()[2].shape == Shape{15, 7});
  const L c({.channels = 12, .num_heads = 2, .key_dim = 4, .out_weight = false});
  REQUIRE(c.parameters().size() == 1);
  REQUIRE(c.output_shape({2, 3, 4, 12}) == Shape{2, 3, 4, 8});  // num_heads x key_dim without the Dense
}

TEST_CASE("multi_head_self_attention_channel: validation messages", "[multi_head_self_attention_channel]") {
  const auto msg = [](const attn::Json& j) {
    const auto p = attn::check_attention_config("multi_head_self_attention_channel", j);
    return p.empty() ? std::string() : p.front().message;
  };
  REQUIRE(msg({{"channels", 0}}) == "Parameter 'channels' must be positive, got 0");
  REQUIRE(msg({{"channels", 3}}) == "channels (3) must be at least num_heads (4) when key_dim is 0");
  REQUIRE(msg({{"channels", 3}, {"key_dim", 2}, {"out_shape", 5}}).empty());
  REQUIRE_FALSE(msg({{"channels", 8}, {"out_shape", 0}}).empty());
  REQUIRE_FALSE(msg({{"channels", 8}, {"attn_dropout", -0.5}}).empty());
}

TEST_CASE("multi_head_self_attention_channel: equals an independent loop implementation",
          "[multi_head_self_attention_channel]") {
  const std::vector<L::Config> configs{
      {.channels = 16},
      {.channels = 10, .num_heads = 3, .key_dim = 5, .out_shape = 7, .qkv_bias = true, .out_bias = true},
      {.channels = 12, .num_heads = 2, .key_dim = 4, .out_weight = false},
  };
  std::uint64_t seed = 1;
  for (const auto& c : configs) {
    INFO("config " << seed);
    L layer(c, seed);
    randomize_weights(layer, 100 * seed);
    const auto x = random_tensor<double, 4>({2, 7, 9, c.channels}, seed);
    const auto r = layer.forward_with_weights(x);
    const auto [y, a] = naive(layer, tokens_of(x));
    ATTN_REQUIRE_CLOSE(tokens_of(r.output), y, 1e-12, 1e-12);
    ATTN_REQUIRE_CLOSE(r.weights, a, 1e-12, 1e-12);
    const auto rt = layer.forward_with_weights(tokens_of(x));
    REQUIRE(std::equal(rt.output.data(), rt.output.data() + rt.output.size(), r.output.data()));
    REQUIRE(std::equal(rt.weights.data(), rt.weights.data() + rt.weights.size(), r.weights.data()));
    ++seed;
  }
}

TEST_CASE("multi_head_self_attention_channel: the upstream shape test", "[multi_head_self_attention_channel]") {
  // tests/test_layers.py: [2, 14, 16, 256], num_heads 4, out_shape 384 -> [2, 14, 16, 384]
  const auto layer = attn::create_attention_layer<float>(
      "multi_head_self_attention_channel", {{"channels", 256}, {"num_heads", 4}, {"out_shape", 384}});
  const auto y = layer.forward(attn::AnyTensor<float>(random_tensor<float, 4>({2, 14, 16, 256}, 3)));
  REQUIRE(y.shape() == Shape{2, 14, 16, 384});
  REQUIRE(all_finite(y.data(), y.size()));
}

TEST_CASE("multi_head_self_attention_channel: bad shapes give ShapeErrors naming the layer",
          "[multi_head_self_attention_channel]") {
  const L layer({.channels = 8});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 3>({1, 3, 4}, 1)),
                      "multi_head_self_attention_channel: input must have shape [*, *, 8] ([batch, tokens, "
                      "channels]), got [1, 3, 4]");
  L tampered = layer;
  tampered.parameters()[1].shape = {8, 9};
  REQUIRE_THROWS_AS(tampered.forward(random_tensor<double, 4>({1, 3, 3, 8}, 1)), attn::WeightsError);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 3, 3, 8)).dimension(0) == 0);
}

TEST_CASE("multi_head_self_attention_channel: 1 and 2 threads give bit-identical results",
          "[multi_head_self_attention_channel][threads]") {
  const attn::MultiHeadSelfAttentionChannel<float> layer({.channels = 64, .num_heads = 4}, 2);
  const auto x = random_tensor<float, 4>({2, 28, 30, 64}, 8);
  REQUIRE(same_bits_for_1_and_2_threads([&] { return layer.forward(x); }));
}

// ---- golden parity (tools/golden/multi_head_self_attention_channel.py, tests/data/multi_head_self_attention_channel/)

TEMPLATE_TEST_CASE("golden: multi_head_self_attention_channel matches torch matmul and softmax",
                   "[golden][multi_head_self_attention_channel]", float, double) {
  using T = TestType;
  for_each_golden<T>("multi_head_self_attention_channel", [](const Golden& g) {
    attn::MultiHeadSelfAttentionChannel<T> layer(g.config.get<attn::MultiHeadSelfAttentionChannelConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto x = input<T, 4>(g, "x");
    const auto r = layer.forward_with_weights(x);
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("multi_head_self_attention_channel", g.config);
    attn::load_weights(any, g.file, "weights");
    check<T>(g, "output", any.forward(attn::AnyTensor<T>(x)).template view<4>());
  });
}
