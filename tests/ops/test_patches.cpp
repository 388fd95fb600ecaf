// ops/patches.hpp: CompatibleExtractPatches-style extraction against PyTorch's unfold and overlap-add
// fold against PyTorch's fold (golden files of tools/golden/vision_ops.py), fold ∘ extract = identity for
// non-overlapping patches, and typed errors.
#include "golden_ops.hpp"

using namespace attn_test;
namespace ops = attn::ops;

TEMPLATE_TEST_CASE("patches: PyTorch golden cases (unfold, fold)", "[ops][patches][golden]", float, double) {
  using T = TestType;
  const auto gs = op_goldens<T>("ops_patches");
  for (const auto& g : gs) {
    INFO(g.name);
    if (g.has("input/x")) {
      const auto xa = g.get("input/x");
      for (const auto& c : g.config.at("cases")) {
        const Index k = c[0], s = c[1], rh = c[2][0], rw = c[2][1];
        const bool same = c[3];
        const auto y = ops::extract_patches<T>(xa.template view<4>(), k, s, {rh, rw}, same);
        const std::string tag = fmt::format("k{}_s{}_r{}x{}_{}", k, s, rh, rw, same ? "same" : "valid");
        g.check(tag, y.data(), attn::shape_of(y));
      }
    } else {
      for (const auto& c : g.config.at("cases")) {
        const std::string name = c[0];
        const auto p = g.get("input/" + name);
        const auto y = ops::fold_patches<T>(p.template view<4>(), c[1], c[2], c[3], c[4], c[5], c[6]);
        g.check(name, y.data(), attn::shape_of(y));
      }
    }
  }
}

TEST_CASE("patches: fold of non-overlapping extracted patches is the identity, layout (a, b, c)", "[ops][patches]") {
  const auto x = random_tensor<double, 4>({2, 6, 9, 4}, 3);
  const attn::ConstTensorView<double, 4> v(x.data(), x.dimensions());
  const auto p = ops::extract_patches<double>(v, 3, 3, {1, 1}, /*same=*/false);
  REQUIRE(attn::shape_of(p) == Shape{2, 2, 3, 36});
  // patch (1, 2), tap (a, b) = (2, 1), channel 3 is pixel (1·3 + 2, 2·3 + 1) = (5, 7)
  CHECK(p(1, 1, 2, (2 * 3 + 1) * 4 + 3) == x(1, 5, 7, 3));
  const auto back = ops::fold_patches<double>(attn::ConstTensorView<double, 4>(p.data(), p.dimensions()), 3, 3, 1, 0);
  CHECK(attn::AnyTensor<double>(back) == attn::AnyTensor<double>(x));
}

TEST_CASE("patches: typed errors", "[ops][patches][errors]") {
  const auto x = random_tensor<float, 4>({1, 4, 4, 2}, 1);
  const attn::ConstTensorView<float, 4> v(x.data(), x.dimensions());
  REQUIRE_THROWS_AS(ops::extract_patches<float>(v, 3, 0), attn::ConfigError);
  REQUIRE_THROWS_AS(ops::extract_patches<float>(v, 0, 1), attn::ConfigError);
  REQUIRE_THROWS_AS(ops::extract_patches<float>(v, 5, 1, {1, 1}, false), attn::ShapeError);
  REQUIRE_THROWS_AS(ops::fold_patches<float>(v, 3, 1, 1, 1), attn::ShapeError);  // 2 values are not 9·C
  const auto p = random_tensor<float, 4>({1, 2, 2, 9}, 2);
  const attn::ConstTensorView<float, 4> pv(p.data(), p.dimensions());
  REQUIRE_THROWS_AS(ops::fold_patches<float>(pv, 3, 2, 1, 1, 10, 2), attn::ShapeError);
  REQUIRE_THROWS_MATCHES(ops::fold_patches<float>(pv, 3, 0, 1, 1), attn::ConfigError,
                         Catch::Message("fold_patches: kernel_size, strides and dilation_rate must be positive, got "
                                        "3, 0, 1"));
}
