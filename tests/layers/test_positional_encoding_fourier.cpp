// positional_encoding_fourier: the code against the spec's Appendix B.6 table and closed forms, the
// forward against plain loops, PyTorch golden data, validation and shape errors.
#include <attn/layers/positional_encoding_fourier.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using PEF = attn::PositionalEncodingFourier<double>;

TEST_CASE("positional_encoding_fourier: the code equals Appendix B.6 (H = 2, W = 3, filters = 4)",
          "[positional_encoding_fourier]") {
  // spec Appendix B.6 (printed from float32: within 1e-6 of the exact values); dim_t = [1, 1, 100, 100]
  const double height[2][4] = {{0.000001, -1.000000, 0.031411, 0.999507}, {-0.000003, 1.000000, 0.062790, 0.998027}};
  const double width[3][4] = {{0.866026, -0.499999, 0.020942, 0.999781},
                              {-0.866025, -0.500001, 0.041876, 0.999123},
                              {-0.000002, 1.000000, 0.062790, 0.998027}};
  const auto pe = PEF::fourier_code(2, 3, 4, 1e4);
  REQUIRE(pe.dimension(2) == 8);
  for (Index y = 0; y < 2; ++y)
    for (Index x = 0; x < 3; ++x)
      for (Index m = 0; m < 4; ++m) {
        REQUIRE(std::abs(pe(y, x, m) - height[y][m]) <= 1.5e-6);
        REQUIRE(std::abs(pe(y, x, 4 + m) - width[x][m]) <= 1.5e-6);
      }
}

TEST_CASE("positional_encoding_fourier: code identities (sin/cos pairs, frequencies)", "[positional_encoding_fourier]") {
  const auto pe = PEF::fourier_code(5, 7, 16, 1e4);
  for (Index y = 0; y < 5; ++y)
    for (Index x = 0; x < 7; ++x)
      for (Index m = 0; m < 32; m += 2) REQUIRE(std::abs(pe(y, x, m) * pe(y, x, m) + pe(y, x, m + 1) * pe(y, x, m + 1) - 1.0) < 1e-14);
  // the height code does not depend on x, the width code not on y
  for (Index m = 0; m < 16; ++m) {
    REQUIRE(pe(3, 0, m) == pe(3, 6, m));
    REQUIRE(pe(0, 4, 16 + m) == pe(4, 4, 16 + m));
  }
  // pair j: angle (y + 1)/(H + 1e-6)·2π / 1e4^(2j/16)
  const double a = 3.0 / (5.0 + 1e-6) * 2.0 * std::numbers::pi / std::pow(1e4, 6.0 / 16.0);
  REQUIRE(pe(2, 1, 6) == Approx(std::sin(a)).margin(1e-15));
  REQUIRE(pe(2, 1, 7) == Approx(std::cos(a)).margin(1e-15));
}

TEST_CASE("positional_encoding_fourier: weights and forward against plain loops", "[positional_encoding_fourier]") {
  PEF layer({.channels = 5, .filters = 6, .temperature = 50.0}, 4);
  REQUIRE(layer.parameters().size() == 2);
  REQUIRE(layer.parameters()[0].name == "ww");
  REQUIRE(layer.parameters()[0].shape == Shape{12, 5});
  REQUIRE(layer.parameters()[1].name == "bb");
  REQUIRE(layer.parameters()[1].shape == Shape{5});
  for (double v : layer.parameters()[1].data) REQUIRE(v == 0.0);
  const double limit = std::sqrt(6.0 / 17.0);
  for (double v : layer.parameters()[0].data) REQUIRE(std::abs(v) <= limit);
  for (auto& v : layer.parameters()[1].data) v = 0.3;
  const auto x = random_tensor<double, 4>({2, 4, 3, 5}, 8);
  const auto y = layer.forward(x);
  const auto& ww = layer.parameters()[0].data;
  for (Index b = 0; b < 2; ++b)
    for (Index r = 0; r < 4; ++r)
      for (Index c = 0; c < 3; ++c)
        for (Index k = 0; k < 5; ++k) {
          double s = 0.3;
          for (Index m = 0; m < 12; ++m) {
            const bool w_part = m >= 6;
            const Index mm = w_part ? m - 6 : m;
            const double pos = (w_part ? double(c + 1) / (3.0 + 1e-6) : double(r + 1) / (4.0 + 1e-6)) * 2.0 * std::numbers::pi;
            const double v = pos / std::pow(50.0, 2.0 * double(mm / 2) / 6.0);
            s += (mm % 2 == 0 ? std::sin(v) : std::cos(v)) * ww[static_cast<std::size_t>(m * 5 + k)];
          }
          REQUIRE(y(b, r, c, k) == Approx(x(b, r, c, k) + s).margin(1e-13));
        }
  // any grid: the weights do not depend on H, W
  REQUIRE(layer.forward(random_tensor<double, 4>({1, 9, 2, 5}, 1)).dimension(1) == 9);
  // upstream shape test [2, 8, 16, 49]
  const auto any = attn::create_attention_layer<float>("positional_encoding_fourier", {{"channels", 49}});
  REQUIRE(any.forward(random_any<float>({2, 8, 16, 49}, 1)).shape() == Shape{2, 8, 16, 49});
}

TEST_CASE("positional_encoding_fourier: validation and shape errors", "[positional_encoding_fourier]") {
  REQUIRE_THROWS_WITH(PEF({.channels = 4, .filters = 31}), "filters must be even, got 31");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("positional_encoding_fourier", {{"channels", 4}, {"filters", 7}}),
                      "filters must be even, got 7");
  REQUIRE_THROWS_AS(PEF({.channels = 4, .filters = 0}), attn::ConfigError);
  REQUIRE_THROWS_AS(PEF({.channels = 4, .temperature = 0.0}), attn::ConfigError);
  REQUIRE_THROWS_AS(PEF({.channels = 0}), attn::ConfigError);
  const PEF layer({.channels = 4, .filters = 2});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 2, 3, 5}, 1)),
                      "positional_encoding_fourier: x must have shape [*, *, *, 4] (an image [B, H, W, channels]), got "
                      "[1, 2, 3, 5]");
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 2, 3, 4)).size() == 0);
}

// ---- golden parity (tools/golden/positional_encoding_fourier.py, tests/data/positional_encoding_fourier/) ----
TEMPLATE_TEST_CASE("golden: positional_encoding_fourier matches PyTorch sin, cos and linear",
                   "[golden][positional_encoding_fourier]", float, double) {
  using T = TestType;
  for_each_golden<T>("positional_encoding_fourier", [](const Golden& g) {
    attn::PositionalEncodingFourier<T> layer(g.config.get<attn::PositionalEncodingFourierConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto x = input<T, 4>(g, "x");
    const attn::Tensor<double, 3> code = layer.fourier_code(x.dimension(1), x.dimension(2));
    const attn::Tensor<T, 3> code_t = code.template cast<T>();
    check<T>(g, "code", code_t);
    check<T>(g, "output", layer.forward(x));
  });
}
