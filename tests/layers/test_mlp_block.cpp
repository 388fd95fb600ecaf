// mlp_block: against a plain loop, the weights' names and shapes, a hand-computed case, validation
// messages, shape errors; golden data from torch.nn.functional.linear / conv2d and activations.
#include <attn/layers/mlp_block.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::MlpBlock<double>;

TEST_CASE("mlp_block: weights have the reference's names, shapes and initializers", "[mlp_block]") {
  const L a({.channels = 6, .hidden_dim = 10});
  std::vector<std::string> n;
  for (const auto& w : a.parameters()) n.push_back(w.name);
  REQUIRE(n == std::vector<std::string>{"Dense_0/kernel", "Dense_0/bias", "Dense_1/kernel", "Dense_1/bias"});
  REQUIRE(a.parameters()[0].shape == Shape{6, 10});
  REQUIRE(a.parameters()[2].shape == Shape{10, 6});
  const double lim = std::sqrt(6.0 / 16.0);
  for (double v : a.parameters()[0].data) REQUIRE(std::abs(v) <= lim);
  const L b({.channels = 6, .hidden_dim = 10, .output_channel = 3, .use_conv = true, .use_bias = false,
             .activation = attn::ActivationName("prelu")});
  n.clear();
  for (const auto& w : b.parameters()) n.push_back(w.name);
  REQUIRE(n == std::vector<std::string>{"Conv_0/kernel", "prelu/alpha", "Conv_1/kernel"});
  REQUIRE(b.parameters()[0].shape == Shape{1, 1, 6, 10});
  REQUIRE(b.parameters()[1].shape == Shape{1, 10});
  REQUIRE(b.parameters()[2].shape == Shape{1, 1, 10, 3});
}

TEST_CASE("mlp_block: hand-computed case and an independent loop on any rank", "[mlp_block]") {
  // C = 1, hidden 2, O = 1: W0 = (1, -1), b0 = (0, 0.5), relu, W1 = (2, 3)^T, b1 = 1
  L layer({.channels = 1, .hidden_dim = 2, .activation = attn::ActivationName("relu")});
  auto& w = layer.parameters();
  w[0].data = {1.0, -1.0};
  w[1].data = {0.0, 0.5};
  w[2].data = {2.0, 3.0};
  w[3].data = {1.0};
  attn::Tensor<double, 3> x(1, 2, 1);
  x.setValues({{{2.0}, {-1.0}}});
  const auto y = layer.forward(x);
  REQUIRE(y(0, 0, 0) == 5.0);  // h = relu(2, -1.5) = (2, 0) -> 4 + 1
  REQUIRE(y(0, 1, 0) == 5.5);  // h = relu(-1, 1.5) = (0, 1.5) -> 4.5 + 1
  // rank 4, gelu, against loops
  L m({.channels = 3, .hidden_dim = 4, .output_channel = 2}, 5);
  for (auto& p : m.parameters())
    if (p.shape.size() == 1)
      for (std::size_t i = 0; i < p.data.size(); ++i) p.data[i] = 0.1 * double(i) - 0.15;
  const auto x4 = random_tensor<double, 4>({2, 3, 2, 3}, 4, 2.0);
  const auto y4 = m.forward(x4);
  REQUIRE(y4.dimension(3) == 2);
  const auto& k0 = m.parameters()[0].data;
  const auto& b0 = m.parameters()[1].data;
  const auto& k1 = m.parameters()[2].data;
  const auto& b1 = m.parameters()[3].data;
  for (Index r = 0; r < 12; ++r)
    for (Index o = 0; o < 2; ++o) {
      double s = b1[static_cast<std::size_t>(o)];
      for (Index j = 0; j < 4; ++j) {
        double h = b0[static_cast<std::size_t>(j)];
        for (Index c = 0; c < 3; ++c) h += x4.data()[r * 3 + c] * k0[static_cast<std::size_t>(c * 4 + j)];
        h = 0.5 * h * (1.0 + std::erf(h / std::sqrt(2.0)));
        s += h * k1[static_cast<std::size_t>(j * 2 + o)];
      }
      REQUIRE(y4.data()[r * 2 + o] == Approx(s).epsilon(1e-12).margin(1e-14));
    }
}

TEST_CASE("mlp_block: validation messages and shape errors", "[mlp_block]") {
  REQUIRE_THROWS_WITH(L({.channels = 0, .hidden_dim = 4}), "Parameter 'channels' must be positive, got 0");
  REQUIRE_THROWS_WITH(L({.channels = 4, .hidden_dim = 0}), "Parameter 'hidden_dim' must be positive, got 0");
  REQUIRE_THROWS_WITH(L({.channels = 4, .hidden_dim = 4, .drop_rate = 1.5}), "drop_rate must be between 0.0 and 1.0, got 1.5");
  REQUIRE_THROWS_AS(L({.channels = 4, .hidden_dim = 4, .activation = attn::ActivationName("Gelu")}), attn::ConfigError);
  const L layer({.channels = 4, .hidden_dim = 4});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 3>({2, 3, 5}, 1)),
                      "mlp_block: input x must have 4 channels (the last axis), got shape [2, 3, 5]");
  REQUIRE_THROWS_AS(layer.output_shape({4}), attn::ShapeError);
  REQUIRE(layer.output_shape({2, 3, 4, 4}) == Shape{2, 3, 4, 4});
  REQUIRE(layer.forward(attn::Tensor<double, 3>(0, 3, 4)).size() == 0);
}

TEMPLATE_TEST_CASE("golden: mlp_block matches torch linear / conv2d and activations", "[golden][mlp_block]", float,
                   double) {
  using T = TestType;
  for_each_golden<T>("mlp_block", [](const Golden& g) {
    attn::MlpBlock<T> layer(g.config.get<attn::MlpBlockConfig>());
    attn::load_weights(layer, g.file, "weights");
    if (g.file.at("input/x").shape.size() == 3)
      check<T>(g, "output", layer.forward(input<T, 3>(g, "x")));
    else
      check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
