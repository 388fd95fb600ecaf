// se_module: make_divisible's examples, the weights' names and shapes, a hand-computed gate, validation
// messages, shape errors; golden data from torch adaptive_avg_pool2d, conv2d / linear and activations.
#include <attn/layers/se_module.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::SEModule<double>;

namespace {
std::vector<std::string> names(const attn::WeightSet<double>& w) {
  std::vector<std::string> n;
  for (const auto& x : w) n.push_back(x.name);
  return n;
}
}  // namespace

TEST_CASE("se_module: make_divisible", "[se_module]") {
  REQUIRE(attn::make_divisible(24 * 0.25, 8) == 8);
  REQUIRE(attn::make_divisible(40 * 0.25, 8) == 16);  // 10 -> 8 < 9 -> 16
  REQUIRE(attn::make_divisible(96 * 0.25, 8) == 24);
  REQUIRE(attn::make_divisible(12, 8) == 16);          // halves round up: int(12 + 4) // 8 = 2
  REQUIRE(attn::make_divisible(3, 8) == 8);            // at least the divisor
  REQUIRE(attn::make_divisible(3, 8, 4) == 4);         // or min_value
  REQUIRE(L({.channels = 192}).config().reduction() == 48);
}

TEST_CASE("se_module: weights have the reference's names, shapes and initializers", "[se_module]") {
  const L a({.channels = 40});
  REQUIRE(names(a.parameters()) ==
          std::vector<std::string>{"1_conv/kernel", "1_conv/bias", "2_conv/kernel", "2_conv/bias"});
  REQUIRE(a.parameters()[0].shape == Shape{1, 1, 40, 16});
  REQUIRE(a.parameters()[2].shape == Shape{1, 1, 16, 40});
  for (double v : a.parameters()[1].data) REQUIRE(v == 0.0);
  const double lim = std::sqrt(6.0 / 56.0);  // glorot: fans 40 and 16
  for (double v : a.parameters()[0].data) REQUIRE(std::abs(v) <= lim);
  const L b({.channels = 16, .activation = {attn::ActivationName("prelu"), attn::ActivationName("sigmoid"), true},
             .use_bias = false, .use_conv = false});
  REQUIRE(names(b.parameters()) == std::vector<std::string>{"1_dense/kernel", "prelu/alpha", "2_dense/kernel"});
  REQUIRE(b.parameters()[0].shape == Shape{16, 8});
  REQUIRE(b.parameters()[1].shape == Shape{8});
}

TEST_CASE("se_module: hand-computed gate", "[se_module]") {
  // C = 2, R = 8 (at least the divisor); W1 zero but for column 0 = (1, 1), W2 row 0 = (1, -1)
  L layer({.channels = 2, .use_bias = false});
  auto& w = layer.parameters();
  std::fill(w[0].data.begin(), w[0].data.end(), 0.0);
  std::fill(w[1].data.begin(), w[1].data.end(), 0.0);
  w[0].data[0] = 1.0;      // [0, 0, 0, 0]
  w[0].data[8] = 1.0;      // [0, 0, 1, 0]
  w[1].data[0] = 1.0;      // [0, 0, 0, 0]
  w[1].data[1] = -1.0;     // [0, 0, 0, 1]
  attn::Tensor<double, 4> x(1, 1, 2, 2);
  x.setValues({{{{1.0, 2.0}, {3.0, -2.0}}}});  // means (2, 0) -> h0 = relu(2) = 2 -> s = sigmoid(2, -2)
  const auto y = layer.forward(x);
  const double g = 1.0 / (1.0 + std::exp(-2.0));
  REQUIRE(y(0, 0, 0, 0) == Approx(g).epsilon(1e-14));
  REQUIRE(y(0, 0, 0, 1) == Approx(2.0 * (1.0 - g)).epsilon(1e-14));
  REQUIRE(y(0, 0, 1, 0) == Approx(3.0 * g).epsilon(1e-14));
}

TEST_CASE("se_module: validation messages and JSON forms of activation", "[se_module]") {
  REQUIRE_THROWS_WITH(L({.channels = 0}), "Parameter 'channels' must be positive, got 0");
  REQUIRE_THROWS_WITH(L({.channels = 8, .se_ratio = 0.0}), "se_ratio must be positive, got 0.0");
  REQUIRE_THROWS_WITH(L({.channels = 8, .divisor = 0}), "divisor must be positive, got 0");
  REQUIRE_THROWS_WITH(L({.channels = 8, .activation = {attn::ActivationName("prelu"), attn::ActivationName("prelu"), true}}),
                      "activation: hidden and output 'prelu' would both own the weights 'prelu/...'");
  const auto act = [](attn::Json a) {
    return attn::create_attention_layer<double>("se_module", {{"channels", 8}, {"activation", a}}).config().at("activation");
  };
  REQUIRE(act("swish") == "swish");
  REQUIRE(act(attn::Json::array({"relu", "hard_sigmoid_torch"})) == attn::Json::array({"relu", "hard_sigmoid_torch"}));
  REQUIRE(act(nullptr).is_null());
  REQUIRE_THROWS_WITH(attn::validate_attention_config("se_module", {{"channels", 8}, {"activation", {"relu", "sigmod"}}}),
                      Catch::StartsWith("se_module: unknown activation 'sigmod'. Did you mean 'sigmoid'?"));
  REQUIRE(attn::check_attention_config("se_module", {{"channels", 8}, {"activation", {"relu", "sigmod"}}})[0].parameter ==
          "activation[1]");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("se_module", {{"channels", 8}, {"activation", {"relu"}}}),
                      "Parameter 'activation' of 'se_module' must be an activation name, null or a list of 2 (hidden, "
                      "output), got array [\"relu\"]");
  // activation null: no hidden activation, sigmoid at the output
  L lin({.channels = 4, .activation = {attn::ActivationName(), attn::ActivationName("sigmoid"), false}}, 3);
  L ident({.channels = 4, .activation = {attn::ActivationName("linear"), attn::ActivationName("sigmoid"), false}}, 3);
  const auto x = random_tensor<double, 4>({2, 3, 3, 4}, 2);
  ATTN_REQUIRE_CLOSE(lin.forward(x), ident.forward(x), 0.0, 0.0);
}

TEST_CASE("se_module: bad shapes give ShapeErrors naming the layer", "[se_module]") {
  const L layer({.channels = 4});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({2, 3, 3, 5}, 1)),
                      "se_module: input x must have 4 channels (shape [B, H, W, 4]), got shape [2, 3, 3, 5]");
  REQUIRE_THROWS_WITH(layer.forward(attn::Tensor<double, 4>(1, 0, 3, 4)),
                      "se_module: the squeeze (mean over height and width) needs height and width >= 1, got input "
                      "shape [1, 0, 3, 4]");
  REQUIRE_THROWS_AS(layer.output_shape({2, 3, 4}), attn::ShapeError);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 3, 3, 4)).size() == 0);
}

TEMPLATE_TEST_CASE("golden: se_module matches torch pooling, conv2d / linear and activations", "[golden][se_module]",
                   float, double) {
  using T = TestType;
  for_each_golden<T>("se_module", [](const Golden& g) {
    attn::SEModule<T> layer(g.config.get<attn::SeModuleConfig>());
    REQUIRE(layer.config().reduction() == std::stoi(g.meta("reduction")));
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
