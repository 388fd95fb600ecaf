// layer_norm: against a plain loop of the formula, hand-computed values, validation messages, shape
// errors; golden data from torch.nn.functional.layer_norm.
#include <attn/layers/layer_norm.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::LayerNorm<double>;

TEST_CASE("layer_norm: weights have the reference's names, shapes and initializers", "[layer_norm]") {
  const L a({.channels = 6});
  REQUIRE(a.parameters().size() == 2);
  REQUIRE(a.parameters()[0].name == "ln/gamma");
  REQUIRE(a.parameters()[0].shape == Shape{6});
  REQUIRE(a.parameters()[1].name == "ln/beta");
  for (double v : a.parameters()[0].data) REQUIRE(v == 1.0);
  for (double v : a.parameters()[1].data) REQUIRE(v == 0.0);
  const L b({.channels = 6, .zero_gamma = true, .center = false});
  REQUIRE(b.parameters().size() == 1);
  for (double v : b.parameters()[0].data) REQUIRE(v == 0.0);
}

TEST_CASE("layer_norm: hand-computed case and an independent loop", "[layer_norm]") {
  // one pixel [1, 2, 3, 6]: mean 3, biased variance 17/6 -> (x - 3)/sqrt(17/6 + eps)
  L layer({.channels = 4, .epsilon = 0.0});
  attn::Tensor<double, 4> x(1, 1, 1, 4);
  x.setValues({{{{1, 2, 3, 6}}}});
  layer.parameters()[0].data = {1, 2, 1, 1};
  layer.parameters()[1].data = {0, 0, 0.5, 0};
  const auto y = layer.forward(x);
  const double s = std::sqrt(14.0 / 4.0);  // squares of (-2, -1, 0, 3) sum to 14
  REQUIRE(y(0, 0, 0, 0) == Approx(-2.0 / s).epsilon(1e-14));
  REQUIRE(y(0, 0, 0, 1) == Approx(-2.0 / s).epsilon(1e-14));
  REQUIRE(y(0, 0, 0, 2) == Approx(0.5).epsilon(1e-14));
  REQUIRE(y(0, 0, 0, 3) == Approx(3.0 / s).epsilon(1e-14));
  // loop oracle, eps 1e-3, random affine
  L r({.channels = 7, .epsilon = 1e-3}, 3);
  const auto xr = random_tensor<double, 4>({2, 3, 4, 7}, 5, 3.0);
  const auto gr = random_any<double>({7}, 6, 2.0);
  r.parameters()[0].data.assign(gr.data(), gr.data() + 7);
  const auto yr = r.forward(xr);
  const auto& g = r.parameters()[0].data;
  for (Index p = 0; p < 24; ++p) {
    double m = 0, v = 0;
    for (Index c = 0; c < 7; ++c) m += xr.data()[p * 7 + c];
    m /= 7;
    for (Index c = 0; c < 7; ++c) v += (xr.data()[p * 7 + c] - m) * (xr.data()[p * 7 + c] - m);
    v /= 7;
    for (Index c = 0; c < 7; ++c)
      REQUIRE(yr.data()[p * 7 + c] ==
              Approx(g[static_cast<std::size_t>(c)] * (xr.data()[p * 7 + c] - m) / std::sqrt(v + 1e-3)).epsilon(1e-12));
  }
}

TEST_CASE("layer_norm: validation messages", "[layer_norm]") {
  REQUIRE_THROWS_WITH(L({.channels = 0}), "Parameter 'channels' must be positive, got 0");
  REQUIRE_THROWS_WITH(L({.channels = 4, .epsilon = -1.0}), "epsilon must be non-negative, got -1.0");
  REQUIRE_THROWS_WITH(L({.channels = 4, .axis = {false, 1}}),
                      "axis must be 'auto' or the channel axis of a [batch, height, width, channels] input (-1 or 3), "
                      "got 1");
  REQUIRE(attn::check_attention_config("layer_norm", {{"channels", 4}, {"axis", 3}}).empty());
  REQUIRE(attn::check_attention_config("layer_norm", {{"channels", 4}, {"axis", "auto"}}).empty());
  REQUIRE_THROWS_WITH(attn::validate_attention_config("layer_norm", {{"channels", 4}, {"axis", "last"}}),
                      "Parameter 'axis' of 'layer_norm' must be 'auto' or an integer, got string \"last\"");
  const auto a = attn::create_attention_layer<double>("layer_norm", {{"channels", 4}, {"axis", -1}});
  REQUIRE(a.config().at("axis") == -1);
  REQUIRE(attn::create_attention_layer<double>("layer_norm", {{"channels", 4}}).config().at("axis") == "auto");
}

TEST_CASE("layer_norm: bad shapes give ShapeErrors naming the layer", "[layer_norm]") {
  const L layer({.channels = 4});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({2, 3, 3, 5}, 1)),
                      "layer_norm: input x must have 4 channels (shape [B, H, W, 4]), got shape [2, 3, 3, 5]");
  REQUIRE_THROWS_AS(layer.output_shape({2, 3, 4}), attn::ShapeError);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 3, 3, 4)).size() == 0);
}

TEMPLATE_TEST_CASE("golden: layer_norm matches torch.nn.functional.layer_norm", "[golden][layer_norm]", float, double) {
  using T = TestType;
  for_each_golden<T>("layer_norm", [](const Golden& g) {
    attn::LayerNorm<T> layer(g.config.get<attn::LayerNormConfig>());
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
