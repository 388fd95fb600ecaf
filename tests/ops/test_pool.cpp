// ops/pool.hpp: average and max pooling against PyTorch (golden files of tools/golden/vision_ops.py) with
// Keras's divisor rule, hand-computed Keras-vs-torch cases, thread-count independence and typed errors.
#include "golden_ops.hpp"

#include <numeric>

using namespace attn_test;
namespace ops = attn::ops;

namespace {

ops::Padding2d pool_padding(const Json& j) {
  if (j.is_array()) return ops::Padding2d::explicit_pads(j[0], j[1], j[2], j[3]);
  const std::string s = j.get<std::string>();
  if (s == "same") return ops::Padding2d::same();
  if (s == "torch_same") return ops::Padding2d::torch_same();
  return ops::Padding2d::valid();
}

template <class T>
attn::AnyTensor<T> pool(bool avg, const attn::AnyTensor<T>& x, const ops::Pool2dOptions& o) {
  const ops::Geometry2d g = ops::pool2d_geometry(x.shape(), o);
  attn::AnyTensor<T> y(Shape{x.shape()[0], g.out_h, g.out_w, x.shape()[3]});
  if (avg) ops::avg_pool2d<T>(x.data(), x.shape(), y.data(), o);
  else ops::max_pool2d<T>(x.data(), x.shape(), y.data(), o);
  return y;
}

}  // namespace

TEMPLATE_TEST_CASE("pool2d: PyTorch golden cases (Keras divisor rule, every padding mode)", "[ops][pool][golden]", float,
                   double) {
  using T = TestType;
  for (const auto& g : op_goldens<T>("ops_pool2d")) {
    INFO(g.name);
    const auto x = g.get("input/x");
    const Json& c = g.config;
    if (c.at("kind") == "global") {
      attn::AnyTensor<T> a(Shape{x.shape()[0], x.shape()[3]}), m(Shape{x.shape()[0], x.shape()[3]});
      ops::global_avg_pool2d<T>(x.data(), x.shape(), a.data());
      ops::global_max_pool2d<T>(x.data(), x.shape(), m.data());
      g.check("avg", a.data(), a.shape());
      g.check("max", m.data(), m.shape());
      continue;
    }
    ops::Pool2dOptions o;
    o.pool_size = {c.at("pool_size")[0].template get<Index>(), c.at("pool_size")[1].template get<Index>()};
    o.strides = {c.at("strides")[0].template get<Index>(), c.at("strides")[1].template get<Index>()};
    o.padding = pool_padding(c.at("padding"));
    if (!c.at("count_pad").is_null()) o.count_pad = c.at("count_pad").template get<bool>();
    const auto y = pool<T>(c.at("kind") == "avg", x, o);
    g.check("y", y.data(), y.shape());
  }
}

TEMPLATE_TEST_CASE("pool2d: Keras's same excludes padding, ZeroPadding2D + valid counts it (by hand)", "[ops][pool]",
                   float, double) {
  using T = TestType;
  attn::AnyTensor<T> x(Shape{1, 3, 3, 1});
  std::iota(x.data(), x.data() + 9, T(1));  // 1..9
  ops::Pool2dOptions o;                     // 2x2, stride 2
  o.padding = ops::Padding2d::same();       // one padded row/column at the bottom/right
  CHECK(pool<T>(true, x, o).values() == std::vector<T>{3, 4.5, 7.5, 9});
  o.padding = ops::Padding2d::explicit_pads(0, 1, 0, 1);  // ZeroPadding2D(((0, 1), (0, 1))) then valid
  CHECK(pool<T>(true, x, o).values() == std::vector<T>{3, 2.25, 3.75, 2.25});
  o.count_pad = false;  // explicit padding, excluded like same
  CHECK(pool<T>(true, x, o).values() == std::vector<T>{3, 4.5, 7.5, 9});
  for (Index i = 0; i < 9; ++i) x.data()[i] = -x.data()[i];
  o.count_pad.reset();
  o.padding = ops::Padding2d::same();  // max over valid cells only
  CHECK(pool<T>(false, x, o).values() == std::vector<T>{-1, -3, -7, -9});
  o.padding = ops::Padding2d::explicit_pads(0, 1, 0, 1);  // the padded zeros win
  CHECK(pool<T>(false, x, o).values() == std::vector<T>{-1, 0, 0, 0});
}

TEMPLATE_TEST_CASE("pool2d: bit-identical for 1, 2 and 3 threads", "[ops][pool][threads]", float, double) {
  using T = TestType;
  const auto x = random_any<T>({3, 19, 17, 24}, 5);
  ops::Pool2dOptions o;
  o.pool_size = {3, 3};
  o.padding = ops::Padding2d::same();
  const int saved = attn::num_threads();
  std::vector<attn::AnyTensor<T>> ys;
  for (int n : {1, 2, 3}) {
    attn::set_num_threads(n);
    ys.push_back(pool<T>(true, x, o));
    ys.push_back(pool<T>(false, x, o));
  }
  attn::set_num_threads(saved);
  CHECK(ys[0] == ys[2]);
  CHECK(ys[0] == ys[4]);
  CHECK(ys[1] == ys[3]);
  CHECK(ys[1] == ys[5]);
}

TEST_CASE("pool2d: bad options and shapes are typed errors", "[ops][pool][errors]") {
  const auto x = random_any<float>({1, 4, 4, 2}, 1);
  ops::Pool2dOptions o;
  o.layer = "downsample_pool";
  o.strides = {1, 0};
  REQUIRE_THROWS_MATCHES(pool<float>(true, x, o), attn::ConfigError,
                         Catch::Message("downsample_pool: strides must be positive, got [1, 0]"));
  o.strides = {1, 1};
  o.pool_size = {0, 2};
  REQUIRE_THROWS_MATCHES(pool<float>(false, x, o), attn::ConfigError,
                         Catch::Message("downsample_pool: pool_size must be positive, got [0, 2]"));
  o.pool_size = {5, 2};
  REQUIRE_THROWS_AS(pool<float>(true, x, o), attn::ShapeError);
  o.padding = ops::Padding2d::same();  // same never fails on size
  CHECK(pool<float>(true, x, o).shape() == Shape{1, 4, 4, 2});
  std::vector<float> y(8);
  REQUIRE_THROWS_AS(ops::global_avg_pool2d<float>(x.data(), {1, 0, 4, 2}, y.data()), attn::ShapeError);
  REQUIRE_THROWS_AS(ops::global_max_pool2d<float>(x.data(), {16, 2}, y.data()), attn::ShapeError);
}
