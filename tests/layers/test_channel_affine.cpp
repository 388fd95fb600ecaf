// channel_affine: hand-computed values, weights and their initial values, validation messages, shape
// errors; golden data from torch.addcmul / torch.mul.
#include <attn/layers/channel_affine.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::ChannelAffine<double>;

TEST_CASE("channel_affine: weights have the reference's names, shapes and initializers", "[channel_affine]") {
  const L a({.channels = 3});
  REQUIRE(a.parameters().size() == 2);
  REQUIRE(a.parameters()[0].name == "weight");
  REQUIRE(a.parameters()[0].data == std::vector<double>{1, 1, 1});
  REQUIRE(a.parameters()[1].name == "bias");
  REQUIRE(a.parameters()[1].data == std::vector<double>{0, 0, 0});
  const L s({.channels = 2, .use_bias = false, .weight_init_value = 1e-6});
  REQUIRE(s.parameters().size() == 1);
  REQUIRE(s.parameters()[0].data == std::vector<double>{1e-6, 1e-6});
  // the default is the identity
  const auto x = random_tensor<double, 4>({2, 3, 2, 3}, 1);
  ATTN_REQUIRE_CLOSE(a.forward(x), x, 0.0, 0.0);
}

TEST_CASE("channel_affine: hand-computed case", "[channel_affine]") {
  L a({.channels = 2});
  a.parameters()[0].data = {2.0, -1.0};
  a.parameters()[1].data = {0.5, 3.0};
  attn::Tensor<double, 4> x(1, 2, 1, 2);
  x.setValues({{{{1.0, 2.0}}, {{-3.0, 0.0}}}});
  const auto y = a.forward(x);
  REQUIRE(y(0, 0, 0, 0) == 2.5);
  REQUIRE(y(0, 0, 0, 1) == 1.0);
  REQUIRE(y(0, 1, 0, 0) == -5.5);
  REQUIRE(y(0, 1, 0, 1) == 3.0);
}

TEST_CASE("channel_affine: validation messages and shape errors", "[channel_affine]") {
  REQUIRE_THROWS_WITH(L({.channels = 0}), "Parameter 'channels' must be positive, got 0");
  REQUIRE_THROWS_WITH(L({.channels = 4, .axis = 1}),
                      "axis must be the channel axis of a [batch, height, width, channels] input (-1 or 3), got 1");
  REQUIRE_THROWS_AS(L({.channels = 4, .axis = 1}), attn::ConfigError);
  const L a({.channels = 4});
  REQUIRE_THROWS_WITH(a.forward(random_tensor<double, 4>({2, 3, 3, 5}, 1)),
                      "channel_affine: input x must have 4 channels (shape [B, H, W, 4]), got shape [2, 3, 3, 5]");
  REQUIRE_THROWS_AS(a.output_shape({2, 3, 4}), attn::ShapeError);
  REQUIRE(a.forward(attn::Tensor<double, 4>(0, 3, 3, 4)).size() == 0);
}

TEMPLATE_TEST_CASE("golden: channel_affine matches torch.addcmul", "[golden][channel_affine]", float, double) {
  using T = TestType;
  for_each_golden<T>("channel_affine", [](const Golden& g) {
    attn::ChannelAffine<T> layer(g.config.get<attn::ChannelAffineConfig>());
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
