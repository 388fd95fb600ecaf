// conv_relative_positional_encoding: the weights' names and shapes (upstream q = v = [1, 8, 197, 6]),
// the zero class-token row, a plain-loop oracle (head chunks, depthwise convolutions, product with the
// queries), PyTorch golden data, validation and shape errors.
#include <attn/layers/conv_relative_positional_encoding.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using CRPE = attn::ConvRelativePositionalEncoding<double>;

TEST_CASE("conv_relative_positional_encoding: weights and upstream shape, zero class-token row",
          "[conv_relative_positional_encoding]") {
  const CRPE layer({.key_dim = 6});
  const auto& p = layer.parameters();
  REQUIRE(p.size() == 6);
  const Index k[3] = {3, 5, 7}, c[3] = {12, 18, 18};
  for (std::size_t i = 0; i < 3; ++i) {
    REQUIRE(p[2 * i].name == fmt::format("depth_conv_{}/depthwise_kernel", i + 1));
    REQUIRE(p[2 * i].shape == Shape{k[i], k[i], c[i], 1});
    REQUIRE(p[2 * i + 1].name == fmt::format("depth_conv_{}/bias", i + 1));
    REQUIRE(p[2 * i + 1].shape == Shape{c[i]});
  }
  const auto q = random_tensor<double, 4>({1, 8, 1 + 14 * 14, 6}, 1);
  const auto v = random_tensor<double, 4>({1, 8, 1 + 14 * 14, 6}, 2);
  const auto y = layer.forward(q, v);
  REQUIRE(y.dimensions() == q.dimensions());
  for (Index h = 0; h < 8; ++h)
    for (Index j = 0; j < 6; ++j) REQUIRE(y(0, h, 0, j) == 0.0);
}

TEST_CASE("conv_relative_positional_encoding: equals a plain loop", "[conv_relative_positional_encoding]") {
  struct S {
    Index h, w, d;
    attn::IntList splits, kernels;
    int input_height;
  };
  for (const S& s : {S{3, 4, 2, {1, 2}, {3, 5}, 3}, S{4, 4, 3, {2, 1, 1}, {1, 3, 7}, -1}}) {
    CRPE layer({.key_dim = int(s.d), .head_splits = s.splits, .head_kernel_size = s.kernels,
                .input_height = s.input_height}, 6);
    for (std::size_t i = 1; i < layer.parameters().size(); i += 2)
      for (auto& b : layer.parameters()[i].data) b = 0.1 * double(i);
    const Index heads = layer.config().heads(), n = 1 + s.h * s.w;
    const auto q = random_tensor<double, 4>({2, heads, n, s.d}, 3);
    const auto v = random_tensor<double, 4>({2, heads, n, s.d}, 4);
    const auto y = layer.forward(q, v);
    Index head0 = 0;
    for (std::size_t g = 0; g < s.splits.size(); ++g) {
      const Index split = s.splits[g], k = s.kernels[g], half = k / 2, c = split * s.d;
      const auto& kern = layer.parameters()[2 * g].data;
      const auto& bias = layer.parameters()[2 * g + 1].data;
      for (Index b = 0; b < 2; ++b)
        for (Index hd = head0; hd < head0 + split; ++hd)
          for (Index r = 0; r < s.h; ++r)
            for (Index x = 0; x < s.w; ++x)
              for (Index j = 0; j < s.d; ++j) {
                const Index ch = (hd - head0) * s.d + j;
                double acc = bias[static_cast<std::size_t>(ch)];
                for (Index a = 0; a < k; ++a)
                  for (Index e = 0; e < k; ++e) {
                    const Index yy = r + a - half, xx = x + e - half;
                    if (yy >= 0 && yy < s.h && xx >= 0 && xx < s.w)
                      acc += v(b, hd, 1 + yy * s.w + xx, j) * kern[static_cast<std::size_t>((a * k + e) * c + ch)];
                  }
                REQUIRE_THAT(y(b, hd, 1 + r * s.w + x, j),
                             Catch::Matchers::WithinAbs(q(b, hd, 1 + r * s.w + x, j) * acc, 1e-12));
              }
      head0 += split;
    }
  }
}

TEST_CASE("conv_relative_positional_encoding: validation and shape errors", "[conv_relative_positional_encoding]") {
  REQUIRE_THROWS_WITH(CRPE({.key_dim = 4, .head_splits = {2, 2}}),
                      "head_kernel_size must have one kernel per head split (2), got 3");
  REQUIRE_THROWS_AS(CRPE({.key_dim = 4, .head_kernel_size = {3, 4, 5}}), attn::ConfigError);  // even kernel
  REQUIRE_THROWS_AS(CRPE({.key_dim = 4, .head_splits = {2, 0, 3}}), attn::ConfigError);
  const auto problems = attn::check_attention_config("conv_relative_positional_encoding",
                                                     {{"key_dim", 4}, {"head_splits", {4, 4}}});
  REQUIRE(problems.size() == 1);
  REQUIRE(problems[0].parameter == "head_kernel_size");
  const CRPE layer({.key_dim = 2, .head_splits = {1, 2}, .head_kernel_size = {3, 3}});
  const auto q = random_tensor<double, 4>({2, 3, 10, 2}, 1);
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({2, 4, 10, 2}, 1), random_tensor<double, 4>({2, 4, 10, 2}, 1)),
                      "conv_relative_positional_encoding: query must have shape [*, 3, *, 2] ([B, heads, 1 + H*W, "
                      "key_dim] with heads = sum(head_splits) = 3), got [2, 4, 10, 2]");
  REQUIRE_THROWS_AS(layer.forward(q, random_tensor<double, 4>({2, 3, 5, 2}, 1)), attn::ShapeError);
  REQUIRE_THROWS_AS(layer.forward(random_tensor<double, 4>({2, 3, 8, 2}, 1), random_tensor<double, 4>({2, 3, 8, 2}, 1)),
                    attn::ShapeError);  // 7 image tokens: no grid
  REQUIRE_NOTHROW(layer.forward(q, q));
}

// ---- golden parity (tools/golden/conv_relative_positional_encoding.py) ----
TEMPLATE_TEST_CASE("golden: conv_relative_positional_encoding matches PyTorch's depthwise conv2d and product",
                   "[golden][conv_relative_positional_encoding]", float, double) {
  using T = TestType;
  for_each_golden<T>("conv_relative_positional_encoding", [](const Golden& g) {
    attn::ConvRelativePositionalEncoding<T> layer(g.config.get<attn::ConvRelativePositionalEncodingConfig>());
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "query"), input<T, 4>(g, "value")));
  });
}
