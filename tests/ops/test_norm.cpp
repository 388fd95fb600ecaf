// ops/norm.hpp: layer, batch (inference) and group normalisation and TensorFlow's l2_normalize against
// PyTorch (golden files of tools/golden/vision_ops.py), eps by hand, and typed errors.
#include "golden_ops.hpp"

using namespace attn_test;
namespace ops = attn::ops;

TEMPLATE_TEST_CASE("norm: PyTorch golden cases", "[ops][norm][golden]", float, double) {
  using T = TestType;
  for (const auto& g : op_goldens<T>("ops_norm")) {
    INFO(g.name);
    const auto x = g.get("input/x");
    const std::string op = g.config.at("op");
    const double eps = g.config.at("epsilon");
    const Index C = x.shape().back(), rows = x.size() / C;
    const auto opt = [&](const char* name) { return g.has(name) ? g.get(name) : attn::AnyTensor<T>(); };
    const auto gamma = opt("input/gamma"), beta = opt("input/beta");
    const T* gp = g.has("input/gamma") ? gamma.data() : nullptr;
    const T* bp = g.has("input/beta") ? beta.data() : nullptr;
    attn::AnyTensor<T> y(x.shape());
    if (op == "layer_norm") {
      ops::layer_norm<T>(x.data(), rows, C, gp, bp, eps, y.data());
    } else if (op == "batch_norm") {
      const auto m = g.get("input/moving_mean"), v = g.get("input/moving_variance");
      ops::batch_norm<T>(x.data(), rows, C, gp, bp, m.data(), v.data(), eps, y.data());
    } else if (op == "group_norm") {
      const Index groups = g.config.at("groups");
      ops::group_norm<T>(x.data(), x.shape()[0], rows / x.shape()[0], C, groups, gp, bp, eps, y.data());
    } else {
      REQUIRE(op == "l2_normalize");
      ops::l2_normalize<T>(x.data(), rows, C, y.data(), eps);
    }
    g.check("y", y.data(), y.shape());
  }
}

TEMPLATE_TEST_CASE("norm: eps by hand (BatchNorm's source-dependent eps, TF's l2 clamp of the squared norm)",
                   "[ops][norm]", float, double) {
  using T = TestType;
  // moving variance 0: y = x / sqrt(eps); Keras 1e-3 and torch/KCAM 1e-5 differ by a factor of 10
  const T x[1] = {1}, mean[1] = {0}, var[1] = {0};
  T y[1];
  ops::batch_norm<T>(x, 1, 1, nullptr, nullptr, mean, var, 1e-3, y);
  CHECK(y[0] == Approx(1 / std::sqrt(1e-3)).epsilon(1e-6));
  ops::batch_norm<T>(x, 1, 1, nullptr, nullptr, mean, var, 1e-5, y);
  CHECK(y[0] == Approx(1 / std::sqrt(1e-5)).epsilon(1e-6));
  // l2: [3, 4] -> [0.6, 0.8]; a row with squared norm 1e-14 < eps = 1e-12 divides by sqrt(eps) = 1e-6
  const T v[4] = {3, 4, T(1e-7), 0};
  T out[4];
  ops::l2_normalize<T>(v, 2, 2, out, 1e-12);
  CHECK(out[0] == Approx(0.6));
  CHECK(out[1] == Approx(0.8));
  CHECK(out[2] == Approx(0.1).epsilon(1e-5));  // PyTorch F.normalize would give 1
  CHECK(out[3] == T(0));
  // layer norm of a constant row is beta
  const T c[3] = {2, 2, 2}, be[3] = {1, 2, 3};
  T lc[3];
  ops::layer_norm<T>(c, 1, 3, nullptr, be, 1e-5, lc);
  CHECK(std::vector<T>(lc, lc + 3) == std::vector<T>{1, 2, 3});
}

TEST_CASE("norm: bad options are ConfigErrors naming the layer and parameter", "[ops][norm][errors]") {
  std::vector<float> x(12, 1.0f), y(12);
  REQUIRE_THROWS_MATCHES(ops::group_norm<float>(x.data(), 1, 2, 6, 4, nullptr, nullptr, 1e-5, y.data(), "stage1_gn"),
                         attn::ConfigError,
                         Catch::Message("stage1_gn: groups (4) must be positive and divide the channels (6)"));
  REQUIRE_THROWS_AS(ops::group_norm<float>(x.data(), 1, 2, 6, 0, nullptr, nullptr, 1e-5, y.data()), attn::ConfigError);
  REQUIRE_THROWS_MATCHES(ops::layer_norm<float>(x.data(), 2, 6, nullptr, nullptr, -1.0, y.data()), attn::ConfigError,
                         Catch::Message("layer_norm: epsilon must be non-negative, got -1"));
}
