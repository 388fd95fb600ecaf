// conv_positional_encoding: the weights' names and shapes, the identity of a zero kernel (upstream
// shape), a hand-computed 2x2 case, a plain-loop depthwise oracle, PyTorch golden data (conv2d with
// groups = C), validation and shape errors.
#include <attn/layers/conv_positional_encoding.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using CPE = attn::ConvPositionalEncoding<double>;

namespace {
template <class A, class B>
bool same(const A& a, const B& b) {
  return a.dimensions() == b.dimensions() && std::equal(a.data(), a.data() + a.size(), b.data());
}
}  // namespace

TEST_CASE("conv_positional_encoding: weights, zero kernel is the identity (upstream [1, 197, 256])",
          "[conv_positional_encoding]") {
  CPE layer({.channels = 256});
  REQUIRE(layer.parameters().size() == 2);
  REQUIRE(layer.parameters()[0].name == "depth_conv/depthwise_kernel");
  REQUIRE(layer.parameters()[0].shape == Shape{3, 3, 256, 1});
  REQUIRE(layer.parameters()[1].name == "depth_conv/bias");
  REQUIRE(layer.parameters()[1].shape == Shape{256});
  const auto x = random_tensor<double, 3>({1, 1 + 14 * 14, 256}, 2);
  REQUIRE_FALSE(same(layer.forward(x), x));  // glorot kernel
  for (auto& w : layer.parameters()) std::fill(w.data.begin(), w.data.end(), 0.0);
  REQUIRE(same(layer.forward(x), x));
}

TEST_CASE("conv_positional_encoding: hand-computed 2x2 grid", "[conv_positional_encoding]") {
  // one channel, image [[1, 2], [3, 4]] after a class token 9; kernel of ones, bias 0.5: every 3x3
  // window around a pixel of a 2x2 image covers all four pixels, so out = pixel + 10 + 0.5
  CPE layer({.channels = 1});
  std::fill(layer.parameters()[0].data.begin(), layer.parameters()[0].data.end(), 1.0);
  layer.parameters()[1].data = {0.5};
  attn::Tensor<double, 3> x(1, 5, 1);
  x.setValues({{{9}, {1}, {2}, {3}, {4}}});
  const auto y = layer.forward(x);
  REQUIRE(y(0, 0, 0) == 9.0);
  REQUIRE(y(0, 1, 0) == 11.5);
  REQUIRE(y(0, 2, 0) == 12.5);
  REQUIRE(y(0, 3, 0) == 13.5);
  REQUIRE(y(0, 4, 0) == 14.5);
}

TEST_CASE("conv_positional_encoding: equals a plain depthwise loop", "[conv_positional_encoding]") {
  struct S {
    Index h, w, c, k;
    int input_height;
  };
  for (const S s : {S{3, 5, 4, 3, 3}, S{4, 4, 2, 5, -1}, S{2, 6, 3, 7, 2}}) {
    CPE layer({.channels = int(s.c), .kernel_size = int(s.k), .input_height = s.input_height}, 4);
    layer.parameters()[1].data.assign(static_cast<std::size_t>(s.c), 0.25);
    const auto x = random_tensor<double, 3>({2, 1 + s.h * s.w, s.c}, 5);
    const auto y = layer.forward(x);
    const auto& k = layer.parameters()[0].data;
    const Index half = s.k / 2;
    for (Index b = 0; b < 2; ++b) {
      for (Index c = 0; c < s.c; ++c) REQUIRE(y(b, 0, c) == x(b, 0, c));
      for (Index r = 0; r < s.h; ++r)
        for (Index q = 0; q < s.w; ++q)
          for (Index c = 0; c < s.c; ++c) {
            double acc = 0.25 + x(b, 1 + r * s.w + q, c);
            for (Index i = 0; i < s.k; ++i)
              for (Index j = 0; j < s.k; ++j) {
                const Index yy = r + i - half, xx = q + j - half;
                if (yy >= 0 && yy < s.h && xx >= 0 && xx < s.w)
                  acc += x(b, 1 + yy * s.w + xx, c) * k[static_cast<std::size_t>((i * s.k + j) * s.c + c)];
              }
            REQUIRE_THAT(y(b, 1 + r * s.w + q, c), Catch::Matchers::WithinAbs(acc, 1e-12));
          }
    }
  }
}

TEST_CASE("conv_positional_encoding: validation and shape errors", "[conv_positional_encoding]") {
  REQUIRE_THROWS_AS(CPE({.channels = 4, .kernel_size = 4}), attn::ConfigError);  // even: H + 1 rows
  REQUIRE_THROWS_WITH(CPE({.channels = 4, .input_height = 0}), "input_height must be -1 or positive, got 0");
  const auto problems = attn::check_attention_config("conv_positional_encoding", {{"channels", 4}, {"kernel_size", 2}});
  REQUIRE(problems.size() == 1);
  REQUIRE(problems[0].parameter == "kernel_size");
  const CPE layer({.channels = 4, .input_height = 3});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 3>({2, 11, 4}, 1)),
                      "conv_positional_encoding: x must hold a class token and then H*W image tokens (H = "
                      "input_height = 3); its 10 image tokens do not form a grid of height 3");
  REQUIRE_THROWS_AS(layer.forward(random_tensor<double, 3>({2, 1, 4}, 1)), attn::ShapeError);
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 3>({2, 0, 4}, 1)),
                      "conv_positional_encoding: x must hold a class token and then H*W image tokens; it holds no "
                      "token");
  REQUIRE_THROWS_AS(layer.forward(random_tensor<double, 3>({2, 10, 5}, 1)), attn::ShapeError);
  const CPE square({.channels = 4});
  REQUIRE_THROWS_WITH(square.forward(random_tensor<double, 3>({2, 8, 4}, 1)),
                      "conv_positional_encoding: x must hold a class token and then H*W image tokens (H = "
                      "floor(sqrt(N - 1))); its 7 image tokens do not form a grid of height 2");
}

// ---- golden parity (tools/golden/conv_positional_encoding.py) ----
TEMPLATE_TEST_CASE("golden: conv_positional_encoding matches PyTorch's depthwise conv2d", "[golden][conv_positional_encoding]",
                   float, double) {
  using T = TestType;
  for_each_golden<T>("conv_positional_encoding", [](const Golden& g) {
    attn::ConvPositionalEncoding<T> layer(g.config.get<attn::ConvPositionalEncodingConfig>());
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 3>(g, "x")));
  });
}
