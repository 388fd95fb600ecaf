// activation_by_name: hand-computed values of the formulas, the name rules (case, prefixes, the Keras
// fallback), prelu / star_relu weights, validation messages, shape errors; golden data from
// torch.nn.functional.
#include <attn/layers/activation_by_name.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::ActivationByName<double>;

namespace {
attn::Tensor<double, 4> row(std::initializer_list<double> v) {
  attn::Tensor<double, 4> x(1, 1, 1, static_cast<Index>(v.size()));
  std::copy(v.begin(), v.end(), x.data());
  return x;
}
}  // namespace

TEST_CASE("activation_by_name: weights have the reference's names, shapes and initializers", "[activation_by_name]") {
  REQUIRE(L({}).parameters().size() == 0);
  REQUIRE(L({.activation = std::nullopt}).parameters().size() == 0);
  const L p({.activation = attn::ActivationName("PReLU"), .channels = 3});
  REQUIRE(p.parameters().size() == 1);
  REQUIRE(p.parameters()[0].name == "PReLU/alpha");  // the reference's layer name is name + activation
  REQUIRE(p.parameters()[0].shape == Shape{1, 1, 3});
  for (double v : p.parameters()[0].data) REQUIRE(v == 0.25);
  const L s({.activation = attn::ActivationName("star_relu")});
  REQUIRE(s.parameters().size() == 2);
  REQUIRE(s.parameters()[0].name == "star_relu/gain");
  REQUIRE(s.parameters()[0].shape.empty());
  REQUIRE(s.parameters()[0].data == std::vector<double>{1.0});
  REQUIRE(s.parameters()[1].name == "star_relu/bias");
  REQUIRE(s.parameters()[1].data == std::vector<double>{0.0});
}

TEST_CASE("activation_by_name: hand-computed values", "[activation_by_name]") {
  const auto x = row({-5, -1, 0, 0.5, 3});
  const auto run = [&](const char* name) { return L({.activation = attn::ActivationName(name)}).forward(x); };
  auto y = run("leaky_relu");  // Keras's slope 0.3
  REQUIRE(y(0, 0, 0, 0) == Approx(-1.5).epsilon(1e-15));
  REQUIRE(y(0, 0, 0, 4) == 3.0);
  y = run("LEAKY_RELU/0.01");  // special names are matched lower-cased
  REQUIRE(y(0, 0, 0, 1) == Approx(-0.01).epsilon(1e-15));
  y = run("hard_sigmoid");  // TF-Keras 2.x: clip(0.2 x + 0.5, 0, 1)
  REQUIRE(y(0, 0, 0, 0) == 0.0);
  REQUIRE(y(0, 0, 0, 1) == Approx(0.3).epsilon(1e-15));
  REQUIRE(y(0, 0, 0, 3) == Approx(0.6).epsilon(1e-15));
  REQUIRE(y(0, 0, 0, 4) == 1.0);
  y = run("hard_sigmoid_torch");  // clip(x/6 + 0.5, 0, 1)
  REQUIRE(y(0, 0, 0, 1) == Approx(1.0 / 3.0).epsilon(1e-15));
  REQUIRE(y(0, 0, 0, 4) == 1.0);
  y = run("hard_swish");  // x relu6(x + 3)/6: 0.5 * 3.5 / 6
  REQUIRE(y(0, 0, 0, 3) == Approx(0.5 * 3.5 / 6).epsilon(1e-15));
  REQUIRE(y(0, 0, 0, 0) == 0.0);
  y = run("squared_relu");
  REQUIRE(y(0, 0, 0, 4) == 9.0);
  REQUIRE(y(0, 0, 0, 0) == 0.0);
  y = run("gelu/linear");  // 0 at 0, -> 0 far left, -> x far right
  REQUIRE(y(0, 0, 0, 2) == 0.0);
  REQUIRE(y(0, 0, 0, 0) == Approx(0.0).margin(1e-12));
  REQUIRE(y(0, 0, 0, 4) == Approx(3.0).epsilon(1e-12));
  y = run("gelu");  // exact: 0.5 x (1 + erf(x / sqrt 2))
  REQUIRE(y(0, 0, 0, 3) == Approx(0.25 * (1 + std::erf(0.5 / std::sqrt(2.0)))).epsilon(1e-14));
  y = run("linear");
  REQUIRE(y(0, 0, 0, 0) == -5.0);
  // null: identity
  REQUIRE(L({.activation = std::nullopt}).forward(x)(0, 0, 0, 3) == 0.5);
  // prelu with alpha per channel; star_relu with its scalars
  L p({.activation = attn::ActivationName("prelu"), .channels = 5});
  p.parameters()[0].data = {0.1, 0.2, 0.3, 0.4, 0.5};
  y = p.forward(x);
  REQUIRE(y(0, 0, 0, 0) == Approx(-0.5).epsilon(1e-15));
  REQUIRE(y(0, 0, 0, 1) == Approx(-0.2).epsilon(1e-15));
  REQUIRE(y(0, 0, 0, 4) == 3.0);
  L s({.activation = attn::ActivationName("StarReLU")});
  s.parameters()[0].data = {2.0};
  s.parameters()[1].data = {-1.0};
  y = s.forward(x);
  REQUIRE(y(0, 0, 0, 4) == 17.0);
  REQUIRE(y(0, 0, 0, 0) == -1.0);
}

TEST_CASE("activation_by_name: validation messages", "[activation_by_name]") {
  REQUIRE_THROWS_WITH(L({.activation = attn::ActivationName("ReLU")}),
                      Catch::StartsWith("activation_by_name: unknown activation 'ReLU'. Did you mean 'relu'? Known "
                                        "activations: hard_swish, leaky_relu,"));
  REQUIRE_THROWS_AS(L({.activation = attn::ActivationName("ReLU")}), attn::ConfigError);
  REQUIRE_THROWS_WITH(L({.activation = attn::ActivationName("leaky_relu/x")}),
                      "activation_by_name: activation 'leaky_relu/x': the slope after 'leaky_relu/' must be a "
                      "number, got 'x'");
  REQUIRE_THROWS_WITH(L({.channels = -1}), "channels must be non-negative, got -1");
  REQUIRE_THROWS_WITH(L({.activation = attn::ActivationName("prelu")}),
                      "channels must be positive for activation 'prelu' (its weight alpha is [1, 1, channels]), got 0");
  // through JSON: the kind of the value, the name, null
  REQUIRE_THROWS_WITH(attn::validate_attention_config("activation_by_name", {{"activation", 3}}),
                      "Parameter 'activation' of 'activation_by_name' must be an activation name (a string) or null, "
                      "got integer 3");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("activation_by_name", {{"activation", "gleu"}}),
                      Catch::StartsWith("activation_by_name: unknown activation 'gleu'. Did you mean 'gelu"));
  REQUIRE_THROWS_WITH(attn::validate_attention_config("activation_by_name", {{"activation", std::string(48, 'a')}}),
                      "Parameter 'activation' of 'activation_by_name' must have at most 47 characters, got 48");
  REQUIRE(attn::check_attention_config("activation_by_name", {{"activation", nullptr}}).empty());
  REQUIRE(attn::check_attention_config("activation_by_name", {{"activation", "gelu/app"}}).empty());
  const auto a = attn::create_attention_layer<double>("activation_by_name", {{"activation", nullptr}});
  REQUIRE(a.config().at("activation").is_null());
  const auto b = attn::create_attention_layer<double>("activation_by_name", {{"activation", "prelu"}, {"channels", 4}});
  REQUIRE(b.config().at("activation") == "prelu");
  REQUIRE(b.parameters().size() == 1);
}

TEST_CASE("activation_by_name: bad shapes give ShapeErrors naming the layer", "[activation_by_name]") {
  const L p({.activation = attn::ActivationName("prelu"), .channels = 4});
  REQUIRE_THROWS_WITH(p.forward(random_tensor<double, 4>({2, 3, 3, 5}, 1)),
                      "activation_by_name: input x must have 4 channels (shape [B, H, W, 4]), got shape [2, 3, 3, 5]");
  REQUIRE_THROWS_AS(p.forward(random_tensor<double, 4>({2, 3, 3, 5}, 1)), attn::ShapeError);
  REQUIRE_THROWS_WITH(p.output_shape({2, 3, 4}),
                      "activation_by_name: input x must have rank 4 [batch, height, width, channels], got shape [2, 3, 4]");
  REQUIRE(L({}).output_shape({2, 3, 4, 7}) == Shape{2, 3, 4, 7});
  REQUIRE(L({}).forward(attn::Tensor<double, 4>(0, 3, 3, 4)).size() == 0);
  L broken({.activation = attn::ActivationName("prelu"), .channels = 4});
  broken.parameters()[0].shape = {1, 1, 3};
  broken.parameters()[0].data.resize(3);
  REQUIRE_THROWS_AS(broken.forward(random_tensor<double, 4>({1, 2, 2, 4}, 1)), attn::WeightsError);
}

TEMPLATE_TEST_CASE("golden: activation_by_name matches torch.nn.functional", "[golden][activation_by_name]", float,
                   double) {
  using T = TestType;
  for_each_golden<T>("activation_by_name", [](const Golden& g) {
    attn::ActivationByName<T> layer(g.config.get<attn::ActivationByNameConfig>());
    if (layer.parameters().size() > 0) attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
