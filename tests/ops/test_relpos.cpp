// ops/relpos.hpp: the relative-position index tables of spec Appendix B.1 (KCAM's and the raster one),
// Swin's construction and bias gather from PyTorch (golden file of tools/golden/vision_ops.py), and the
// out-of-range check.
#include "golden_ops.hpp"

using namespace attn_test;
namespace ops = attn::ops;

namespace {
std::vector<Index> flat(const std::vector<std::vector<Index>>& rows) {
  std::vector<Index> v;
  for (const auto& r : rows) v.insert(v.end(), r.begin(), r.end());
  return v;
}
}  // namespace

TEST_CASE("relpos: spec Appendix B.1 tables", "[ops][relpos]") {
  SECTION("2x3 grid, no class token: KCAM's index and the raster index differ") {
    const auto k = ops::kcam_relative_position_index(2, 3, false);
    CHECK(k.values == flat({{7, 6, 4, 3, 1, 0},
                            {8, 7, 5, 4, 2, 1},
                            {10, 9, 7, 6, 4, 3},
                            {11, 10, 8, 7, 5, 4},
                            {13, 12, 10, 9, 7, 6},
                            {14, 13, 11, 10, 8, 7}}));
    const auto r = ops::relative_position_index(2, 3);
    CHECK(r.values == flat({{7, 6, 5, 2, 1, 0},
                            {8, 7, 6, 3, 2, 1},
                            {9, 8, 7, 4, 3, 2},
                            {12, 11, 10, 7, 6, 5},
                            {13, 12, 11, 8, 7, 6},
                            {14, 13, 12, 9, 8, 7}}));
  }
  SECTION("2x2 grid with a class token (R = 12)") {
    const auto k = ops::kcam_relative_position_index(2, 2, true);
    CHECK(k.rows == 5);
    CHECK(k.values == flat({{11, 9, 9, 9, 9}, {10, 4, 3, 1, 0}, {10, 5, 4, 2, 1}, {10, 7, 6, 4, 3}, {10, 8, 7, 5, 4}}));
  }
  SECTION("reduced keys: 4x4 queries, 4 keys = the last 4 columns") {
    const auto k = ops::kcam_relative_position_index(4, 4, false, 4);
    CHECK(k.cols == 4);
    CHECK(k.values == flat({{3, 2, 1, 0}, {4, 3, 2, 1}, {5, 4, 3, 2}, {6, 5, 4, 3},
                            {10, 9, 8, 7}, {11, 10, 9, 8}, {12, 11, 10, 9}, {13, 12, 11, 10},
                            {17, 16, 15, 14}, {18, 17, 16, 15}, {19, 18, 17, 16}, {20, 19, 18, 17},
                            {24, 23, 22, 21}, {25, 24, 23, 22}, {26, 25, 24, 23}, {27, 26, 25, 24}}));
  }
  SECTION("square grids: both indices agree") {
    CHECK(ops::kcam_relative_position_index(3, 3, false).values == ops::relative_position_index(3, 3).values);
  }
}

TEMPLATE_TEST_CASE("relpos: Swin's index and the bias gather against PyTorch", "[ops][relpos][golden]", float, double) {
  using T = TestType;
  const auto gs = op_goldens<T>("ops_relpos");
  const auto& g = gs.front();
  const Index h = g.config.at("height"), w = g.config.at("width"), heads = g.config.at("heads");
  const auto idx = ops::relative_position_index(h, w);
  std::vector<T> as_t(idx.values.begin(), idx.values.end());
  g.check("index", as_t.data(), {idx.rows, idx.cols});
  const auto table = g.get("input/table");  // [R, heads]
  std::vector<T> bias(static_cast<std::size_t>(heads * idx.rows * idx.cols));
  ops::gather_relative_bias<T>(table.data(), heads, table.shape()[0], /*heads_first=*/false, idx, bias.data());
  g.check("bias", bias.data(), {heads, idx.rows, idx.cols});
  // the same values from the transposed ([heads, R]) table
  std::vector<T> tt(static_cast<std::size_t>(table.size()));
  const Index r = table.shape()[0];
  for (Index i = 0; i < r; ++i)
    for (Index k = 0; k < heads; ++k) tt[static_cast<std::size_t>(k * r + i)] = table.data()[i * heads + k];
  std::vector<T> bias2(bias.size());
  ops::gather_relative_bias<T>(tt.data(), heads, r, /*heads_first=*/true, idx, bias2.data());
  CHECK(bias2 == bias);
}

TEST_CASE("relpos: errors", "[ops][relpos][errors]") {
  REQUIRE_THROWS_AS(ops::relative_position_index(0, 3), attn::ConfigError);
  REQUIRE_THROWS_AS(ops::kcam_relative_position_index(2, 2, false, 5), attn::ConfigError);
  const auto idx = ops::relative_position_index(2, 2);  // values up to 8
  std::vector<float> table(2 * 8), out(2 * 16);
  REQUIRE_THROWS_MATCHES(ops::gather_relative_bias<float>(table.data(), 2, 8, true, idx, out.data(), "swin_block"),
                         attn::ShapeError,
                         Catch::Message("swin_block: relative-position index 8 lies outside the bias table of 8 entries"));
}
