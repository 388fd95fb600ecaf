// ops/resize.hpp: TF2 bilinear (half-pixel) and nearest resize against PyTorch's interpolate (bilinear,
// align_corners=False, antialias=False; nearest-exact), a hand-computed case and typed errors.
#include "golden_ops.hpp"

using namespace attn_test;
namespace ops = attn::ops;

TEMPLATE_TEST_CASE("resize: PyTorch golden cases", "[ops][resize][golden]", float, double) {
  using T = TestType;
  const auto gs = op_goldens<T>("ops_resize");
  const auto& g = gs.front();
  const auto xa = g.get("input/x");
  const auto x = xa.template view<4>();
  for (const auto& s : g.config.at("sizes")) {
    const Index h = s[0], w = s[1];
    const std::string tag = fmt::format("{}x{}", h, w);
    const auto b = ops::resize_bilinear<T>(x, h, w);
    g.check("bilinear_" + tag, b.data(), attn::shape_of(b));
    const auto n = ops::resize_nearest<T>(x, h, w);
    g.check("nearest_" + tag, n.data(), attn::shape_of(n));
  }
}

TEST_CASE("resize: half-pixel bilinear by hand, and errors", "[ops][resize]") {
  // [0, 10] -> 4 samples: src = (i + 0.5)/2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> 0, 2.5, 7.5, 10
  attn::Tensor<double, 4> x(1, 1, 2, 1);
  x.setValues({{{{0}, {10}}}});
  const attn::ConstTensorView<double, 4> v(x.data(), x.dimensions());
  const auto y = ops::resize_bilinear<double>(v, 1, 4);
  CHECK(std::vector<double>(y.data(), y.data() + 4) == std::vector<double>{0, 2.5, 7.5, 10});
  // nearest with half-pixel centres: floor((i + 0.5)/2) = 0, 0, 1, 1 (PyTorch's plain nearest agrees
  // here; for 3 -> 2 it would pick 0, 1 instead of 0, 2)
  const auto n = ops::resize_nearest<double>(v, 1, 4);
  CHECK(std::vector<double>(n.data(), n.data() + 4) == std::vector<double>{0, 0, 10, 10});
  attn::Tensor<double, 4> x3(1, 1, 3, 1);
  x3.setValues({{{{1}, {2}, {3}}}});
  const auto n3 = ops::resize_nearest<double>(attn::ConstTensorView<double, 4>(x3.data(), x3.dimensions()), 1, 2);
  CHECK(std::vector<double>(n3.data(), n3.data() + 2) == std::vector<double>{1, 3});
  REQUIRE_THROWS_AS(ops::resize_bilinear<double>(v, -1, 2), attn::ShapeError);
  attn::Tensor<double, 4> empty(1, 0, 2, 1);
  REQUIRE_THROWS_AS(
      ops::resize_bilinear<double>(attn::ConstTensorView<double, 4>(empty.data(), empty.dimensions()), 2, 2),
      attn::ShapeError);
}
