// anti_alias_downsample: the binomial filters of Appendix B.7, output sizes, a constant image, the asymmetric
// TensorFlow pad, validation messages, shape errors; golden data from a depthwise torch conv2d.
#include <attn/layers/anti_alias_downsample.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::AntiAliasDownsample<double>;

TEST_CASE("anti_alias_downsample: the binomial kernel of Appendix B.7", "[anti_alias_downsample]") {
  REQUIRE(L::binomial(2) == std::vector<double>{0.5, 0.5});
  REQUIRE(L::binomial(3) == std::vector<double>{0.25, 0.5, 0.25});
  REQUIRE(L::binomial(4) == std::vector<double>{0.125, 0.375, 0.375, 0.125});
  REQUIRE(L::binomial(5) == std::vector<double>{0.0625, 0.25, 0.375, 0.25, 0.0625});
  const L a({.channels = 2});
  REQUIRE(a.parameters().size() == 1);
  REQUIRE(a.parameters()[0].name == "anti_alias_down/depthwise_kernel");
  REQUIRE(a.parameters()[0].shape == Shape{3, 3, 2, 1});
  REQUIRE_FALSE(a.parameters()[0].trainable);
  REQUIRE(L({.channels = 2, .trainable = true}).parameters()[0].trainable);
  // [i, j, c, 0] = b_i b_j: the centre 1/4, a corner 1/16, both channels
  REQUIRE(a.parameters()[0].data[(1 * 3 + 1) * 2 + 1] == 0.25);
  REQUIRE(a.parameters()[0].data[0] == 0.0625);
}

TEST_CASE("anti_alias_downsample: sizes, a constant image and the bottom/right pad", "[anti_alias_downsample]") {
  const L a({.channels = 1});
  REQUIRE(a.output_shape({2, 28, 28, 1}) == Shape{2, 14, 14, 1});  // upstream: [2, 28, 28, 192] -> 14x14
  REQUIRE(a.output_shape({1, 7, 5, 1}) == Shape{1, 4, 3, 1});
  attn::Tensor<double, 4> x(1, 4, 4, 1);
  x.setConstant(2.0);
  const auto y = a.forward(x);
  // 4 rows, k 3, s 2: out 2, total 1: no pad at the top, one zero row at the bottom
  REQUIRE(y(0, 0, 0, 0) == 2.0);
  REQUIRE(y(0, 1, 1, 0) == Approx(2.0 * 0.75 * 0.75).epsilon(1e-15));  // bottom-right: a quarter of each axis lost
  REQUIRE(y(0, 1, 0, 0) == Approx(2.0 * 0.75).epsilon(1e-15));
}

TEST_CASE("anti_alias_downsample: validation messages and shape errors", "[anti_alias_downsample]") {
  REQUIRE_THROWS_WITH(L({.channels = 0}), "Parameter 'channels' must be positive, got 0");
  REQUIRE_THROWS_WITH(L({.channels = 2, .kernel_size = 0}), "kernel_size must be in [1, 64], got 0");
  REQUIRE_THROWS_WITH(L({.channels = 2, .strides = 0}), "strides must be positive, got 0");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("anti_alias_downsample", {{"channels", 2}, {"padding", "full"}}),
                      "Parameter 'padding' of 'anti_alias_downsample' must be one of ['same', 'valid', 'SAME', "
                      "'VALID'], got 'full'");
  const L a({.channels = 4});
  REQUIRE_THROWS_WITH(a.forward(random_tensor<double, 4>({2, 3, 3, 5}, 1)),
                      "anti_alias_downsample: input x must have 4 channels (shape [B, H, W, 4]), got shape [2, 3, 3, 5]");
  REQUIRE_THROWS_AS(a.output_shape({2, 3, 4}), attn::ShapeError);
  REQUIRE(a.forward(attn::Tensor<double, 4>(0, 3, 3, 4)).size() == 0);
  REQUIRE(a.forward(attn::Tensor<double, 4>(1, 0, 3, 4)).size() == 0);
}

TEMPLATE_TEST_CASE("golden: anti_alias_downsample matches a depthwise torch conv2d", "[golden][anti_alias_downsample]",
                   float, double) {
  using T = TestType;
  for_each_golden<T>("anti_alias_downsample", [](const Golden& g) {
    attn::AntiAliasDownsample<T> layer(g.config.get<attn::AntiAliasDownsampleConfig>());
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
