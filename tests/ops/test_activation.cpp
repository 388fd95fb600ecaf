// ops/activation.hpp: every name of activation_by_name against PyTorch (golden file of
// tools/golden/vision_ops.py), the case rules and Keras-vs-torch differences by hand, and the
// ConfigError of an unknown name with its did-you-mean.
#include "golden_ops.hpp"

using namespace attn_test;
namespace ops = attn::ops;

TEMPLATE_TEST_CASE("activation_by_name: PyTorch golden values of every name", "[ops][activation][golden]", float,
                   double) {
  using T = TestType;
  const auto goldens = op_goldens<T>("ops_activation");
  const auto& g = goldens.front();
  const auto x = g.get("input/x");
  const auto alpha = g.get("input/prelu_alpha");
  ops::ActivationParams<T> p;
  p.alpha = alpha.data();
  p.gain = g.get("input/star_relu_gain").data()[0];
  p.bias = g.get("input/star_relu_bias").data()[0];
  const auto names = g.config.at("names").template get<std::vector<std::string>>();
  REQUIRE(names.size() == 25);
  for (const auto& name : names) {
    INFO(name);
    const auto a = ops::Activation::from_name(name);
    attn::AnyTensor<T> y(x.shape());
    ops::apply_activation<T>(a, x.data(), y.data(), x.size(), x.shape().back(), p);
    g.check(name, y.data(), y.shape());
    // in place gives the same
    attn::AnyTensor<T> z = x;
    ops::apply_activation<T>(a, z.data(), z.size(), z.shape().back(), p);
    CHECK(z == y);
  }
}

TEMPLATE_TEST_CASE("activation_by_name: name rules and Keras-vs-torch values by hand", "[ops][activation]", float,
                   double) {
  using T = TestType;
  const auto f = [](std::string_view name, T v) {
    T y = v;
    ops::apply_activation<T>(ops::Activation::from_name(name), &y, 1, 1);
    return y;
  };
  // Keras leaky_relu slope 0.3 (PyTorch's default is 0.01); the slash form sets it
  CHECK(f("leaky_relu", T(-2)) == Approx(-0.6));
  CHECK(f("leaky_relu/0.01", T(-2)) == Approx(-0.02));
  CHECK(f("Leaky_ReLU/0.2", T(-2)) == Approx(-0.4));  // special names are matched lower-cased
  // hard_sigmoid is TF-Keras 2.x: clip(0.2x + 0.5); hard_sigmoid_torch: clip(x/6 + 0.5)
  CHECK(f("hard_sigmoid", T(1)) == Approx(0.7));
  CHECK(f("hard_sigmoid_torch", T(1)) == Approx(0.5 + 1.0 / 6));
  CHECK(f("hard_sigmoid", T(-3)) == T(0));
  CHECK(f("HARD_SWISH", T(1)) == Approx(1.0 * 4 / 6));
  CHECK(f("GELU/APPROX", T(0)) == T(0));  // prefix match on the lower-cased name
  // gelu/linear: 0 for large negative x, x for large positive x, 0 at 0
  CHECK(f("gelu/linear", T(-10)) == T(0));
  CHECK(f("gelu/linear", T(10)) == T(10));
  CHECK(f("gelu/linear", T(0)) == T(0));
  CHECK(f("squaredrelu", T(3)) == T(9));
  CHECK(f("starrelu", T(3)) == T(9));  // gain 1, bias 0 by default
  CHECK(f("relu6", T(7)) == T(6));
  CHECK(f("elu", T(-1)) == Approx(std::exp(-1.0) - 1));
  // the Keras fallback is case-sensitive: "ReLU" is unknown, as in the reference
  REQUIRE_THROWS_AS(ops::Activation::from_name("ReLU"), attn::ConfigError);
  CHECK(ops::Activation::from_name("swish").kind == ops::Activation::from_name("silu").kind);
}

TEST_CASE("activation_by_name: unknown names are ConfigErrors with a did-you-mean and the known names",
          "[ops][activation][errors]") {
  try {
    (void)ops::Activation::from_name("gleu", "stem_act");
    FAIL("no exception");
  } catch (const attn::ConfigError& e) {
    const std::string m = e.what();
    CHECK(e.parameter() == "activation");
    CHECK(e.type() == "stem_act");
    CHECK_THAT(m, Catch::StartsWith("stem_act: unknown activation 'gleu'. Did you mean 'gelu'? Known activations: "
                                    "hard_swish, leaky_relu, mish, phish, prelu, gelu/app"));
    CHECK_THAT(m, Catch::EndsWith("selu, linear, hard_sigmoid"));
  }
  REQUIRE_THROWS_WITH(ops::Activation::from_name("ReLU"), Catch::Contains("Did you mean 'relu'?"));
  REQUIRE_THROWS_MATCHES(ops::Activation::from_name("leaky_relu/abc"), attn::ConfigError,
                         Catch::Message("activation_by_name: activation 'leaky_relu/abc': the slope after "
                                        "'leaky_relu/' must be a number, got 'abc'"));
  REQUIRE_THROWS_AS(ops::Activation::from_name("leaky_relu/"), attn::ConfigError);
  REQUIRE_THROWS_AS(ops::Activation::from_name(""), attn::ConfigError);
  // prelu without its weight, softmax over a ragged row: ShapeError
  float v[6] = {};
  REQUIRE_THROWS_AS(ops::apply_activation<float>(ops::Activation::from_name("prelu"), v, 6, 3), attn::ShapeError);
  REQUIRE_THROWS_AS(ops::apply_activation<float>(ops::Activation::from_name("softmax"), v, 6, 4), attn::ShapeError);
}
