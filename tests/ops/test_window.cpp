// ops/window.hpp: padding, block and grid window partition/reverse, cyclic shift and the Swin
// shifted-window mask against PyTorch (golden files of tools/golden/vision_ops.py), the mask of spec
// Appendix B.4 as a table, and typed errors.
#include "golden_ops.hpp"

using namespace attn_test;
namespace ops = attn::ops;

TEMPLATE_TEST_CASE("window ops: PyTorch golden cases", "[ops][window][golden]", float, double) {
  using T = TestType;
  for (const auto& g : op_goldens<T>("ops_window")) {
    INFO(g.name);
    const auto xa = g.get("input/x");
    const auto x = xa.template view<4>();
    const Json ws = g.config.at("window_size"), sh = g.config.at("shift");
    const Index wsh = ws.is_array() ? ws[0].template get<Index>() : ws.template get<Index>();
    const Index wsw = ws.is_array() ? ws[1].template get<Index>() : ws.template get<Index>();
    const Index s0 = sh.is_array() ? sh[0].template get<Index>() : sh.template get<Index>();
    const Index s1 = sh.is_array() ? sh[1].template get<Index>() : sh.template get<Index>();
    const ops::WindowLayout l = ops::window_layout(x.dimension(1), x.dimension(2), wsh, wsw);
    const attn::Tensor<T, 4> padded = ops::pad_bottom_right<T>(x, l.pad_h, l.pad_w);
    if (g.has("expected/padded")) g.check("padded", padded.data(), attn::shape_of(padded));
    const attn::ConstTensorView<T, 4> pv(padded.data(), padded.dimensions());
    const auto w = ops::window_partition<T>(pv, l.wh, l.ww);
    g.check("windows", w.data(), attn::shape_of(w));
    const auto gw = ops::window_partition<T>(pv, l.wh, l.ww, /*grid=*/true);
    g.check("grid_windows", gw.data(), attn::shape_of(gw));
    // reverse is the exact inverse, for both kinds
    const auto back = ops::window_reverse<T>(attn::ConstTensorView<T, 4>(w.data(), w.dimensions()), l.ph, l.pw);
    CHECK(attn::AnyTensor<T>(back) == attn::AnyTensor<T>(padded));
    const auto gback =
        ops::window_reverse<T>(attn::ConstTensorView<T, 4>(gw.data(), gw.dimensions()), l.ph, l.pw, true);
    CHECK(attn::AnyTensor<T>(gback) == attn::AnyTensor<T>(padded));
    const auto shifted = ops::cyclic_shift<T>(pv, s0, s1);
    g.check("shifted", shifted.data(), attn::shape_of(shifted));
    const auto unshifted =
        ops::cyclic_shift<T>(attn::ConstTensorView<T, 4>(shifted.data(), shifted.dimensions()), -s0, -s1);
    CHECK(attn::AnyTensor<T>(unshifted) == attn::AnyTensor<T>(padded));
    const auto m = ops::shifted_window_mask<T>(padded.dimension(1), padded.dimension(2), l.wh, l.ww, s0, s1);
    g.check("mask", m.data(), attn::shape_of(m));
    const auto cropped = ops::crop_bottom_right<T>(pv, x.dimension(1), x.dimension(2));
    CHECK(attn::AnyTensor<T>(cropped) == xa);
  }
}

TEST_CASE("window ops: the shifted-window mask of spec Appendix B.4 (4x4, window 2, shift 1)", "[ops][window]") {
  const auto m = ops::shifted_window_mask<float>(4, 4, 2, 2, 1, 1);
  REQUIRE(attn::shape_of(m) == Shape{4, 4, 4});
  const float X = -100;
  const std::vector<std::vector<float>> expected{
      {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},           // w0: all 0
      {0, X, 0, X, X, 0, X, 0, 0, X, 0, X, X, 0, X, 0},           // w1
      {0, 0, X, X, 0, 0, X, X, X, X, 0, 0, X, X, 0, 0},           // w2
      {0, X, X, X, X, 0, X, X, X, X, 0, X, X, X, X, 0}};          // w3
  for (Index w = 0; w < 4; ++w)
    CHECK(std::vector<float>(m.data() + w * 16, m.data() + w * 16 + 16) == expected[static_cast<std::size_t>(w)]);
  // no shift: every window is a single region
  const auto z = ops::shifted_window_mask<float>(4, 4, 2, 2, 0, 0);
  for (Index i = 0; i < z.size(); ++i) CHECK(z.data()[i] == 0.0f);
}

TEST_CASE("window ops: window layout clips the window to the image and pads bottom/right", "[ops][window]") {
  const auto l = ops::window_layout(28, 32, 7, 7);
  CHECK(l.wh == 7);
  CHECK(l.ph == 4);
  CHECK(l.pw == 5);
  CHECK(l.pad_h == 0);
  CHECK(l.pad_w == 3);  // 28x32 -> 28x35 (spec §5.14 test hint)
  const auto small = ops::window_layout(5, 9, 7, 7);
  CHECK(small.wh == 5);
  CHECK(small.ww == 7);
  CHECK(small.pad_w == 5);
}

TEST_CASE("window ops: typed errors", "[ops][window][errors]") {
  const auto x = random_tensor<float, 4>({1, 6, 6, 2}, 1);
  const attn::ConstTensorView<float, 4> v(x.data(), x.dimensions());
  REQUIRE_THROWS_AS(ops::window_layout(6, 6, 0, 3), attn::ConfigError);
  REQUIRE_THROWS_MATCHES(ops::window_partition<float>(v, 4, 3), attn::ShapeError,
                         Catch::Message("window_partition: input height and width must be multiples of the window "
                                        "4x3 (pad first), got input shape [1, 6, 6, 2]"));
  REQUIRE_THROWS_AS(ops::window_reverse<float>(v, 4, 1), attn::ShapeError);
  REQUIRE_THROWS_AS(ops::shifted_window_mask<float>(4, 4, 2, 2, 2, 0), attn::ConfigError);
  REQUIRE_THROWS_AS(ops::shifted_window_mask<float>(5, 4, 2, 2, 1, 1), attn::ShapeError);
  REQUIRE_THROWS_AS(ops::crop_bottom_right<float>(v, 7, 6), attn::ShapeError);
}
