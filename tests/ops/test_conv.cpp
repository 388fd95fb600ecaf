// ops/conv.hpp: conv2d and depthwise_conv2d against PyTorch (golden files of tools/golden/vision_ops.py)
// at every SIMD level, the Keras padding rules by hand, bit-identical results for 1, 2 and 3 threads, and
// the typed errors of bad options and shapes.
#include "golden_ops.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>

using namespace attn_test;
namespace ops = attn::ops;

namespace {

ops::Padding2d padding_of(const Json& j) {
  if (j.is_array()) return ops::Padding2d::explicit_pads(j[0], j[1], j[2], j[3]);
  const std::string s = j.get<std::string>();
  if (s == "valid") return ops::Padding2d::valid();
  if (s == "same") return ops::Padding2d::same();
  if (s == "torch_same") return ops::Padding2d::torch_same();
  FAIL("unknown padding " << s);
  return {};
}

ops::Conv2dOptions conv_options(const Json& c) {
  ops::Conv2dOptions o;
  o.strides = {c.at("strides")[0].get<Index>(), c.at("strides")[1].get<Index>()};
  o.dilation_rate = {c.at("dilation_rate")[0].get<Index>(), c.at("dilation_rate")[1].get<Index>()};
  o.groups = c.at("groups").get<Index>();
  o.padding = padding_of(c.at("padding"));
  return o;
}

/// Runs conv2d or depthwise_conv2d on AnyTensors.
template <class T>
attn::AnyTensor<T> run_conv(const attn::AnyTensor<T>& x, const attn::AnyTensor<T>& k, const attn::AnyTensor<T>* bias,
                            const ops::Conv2dOptions& o, bool depthwise) {
  const ops::Geometry2d g =
      depthwise ? ops::window_geometry("depthwise_conv2d", x.shape()[1], x.shape()[2], k.shape()[0], k.shape()[1],
                                       o.strides, o.dilation_rate, o.padding)
                : ops::conv2d_geometry(x.shape(), k.shape(), o);
  const Index co = depthwise ? x.shape()[3] * k.shape()[3] : k.shape()[3];
  attn::AnyTensor<T> y(Shape{x.shape()[0], g.out_h, g.out_w, co});
  const T* b = bias ? bias->data() : nullptr;
  const Index bn = bias ? bias->size() : 0;
  if (depthwise) ops::depthwise_conv2d<T>(x.data(), x.shape(), k.data(), k.shape(), b, bn, y.data(), o);
  else ops::conv2d<T>(x.data(), x.shape(), k.data(), k.shape(), b, bn, y.data(), o);
  return y;
}

/// Row-major values 1, 2, 3, ... of `shape`.
template <class T>
attn::AnyTensor<T> iota(const Shape& shape) {
  attn::AnyTensor<T> t(shape);
  std::iota(t.data(), t.data() + t.size(), T(1));
  return t;
}

template <class T>
attn::AnyTensor<T> filled(const Shape& shape, T v) {
  attn::AnyTensor<T> t(shape);
  std::fill(t.data(), t.data() + t.size(), v);
  return t;
}

}  // namespace

TEMPLATE_TEST_CASE("conv2d: PyTorch golden cases (every padding mode, strides 1-3, dilation, groups, depthwise)",
                   "[ops][conv][golden]", float, double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  for (const auto& g : op_goldens<T>("ops_conv2d")) {
    INFO(g.name);
    const auto x = g.get("input/x");
    const auto k = g.get("input/kernel");
    const bool has_bias = g.has("input/bias");
    const auto b = has_bias ? g.get("input/bias") : attn::AnyTensor<T>();
    const ops::Conv2dOptions o = conv_options(g.config);
    const bool dw = g.config.at("depthwise").template get<bool>();
    // the padding the generator applied explicitly is the one attn resolves
    const ops::Geometry2d geo = ops::window_geometry("t", x.shape()[1], x.shape()[2], k.shape()[0], k.shape()[1],
                                                     o.strides, o.dilation_rate, o.padding);
    CHECK(Json(std::vector<Index>{geo.top, geo.bottom, geo.left, geo.right}) == g.config.at("pads"));
    const auto y = run_conv<T>(x, k, has_bias ? &b : nullptr, o, dw);
    g.check("y", y.data(), y.shape());
  }
}

TEMPLATE_TEST_CASE("conv2d: the tile kernels' blocks, panels and column chunks against a plain-loop oracle",
                   "[ops][conv][oracle]", float, double) {
  // Shapes sized to the tile kernels rather than to a golden file: output channels exactly one block
  // (kernel read in place) or a full block plus a short one (packed panels with zero columns), groups,
  // odd widths, strides and dilation with torch-same padding, and K = kh·kw·C_in/groups past the
  // 512 KiB chunk of weights at every SIMD level (2500 columns chunk the 6x4 tiles of AVX-512; 9360
  // every tile), so partial sums wait in y and continue; outputs of fewer and more than 256 pixels; tiles
  // whose taps fall in the padding for all their pixels, for the first or the last alone (skipped
  // products), or for some. Oracle: the sum of the formula, in double.
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  struct Run {
    Shape x, k;
    ops::Conv2dOptions o;
  };
  ops::Conv2dOptions same;
  same.padding = ops::Padding2d::same();
  ops::Conv2dOptions odd;
  odd.padding = ops::Padding2d::torch_same();
  odd.groups = 2;
  odd.strides = {2, 1};
  odd.dilation_rate = {1, 2};
  // (M: output pixels; from 256 on, every block of weights is copied into a panel)
  const std::vector<Run> runs{{{2, 9, 11, 20}, {3, 3, 20, 64}, same},      // one block of 64, M = 198
                              {{2, 13, 12, 20}, {3, 3, 20, 70}, same},     // 64 + 6 channels, M = 312
                              {{1, 6, 7, 130}, {3, 3, 130, 32}, {}},       // C_in >= 128, one block of 32
                              {{1, 4, 14, 130}, {3, 3, 130, 32}, same},    // tiles of 14 = output rows
                              {{1, 7, 6, 100}, {5, 5, 100, 70}, same},     // K = 2500, M = 42
                              {{1, 17, 16, 100}, {5, 5, 100, 70}, same},   // K = 2500, M = 272
                              {{2, 21, 13, 24}, {3, 3, 12, 34}, odd},      // groups, stride, dilation
                              {{1, 5, 4, 1040}, {3, 3, 1040, 36}, same}};  // K = 9360
  for (const auto& r : runs) {
    INFO("x " << attn::shape_str(r.x) << " kernel " << attn::shape_str(r.k) << " groups " << r.o.groups);
    const auto x = random_any<T>(r.x, 21);
    const auto k = random_any<T>(r.k, 22);
    const Index co = r.k[3];
    const auto b = random_any<T>({co}, 23);
    const auto y = run_conv<T>(x, k, &b, r.o, false);
    const ops::Geometry2d g = ops::conv2d_geometry(r.x, r.k, r.o);
    const Index H = r.x[1], W = r.x[2], C = r.x[3], cg = r.k[2], og = co / r.o.groups;
    REQUIRE(y.shape() == Shape{r.x[0], g.out_h, g.out_w, co});
    double worst = 0;  // |y - oracle| / (|bias| + Σ |terms|)
    for (Index bi = 0; bi < r.x[0]; ++bi)
      for (Index oy = 0; oy < g.out_h; ++oy)
        for (Index ox = 0; ox < g.out_w; ++ox)
          for (Index o = 0; o < co; ++o) {
            double sum = static_cast<double>(b.data()[o]), mag = std::abs(sum);
            for (Index i = 0; i < g.kh; ++i)
              for (Index j = 0; j < g.kw; ++j) {
                const Index iy = oy * g.sh - g.top + i * g.dh, ix = ox * g.sw - g.left + j * g.dw;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                const T* xp = x.data() + ((bi * H + iy) * W + ix) * C + o / og * cg;
                const T* kp = k.data() + (i * g.kw + j) * cg * co + o;
                for (Index ci = 0; ci < cg; ++ci) {
                  const double term = static_cast<double>(xp[ci]) * static_cast<double>(kp[ci * co]);
                  sum += term;
                  mag += std::abs(term);
                }
              }
            const double got = static_cast<double>(y.data()[((bi * g.out_h + oy) * g.out_w + ox) * co + o]);
            worst = std::max(worst, std::abs(got - sum) / mag);
          }
    CHECK(worst < (std::is_same_v<T, float> ? 1e-6 : 1e-14));
  }
}

TEMPLATE_TEST_CASE("conv2d: Keras padding rules computed by hand", "[ops][conv]", float, double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  SECTION("tf-same, stride 2, 4x4: no padding at the top/left, one row and column at the bottom/right") {
    const auto x = iota<T>({1, 4, 4, 1});  // 1..16
    const auto k = filled<T>({3, 3, 1, 1}, T(1));
    ops::Conv2dOptions o;
    o.strides = {2, 2};
    o.padding = ops::Padding2d::same();
    const auto y = run_conv<T>(x, k, nullptr, o, false);
    REQUIRE(y.shape() == Shape{1, 2, 2, 1});
    // rows 0-2 x cols 0-2; rows 0-2 x cols 2-3; rows 2-3 x cols 0-2; rows 2-3 x cols 2-3
    CHECK(y.values() == std::vector<T>{54, 45, 72, 54});
    // PyTorch's symmetric padding=1 would start at row/col -1: 1 + 2 + 5 + 6 = 14 at (0, 0)
    o.padding = ops::Padding2d::explicit_pads(1, 1, 1, 1);
    CHECK(run_conv<T>(x, k, nullptr, o, false).values()[0] == T(14));
  }
  SECTION("torch-same with an even kernel: H + 1 outputs") {
    const auto x = filled<T>({1, 3, 3, 1}, T(1));
    const auto k = filled<T>({2, 2, 1, 1}, T(1));
    ops::Conv2dOptions o;
    o.padding = ops::Padding2d::torch_same();
    const auto y = run_conv<T>(x, k, nullptr, o, false);
    REQUIRE(y.shape() == Shape{1, 4, 4, 1});
    CHECK(y.values() == std::vector<T>{1, 2, 2, 1, 2, 4, 4, 2, 2, 4, 4, 2, 1, 2, 2, 1});
    // tf-same keeps 3x3 and puts the one padded row/column at the bottom/right
    o.padding = ops::Padding2d::same();
    CHECK(run_conv<T>(x, k, nullptr, o, false).values() == std::vector<T>{4, 4, 2, 4, 4, 2, 2, 2, 1});
  }
  SECTION("torch-same with dilation 2 shrinks a 7x9 map to 5x7 (spec errata)") {
    const auto x = filled<T>({1, 7, 9, 1}, T(1));
    const auto k = filled<T>({3, 3, 1, 1}, T(1));
    ops::Conv2dOptions o;
    o.padding = ops::Padding2d::torch_same();
    o.dilation_rate = {2, 2};
    const auto y = run_conv<T>(x, k, nullptr, o, false);
    REQUIRE(y.shape() == Shape{1, 5, 7, 1});
    CHECK(y.values()[0] == T(4));       // taps at rows/cols -1, 1, 3: 2 x 2 inside
    CHECK(y.values()[2 * 7 + 3] == T(9));  // centre: all 9 taps inside
    // tf-same with dilation pads the effective kernel 5: same size
    o.padding = ops::Padding2d::same();
    CHECK(run_conv<T>(x, k, nullptr, o, false).shape() == Shape{1, 7, 9, 1});
  }
  SECTION("groups: output chunk g sees input chunk g only; depthwise multiplier order c·mult + m") {
    // 2 input channels, constant 1 and 10; groups 2, 2 outputs per group; kernel 1x1
    attn::AnyTensor<T> x(Shape{1, 1, 1, 2}, std::vector<T>{1, 10});
    attn::AnyTensor<T> k(Shape{1, 1, 1, 4}, std::vector<T>{1, 2, 3, 4});  // [1, 1, C_in/2 = 1, 4]
    ops::Conv2dOptions o;
    o.groups = 2;
    CHECK(run_conv<T>(x, k, nullptr, o, false).values() == std::vector<T>{1, 2, 30, 40});
    attn::AnyTensor<T> kd(Shape{1, 1, 2, 2}, std::vector<T>{1, 2, 3, 4});  // depthwise [1, 1, C, mult]
    attn::AnyTensor<T> bias(Shape{4}, std::vector<T>{0.5, 0.5, 0.5, 0.5});
    CHECK(run_conv<T>(x, kd, &bias, {}, true).values() == std::vector<T>{1.5, 2.5, 30.5, 40.5});
  }
}

TEMPLATE_TEST_CASE("conv2d: bit-identical for 1, 2 and 3 threads", "[ops][conv][threads]", float, double) {
  using T = TestType;
  ATTN_FOR_EACH_SIMD_LEVEL();
  struct Run {
    Shape x, k;
    ops::Conv2dOptions o;
    bool dw;
  };
  ops::Conv2dOptions same;
  same.padding = ops::Padding2d::same();
  ops::Conv2dOptions grouped = same;
  grouped.groups = 4;
  grouped.strides = {2, 1};
  ops::Conv2dOptions dil;
  dil.padding = ops::Padding2d::torch_same();
  dil.dilation_rate = {2, 3};
  const std::vector<Run> runs{{{2, 23, 19, 24}, {3, 3, 24, 40}, same, false},
                              {{2, 17, 21, 32}, {3, 3, 8, 16}, grouped, false},
                              {{3, 16, 16, 64}, {1, 1, 64, 48}, {}, false},
                              {{2, 15, 17, 40}, {3, 3, 40, 80}, same, false},
                              {{1, 17, 16, 100}, {5, 5, 100, 70}, same, false},  // K = 2500 in chunks
                              {{2, 20, 19, 45}, {7, 7, 45, 1}, same, true},
                              {{2, 15, 14, 12}, {5, 3, 12, 3}, dil, true}};
  const int saved = attn::num_threads();
  for (const auto& r : runs) {
    const auto x = random_any<T>(r.x, 11);
    const auto k = random_any<T>(r.k, 12);
    const Index co = r.dw ? r.x[3] * r.k[3] : r.k[3];
    const auto b = random_any<T>({co}, 13);
    std::vector<attn::AnyTensor<T>> ys;
    for (int n : {1, 2, 3}) {
      attn::set_num_threads(n);
      ys.push_back(run_conv<T>(x, k, &b, r.o, r.dw));
    }
    attn::set_num_threads(saved);
    CHECK(ys[0].size() > 1000);
    CHECK(ys[0] == ys[1]);
    CHECK(ys[0] == ys[2]);
  }
}

TEST_CASE("conv2d: bad options and shapes are typed errors naming the layer and parameter", "[ops][conv][errors]") {
  using T = float;
  const auto x = random_any<T>({1, 5, 5, 4}, 1);
  const auto k = random_any<T>({3, 3, 4, 2}, 2);
  const auto run = [&](const attn::AnyTensor<T>& xx, const attn::AnyTensor<T>& kk, ops::Conv2dOptions o) {
    attn::AnyTensor<T> y(Shape{64});
    ops::conv2d<T>(xx.data(), xx.shape(), kk.data(), kk.shape(), nullptr, 0, y.data(), o);
  };
  ops::Conv2dOptions o;
  o.layer = "stem_conv";
  o.strides = {0, 1};
  REQUIRE_THROWS_MATCHES(run(x, k, o), attn::ConfigError,
                         Catch::Message("stem_conv: strides must be positive, got [0, 1]"));
  o.strides = {1, 1};
  o.dilation_rate = {1, -2};
  REQUIRE_THROWS_MATCHES(run(x, k, o), attn::ConfigError,
                         Catch::Message("stem_conv: dilation_rate must be positive, got [1, -2]"));
  o.dilation_rate = {1, 1};
  o.groups = 3;
  REQUIRE_THROWS_MATCHES(
      run(x, k, o), attn::ConfigError,
      Catch::Message("stem_conv: groups (3) must divide the input channels (4) and the output channels (2)"));
  o.groups = 0;
  REQUIRE_THROWS_MATCHES(run(x, k, o), attn::ConfigError, Catch::Message("stem_conv: groups must be positive, got 0"));
  o.groups = 2;  // the kernel must then have 2 input channels
  REQUIRE_THROWS_AS(run(x, k, o), attn::ShapeError);
  REQUIRE_THROWS_WITH(run(x, k, o), Catch::StartsWith("stem_conv: kernel must have shape [3, 3, 2, 2]"));
  o.groups = 1;
  const auto big = random_any<T>({7, 3, 4, 2}, 3);
  REQUIRE_THROWS_AS(run(x, big, o), attn::ShapeError);
  REQUIRE_THROWS_WITH(run(x, big, o), Catch::StartsWith("stem_conv: the kernel (7x3, dilated 7x3) is larger than "
                                                        "the padded input (5x5"));
  o.padding = ops::Padding2d::torch_same();  // 5 + 3 + 3 = 11 rows: fits
  CHECK_NOTHROW(run(x, big, o));
  o.padding = ops::Padding2d::valid();
  o.dilation_rate = {3, 1};  // dilated 7 rows > 5
  REQUIRE_THROWS_AS(run(x, k, o), attn::ShapeError);
  o.dilation_rate = {1, 1};
  o.padding = ops::Padding2d::explicit_pads(0, -1, 0, 0);
  REQUIRE_THROWS_MATCHES(run(x, k, o), attn::ConfigError,
                         Catch::Message("stem_conv: padding must be non-negative, got [0, -1, 0, 0]"));
  o.padding = ops::Padding2d::valid();
  const auto flat = random_any<T>({5, 5, 4}, 4);
  REQUIRE_THROWS_AS(run(flat, k, o), attn::ShapeError);
  attn::AnyTensor<T> y(Shape{64});
  const auto bias = random_any<T>({3}, 5);
  REQUIRE_THROWS_MATCHES(ops::conv2d<T>(x.data(), x.shape(), k.data(), k.shape(), bias.data(), 3, y.data(), o),
                         attn::ShapeError, Catch::Message("stem_conv: bias must have shape [2], got [3]"));
  const auto kd = random_any<T>({3, 3, 5, 1}, 6);
  const auto dw = [&] { ops::depthwise_conv2d<T>(x.data(), x.shape(), kd.data(), kd.shape(), nullptr, 0, y.data(), {}); };
  REQUIRE_THROWS_AS(dw(), attn::ShapeError);
  REQUIRE_THROWS_WITH(dw(), Catch::StartsWith("depthwise_conv2d: kernel must have shape [kh, kw, 4, "));
}
