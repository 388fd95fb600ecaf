// channel: against an independent loop implementation of the spec's formula, hand-computed cases,
// identities (zero kernels, constant input), validation messages and shape errors.
#include <attn/layers/channel.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using CA = attn::ChannelAttention<double>;

namespace {

double logistic(double z) { return 1.0 / (1.0 + std::exp(-z)); }

/// Plain loops from the formula: g = sigmoid(MLP(mean_space x) + MLP(max_space x)),
/// MLP(z) = relu(z·W1 + b1)·W2 + b2. Weights are read by name.
attn::Tensor<double, 4> naive_channel(const attn::WeightSet<double>& w, const std::string& prefix,
                                      const attn::Tensor<double, 4>& x, bool bias) {
  const Index B = x.dimension(0), H = x.dimension(1), W = x.dimension(2), C = x.dimension(3);
  const auto& k1 = *w.find(prefix + "channel_attention_dense_1/kernel");
  const auto& k2 = *w.find(prefix + "channel_attention_dense_2/kernel");
  const Index hid = k1.shape[1];
  std::vector<double> b1(static_cast<std::size_t>(hid), 0.0), b2(static_cast<std::size_t>(C), 0.0);
  if (bias) {
    b1 = w.find(prefix + "channel_attention_dense_1/bias")->data;
    b2 = w.find(prefix + "channel_attention_dense_2/bias")->data;
  }
  auto mlp = [&](const std::vector<double>& z) {
    std::vector<double> h(static_cast<std::size_t>(hid)), o(static_cast<std::size_t>(C));
    for (Index j = 0; j < hid; ++j) {
      double s = b1[static_cast<std::size_t>(j)];
      for (Index i = 0; i < C; ++i)
        s += z[static_cast<std::size_t>(i)] * k1.data[static_cast<std::size_t>(i * hid + j)];
      h[static_cast<std::size_t>(j)] = s > 0 ? s : 0.0;
    }
    for (Index i = 0; i < C; ++i) {
      double s = b2[static_cast<std::size_t>(i)];
      for (Index j = 0; j < hid; ++j)
        s += h[static_cast<std::size_t>(j)] * k2.data[static_cast<std::size_t>(j * C + i)];
      o[static_cast<std::size_t>(i)] = s;
    }
    return o;
  };
  attn::Tensor<double, 4> g(B, 1, 1, C);
  for (Index b = 0; b < B; ++b) {
    std::vector<double> avg(static_cast<std::size_t>(C), 0.0), mx(static_cast<std::size_t>(C), -1e300);
    for (Index r = 0; r < H; ++r)
      for (Index c = 0; c < W; ++c)
        for (Index k = 0; k < C; ++k) {
          avg[static_cast<std::size_t>(k)] += x(b, r, c, k);
          mx[static_cast<std::size_t>(k)] = std::max(mx[static_cast<std::size_t>(k)], x(b, r, c, k));
        }
    for (auto& a : avg) a /= static_cast<double>(H * W);
    const auto ma = mlp(avg), mm = mlp(mx);
    for (Index k = 0; k < C; ++k)
      g(b, 0, 0, k) = logistic(ma[static_cast<std::size_t>(k)] + mm[static_cast<std::size_t>(k)]);
  }
  return g;
}

/// Sets every bias of `w` to distinct non-zero values.
template <class T>
void set_biases(attn::WeightSet<T>& w) {
  for (auto& p : w)
    if (p.shape.size() == 1)
      for (std::size_t i = 0; i < p.data.size(); ++i) p.data[i] = static_cast<T>(0.07 * double(i % 5) - 0.11);
}

}  // namespace

TEST_CASE("channel: weights have the reference's names, shapes, order and initializers", "[channel]") {
  const CA plain({.channels = 16, .ratio = 4});
  REQUIRE(plain.parameters().size() == 2);
  REQUIRE(plain.parameters()[0].name == "channel_attention_dense_1/kernel");
  REQUIRE(plain.parameters()[0].shape == Shape{16, 4});
  REQUIRE(plain.parameters()[1].name == "channel_attention_dense_2/kernel");
  REQUIRE(plain.parameters()[1].shape == Shape{4, 16});
  const CA biased({.channels = 16, .ratio = 4, .use_bias = true});
  std::vector<std::string> names;
  for (const auto& w : biased.parameters()) names.push_back(w.name);
  REQUIRE(names ==
          std::vector<std::string>{"channel_attention_dense_1/kernel", "channel_attention_dense_1/bias",
                                   "channel_attention_dense_2/kernel", "channel_attention_dense_2/bias"});
  REQUIRE(biased.parameters()[1].shape == Shape{4});
  REQUIRE(biased.parameters()[3].shape == Shape{16});
  for (std::size_t i : {1u, 3u})
    for (double v : biased.parameters()[i].data) REQUIRE(v == 0.0);
  // glorot_uniform: U(-L, L), L = sqrt(6 / (fan_in + fan_out)) = sqrt(6 / 20); not all tiny
  const double limit = std::sqrt(6.0 / 20.0);
  double biggest = 0;
  for (double v : biased.parameters()[0].data) {
    REQUIRE(std::abs(v) <= limit);
    biggest = std::max(biggest, std::abs(v));
  }
  REQUIRE(biggest > 0.5 * limit);
  // deterministic from the seed, different across seeds
  REQUIRE(CA({.channels = 16, .ratio = 4}, 5).parameters()[0].data ==
          CA({.channels = 16, .ratio = 4}, 5).parameters()[0].data);
  REQUIRE(CA({.channels = 16, .ratio = 4}, 5).parameters()[0].data !=
          CA({.channels = 16, .ratio = 4}, 6).parameters()[0].data);
  // reset_parameters(seed) equals constructing with that seed
  CA r({.channels = 16, .ratio = 4}, 1);
  r.reset_parameters(5);
  REQUIRE(r.parameters()[1].data == CA({.channels = 16, .ratio = 4}, 5).parameters()[1].data);
  // another initializer is honoured
  const CA he({.channels = 16, .ratio = 4, .kernel_initializer = "ones"});
  for (double v : he.parameters()[0].data) REQUIRE(v == 1.0);
}

TEST_CASE("channel: equals an independent loop implementation", "[channel]") {
  struct Case {
    int channels, ratio;
    bool bias;
    Shape shape;
  };
  for (const Case& c : {Case{12, 4, false, {2, 5, 6, 12}}, Case{12, 4, true, {3, 4, 3, 12}},
                        Case{6, 1, true, {1, 1, 1, 6}}, Case{8, 8, true, {2, 7, 2, 8}}}) {
    CA layer({.channels = c.channels, .ratio = c.ratio, .use_bias = c.bias}, 17);
    set_biases(layer.parameters());
    const auto x = random_tensor<double, 4>(c.shape, 42, 2.0);
    const auto y = layer.forward(x);
    REQUIRE(y.dimension(1) == 1);
    REQUIRE(y.dimension(2) == 1);
    ATTN_REQUIRE_CLOSE(y, naive_channel(layer.parameters(), "", x, c.bias), 1e-12, 1e-12);
  }
  // float follows double
  attn::ChannelAttention<float> lf({.channels = 12, .ratio = 3, .use_bias = true}, 9);
  CA ld({.channels = 12, .ratio = 3, .use_bias = true}, 9);
  set_biases(lf.parameters());
  set_biases(ld.parameters());
  const auto xf = random_tensor<float, 4>({2, 4, 5, 12}, 3);
  const auto xd = random_tensor<double, 4>({2, 4, 5, 12}, 3);
  ATTN_REQUIRE_CLOSE(lf.forward(xf), ld.forward(xd), 1e-5, 1e-6);
}

TEST_CASE("channel: hand-computed MLP on a constant input: g = sigmoid(2·MLP(k·1))", "[channel]") {
  // C = 2, ratio 2 (hidden 1): W1 = [[1], [2]], b1 = [0.5], W2 = [[1, -1]], b2 = [0.25, 0]
  CA layer({.channels = 2, .ratio = 2, .use_bias = true});
  auto& w = layer.parameters();
  w[0].data = {1.0, 2.0};
  w[1].data = {0.5};
  w[2].data = {1.0, -1.0};
  w[3].data = {0.25, 0.0};
  attn::Tensor<double, 4> x(2, 3, 2, 2);
  for (Index r = 0; r < 3; ++r)
    for (Index c = 0; c < 2; ++c)
      for (Index k = 0; k < 2; ++k) {
        x(0, r, c, k) = 0.5;   // h = relu(0.5 + 1 + 0.5) = 2; MLP = [2.25, -2] (b2 counted twice below)
        x(1, r, c, k) = -1.0;  // h = relu(-1 - 2 + 0.5) = 0; MLP = b2 = [0.25, 0]
      }
  const auto g = layer.forward(x);
  REQUIRE(g(0, 0, 0, 0) == Approx(1.0 / (1.0 + std::exp(-4.5))).epsilon(1e-14));
  REQUIRE(g(0, 0, 0, 1) == Approx(1.0 / (1.0 + std::exp(4.0))).epsilon(1e-14));
  REQUIRE(g(1, 0, 0, 0) == Approx(1.0 / (1.0 + std::exp(-0.5))).epsilon(1e-14));
  REQUIRE(g(1, 0, 0, 1) == 0.5);
}

TEST_CASE("channel: zero kernels give 0.5 everywhere, the gate lies in (0, 1)", "[channel]") {
  const CA zero({.channels = 8, .ratio = 2, .kernel_initializer = "zeros"});
  const auto g = zero.forward(random_tensor<double, 4>({2, 3, 4, 8}, 1, 5.0));
  for (Index i = 0; i < g.size(); ++i) REQUIRE(g.data()[i] == 0.5);
  const CA layer({.channels = 8, .ratio = 2}, 3);
  const auto h = layer.forward(random_tensor<double, 4>({2, 3, 4, 8}, 2, 3.0));
  for (Index i = 0; i < h.size(); ++i) {
    REQUIRE(h.data()[i] > 0.0);
    REQUIRE(h.data()[i] < 1.0);
  }
}

TEST_CASE("channel: validation messages and order", "[channel]") {
  REQUIRE_THROWS_WITH(CA({.channels = 8, .ratio = 0}), "ratio must be positive, got 0");
  REQUIRE_THROWS_WITH(CA({.channels = 8, .ratio = -2}), "ratio must be positive, got -2");
  REQUIRE_THROWS_WITH(CA({.channels = 10, .ratio = 4}), "channels (10) must be divisible by ratio (4)");
  REQUIRE_THROWS_AS(CA({.channels = 10, .ratio = 4}), attn::ConfigError);
  REQUIRE_THROWS_WITH(CA({.channels = 0}), "Parameter 'channels' must be positive, got 0");
  REQUIRE_THROWS_AS(CA({.channels = 8, .kernel_initializer = "bogus"}), attn::ConfigError);
  // through the factory: the reference's order (channels, then ratio, then divisibility)
  REQUIRE_THROWS_WITH(attn::validate_attention_config("channel", {{"channels", -3}, {"ratio", 0}}),
                      "Parameter 'channels' must be positive, got -3");
  const auto both = attn::check_attention_config("channel", {{"channels", -3}, {"ratio", 0}});
  REQUIRE(both.size() == 2);
  REQUIRE(both[1].message == "ratio must be positive, got 0");
  REQUIRE(both[1].parameter == "ratio");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("channel", {{"channels", 12}, {"ratio", 5}}),
                      "channels (12) must be divisible by ratio (5)");
  REQUIRE(
      attn::check_attention_config(
          "channel", {{"channels", 12}, {"ratio", 6}, {"use_bias", true}, {"kernel_regularizer", nullptr}})
          .empty());
  REQUIRE_THROWS_WITH(
      attn::validate_attention_config("channel",
                                      {{"channels", 12}, {"kernel_initializer", "glorot_unifrom"}}),
      Catch::StartsWith("Parameter 'kernel_initializer' of 'channel' must be one of ['glorot_uniform'"));
}

TEST_CASE("channel: factory layer, round trip and JSON defaults", "[channel]") {
  const auto a = attn::create_attention_layer<double>("channel", {{"channels", 16}, {"ratio", 4}}, "ca", 2);
  REQUIRE(a.config() == Json{{"type", "channel"},
                             {"name", "ca"},
                             {"channels", 16},
                             {"ratio", 4},
                             {"kernel_initializer", "glorot_uniform"},
                             {"use_bias", false}});
  const auto x = random_tensor<double, 4>({2, 3, 3, 16}, 4);
  const auto* typed = a.target<CA>();
  REQUIRE(typed != nullptr);
  const auto y = a.forward(attn::AnyTensor<double>(x));
  REQUIRE(y.shape() == Shape{2, 1, 1, 16});
  ATTN_REQUIRE_CLOSE(y.to_tensor<4>(), naive_channel(typed->parameters(), "", x, false), 1e-12, 1e-12);
}

TEST_CASE("channel: bad shapes give ShapeErrors naming the layer", "[channel]") {
  const CA layer({.channels = 8, .ratio = 2});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({2, 3, 3, 7}, 1)),
                      "channel: Expected input channels (7) to match layer channels (8); input shape "
                      "[2, 3, 3, 7]");
  REQUIRE_THROWS_AS(layer.forward(random_tensor<double, 4>({2, 3, 3, 7}, 1)), attn::ShapeError);
  REQUIRE_THROWS_WITH(layer.output_shape({2, 3, 8}),
                      "channel: Expected 4D input shape (batch, height, width, channels), got 3D: [2, 3, 8]");
  REQUIRE_THROWS_WITH(layer.forward(attn::Tensor<double, 4>(2, 0, 3, 8)),
                      "channel: global pooling over space needs height and width >= 1, got input shape "
                      "[2, 0, 3, 8]");
  REQUIRE_THROWS_AS(layer.forward(attn::Tensor<double, 4>(1, 3, 0, 8)), attn::ShapeError);
  REQUIRE(layer.output_shape({2, 3, 4, 8}) == Shape{2, 1, 1, 8});
  // an empty batch is fine
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 3, 3, 8)).size() == 0);
  // through the factory, a wrong rank is a ShapeError naming the type
  const auto any = attn::create_attention_layer<double>("channel", {{"channels", 8}});
  REQUIRE_THROWS_WITH(any.forward(random_any<double>({2, 3, 8}, 1)),
                      Catch::StartsWith("channel: input 0 must have rank 4"));
  // a weight replaced with a wrong shape is a WeightsError, not an out-of-bounds read
  CA broken({.channels = 8, .ratio = 2});
  broken.parameters()[0].shape = {8, 3};
  broken.parameters()[0].data.resize(24);
  REQUIRE_THROWS_WITH(broken.forward(random_tensor<double, 4>({1, 2, 2, 8}, 1)),
                      "channel: weight 'channel_attention_dense_1/kernel' must have shape [8, 4] (32 values), got shape "
                      "[8, 3] with 24 values");
}

// ---- golden parity (tools/golden/channel.py, tests/data/channel/) ----

TEMPLATE_TEST_CASE("golden: channel matches PyTorch pooling and linear", "[golden][channel]", float, double) {
  using T = TestType;
  for_each_golden<T>("channel", [](const Golden& g) {
    attn::ChannelAttention<T> layer(g.config.get<attn::ChannelAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
