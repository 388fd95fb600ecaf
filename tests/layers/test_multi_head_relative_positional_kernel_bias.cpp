// multi_head_relative_positional_kernel_bias: the index against the spec's Appendix B.3 table and
// pad_bias examples, against the offsets of NAT's clamped (dilated) window written as a brute-force
// loop, the upstream shapes (Appendix C.1), PyTorch golden data (gather and broadcast add),
// validation and shape errors.
#include <attn/layers/multi_head_relative_positional_kernel_bias.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using KB = attn::MultiHeadRelativePositionalKernelBias<double>;

namespace {
// The first row of the clamped window of query y on an axis of n positions (kernel k, dilation r), from
// NAT's replicate-padded patch grid (spec §5.9 step 3): the valid patches 0..V-1 (V = n - (k-1)r),
// preceded by 0..r-1 and followed by V-r..V-1, each tiled (k-1)/2 times.
Index window_start(Index y, Index n, Index k, Index r) {
  const Index m = (k - 1) / 2, v = n - (k - 1) * r;
  if (y < m * r) return y % r;
  if (y >= n - m * r) return v - r + (y - (n - m * r)) % r;
  return y - m * r;
}
}  // namespace

TEST_CASE("multi_head_relative_positional_kernel_bias: index equals Appendix B.3", "[multi_head_relative_positional_kernel_bias]") {
  REQUIRE(attn::ops::nat_pad_bias(10, 7, 1) == std::vector<Index>{0, 1, 2, 3, 3, 3, 3, 4, 5, 6});
  REQUIRE(attn::ops::nat_pad_bias(16, 7, 2) == std::vector<Index>{0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6});
  // H = 3, W = 4, k = 3, r = 1 (P = 5)
  const KB layer({.input_shape = {12, 1, 1, 9}, .input_height = 3});
  REQUIRE(layer.grid() == std::pair<Index, Index>{3, 4});
  REQUIRE(layer.kernel_size() == 3);
  REQUIRE(layer.relative_position_index().values ==
          std::vector<Index>{12, 13, 14, 17, 18, 19, 22, 23, 24, 11, 12, 13, 16, 17, 18, 21, 22, 23,  //
                             11, 12, 13, 16, 17, 18, 21, 22, 23, 10, 11, 12, 15, 16, 17, 20, 21, 22,  //
                             7,  8,  9,  12, 13, 14, 17, 18, 19, 6,  7,  8,  11, 12, 13, 16, 17, 18,  //
                             6,  7,  8,  11, 12, 13, 16, 17, 18, 5,  6,  7,  10, 11, 12, 15, 16, 17,  //
                             2,  3,  4,  7,  8,  9,  12, 13, 14, 1,  2,  3,  6,  7,  8,  11, 12, 13,  //
                             1,  2,  3,  6,  7,  8,  11, 12, 13, 0,  1,  2,  5,  6,  7,  10, 11, 12});
}

TEST_CASE("multi_head_relative_positional_kernel_bias: index is the offset within NAT's clamped window",
          "[multi_head_relative_positional_kernel_bias]") {
  struct G {
    Index h, w, k, rh, rw;
  };
  // the spec's checked geometries (Appendix B.3) plus unequal dilations
  for (const G g : {G{14, 14, 7, 1, 1}, G{9, 12, 5, 1, 1}, G{28, 28, 7, 2, 2}, G{20, 17, 3, 3, 3}, G{14, 14, 7, 2, 2},
                    G{9, 10, 3, 2, 3}}) {
    INFO(g.h << "x" << g.w << " k " << g.k << " r " << g.rh << "," << g.rw);
    const auto index = attn::ops::nat_relative_position_index(g.h, g.w, g.k, g.rh, g.rw);
    const Index p = 2 * g.k - 1;
    for (Index y = 0; y < g.h; ++y)
      for (Index x = 0; x < g.w; ++x) {
        const Index sy = window_start(y, g.h, g.k, g.rh), sx = window_start(x, g.w, g.k, g.rw);
        for (Index a = 0; a < g.k; ++a)
          for (Index b = 0; b < g.k; ++b) {
            const Index dy = sy + a * g.rh - y, dx = sx + b * g.rw - x;
            REQUIRE(dy % g.rh == 0);
            REQUIRE(dx % g.rw == 0);
            REQUIRE(index(y * g.w + x, a * g.k + b) == (dy / g.rh + g.k - 1) * p + (dx / g.rw + g.k - 1));
          }
      }
  }
}

TEST_CASE("multi_head_relative_positional_kernel_bias: weight, upstream shapes, forward broadcast",
          "[multi_head_relative_positional_kernel_bias]") {
  // upstream [2, 29*29, 8, 3, 25] and (input_height 19, heads first) [2, 8, 19*29, 25]
  const KB a({.input_shape = {841, 8, 3, 25}});
  REQUIRE(a.grid() == std::pair<Index, Index>{29, 29});
  REQUIRE(a.output_shape({2, 841, 8, 3, 25}) == Shape{2, 841, 8, 3, 25});
  const KB b({.input_shape = {8, 551, 25}, .input_height = 19, .is_heads_first = true});
  REQUIRE(b.grid() == std::pair<Index, Index>{19, 29});
  REQUIRE(b.forward(attn::Tensor<double, 4>(2, 8, 551, 25).setZero()).dimensions() ==
          attn::Tensor<double, 4>(2, 8, 551, 25).dimensions());
  const auto& w = b.parameters()[0];
  REQUIRE(w.name == "positional_embedding");
  REQUIRE(w.shape == Shape{8, 81});
  double sq = 0;
  for (double v : w.data) {
    REQUIRE(std::abs(v) <= 0.04);  // truncated at 2 sigma
    sq += v * v;
  }
  REQUIRE(std::sqrt(sq / double(w.data.size())) > 0.01);  // drawn, not zeros
  // forward: every (b, n, h, m) row gets table[h, J[n, :]]
  KB layer({.input_shape = {9, 2, 3, 9}, .input_height = 3});
  auto& t = layer.parameters()[0];
  for (std::size_t i = 0; i < t.data.size(); ++i) t.data[i] = std::sin(0.7 * double(i));
  const auto x = random_tensor<double, 5>({2, 9, 2, 3, 9}, 5);
  const auto y = layer.forward(x);
  const auto& J = layer.relative_position_index();
  for (Index bb = 0; bb < 2; ++bb)
    for (Index n = 0; n < 9; ++n)
      for (Index h = 0; h < 2; ++h)
        for (Index m = 0; m < 3; ++m)
          for (Index k = 0; k < 9; ++k)
            REQUIRE(y(bb, n, h, m, k) == x(bb, n, h, m, k) + t.data[static_cast<std::size_t>(h * 25 + J(n, k))]);
}

TEST_CASE("multi_head_relative_positional_kernel_bias: validation and shape errors",
          "[multi_head_relative_positional_kernel_bias]") {
  REQUIRE_THROWS_WITH(KB({.input_shape = {16, 2, 1, 16}}), "the last extent must be k*k for an odd kernel size k, got 16");
  REQUIRE_THROWS_WITH(KB({.input_shape = {16, 2, 10}}), "the last extent must be k*k for an odd kernel size k, got 10");
  REQUIRE_THROWS_WITH(KB({.input_shape = {10, 2, 9}, .input_height = 3}), "the 10 tokens do not form a grid of height 3");
  REQUIRE_THROWS_WITH(KB({.input_shape = {12, 2, 25}, .input_height = 3}),
                      "the grid 3x4 is too small for kernel 5 with dilation (1, 1): the height must be at least 4");
  REQUIRE_THROWS_WITH(KB({.input_shape = {16, 2, 9}, .dilation_rate = {1, 3}}),
                      "the grid 4x4 is too small for kernel 3 with dilation (1, 3): the width must be at least 6");
  REQUIRE_THROWS_WITH(KB({.input_shape = {16, 2, 9}, .input_height = 0}), "input_height must be -1 or positive, got 0");
  REQUIRE_THROWS_AS(KB({.input_shape = {16, 9}}), attn::ConfigError);
  REQUIRE_THROWS_AS(KB({.input_shape = {16, 2, 9}, .dilation_rate = {0, 1}}), attn::ConfigError);
  const auto problems = attn::check_attention_config("multi_head_relative_positional_kernel_bias",
                                                     {{"input_shape", {10, 2, 9}}, {"input_height", 3}});
  REQUIRE(problems.size() == 1);
  REQUIRE(problems[0].parameter == "input_height");
  const KB layer({.input_shape = {16, 2, 1, 9}});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 5>({2, 16, 2, 2, 9}, 1)),
                      "multi_head_relative_positional_kernel_bias: x must have shape [*, 16, 2, 1, 9] (scores [B, N, "
                      "heads, ..., k*k] of the input_shape), got [2, 16, 2, 2, 9]");
  REQUIRE_THROWS_AS(layer.forward(random_tensor<double, 4>({2, 16, 2, 9}, 1)), attn::ShapeError);
}

// ---- golden parity (tools/golden/multi_head_relative_positional_kernel_bias.py) ----
TEMPLATE_TEST_CASE("golden: multi_head_relative_positional_kernel_bias matches PyTorch's index, gather and add",
                   "[golden][multi_head_relative_positional_kernel_bias]", float, double) {
  using T = TestType;
  for_each_golden<T>("multi_head_relative_positional_kernel_bias", [](const Golden& g) {
    attn::MultiHeadRelativePositionalKernelBias<T> layer(
        g.config.get<attn::MultiHeadRelativePositionalKernelBiasConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto& J = layer.relative_position_index();
    attn::Tensor<T, 2> index(J.rows, J.cols);
    for (Index i = 0; i < index.size(); ++i) index.data()[i] = static_cast<T>(J.values[static_cast<std::size_t>(i)]);
    check<T>(g, "index", index);
    check<T>(g, "attention_bias", layer.attention_bias());
    if (g.config.at("input_shape").size() == 4)
      check<T>(g, "output", layer.forward(input<T, 5>(g, "x")));
    else
      check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
