// cross_covariance_attention (EdgeNeXt XCA, spec §5.2): an independent loop implementation (dense,
// l2-normalization over the tokens with TensorFlow's clamp, per-head temperature, channel × channel
// softmax, in double), identities (rows of the weights sum to 1, tokens equal the map, a token
// permutation permutes the output), the upstream shape test (Appendix C.1), messages, shape errors,
// threads, and golden parity with torch matmul / softmax.
#include <attn/layers/cross_covariance_attention.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::CrossCovarianceAttention<double>;

namespace {

const attn::Weight<double>* find(const L& l, const std::string& name) { return l.parameters().find(name); }

/// The forward from the spec's formulas on tokens [B, N, C]; returns {output, weights [B, h, d, d]}.
std::pair<attn::Tensor<double, 3>, attn::Tensor<double, 4>> naive(const L& layer, const attn::Tensor<double, 3>& x) {
  const auto& c = layer.config();
  const Index B = x.dimension(0), N = x.dimension(1), h = c.num_heads;
  const Index d = c.key_dim > 0 ? c.key_dim : c.channels / h, D = h * d;
  const auto t = naive_dense(x, *find(layer, "qkv/kernel"), find(layer, "qkv/bias"));
  const auto& tau = find(layer, "temperature/no_weight_decay/weight")->data;
  attn::Tensor<double, 3> y(B, N, D);
  attn::Tensor<double, 4> a(B, h, d, d);
  for (Index b = 0; b < B; ++b)
    for (Index hd = 0; hd < h; ++hd) {
      const auto norm = [&](Index off, Index i) {
        double s = 0;
        for (Index n = 0; n < N; ++n) s += t(b, n, off + hd * d + i) * t(b, n, off + hd * d + i);
        return std::sqrt(std::max(s, 1e-6));
      };
      for (Index i = 0; i < d; ++i) {
        std::vector<double> z(static_cast<std::size_t>(d));
        double mx = -1e300, sum = 0;
        for (Index j = 0; j < d; ++j) {
          double s = 0;
          for (Index n = 0; n < N; ++n) s += t(b, n, hd * d + i) * t(b, n, D + hd * d + j);
          z[static_cast<std::size_t>(j)] = s / norm(0, i) / norm(D, j) * tau[static_cast<std::size_t>(hd)];
          mx = std::max(mx, z[static_cast<std::size_t>(j)]);
        }
        for (auto& v : z) sum += (v = std::exp(v - mx));
        for (Index j = 0; j < d; ++j) a(b, hd, i, j) = z[static_cast<std::size_t>(j)] / sum;
        for (Index n = 0; n < N; ++n) {
          double s = 0;
          for (Index j = 0; j < d; ++j) s += a(b, hd, i, j) * t(b, n, 2 * D + hd * d + j);
          y(b, n, hd * d + i) = s;
        }
      }
    }
  return {naive_dense(y, *find(layer, "output/kernel"), find(layer, "output/bias")), a};
}

void randomize(L& layer, std::uint64_t seed) {
  randomize_weights(layer, seed);
  for (auto& w : layer.parameters()) {
    if (w.name.starts_with("temperature"))
      for (auto& v : w.data) v = 1.0 + 4.0 * std::abs(v);
  }
}

attn::Tensor<double, 3> tokens_of(const attn::Tensor<double, 4>& x) {
  attn::Tensor<double, 3> t(x.dimension(0), x.dimension(1) * x.dimension(2), x.dimension(3));
  std::copy(x.data(), x.data() + x.size(), t.data());
  return t;
}

}  // namespace

TEST_CASE("cross_covariance_attention: weights have the reference's names, shapes and order",
          "[cross_covariance_attention]") {
  const L a({.channels = 16});
  std::vector<std::string> names;
  for (const auto& w : a.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"qkv/kernel", "qkv/bias", "temperature/no_weight_decay/weight",
                                            "output/kernel", "output/bias"});
  REQUIRE(a.parameters()[0].shape == Shape{16, 48});
  REQUIRE(a.parameters()[2].shape == Shape{4, 1, 1});
  for (double v : a.parameters()[2].data) REQUIRE(v == 1.0);
  for (double v : a.parameters()[1].data) REQUIRE(v == 0.0);
  REQUIRE(a.parameters()[3].shape == Shape{16, 16});
  // qkv_bias = false is ignored (the reference always has the bias); out_bias = false drops it
  const L b({.channels = 10, .num_heads = 3, .key_dim = 5, .qkv_bias = false, .out_bias = false});
  names.clear();
  for (const auto& w : b.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"qkv/kernel", "qkv/bias", "temperature/no_weight_decay/weight",
                                            "output/kernel"});
  REQUIRE(b.parameters()[0].shape == Shape{10, 45});
  REQUIRE(b.output_shape({2, 3, 4, 10}) == Shape{2, 3, 4, 15});  // num_heads x key_dim
}

TEST_CASE("cross_covariance_attention: validation messages", "[cross_covariance_attention]") {
  const auto msg = [](const attn::Json& j) {
    const auto p = attn::check_attention_config("cross_covariance_attention", j);
    return p.empty() ? std::string() : p.front().message;
  };
  REQUIRE(msg({{"channels", -1}}) == "Parameter 'channels' must be positive, got -1");
  REQUIRE(msg({{"channels", 8}, {"num_heads", 0}}) == "Parameter 'num_heads' must be positive, got 0");
  REQUIRE(msg({{"channels", 3}}) == "channels (3) must be at least num_heads (4) when key_dim is 0");
  REQUIRE(msg({{"channels", 3}, {"key_dim", 2}}).empty());
  REQUIRE_FALSE(msg({{"channels", 8}, {"key_dim", -3}}).empty());
  REQUIRE_FALSE(msg({{"channels", 8}, {"out_dropout", 2.0}}).empty());
}

TEST_CASE("cross_covariance_attention: equals an independent loop implementation", "[cross_covariance_attention]") {
  const std::vector<L::Config> configs{
      {.channels = 16},
      {.channels = 10, .num_heads = 3, .key_dim = 5, .out_bias = false},
      {.channels = 6, .num_heads = 1},
  };
  std::uint64_t seed = 1;
  for (const auto& c : configs) {
    INFO("config " << seed);
    L layer(c, seed);
    randomize(layer, 100 * seed);
    const auto x = random_tensor<double, 4>({2, 7, 9, c.channels}, seed);
    const auto r = layer.forward_with_weights(x);
    const auto [y, a] = naive(layer, tokens_of(x));
    ATTN_REQUIRE_CLOSE(tokens_of(r.output), y, 1e-12, 1e-12);
    ATTN_REQUIRE_CLOSE(r.weights, a, 1e-12, 1e-12);
    // tokens give the same numbers as the map
    const auto rt = layer.forward_with_weights(tokens_of(x));
    REQUIRE(std::equal(rt.output.data(), rt.output.data() + rt.output.size(), r.output.data()));
    ++seed;
  }
}

TEST_CASE("cross_covariance_attention: identities", "[cross_covariance_attention]") {
  L layer({.channels = 12, .num_heads = 3}, 4);
  const auto x = random_tensor<double, 3>({2, 11, 12}, 5);
  const auto r = layer.forward_with_weights(x);
  // with τ = 1 (the initial temperature) every row of the channel weights sums to 1
  for (Index b = 0; b < 2; ++b)
    for (Index h = 0; h < 3; ++h)
      for (Index i = 0; i < 4; ++i) {
        double s = 0;
        for (Index j = 0; j < 4; ++j) s += r.weights(b, h, i, j);
        REQUIRE(s == Approx(1.0).epsilon(1e-12));
      }
  // the channel scores sum over the tokens: permuting the tokens permutes the output rows alike
  attn::Tensor<double, 3> xp(2, 11, 12);
  for (Index b = 0; b < 2; ++b)
    for (Index n = 0; n < 11; ++n)
      for (Index c = 0; c < 12; ++c) xp(b, n, c) = x(b, (n * 4) % 11, c);
  const auto yp = layer.forward(xp);
  for (Index b = 0; b < 2; ++b)
    for (Index n = 0; n < 11; ++n)
      for (Index c = 0; c < 12; ++c) REQUIRE(yp(b, n, c) == Approx(r.output(b, (n * 4) % 11, c)).margin(1e-12));
  // a zero input: Q̂ = K̂ = 0 (the clamp keeps it finite), uniform weights, output = V's bias through Wout
  attn::Tensor<double, 3> zero(1, 3, 12);
  zero.setZero();
  const auto z = layer.forward_with_weights(zero);
  for (Index i = 0; i < z.weights.size(); ++i) REQUIRE(z.weights.data()[i] == Approx(0.25).epsilon(1e-14));
  REQUIRE(all_finite(z.output.data(), z.output.size()));
}

TEST_CASE("cross_covariance_attention: the upstream shape test", "[cross_covariance_attention]") {
  // tests/test_layers.py: [2, 14, 16, 192] -> same
  const auto layer = attn::create_attention_layer<float>("cross_covariance_attention", {{"channels", 192}});
  const auto y = layer.forward(attn::AnyTensor<float>(random_tensor<float, 4>({2, 14, 16, 192}, 3)));
  REQUIRE(y.shape() == Shape{2, 14, 16, 192});
  REQUIRE(all_finite(y.data(), y.size()));
}

TEST_CASE("cross_covariance_attention: bad shapes give ShapeErrors naming the layer", "[cross_covariance_attention]") {
  const L layer({.channels = 8});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 3, 3, 4}, 1)),
                      "cross_covariance_attention: input must have shape [*, *, *, 8] ([batch, height, width, "
                      "channels]), got [1, 3, 3, 4]");
  L tampered = layer;
  tampered.parameters()[2].shape = {4, 1};
  REQUIRE_THROWS_AS(tampered.forward(random_tensor<double, 4>({1, 3, 3, 8}, 1)), attn::WeightsError);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 3, 3, 8)).dimension(0) == 0);
}

TEST_CASE("cross_covariance_attention: 1 and 2 threads give bit-identical results",
          "[cross_covariance_attention][threads]") {
  const attn::CrossCovarianceAttention<float> layer({.channels = 64, .num_heads = 4}, 2);
  const auto x = random_tensor<float, 4>({2, 28, 30, 64}, 8);
  REQUIRE(same_bits_for_1_and_2_threads([&] { return layer.forward(x); }));
}

// ---- golden parity (tools/golden/cross_covariance_attention.py, tests/data/cross_covariance_attention/) ----

TEMPLATE_TEST_CASE("golden: cross_covariance_attention matches torch matmul and softmax",
                   "[golden][cross_covariance_attention]", float, double) {
  using T = TestType;
  for_each_golden<T>("cross_covariance_attention", [](const Golden& g) {
    attn::CrossCovarianceAttention<T> layer(g.config.get<attn::CrossCovarianceAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto x = input<T, 4>(g, "x");
    const auto r = layer.forward_with_weights(x);
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("cross_covariance_attention", g.config);
    attn::load_weights(any, g.file, "weights");
    check<T>(g, "output", any.forward(attn::AnyTensor<T>(x)).template view<4>());
  });
}
