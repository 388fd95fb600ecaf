// spatial: against an independent loop implementation (explicitly zero-padded image, then a 'valid'
// correlation), hand-computed cases (k = 1, a 3x3 border case), non-square kernels, validation
// messages and shape errors.
#include <attn/layers/spatial.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using SA = attn::SpatialAttention<double>;

namespace {

double logistic(double z) { return 1.0 / (1.0 + std::exp(-z)); }

/// Plain loops from the formula: z = [mean_c x ; max_c x], padded with zeros as TensorFlow's 'same'
/// (out = ceil(L / 1), total = max((out − 1) + k − L, 0), floor(total / 2) before), correlated with
/// kernel [kh, kw, 2, 1], plus bias, sigmoid.
attn::Tensor<double, 4> naive_spatial(const attn::WeightSet<double>& w, const std::string& prefix,
                                      const attn::Tensor<double, 4>& x, bool bias) {
  const Index B = x.dimension(0), H = x.dimension(1), W = x.dimension(2), C = x.dimension(3);
  const auto& k = *w.find(prefix + "spatial_attention_conv/kernel");
  const Index kh = k.shape[0], kw = k.shape[1];
  const double b0 = bias ? w.find(prefix + "spatial_attention_conv/bias")->data[0] : 0.0;
  const Index th = std::max<Index>((H - 1) + kh - H, 0), tw = std::max<Index>((W - 1) + kw - W, 0);
  const Index top = th / 2, left = tw / 2;
  const Index PH = H + th, PW = W + tw;
  attn::Tensor<double, 4> out(B, H, W, 1);
  for (Index b = 0; b < B; ++b) {
    attn::Tensor<double, 3> z(PH, PW, 2);
    z.setZero();
    for (Index r = 0; r < H; ++r)
      for (Index c = 0; c < W; ++c) {
        double s = 0, m = x(b, r, c, 0);
        for (Index ch = 0; ch < C; ++ch) {
          s += x(b, r, c, ch);
          m = std::max(m, x(b, r, c, ch));
        }
        z(top + r, left + c, 0) = s / static_cast<double>(C);
        z(top + r, left + c, 1) = m;
      }
    for (Index r = 0; r < H; ++r)
      for (Index c = 0; c < W; ++c) {
        double s = b0;
        for (Index i = 0; i < kh; ++i)
          for (Index j = 0; j < kw; ++j)
            for (Index ci = 0; ci < 2; ++ci)
              s += z(r + i, c + j, ci) * k.data[static_cast<std::size_t>((i * kw + j) * 2 + ci)];
        out(b, r, c, 0) = logistic(s);
      }
  }
  return out;
}

}  // namespace

TEST_CASE("spatial: weights have the reference's names, shapes, order and initializers", "[spatial]") {
  const SA def({});
  REQUIRE(def.config().kernel_size == attn::Size2{7, 7});
  REQUIRE(def.parameters().size() == 2);
  REQUIRE(def.parameters()[0].name == "spatial_attention_conv/kernel");
  REQUIRE(def.parameters()[0].shape == Shape{7, 7, 2, 1});
  REQUIRE(def.parameters()[1].name == "spatial_attention_conv/bias");
  REQUIRE(def.parameters()[1].shape == Shape{1});
  REQUIRE(def.parameters()[1].data[0] == 0.0);
  // glorot_uniform with conv fans: fan_in = 2·49, fan_out = 1·49
  const double limit = std::sqrt(6.0 / (98.0 + 49.0));
  double biggest = 0;
  for (double v : def.parameters()[0].data) {
    REQUIRE(std::abs(v) <= limit);
    biggest = std::max(biggest, std::abs(v));
  }
  REQUIRE(biggest > 0.5 * limit);
  const SA nobias({.kernel_size = {3, 5}, .use_bias = false});
  REQUIRE(nobias.parameters().size() == 1);
  REQUIRE(nobias.parameters()[0].shape == Shape{3, 5, 2, 1});
  REQUIRE(SA({}, 4).parameters()[0].data == SA({}, 4).parameters()[0].data);
  REQUIRE(SA({}, 4).parameters()[0].data != SA({}, 5).parameters()[0].data);
}

TEST_CASE("spatial: equals an independent loop implementation (square and non-square kernels)", "[spatial]") {
  struct Case {
    attn::Size2 k;
    bool bias;
    Shape shape;
  };
  for (const Case& c : {Case{{7, 7}, true, {2, 5, 6, 3}}, Case{{3, 3}, false, {2, 4, 4, 1}},
                        Case{{3, 5}, true, {2, 4, 6, 5}}, Case{{5, 3}, true, {1, 6, 4, 2}},
                        Case{{1, 3}, true, {1, 2, 5, 4}}, Case{{9, 9}, true, {1, 3, 4, 2}}}) {
    SA layer({.kernel_size = c.k, .use_bias = c.bias}, 23);
    if (c.bias) layer.parameters()[1].data[0] = -0.3;
    const auto x = random_tensor<double, 4>(c.shape, 8, 2.0);
    const auto y = layer.forward(x);
    REQUIRE(attn::shape_of(y) == Shape{c.shape[0], c.shape[1], c.shape[2], 1});
    ATTN_REQUIRE_CLOSE(y, naive_spatial(layer.parameters(), "", x, c.bias), 1e-12, 1e-12);
  }
  attn::SpatialAttention<float> lf({.kernel_size = {3, 5}}, 2);
  const SA ld({.kernel_size = {3, 5}}, 2);
  ATTN_REQUIRE_CLOSE(lf.forward(random_tensor<float, 4>({2, 4, 5, 3}, 6)),
                     ld.forward(random_tensor<double, 4>({2, 4, 5, 3}, 6)), 1e-5, 1e-6);
}

TEST_CASE("spatial: k = 1 is sigmoid(w_avg·avg + w_max·max + b) per pixel", "[spatial]") {
  SA layer({.kernel_size = {1, 1}});
  layer.parameters()[0].data = {0.7, -1.3};
  layer.parameters()[1].data = {0.2};
  const auto x = random_tensor<double, 4>({2, 3, 4, 5}, 12, 3.0);
  const auto y = layer.forward(x);
  for (Index b = 0; b < 2; ++b)
    for (Index r = 0; r < 3; ++r)
      for (Index c = 0; c < 4; ++c) {
        double s = 0, m = -1e300;
        for (Index k = 0; k < 5; ++k) {
          s += x(b, r, c, k);
          m = std::max(m, x(b, r, c, k));
        }
        REQUIRE(y(b, r, c, 0) == Approx(logistic(0.7 * s / 5.0 - 1.3 * m + 0.2)).epsilon(1e-13));
      }
}

TEST_CASE("spatial: k = 3 border pixels see zero padding (hand-computed)", "[spatial]") {
  // one image 3x3, channel 0 = v, channel 1 = 0: avg = v / 2, max = max(v, 0), with
  // v = 0.1·[[1, -2, 3], [-4, 5, -6], [7, -8, 9]].
  // Kernel: the avg channel is all ones (a 3x3 box sum); the max channel has a single 1 at tap (0, 0),
  // which reads the pixel up-left (r − 1, c − 1). No bias.
  SA layer({.kernel_size = {3, 3}, .use_bias = false});
  auto& k = layer.parameters()[0].data;
  std::fill(k.begin(), k.end(), 0.0);
  for (std::size_t t = 0; t < 9; ++t) k[2 * t] = 1.0;  // [i, j, 0, 0]
  k[1] = 1.0;                                          // [0, 0, 1, 0]
  const double v[3][3] = {{1, -2, 3}, {-4, 5, -6}, {7, -8, 9}};
  attn::Tensor<double, 4> x(1, 3, 3, 2);
  for (Index r = 0; r < 3; ++r)
    for (Index c = 0; c < 3; ++c) {
      x(0, r, c, 0) = 0.1 * v[r][c];
      x(0, r, c, 1) = 0.0;
    }
  // box sums of v (zero outside): [[0, -3, 0], [-1, 5, 1], [0, 3, 0]], times 0.05 (= 0.1 / 2);
  // up-left max tap: only (1, 1) <- max(0.1, 0) = 0.1, (1, 2) <- 0, (2, 1) <- 0, (2, 2) <- 0.5.
  const double pre[3][3] = {{0.0, -0.15, 0.0}, {-0.05, 0.35, 0.05}, {0.0, 0.15, 0.5}};
  const auto y = layer.forward(x);
  for (Index r = 0; r < 3; ++r)
    for (Index c = 0; c < 3; ++c) REQUIRE(y(0, r, c, 0) == Approx(logistic(pre[r][c])).epsilon(1e-13));
}

TEST_CASE("spatial: zero kernel gives 0.5 everywhere", "[spatial]") {
  const SA zero({.kernel_initializer = "zeros"});
  const auto y = zero.forward(random_tensor<double, 4>({2, 4, 3, 6}, 2, 4.0));
  for (Index i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == 0.5);
}

TEST_CASE("spatial: kernel_size is size-like, validation messages", "[spatial]") {
  REQUIRE_THROWS_WITH(SA({.kernel_size = {6, 6}}), "kernel_size must be odd for 'same' padding, got (6, 6)");
  REQUIRE_THROWS_WITH(SA({.kernel_size = {3, 4}}), "kernel_size must be odd for 'same' padding, got (3, 4)");
  REQUIRE_THROWS_WITH(SA({.kernel_size = {0, 0}}), "kernel_size must be positive, got (0, 0)");
  REQUIRE_THROWS_WITH(SA({.kernel_size = {3, -1}}), "kernel_size must be positive, got (3, -1)");
  REQUIRE_THROWS_AS(SA({.kernel_size = {6, 6}}), attn::ConfigError);
  REQUIRE_THROWS_WITH(attn::validate_attention_config("spatial", {{"kernel_size", 6}}),
                      "kernel_size must be odd for 'same' padding, got (6, 6)");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("spatial", {{"kernel_size", -2}}),
                      "kernel_size must be positive, got (-2, -2)");
  REQUIRE_THROWS_WITH(attn::validate_attention_config("spatial", {{"kernel_size", "7"}}),
                      "Parameter 'kernel_size' of 'spatial' must be an integer or a list of 2 integers, got "
                      "string \"7\"");
  REQUIRE_THROWS_AS(attn::validate_attention_config("spatial", {{"kernel_size", {3, 5, 7}}}),
                    attn::ConfigError);
  // 7 and [7, 7] are the same; [3, 5] is accepted and kept as (3, 5)
  const auto a = attn::create_attention_layer<double>("spatial", {{"kernel_size", 7}});
  const auto b = attn::create_attention_layer<double>("spatial", {{"kernel_size", {7, 7}}});
  REQUIRE(a == b);
  const auto ns = attn::create_attention_layer<double>(
      "spatial", {{"kernel_size", {3, 5}}, {"use_bias", false}, {"kernel_regularizer", nullptr}});
  REQUIRE(ns.config().at("kernel_size") == Json::array({3, 5}));
  REQUIRE(ns.parameters()[0].shape == Shape{3, 5, 2, 1});
  REQUIRE(attn::create_attention_from_config<double>(ns.config()) == ns);
}

TEST_CASE("spatial: any channel count, and bad shapes give ShapeErrors naming the layer", "[spatial]") {
  const SA layer({.kernel_size = {3, 3}}, 1);
  for (Index C : {1, 2, 9}) {
    const auto x = random_tensor<double, 4>({1, 3, 4, C}, 3);
    ATTN_REQUIRE_CLOSE(layer.forward(x), naive_spatial(layer.parameters(), "", x, true), 1e-12, 1e-12);
  }
  // one channel: mean = max = x
  const auto x1 = random_tensor<double, 4>({1, 3, 3, 1}, 5);
  attn::Tensor<double, 4> x2(1, 3, 3, 2);
  for (Index r = 0; r < 3; ++r)
    for (Index c = 0; c < 3; ++c) x2(0, r, c, 0) = x2(0, r, c, 1) = x1(0, r, c, 0);
  ATTN_REQUIRE_CLOSE(layer.forward(x1), layer.forward(x2), 1e-15, 0.0);
  REQUIRE_THROWS_WITH(
      layer.forward(attn::Tensor<double, 4>(1, 3, 3, 0)),
      "spatial: pooling over channels needs at least 1 channel, got input shape [1, 3, 3, 0]");
  REQUIRE_THROWS_WITH(layer.output_shape({3, 3, 2}),
                      "spatial: Expected 4D input shape (batch, height, width, channels), got 3D: [3, 3, 2]");
  REQUIRE(layer.output_shape({2, 5, 6, 4}) == Shape{2, 5, 6, 1});
  // empty images and batches give empty outputs
  REQUIRE(attn::shape_of(layer.forward(attn::Tensor<double, 4>(2, 0, 3, 4))) == Shape{2, 0, 3, 1});
  REQUIRE(attn::shape_of(layer.forward(attn::Tensor<double, 4>(0, 3, 3, 4))) == Shape{0, 3, 3, 1});
  const auto any = attn::create_attention_layer<double>("spatial");
  REQUIRE_THROWS_WITH(any.forward(random_any<double>({3, 3, 2}, 1)),
                      Catch::StartsWith("spatial: input 0 must have rank 4"));
  SA broken({.kernel_size = {3, 3}});
  broken.parameters()[1].name = "renamed";
  REQUIRE_THROWS_WITH(broken.forward(random_tensor<double, 4>({1, 2, 2, 2}, 1)),
                      Catch::StartsWith("spatial: weight 'spatial_attention_conv/bias' is missing"));
}

// ---- golden parity (tools/golden/spatial.py, tests/data/spatial/) ----

TEMPLATE_TEST_CASE("golden: spatial matches PyTorch conv2d", "[golden][spatial]", float, double) {
  using T = TestType;
  for_each_golden<T>("spatial", [](const Golden& g) {
    attn::SpatialAttention<T> layer(g.config.get<attn::SpatialAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
