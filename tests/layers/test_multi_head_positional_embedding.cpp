// multi_head_positional_embedding: the index against the spec's Appendix B.2 tables, the errata's
// out-of-range index refused, the forward against a plain gather loop, the resize, PyTorch golden
// data, validation and shape errors.
#include <attn/layers/multi_head_positional_embedding.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using MHPE = attn::MultiHeadPositionalEmbedding<double>;

TEST_CASE("multi_head_positional_embedding: index equals Appendix B.2", "[multi_head_positional_embedding]") {
  // query 2x2, keys 4x4, stride 2
  const MHPE strided({.input_shape = {1, 4, 16}});
  REQUIRE(strided.stride() == 2);
  REQUIRE(strided.key_grid() == std::pair<Index, Index>{4, 4});
  REQUIRE(strided.relative_position_index().values ==
          std::vector<Index>{0,  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 2,  1, 0, 1, 6, 5, 4, 5, 10, 9, 8, 9, 14, 13, 12, 13,
                             8,  9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 10, 9, 8, 9, 6, 5, 4, 5, 2, 1, 0, 1, 6, 5, 4, 5});
  // query = keys = 3x3, stride 1
  const MHPE square({.input_shape = {9, 9}});
  REQUIRE(square.relative_position_index().values ==
          std::vector<Index>{0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0, 1, 4, 3, 4, 7, 6, 7, 2, 1, 0, 5, 4, 3, 8, 7, 6,
                             3, 4, 5, 0, 1, 2, 3, 4, 5, 4, 3, 4, 1, 0, 1, 4, 3, 4, 5, 4, 3, 2, 1, 0, 5, 4, 3,
                             6, 7, 8, 3, 4, 5, 0, 1, 2, 7, 6, 7, 4, 3, 4, 1, 0, 1, 8, 7, 6, 5, 4, 3, 2, 1, 0});
  REQUIRE(square.parameters()[0].shape == Shape{9});
  // upstream [2, 8, 16, 49]: q 4x4, k 7x7 (the search from 8 stops at 7), s = 2
  const MHPE up({.input_shape = {8, 16, 49}});
  REQUIRE(up.key_grid() == std::pair<Index, Index>{7, 7});
  REQUIRE(up.parameters()[0].name == "positional_embedding");
  REQUIRE(up.parameters()[0].shape == Shape{49, 8});
}

TEST_CASE("multi_head_positional_embedding: the errata's index past the table is a ConfigError",
          "[multi_head_positional_embedding]") {
  // a 3x8 map with stride 2: queries 2x4 (query_height 2), keys 24: the search finds k_h = 4 and the
  // index reaches 3 + 4·6 = 27 >= 24
  REQUIRE_THROWS_WITH(MHPE({.input_shape = {1, 8, 24}, .query_height = 2}),
                      "the index reaches 27 but the table has 24 entries (query grid 2x4, stride 2, key grid 4x6): "
                      "pass the key grid's height as key_height");
  const auto problems =
      attn::check_attention_config("multi_head_positional_embedding", {{"input_shape", {1, 8, 24}}, {"query_height", 2}});
  REQUIRE(problems.size() == 1);
  REQUIRE(problems[0].parameter == "key_height");
  // the key grid from the input (3 rows of 8) fits
  const MHPE ok({.input_shape = {1, 8, 24}, .query_height = 2, .key_height = 3});
  for (Index v : ok.relative_position_index().values) REQUIRE(v < 24);
  REQUIRE_THROWS_WITH(MHPE({.input_shape = {1, 10, 24}, .query_height = 3}), "the 10 queries do not form a grid of height 3");
  REQUIRE_THROWS_WITH(MHPE({.input_shape = {1, 9, 24}, .key_height = 5}), "the 24 keys do not form a grid of height 5");
  REQUIRE_THROWS_WITH(MHPE({.input_shape = {1, 9, 24}, .key_height = 0}), "key_height must be -1 or positive, got 0");
  REQUIRE_THROWS_AS(MHPE({.input_shape = {1, 9, 24}, .query_height = -4}), attn::ConfigError);
  REQUIRE_THROWS_AS(MHPE({.input_shape = {9}}), attn::ConfigError);
}

TEST_CASE("multi_head_positional_embedding: forward equals a plain gather loop, rank 4 and 3",
          "[multi_head_positional_embedding]") {
  MHPE layer({.input_shape = {3, 9, 36}});
  auto& w = layer.parameters()[0];
  for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = std::cos(0.3 * double(i));
  const auto x = random_tensor<double, 4>({2, 3, 9, 36}, 3);
  const auto y = layer.forward(x);
  const auto& I = layer.relative_position_index();
  for (Index b = 0; b < 2; ++b)
    for (Index h = 0; h < 3; ++h)
      for (Index p = 0; p < 9; ++p)
        for (Index m = 0; m < 36; ++m) REQUIRE(y(b, h, p, m) == x(b, h, p, m) + w.data[static_cast<std::size_t>(I(p, m) * 3 + h)]);
  MHPE single({.input_shape = {4, 16}});
  for (std::size_t i = 0; i < 16; ++i) single.parameters()[0].data[i] = double(i);
  const auto x3 = random_tensor<double, 3>({2, 4, 16}, 4);
  const auto y3 = single.forward(x3);
  for (Index p = 0; p < 4; ++p)
    for (Index m = 0; m < 16; ++m) REQUIRE(y3(1, p, m) == x3(1, p, m) + double(single.relative_position_index()(p, m)));
  // zero init: the identity (upstream shape [2, 8, 16, 49])
  const auto any = attn::create_attention_layer<double>("multi_head_positional_embedding", {{"input_shape", {8, 16, 49}}});
  const auto xa = random_any<double>({2, 8, 16, 49}, 1);
  REQUIRE(any.forward(xa) == xa);
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({2, 3, 9, 35}, 1)),
                      "multi_head_positional_embedding: x must have shape [*, 3, 9, 36] (scores of the input_shape), got "
                      "[2, 3, 9, 35]");
  REQUIRE_THROWS_AS(layer.forward(random_tensor<double, 3>({2, 9, 36}, 1)), attn::ShapeError);
}

TEST_CASE("multi_head_positional_embedding: resize (copy, hand-computed, errors)", "[multi_head_positional_embedding]") {
  MHPE layer({.input_shape = {1, 4, 16}});
  std::vector<double> same(16);
  for (std::size_t i = 0; i < 16; ++i) same[i] = double(i);
  layer.load_resized_weights(same, {16, 1});
  REQUIRE(layer.parameters()[0].data == same);
  // a 1x1 key grid (7) -> 4x4: all 7
  layer.load_resized_weights(std::vector<double>{7.0}, {1, 1}, attn::ResizeMethod::nearest);
  REQUIRE(layer.parameters()[0].data == std::vector<double>(16, 7.0));
  REQUIRE_THROWS_AS(layer.load_resized_weights(std::vector<double>(8, 0.0), {8, 1}), attn::ShapeError);
  REQUIRE_THROWS_AS(layer.load_resized_weights(std::vector<double>(18, 0.0), {9, 2}), attn::ShapeError);
  REQUIRE_THROWS_AS(layer.load_resized_weights(std::vector<double>(9, 0.0), {9}), attn::ShapeError);
  REQUIRE(layer.parameters()[0].data == std::vector<double>(16, 7.0));
}

// ---- golden parity (tools/golden/multi_head_positional_embedding.py) ----
TEMPLATE_TEST_CASE("golden: multi_head_positional_embedding matches PyTorch's gather and interpolate",
                   "[golden][multi_head_positional_embedding]", float, double) {
  using T = TestType;
  for_each_golden<T>("multi_head_positional_embedding", [](const Golden& g) {
    attn::MultiHeadPositionalEmbedding<T> layer(g.config.get<attn::MultiHeadPositionalEmbeddingConfig>());
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
    }
    if (g.config.at("input_shape").size() == 3)
      check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
    else
      check<T>(g, "output", layer.forward(input<T, 3>(g, "x")));
  });
}
