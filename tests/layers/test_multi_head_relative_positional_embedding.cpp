// multi_head_relative_positional_embedding: the index against the spec's Appendix B.1 tables, the
// forward against a plain gather loop, the resize against hand-computed values and PyTorch's
// interpolate (golden), validation and shape errors.
#include <attn/layers/multi_head_relative_positional_embedding.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using MHRPE = attn::MultiHeadRelativePositionalEmbedding<double>;

namespace {
std::vector<Index> index_values(const MHRPE& l) { return l.relative_position_index().values; }
}  // namespace

TEST_CASE("multi_head_relative_positional_embedding: index equals Appendix B.1",
          "[multi_head_relative_positional_embedding]") {
  // 2x2 grid with class token (R = 12)
  const MHRPE cls({.input_shape = {1, 5, 5}});
  REQUIRE(index_values(cls) == std::vector<Index>{11, 9, 9, 9, 9, 10, 4, 3, 1, 0, 10, 5, 4, 2, 1,
                                                  10, 7, 6, 4, 3, 10, 8, 7, 5, 4});
  REQUIRE(cls.parameters()[0].shape == Shape{1, 12});
  // 2x3 grid, no class token: the KCAM index (not the raster one)
  const MHRPE rect({.input_shape = {1, 6, 6}, .with_cls_token = false, .attn_height = 2});
  REQUIRE(index_values(rect) == std::vector<Index>{7,  6,  4,  3,  1, 0, 8,  7,  5,  4,  2, 1,  10, 9, 7, 6, 4, 3,
                                                   11, 10, 8,  7,  5, 4, 13, 12, 10, 9,  7, 6,  14, 13, 11, 10, 8, 7});
  REQUIRE(rect.parameters()[0].shape == Shape{1, 15});
  // reduced keys: 4x4 queries, the last 4 columns
  const MHRPE reduced({.input_shape = {2, 16, 4}, .with_cls_token = false});
  REQUIRE(index_values(reduced) == std::vector<Index>{3,  2,  1,  0,  4,  3,  2,  1,  5,  4,  3,  2,  6,  5,  4,  3,
                                                      10, 9,  8,  7,  11, 10, 9,  8,  12, 11, 10, 9,  13, 12, 11, 10,
                                                      17, 16, 15, 14, 18, 17, 16, 15, 19, 18, 17, 16, 20, 19, 18, 17,
                                                      24, 23, 22, 21, 25, 24, 23, 22, 26, 25, 24, 23, 27, 26, 25, 24});
}

TEST_CASE("multi_head_relative_positional_embedding: forward equals a plain gather loop",
          "[multi_head_relative_positional_embedding]") {
  struct Case {
    attn::IntList shape;
    bool cls;
    int attn_height, num_heads;
  };
  for (const Case& c : {Case{{3, 10, 10}, true, -1, -1}, Case{{2, 12, 12}, false, 3, -1}, Case{{4, 10, 5}, true, -1, 1},
                        Case{{2, 9, 3}, false, -1, 2}}) {
    MHRPE layer({.input_shape = c.shape, .with_cls_token = c.cls, .attn_height = c.attn_height, .num_heads = c.num_heads});
    auto& w = layer.parameters()[0];
    for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = std::sin(0.37 * double(i));
    const Index h = c.shape[0], nq = c.shape[1], nk = c.shape[2], r = w.shape[1];
    const auto x = random_tensor<double, 4>({2, h, nq, nk}, 5);
    const auto y = layer.forward(x);
    const auto& I = layer.relative_position_index();
    REQUIRE(I.rows == nq);
    REQUIRE(I.cols == nk);
    for (Index b = 0; b < 2; ++b)
      for (Index n = 0; n < h; ++n)
        for (Index i = 0; i < nq; ++i)
          for (Index j = 0; j < nk; ++j) {
            const Index th = w.shape[0] == 1 ? 0 : n;
            REQUIRE(y(b, n, i, j) == x(b, n, i, j) + w.data[static_cast<std::size_t>(th * r + I(i, j))]);
          }
  }
  // zero init: the identity (upstream shape [2, 8, 29·29 + 1, 29·29 + 1])
  const auto any = attn::create_attention_layer<float>("multi_head_relative_positional_embedding",
                                                       {{"input_shape", {8, 842, 842}}});
  const auto x = random_any<float>({2, 8, 842, 842}, 1);
  REQUIRE(any.forward(x) == x);
}

TEST_CASE("multi_head_relative_positional_embedding: hand-computed resize",
          "[multi_head_relative_positional_embedding]") {
  // 1 head, no class token: a 1x1 relative grid (value 3) -> 3x3 (grid 2x2): all 3
  MHRPE up({.input_shape = {1, 4, 4}, .with_cls_token = false});
  up.load_resized_weights(std::vector<double>{3.0}, {1, 1});
  REQUIRE(up.parameters()[0].data == std::vector<double>(9, 3.0));
  // class token: a 1x1 grid (1) and the class entries (7, 8, 9) -> 3x3 of 1, then 7, 8, 9
  MHRPE cls({.input_shape = {1, 5, 5}});
  cls.load_resized_weights(std::vector<double>{1.0, 7.0, 8.0, 9.0}, {1, 4});
  REQUIRE(cls.parameters()[0].data == std::vector<double>{1, 1, 1, 1, 1, 1, 1, 1, 1, 7, 8, 9});
  // 2x2 -> 3x3 bilinear: corners kept, centre the mean, edges the means of their pairs
  MHRPE mid({.input_shape = {1, 4, 4}, .with_cls_token = false});
  mid.load_resized_weights(std::vector<double>{0.0, 4.0, 8.0, 12.0}, {1, 4});
  const std::vector<double> want{0, 2, 4, 4, 6, 8, 8, 10, 12};
  for (std::size_t i = 0; i < want.size(); ++i) REQUIRE(mid.parameters()[0].data[i] == Approx(want[i]).margin(1e-14));
  // errors leave the table unchanged
  const auto before = mid.parameters()[0].data;
  REQUIRE_THROWS_AS(mid.load_resized_weights(std::vector<double>(5, 0.0), {1, 5}), attn::ShapeError);
  REQUIRE_THROWS_AS(mid.load_resized_weights(std::vector<double>(8, 0.0), {2, 4}), attn::ShapeError);
  REQUIRE_THROWS_AS(mid.load_resized_weights(std::vector<double>(3, 0.0), {1, 4}), attn::ShapeError);
  // grid 2x3 (R = 15) with attn_height = 2: t_h = 3, t_w = 5 fills it; with attn_height -1, ⌊sqrt(15)⌋ = 3 does not
  MHRPE rect({.input_shape = {1, 6, 6}, .with_cls_token = false, .attn_height = 2});
  REQUIRE_NOTHROW(rect.load_resized_weights(std::vector<double>(9, 1.0), {1, 9}));
  REQUIRE(mid.parameters()[0].data == before);
}

TEST_CASE("multi_head_relative_positional_embedding: validation and shape errors",
          "[multi_head_relative_positional_embedding]") {
  REQUIRE_THROWS_WITH(MHRPE({.input_shape = {2, 11, 11}}),
                      "11 query tokens after the class token do not form a grid of height 3 (attn_height = -1)");
  REQUIRE_THROWS_WITH(MHRPE({.input_shape = {2, 17, 18}}),
                      "the keys (Nk = 18) must number between 2 and 17 (the queries' grid 4x4 plus the class token)");
  REQUIRE_THROWS_WITH(MHRPE({.input_shape = {4, 17, 17}, .num_heads = 2}),
                      "num_heads must be -1, 1 or the input's heads (4), got 2");
  REQUIRE_THROWS_WITH(MHRPE({.input_shape = {4, 17, 17}, .attn_height = 0}), "attn_height must be -1 or positive, got 0");
  REQUIRE_THROWS_AS(MHRPE({.input_shape = {4, 17, 17}, .num_heads = -3}), attn::ConfigError);
  REQUIRE_THROWS_AS(MHRPE({.input_shape = {4, 17, 17}, .attn_height = 5}), attn::ConfigError);
  REQUIRE_THROWS_AS(MHRPE({.input_shape = {4, 1, 1}}), attn::ConfigError);
  const MHRPE layer({.input_shape = {2, 5, 5}});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 2, 5, 4}, 1)),
                      "multi_head_relative_positional_embedding: x must have shape [*, 2, 5, 5] (scores [B, heads, Nq, "
                      "Nk] of the input_shape), got [1, 2, 5, 4]");
}

// ---- golden parity (tools/golden/multi_head_relative_positional_embedding.py) ----
TEMPLATE_TEST_CASE("golden: multi_head_relative_positional_embedding matches PyTorch's gather and interpolate",
                   "[golden][multi_head_relative_positional_embedding]", float, double) {
  using T = TestType;
  for_each_golden<T>("multi_head_relative_positional_embedding", [](const Golden& g) {
    attn::MultiHeadRelativePositionalEmbedding<T> layer(
        g.config.get<attn::MultiHeadRelativePositionalEmbeddingConfig>());
    if (g.file.contains("input/source")) {
      const auto src = g.file.tensor<T>("input/source");
      const auto method = g.meta("method") == "nearest" ? attn::ResizeMethod::nearest : attn::ResizeMethod::bilinear;
      layer.load_resized_weights(std::span<const T>(src.values()), src.shape(), method);
      check<T>(g, "positional_embedding", layer.parameters()[0].template view<2>());
    } else {
      attn::load_weights(layer, g.file, "weights");
      const auto& I = layer.relative_position_index();
      attn::Tensor<T, 2> index(I.rows, I.cols);
      for (Index i = 0; i < index.size(); ++i) index.data()[i] = static_cast<T>(I.values[static_cast<std::size_t>(i)]);
      check<T>(g, "index", index);
      check<T>(g, "bias", layer.attention_bias());
    }
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
