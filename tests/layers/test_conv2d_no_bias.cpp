// conv2d_no_bias: the padding rules against a plain loop, hand-computed output sizes, the initializer,
// validation messages, shape errors; golden data from torch.nn.functional.conv2d with explicit pads.
#include <attn/layers/conv2d_no_bias.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::Conv2dNoBias<double>;

namespace {
/// Plain loop: zero pads (t, b, l, r), then valid cross-correlation.
attn::Tensor<double, 4> naive_conv(const attn::Tensor<double, 4>& x, const attn::Weight<double>& k, const double* bias,
                                   int sh, int sw, int dh, int dw, int groups, Index t, Index b, Index l, Index r) {
  const Index B = x.dimension(0), H = x.dimension(1), W = x.dimension(2), C = x.dimension(3);
  const Index kh = k.shape[0], kw = k.shape[1], cg = k.shape[2], F = k.shape[3], og = F / groups;
  const Index Ho = (H + t + b - dh * (kh - 1) - 1) / sh + 1, Wo = (W + l + r - dw * (kw - 1) - 1) / sw + 1;
  attn::Tensor<double, 4> y(B, Ho, Wo, F);
  for (Index n = 0; n < B; ++n)
    for (Index i = 0; i < Ho; ++i)
      for (Index j = 0; j < Wo; ++j)
        for (Index o = 0; o < F; ++o) {
          double s = bias ? bias[o] : 0.0;
          const Index g = o / og;
          for (Index a = 0; a < kh; ++a)
            for (Index c = 0; c < kw; ++c) {
              const Index yy = i * sh - t + a * dh, xx = j * sw - l + c * dw;
              if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
              for (Index ci = 0; ci < cg; ++ci)
                s += x(n, yy, xx, g * cg + ci) * k.data[static_cast<std::size_t>(((a * kw + c) * cg + ci) * F + o)];
            }
          y(n, i, j, o) = s;
        }
  (void)C;
  return y;
}
}  // namespace

TEST_CASE("conv2d_no_bias: weights have the reference's names, shapes and initializer", "[conv2d_no_bias]") {
  const L a({.channels = 8, .filters = 6, .kernel_size = {3, 5}, .groups = 2});
  REQUIRE(a.parameters().size() == 1);
  REQUIRE(a.parameters()[0].name == "conv/kernel");
  REQUIRE(a.parameters()[0].shape == Shape{3, 5, 4, 6});
  // Uniform(-a, a), a = 1/sqrt(C·kh·kw) with the full C = 8 (groups ignored)
  const double lim = 1.0 / std::sqrt(8.0 * 15.0);
  double biggest = 0;
  for (double v : a.parameters()[0].data) {
    REQUIRE(std::abs(v) <= lim);
    biggest = std::max(biggest, std::abs(v));
  }
  REQUIRE(biggest > 0.8 * lim);
  const L b({.channels = 4, .filters = 2, .use_bias = true});
  REQUIRE(b.parameters().size() == 2);
  REQUIRE(b.parameters()[1].name == "conv/bias");
  REQUIRE(b.parameters()[1].shape == Shape{2});
  REQUIRE(L({.channels = 4, .filters = 2}, 1).parameters()[0].data != L({.channels = 4, .filters = 2}, 2).parameters()[0].data);
  // groups below 1 are 1
  REQUIRE(L({.channels = 4, .filters = 2, .groups = 0}).parameters()[0].shape == Shape{1, 1, 4, 2});
}

TEST_CASE("conv2d_no_bias: output sizes of the padding rules", "[conv2d_no_bias]") {
  const auto out = [](attn::Conv2dNoBiasConfig c, Shape x) { return L(c).output_shape(x); };
  using P = attn::ConvPadding;
  // torch-same, even kernel 4 at stride 1: H + 1
  REQUIRE(out({.channels = 2, .filters = 3, .kernel_size = {4, 4}, .padding = {P::Mode::same, 0, 0}}, {1, 6, 7, 2}) ==
          Shape{1, 7, 8, 3});
  // TensorFlow same: ceil(n / s)
  REQUIRE(out({.channels = 2, .filters = 3, .kernel_size = {4, 4}, .strides = {2, 2}, .padding = {P::Mode::same, 0, 0},
               .use_torch_padding = false},
              {1, 7, 8, 2}) == Shape{1, 4, 4, 3});
  // torch-same with dilation 2 shrinks 7x9 to 5x7 (spec errata)
  REQUIRE(out({.channels = 2, .filters = 3, .kernel_size = {3, 3}, .padding = {P::Mode::same, 0, 0}, .dilation_rate = {2, 2}},
              {1, 7, 9, 2}) == Shape{1, 5, 7, 3});
  // explicit (1, 2) with a 3x3 kernel, stride 2: (7 + 2 - 3)/2 + 1 = 4, (9 + 4 - 3)/2 + 1 = 6
  REQUIRE(out({.channels = 2, .filters = 3, .kernel_size = {3, 3}, .strides = {2, 2}, .padding = {P::Mode::pads, 1, 2}},
              {1, 7, 9, 2}) == Shape{1, 4, 6, 3});
}

TEST_CASE("conv2d_no_bias: equals an independent loop implementation", "[conv2d_no_bias]") {
  using P = attn::ConvPadding;
  struct Case {
    attn::Conv2dNoBiasConfig c;
    Index t, b, l, r;
  };
  const std::vector<Case> cases{
      {{.channels = 4, .filters = 6, .kernel_size = {3, 3}, .strides = {2, 2}, .padding = {P::Mode::same, 0, 0}, .use_bias = true}, 1, 1, 1, 1},
      {{.channels = 4, .filters = 6, .kernel_size = {3, 2}, .strides = {2, 2}, .padding = {P::Mode::same, 0, 0}, .groups = 2,
        .use_torch_padding = false}, 1, 1, 0, 0},
      // ^ TensorFlow same on 7x8: rows k 3, s 2: out 4, total (4-1)·2 + 3 - 7 = 2 -> (1, 1);
      //   cols k 2, s 2: out 4, total (4-1)·2 + 2 - 8 = 0 -> (0, 0)
      {{.channels = 3, .filters = 2, .kernel_size = {3, 3}, .padding = {P::Mode::pads, 2, 0}, .dilation_rate = {1, 2}}, 2, 2, 0, 0},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i);
    L layer(cases[i].c, 7);
    const Shape xs{2, 7, 8, cases[i].c.channels};
    const auto x = random_tensor<double, 4>(xs, 3 + i);
    const Index t = cases[i].t, b = cases[i].b, l = cases[i].l, r = cases[i].r;
    const auto* bias = layer.parameters().find("conv/bias");
    if (bias != nullptr)
      for (std::size_t k = 0; k < bias->data.size(); ++k) layer.parameters()[1].data[k] = 0.1 * double(k) - 0.2;
    const auto& c = cases[i].c;
    ATTN_REQUIRE_CLOSE(layer.forward(x),
                       naive_conv(x, layer.parameters()[0], bias ? layer.parameters()[1].data.data() : nullptr,
                                  c.strides[0], c.strides[1], c.dilation_rate[0], c.dilation_rate[1], c.effective_groups(),
                                  t, b, l, r),
                       1e-12, 1e-12);
  }
}

TEST_CASE("conv2d_no_bias: validation messages", "[conv2d_no_bias]") {
  using P = attn::ConvPadding;
  REQUIRE_THROWS_WITH(L({.channels = 4, .filters = 0}), "Parameter 'filters' must be positive, got 0");
  REQUIRE_THROWS_WITH(L({.channels = 4, .filters = 2, .kernel_size = {0, 0}}), "kernel_size must be positive, got (0, 0)");
  REQUIRE_THROWS_WITH(L({.channels = 4, .filters = 2, .padding = {P::Mode::pads, -1, 1}}),
                      "padding must be non-negative, got (-1, 1)");
  REQUIRE_THROWS_WITH(L({.channels = 6, .filters = 4, .groups = 4}),
                      "channels (6) and filters (4) must be divisible by groups (4)");
  REQUIRE_THROWS_WITH(L({.channels = 6, .filters = 4, .strides = {2, 2}, .dilation_rate = {2, 2}}),
                      "strides > 1 not supported in conjunction with dilation_rate > 1, got strides (2, 2) and "
                      "dilation_rate (2, 2)");
  REQUIRE_THROWS_WITH(L({.channels = 6, .filters = 4, .padding = {P::Mode::pads, 1, 1}, .use_torch_padding = false}),
                      "padding (1, 1) needs use_torch_padding=True: without it the reference ignores the pad and uses "
                      "TensorFlow 'same' padding; give padding 'same' for that");
  // JSON forms of padding: case-insensitive strings, int, pair
  const auto cfg = [](attn::Json p) {
    return attn::create_attention_layer<double>("conv2d_no_bias", {{"channels", 2}, {"filters", 2}, {"padding", p}})
        .config()
        .at("padding");
  };
  REQUIRE(cfg("SAME") == "same");
  REQUIRE(cfg("Valid") == "valid");
  REQUIRE(cfg(2) == attn::Json::array({2, 2}));
  REQUIRE(cfg(attn::Json::array({1, 0})) == attn::Json::array({1, 0}));
  REQUIRE_THROWS_WITH(attn::validate_attention_config("conv2d_no_bias", {{"channels", 2}, {"filters", 2}, {"padding", "full"}}),
                      "Parameter 'padding' of 'conv2d_no_bias' must be 'valid', 'same', an integer or a list of 2 "
                      "integers, got 'full'");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("conv2d_no_bias", {{"channels", 2}, {"filters", 2}, {"padding", 1.5}}),
                      "Parameter 'padding' of 'conv2d_no_bias' must be 'valid', 'same', an integer or a list of 2 "
                      "integers, got number 1.5");
}

TEST_CASE("conv2d_no_bias: bad shapes give ShapeErrors naming the layer", "[conv2d_no_bias]") {
  const L layer({.channels = 4, .filters = 2, .kernel_size = {5, 5}});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 6, 6, 3}, 1)),
                      "conv2d_no_bias: input x must have 4 channels (shape [B, H, W, 4]), got shape [1, 6, 6, 3]");
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 4, 6, 4}, 1)),
                      Catch::StartsWith("conv2d_no_bias: the kernel (5x5, dilated 5x5) is larger than the padded input"));
  REQUIRE_THROWS_AS(layer.forward(random_tensor<double, 4>({1, 4, 6, 4}, 1)), attn::ShapeError);
  REQUIRE_THROWS_AS(layer.output_shape({1, 6, 4}), attn::ShapeError);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 6, 6, 4)).size() == 0);
}

TEMPLATE_TEST_CASE("golden: conv2d_no_bias matches torch.nn.functional.conv2d", "[golden][conv2d_no_bias]", float, double) {
  using T = TestType;
  for_each_golden<T>("conv2d_no_bias", [](const Golden& g) {
    attn::Conv2dNoBias<T> layer(g.config.get<attn::Conv2dNoBiasConfig>());
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
