// cbam: against an independent loop implementation of F1 = x ⊙ Mc(x), out = F1 ⊙ Ms(F1); against the
// composition of a `channel` and a `spatial` layer holding the same weights; zero kernels give 0.25·x;
// validation order and messages; shape errors.
#include <attn/layers/cbam.hpp>
#include <attn/layers/channel.hpp>
#include <attn/layers/spatial.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using CB = attn::CBAM<double>;

namespace {

double logistic(double z) { return 1.0 / (1.0 + std::exp(-z)); }
std::size_t u(Index i) { return static_cast<std::size_t>(i); }

/// Plain loops from the spec, written independently of the layers' kernels.
attn::Tensor<double, 4> naive_cbam(const CB& layer, const attn::Tensor<double, 4>& x) {
  const auto& cfg = layer.config();
  const auto& w = layer.parameters();
  const Index B = x.dimension(0), H = x.dimension(1), W = x.dimension(2), C = x.dimension(3);
  const Index hid = C / cfg.ratio, kh = cfg.kernel_size[0], kw = cfg.kernel_size[1];
  const std::string cp = "channel_attention/channel_attention_dense_",
                    sp = "spatial_attention/spatial_attention_conv/";
  const auto& k1 = w.find(cp + "1/kernel")->data;
  const auto& k2 = w.find(cp + "2/kernel")->data;
  std::vector<double> b1(u(hid), 0.0), b2(u(C), 0.0);
  if (cfg.channel_use_bias) {
    b1 = w.find(cp + "1/bias")->data;
    b2 = w.find(cp + "2/bias")->data;
  }
  const auto& kc = w.find(sp + "kernel")->data;
  const double bs = cfg.spatial_use_bias ? w.find(sp + "bias")->data[0] : 0.0;
  auto mlp = [&](const std::vector<double>& z) {
    std::vector<double> h(u(hid), 0.0), o(u(C), 0.0);
    for (Index j = 0; j < hid; ++j) {
      double s = b1[u(j)];
      for (Index i = 0; i < C; ++i) s += z[u(i)] * k1[u(i * hid + j)];
      h[u(j)] = std::max(s, 0.0);
    }
    for (Index i = 0; i < C; ++i) {
      double s = b2[u(i)];
      for (Index j = 0; j < hid; ++j) s += h[u(j)] * k2[u(j * C + i)];
      o[u(i)] = s;
    }
    return o;
  };
  attn::Tensor<double, 4> f1(B, H, W, C), out(B, H, W, C);
  for (Index b = 0; b < B; ++b) {
    std::vector<double> avg(u(C), 0.0), mx(u(C), -1e300);
    for (Index r = 0; r < H; ++r)
      for (Index c = 0; c < W; ++c)
        for (Index k = 0; k < C; ++k) {
          avg[u(k)] += x(b, r, c, k) / static_cast<double>(H * W);
          mx[u(k)] = std::max(mx[u(k)], x(b, r, c, k));
        }
    const auto ma = mlp(avg), mm = mlp(mx);
    for (Index r = 0; r < H; ++r)
      for (Index c = 0; c < W; ++c)
        for (Index k = 0; k < C; ++k) f1(b, r, c, k) = x(b, r, c, k) * logistic(ma[u(k)] + mm[u(k)]);
    // spatial gate on F1: per-pixel mean and max, k×k correlation with 'same' zero padding
    const Index pt = (kh - 1) / 2, pl = (kw - 1) / 2;
    auto pooled = [&](Index r, Index c, Index ch) {
      if (r < 0 || r >= H || c < 0 || c >= W) return 0.0;
      double s = 0, m = f1(b, r, c, 0);
      for (Index k = 0; k < C; ++k) {
        s += f1(b, r, c, k);
        m = std::max(m, f1(b, r, c, k));
      }
      return ch == 0 ? s / static_cast<double>(C) : m;
    };
    for (Index r = 0; r < H; ++r)
      for (Index c = 0; c < W; ++c) {
        double s = bs;
        for (Index i = 0; i < kh; ++i)
          for (Index j = 0; j < kw; ++j)
            for (Index ch = 0; ch < 2; ++ch)
              s += pooled(r + i - pt, c + j - pl, ch) * kc[u((i * kw + j) * 2 + ch)];
        const double g = logistic(s);
        for (Index k = 0; k < C; ++k) out(b, r, c, k) = f1(b, r, c, k) * g;
      }
  }
  return out;
}

template <class T>
void set_biases(attn::WeightSet<T>& w) {
  for (auto& p : w)
    if (p.shape.size() == 1)
      for (std::size_t i = 0; i < p.data.size(); ++i) p.data[i] = static_cast<T>(0.05 * double(i % 7) - 0.13);
}

}  // namespace

TEST_CASE("cbam: weights have the reference's names, shapes and order", "[cbam]") {
  const CB def({.channels = 16});
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  for (const auto& w : def.parameters()) {
    names.push_back(w.name);
    shapes.push_back(w.shape);
  }
  REQUIRE(names == std::vector<std::string>{"channel_attention/channel_attention_dense_1/kernel",
                                            "channel_attention/channel_attention_dense_2/kernel",
                                            "spatial_attention/spatial_attention_conv/kernel",
                                            "spatial_attention/spatial_attention_conv/bias"});
  REQUIRE(shapes == std::vector<Shape>{{16, 2}, {2, 16}, {7, 7, 2, 1}, {1}});
  const CB all({.channels = 12, .ratio = 3, .kernel_size = {3, 5}, .channel_use_bias = true});
  names.clear();
  shapes.clear();
  for (const auto& w : all.parameters()) {
    names.push_back(w.name);
    shapes.push_back(w.shape);
  }
  REQUIRE(names == std::vector<std::string>{"channel_attention/channel_attention_dense_1/kernel",
                                            "channel_attention/channel_attention_dense_1/bias",
                                            "channel_attention/channel_attention_dense_2/kernel",
                                            "channel_attention/channel_attention_dense_2/bias",
                                            "spatial_attention/spatial_attention_conv/kernel",
                                            "spatial_attention/spatial_attention_conv/bias"});
  REQUIRE(shapes == std::vector<Shape>{{12, 4}, {4}, {4, 12}, {12}, {3, 5, 2, 1}, {1}});
  REQUIRE(CB({.channels = 8, .spatial_use_bias = false}).parameters().size() == 3);
  // the two initializers are separate
  const CB mixed({.channels = 8,
                  .ratio = 2,
                  .channel_kernel_initializer = "ones",
                  .spatial_kernel_initializer = "zeros"});
  for (double v : mixed.parameters()[0].data) REQUIRE(v == 1.0);
  for (double v : mixed.parameters()[2].data) REQUIRE(v == 0.0);
  // glorot bounds of the conv kernel (fan_in 2·k², fan_out k²)
  for (double v : def.parameters()[2].data) REQUIRE(std::abs(v) <= std::sqrt(6.0 / 147.0));
  // deterministic from the seed
  REQUIRE(CB({.channels = 8}, 3).parameters()[2].data == CB({.channels = 8}, 3).parameters()[2].data);
  REQUIRE(CB({.channels = 8}, 3).parameters()[0].data != CB({.channels = 8}, 4).parameters()[0].data);
}

TEST_CASE("cbam: equals an independent loop implementation", "[cbam]") {
  struct Case {
    int channels, ratio;
    attn::Size2 k;
    bool cbias, sbias;
    Shape shape;
  };
  for (const Case& c :
       {Case{8, 2, {7, 7}, false, true, {2, 5, 6, 8}}, Case{12, 3, {3, 5}, true, true, {2, 4, 6, 12}},
        Case{6, 6, {3, 3}, true, false, {1, 3, 3, 6}}, Case{4, 1, {1, 1}, false, false, {3, 2, 5, 4}},
        Case{8, 4, {5, 3}, true, true, {1, 1, 1, 8}}}) {
    CB layer({.channels = c.channels,
              .ratio = c.ratio,
              .kernel_size = c.k,
              .channel_use_bias = c.cbias,
              .spatial_use_bias = c.sbias},
             31);
    set_biases(layer.parameters());
    const auto x = random_tensor<double, 4>(c.shape, 77, 2.0);
    const auto y = layer.forward(x);
    REQUIRE(attn::shape_of(y) == c.shape);
    ATTN_REQUIRE_CLOSE(y, naive_cbam(layer, x), 1e-12, 1e-12);
  }
  attn::CBAM<float> lf({.channels = 8, .ratio = 2, .kernel_size = {3, 3}, .channel_use_bias = true}, 5);
  CB ld({.channels = 8, .ratio = 2, .kernel_size = {3, 3}, .channel_use_bias = true}, 5);
  set_biases(lf.parameters());
  set_biases(ld.parameters());
  ATTN_REQUIRE_CLOSE(lf.forward(random_tensor<float, 4>({2, 4, 5, 8}, 6)),
                     ld.forward(random_tensor<double, 4>({2, 4, 5, 8}, 6)), 1e-5, 1e-6);
}

TEST_CASE("cbam: equals channel then spatial with the same weights", "[cbam]") {
  CB layer({.channels = 12, .ratio = 4, .kernel_size = {5, 3}, .channel_use_bias = true}, 9);
  set_biases(layer.parameters());
  attn::ChannelAttention<double> ca({.channels = 12, .ratio = 4, .use_bias = true}, 1);
  attn::SpatialAttention<double> sa({.kernel_size = {5, 3}}, 1);
  const std::string cprefix = "channel_attention/", sprefix = "spatial_attention/";
  for (auto& w : ca.parameters()) w.data = layer.parameters().find(cprefix + w.name)->data;
  for (auto& w : sa.parameters()) w.data = layer.parameters().find(sprefix + w.name)->data;
  const auto x = random_tensor<double, 4>({2, 4, 6, 12}, 10);
  const auto mc = ca.forward(x);  // [B, 1, 1, C]
  attn::Tensor<double, 4> f1(2, 4, 6, 12);
  for (Index b = 0; b < 2; ++b)
    for (Index r = 0; r < 4; ++r)
      for (Index c = 0; c < 6; ++c)
        for (Index k = 0; k < 12; ++k) f1(b, r, c, k) = x(b, r, c, k) * mc(b, 0, 0, k);
  const auto ms = sa.forward(f1);  // [B, H, W, 1]
  attn::Tensor<double, 4> expected(2, 4, 6, 12);
  for (Index b = 0; b < 2; ++b)
    for (Index r = 0; r < 4; ++r)
      for (Index c = 0; c < 6; ++c)
        for (Index k = 0; k < 12; ++k) expected(b, r, c, k) = f1(b, r, c, k) * ms(b, r, c, 0);
  ATTN_REQUIRE_CLOSE(layer.forward(x), expected, 1e-15, 1e-15);
}

TEST_CASE("cbam: zero kernels and biases give 0.25·x", "[cbam]") {
  const CB layer({.channels = 8,
                  .ratio = 2,
                  .kernel_size = {3, 3},
                  .channel_kernel_initializer = "zeros",
                  .spatial_kernel_initializer = "zeros",
                  .channel_use_bias = true});
  const auto x = random_tensor<double, 4>({2, 3, 4, 8}, 4, 5.0);
  const auto y = layer.forward(x);
  for (Index i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == 0.25 * x.data()[i]);
}

TEST_CASE("cbam: validation messages in the reference's order", "[cbam]") {
  REQUIRE_THROWS_WITH(CB({.channels = 8, .ratio = 0}), "ratio must be positive, got 0");
  REQUIRE_THROWS_WITH(CB({.channels = 8, .kernel_size = {0, 0}}), "kernel_size must be positive, got (0, 0)");
  REQUIRE_THROWS_WITH(CB({.channels = 10, .ratio = 4}), "channels (10) must be divisible by ratio (4)");
  REQUIRE_THROWS_WITH(CB({.channels = 8, .kernel_size = {4, 4}}),
                      "kernel_size must be odd for 'same' padding, got (4, 4)");
  REQUIRE_THROWS_WITH(CB({.channels = 8, .kernel_size = {3, 6}}),
                      "kernel_size must be odd for 'same' padding, got (3, 6)");
  REQUIRE_THROWS_AS(CB({.channels = 8, .spatial_kernel_initializer = "uniform"}), attn::ConfigError);
  REQUIRE_NOTHROW(CB({.channels = 8, .kernel_size = {3, 5}}));
  // channels, ratio, kernel_size ranges first; then divisibility; then oddness
  const Json bad_all{{"channels", -1}, {"ratio", 0}, {"kernel_size", 0}};
  const auto p1 = attn::check_attention_config("cbam", bad_all);
  REQUIRE(p1.size() == 3);
  REQUIRE(p1[0].message == "Parameter 'channels' must be positive, got -1");
  REQUIRE(p1[1].message == "ratio must be positive, got 0");
  REQUIRE(p1[2].message == "kernel_size must be positive, got (0, 0)");
  const auto p2 = attn::check_attention_config("cbam", {{"channels", 10}, {"ratio", 3}, {"kernel_size", 6}});
  REQUIRE(p2.size() == 2);
  REQUIRE(p2[0].message == "channels (10) must be divisible by ratio (3)");
  REQUIRE(p2[0].parameter == "ratio");
  REQUIRE(p2[1].message == "kernel_size must be odd for 'same' padding, got (6, 6)");
  REQUIRE(p2[1].parameter == "kernel_size");
  REQUIRE_THROWS_WITH(
      attn::validate_attention_config("cbam", {{"channels", 10}, {"ratio", 3}, {"kernel_size", 6}}),
      "channels (10) must be divisible by ratio (3)");
  REQUIRE(attn::check_attention_config("cbam", {{"channels", 16},
                                                {"kernel_size", {3, 5}},
                                                {"channel_kernel_regularizer", nullptr},
                                                {"spatial_kernel_regularizer", "l2"}})
              .empty());
}

TEST_CASE("cbam: factory round trip keeps every parameter", "[cbam]") {
  const Json cfg{{"type", "cbam"},
                 {"channels", 12},
                 {"ratio", 4},
                 {"kernel_size", {3, 5}},
                 {"spatial_kernel_regularizer", "l2"}};
  const auto a = attn::create_attention_from_config<double>(cfg, 3);
  REQUIRE(a.config() == Json{{"type", "cbam"},
                             {"channels", 12},
                             {"ratio", 4},
                             {"kernel_size", {3, 5}},
                             {"channel_kernel_initializer", "glorot_uniform"},
                             {"spatial_kernel_initializer", "glorot_uniform"},
                             {"channel_use_bias", false},
                             {"spatial_use_bias", true},
                             {"spatial_kernel_regularizer", "l2"}});
  const auto b = attn::create_attention_from_config<double>(a.config(), 3);
  REQUIRE(a == b);
  const auto x = random_tensor<double, 4>({1, 3, 4, 12}, 2);
  const auto y = a.forward(attn::AnyTensor<double>(x));
  ATTN_REQUIRE_CLOSE(y.to_tensor<4>(), naive_cbam(*a.target<CB>(), x), 1e-12, 1e-12);
}

TEST_CASE("cbam: bad shapes give ShapeErrors naming the layer", "[cbam]") {
  const CB layer({.channels = 8, .ratio = 2, .kernel_size = {3, 3}});
  REQUIRE_THROWS_WITH(
      layer.forward(random_tensor<double, 4>({1, 3, 3, 6}, 1)),
      "cbam: Expected input channels (6) to match layer channels (8); input shape [1, 3, 3, 6]");
  REQUIRE_THROWS_AS(layer.forward(random_tensor<double, 4>({1, 3, 3, 6}, 1)), attn::ShapeError);
  REQUIRE_THROWS_WITH(
      layer.output_shape({1, 3, 3, 3, 8}),
      "cbam: Expected 4D input shape (batch, height, width, channels), got 5D: [1, 3, 3, 3, 8]");
  REQUIRE_THROWS_WITH(
      layer.forward(attn::Tensor<double, 4>(1, 3, 0, 8)),
      "cbam: global pooling over space needs height and width >= 1, got input shape [1, 3, 0, 8]");
  REQUIRE(layer.output_shape({2, 3, 4, 8}) == Shape{2, 3, 4, 8});
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 2, 2, 8)).size() == 0);
  const auto any = attn::create_attention_layer<double>("cbam", {{"channels", 8}});
  REQUIRE_THROWS_WITH(any.forward(random_any<double>({8}, 1)),
                      Catch::StartsWith("cbam: input 0 must have rank 4"));
  CB broken({.channels = 8, .ratio = 2, .kernel_size = {3, 3}});
  broken.parameters()[2].data.pop_back();
  REQUIRE_THROWS_WITH(
      broken.forward(random_tensor<double, 4>({1, 2, 2, 8}, 1)),
      "cbam: weight 'spatial_attention/spatial_attention_conv/kernel' must have shape [3, 3, 2, 1] (18 values), "
      "got shape [3, 3, 2, 1] with 17 values");
}

// ---- golden parity (tools/golden/cbam.py, tests/data/cbam/) ----

TEMPLATE_TEST_CASE("golden: cbam matches PyTorch conv2d and pooling", "[golden][cbam]", float, double) {
  using T = TestType;
  for_each_golden<T>("cbam", [](const Golden& g) {
    attn::CBAM<T> layer(g.config.get<attn::CBAMConfig>());
    attn::load_weights(layer, g.file, "weights");
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
