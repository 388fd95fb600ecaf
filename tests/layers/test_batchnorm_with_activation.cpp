// batchnorm_with_activation: hand-computed BatchNorm and EvoNorm values, the group-count rule, weights,
// validation messages, shape errors; golden data from torch.nn.functional.batch_norm and torch reductions.
#include <attn/layers/batchnorm_with_activation.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::BatchnormWithActivation<double>;
using attn::ActivationName;

namespace {
std::vector<std::string> names(const attn::WeightSet<double>& w) {
  std::vector<std::string> n;
  for (const auto& x : w) n.push_back(x.name);
  return n;
}
}  // namespace

TEST_CASE("batchnorm_with_activation: weights have the reference's names, shapes and initializers",
          "[batchnorm_with_activation]") {
  const L a({.channels = 3});
  REQUIRE(names(a.parameters()) ==
          std::vector<std::string>{"bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance"});
  REQUIRE(a.parameters()[0].data == std::vector<double>{1, 1, 1});
  REQUIRE(a.parameters()[2].data == std::vector<double>{0, 0, 0});
  REQUIRE(a.parameters()[3].data == std::vector<double>{1, 1, 1});
  REQUIRE(L({.channels = 3, .zero_gamma = true}).parameters()[0].data == std::vector<double>{0, 0, 0});
  REQUIRE(names(L({.channels = 3, .activation = ActivationName("prelu")}).parameters()).back() == "prelu/alpha");
  // EvoNorm: [1, 1, 1, C]; vv with a nonlinearity, moving_variance for B0 (groups <= 0)
  const L b0({.channels = 4, .activation = ActivationName("relu"), .use_evo_norm = true});
  REQUIRE(names(b0.parameters()) ==
          std::vector<std::string>{"evo_norm/gamma", "evo_norm/beta", "evo_norm/vv", "evo_norm/moving_variance"});
  REQUIRE(b0.parameters()[0].shape == Shape{1, 1, 1, 4});
  const L s0a({.channels = 4, .use_evo_norm = true, .evo_norm_group_size = 2});
  REQUIRE(names(s0a.parameters()) == std::vector<std::string>{"evo_norm/gamma", "evo_norm/beta"});
}

TEST_CASE("batchnorm_with_activation: EvoNorm group count", "[batchnorm_with_activation]") {
  const auto groups = [](int c, int size) {
    return attn::BatchnormWithActivationConfig{.channels = c, .use_evo_norm = true, .evo_norm_group_size = size}
        .evo_groups();
  };
  REQUIRE(groups(8, 4) == 2);
  REQUIRE(groups(10, 3) == 2);   // 3 does not divide 10 -> 2
  REQUIRE(groups(12, 5) == 2);
  REQUIRE(groups(7, 2) == 1);    // 3 -> 2 -> 1
  REQUIRE(groups(8, -1) == -8);  // B0
  REQUIRE(groups(7, -2) == -4);  // floor(7 / -2), as Python
}

TEST_CASE("batchnorm_with_activation: hand-computed cases", "[batchnorm_with_activation]") {
  attn::Tensor<double, 4> x(1, 1, 2, 2);
  x.setValues({{{{1.0, -2.0}, {3.0, 0.5}}}});
  // BN: gamma (2, 1), beta (0, 1), mean (1, 0), var (3, 0), eps 1 -> a = (1, 1), b = (-1, 1); relu after
  L bn({.channels = 2, .activation = ActivationName("relu"), .epsilon = 1.0});
  bn.parameters()[0].data = {2, 1};
  bn.parameters()[1].data = {0, 1};
  bn.parameters()[2].data = {1, 0};
  bn.parameters()[3].data = {3, 0};
  auto y = bn.forward(x);
  REQUIRE(y(0, 0, 0, 0) == 0.0);   // relu(1 - 1)
  REQUIRE(y(0, 0, 0, 1) == 0.0);   // relu(-2 + 1)
  REQUIRE(y(0, 0, 1, 0) == 2.0);   // relu(3 - 1)
  REQUIRE(y(0, 0, 1, 1) == 1.5);
  // act_first: BN(relu(x)): channel 1 at pixel 0: relu(-2) = 0 -> 0·1 + 1 = 1
  L af({.channels = 2, .activation = ActivationName("relu"), .epsilon = 1.0, .act_first = true});
  af.parameters() = bn.parameters();
  REQUIRE(af.forward(x)(0, 0, 0, 1) == 1.0);
  // EvoNorm without nonlinearity, G <= 0: x·gamma + beta (no normalisation)
  L plain({.channels = 2, .use_evo_norm = true});
  plain.parameters()[0].data = {2, 3};
  plain.parameters()[1].data = {1, 0};
  y = plain.forward(x);
  REQUIRE(y(0, 0, 0, 0) == 3.0);
  REQUIRE(y(0, 0, 0, 1) == -6.0);
  // S0a with one group of 2 channels over 2 pixels: values 1, -2, 3, 0.5: mean 0.625, biased variance
  // (0.375² + 2.625² + 2.375² + 0.125²)/4 = 12.6875/4 = 3.171875
  L s0a({.channels = 2, .epsilon = 0.0, .use_evo_norm = true, .evo_norm_group_size = 2});
  y = s0a.forward(x);
  REQUIRE(y(0, 0, 1, 0) == Approx(3.0 / std::sqrt(3.171875)).epsilon(1e-14));
  // B0: per channel istd over the 2 pixels; channel 0: values 1, 3 -> var 1, istd 1; mv 0 -> bstd 0
  L b0({.channels = 2, .activation = ActivationName("relu"), .epsilon = 0.0, .use_evo_norm = true});
  b0.parameters()[3].data = {0, 0};  // moving_variance
  y = b0.forward(x);
  REQUIRE(y(0, 0, 0, 0) == Approx(1.0 / 2.0).epsilon(1e-14));  // x / max(0, 1·1 + 1)
  REQUIRE(y(0, 0, 1, 0) == Approx(3.0 / 4.0).epsilon(1e-14));
}

TEST_CASE("batchnorm_with_activation: validation messages", "[batchnorm_with_activation]") {
  REQUIRE_THROWS_WITH(L({.channels = 0}), "Parameter 'channels' must be positive, got 0");
  REQUIRE_THROWS_WITH(L({.channels = 4, .epsilon = -1.0}), "epsilon must be non-negative, got -1.0");
  REQUIRE_THROWS_WITH(L({.channels = 4, .momentum = 1.5}), "momentum must be between 0.0 and 1.0, got 1.5");
  REQUIRE_THROWS_WITH(L({.channels = 4, .use_evo_norm = true, .evo_norm_group_size = 0}),
                      "evo_norm_group_size must not be 0 (the reference divides by it)");
  REQUIRE_THROWS_WITH(L({.channels = 8, .use_evo_norm = true, .evo_norm_group_size = 9}),
                      "evo_norm_group_size (9) must not exceed channels (8) (the reference would then not normalise)");
  REQUIRE_NOTHROW(L({.channels = 8, .evo_norm_group_size = 0}));  // unused without use_evo_norm
  REQUIRE_THROWS_WITH(L({.channels = 8, .activation = ActivationName("Relu")}),
                      Catch::StartsWith("batchnorm_with_activation: unknown activation 'Relu'. Did you mean 'relu'?"));
  REQUIRE_THROWS_WITH(L({.channels = 8, .axis = {false, 2}}),
                      Catch::StartsWith("axis must be 'auto' or the channel axis"));
  const auto a = attn::create_attention_layer<double>("batchnorm_with_activation", {{"channels", 4}});
  REQUIRE(a.config().at("activation").is_null());
}

TEST_CASE("batchnorm_with_activation: bad shapes give ShapeErrors naming the layer", "[batchnorm_with_activation]") {
  const L layer({.channels = 4});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({2, 3, 3, 5}, 1)),
                      "batchnorm_with_activation: input x must have 4 channels (shape [B, H, W, 4]), got shape [2, 3, "
                      "3, 5]");
  REQUIRE_THROWS_AS(layer.output_shape({2, 3, 4}), attn::ShapeError);
  const L evo({.channels = 4, .activation = ActivationName("relu"), .use_evo_norm = true});
  REQUIRE_THROWS_WITH(evo.forward(attn::Tensor<double, 4>(1, 0, 3, 4)),
                      "batchnorm_with_activation: EvoNorm's statistics over (height, width) need height and width >= "
                      "1, got input shape [1, 0, 3, 4]");
  REQUIRE(evo.forward(attn::Tensor<double, 4>(0, 3, 3, 4)).size() == 0);
}

TEMPLATE_TEST_CASE("golden: batchnorm_with_activation matches torch batch_norm and EvoNorm formulas",
                   "[golden][batchnorm_with_activation]", float, double) {
  using T = TestType;
  for_each_golden<T>("batchnorm_with_activation", [](const Golden& g) {
    attn::BatchnormWithActivation<T> layer(g.config.get<attn::BatchnormWithActivationConfig>());
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
