// positional_embedding: the forward against x + weight, load_resized_weights against hand-computed
// interpolation and PyTorch's interpolate (golden), the class-token rule, validation and shape errors.
#include <attn/layers/positional_embedding.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using PE = attn::PositionalEmbedding<double>;

TEST_CASE("positional_embedding: weight name, shape and TruncatedNormal(0.2) init", "[positional_embedding]") {
  const PE img({.input_shape = {3, 4, 5}}, 1);
  REQUIRE(img.parameters().size() == 1);
  REQUIRE(img.parameters()[0].name == "positional_embedding");
  REQUIRE(img.parameters()[0].shape == Shape{1, 3, 4, 5});
  const PE tok({.input_shape = {50, 16}}, 1);
  REQUIRE(tok.parameters()[0].shape == Shape{1, 50, 16});
  // truncated at 2 stddev = 0.4; the spread is about 0.88 * 0.2
  double sum2 = 0, biggest = 0;
  for (double v : tok.parameters()[0].data) {
    REQUIRE(std::abs(v) <= 0.4);
    sum2 += v * v;
    biggest = std::max(biggest, std::abs(v));
  }
  const double sd = std::sqrt(sum2 / 800.0);
  REQUIRE(sd > 0.15);
  REQUIRE(sd < 0.2);
  REQUIRE(biggest > 0.3);
  REQUIRE(PE({.input_shape = {50, 16}}, 2).parameters()[0].data != tok.parameters()[0].data);
  REQUIRE(PE({.input_shape = {50, 16}}, 1).parameters()[0].data == tok.parameters()[0].data);
}

TEST_CASE("positional_embedding: forward adds the weight to every batch item, rank 3 and 4", "[positional_embedding]") {
  const PE img({.input_shape = {3, 4, 5}}, 3);
  const auto x = random_tensor<double, 4>({2, 3, 4, 5}, 7);
  const auto y = img.forward(x);
  const auto& w = img.parameters()[0].data;
  for (Index b = 0; b < 2; ++b)
    for (Index i = 0; i < 60; ++i) REQUIRE(y.data()[b * 60 + i] == x.data()[b * 60 + i] + w[static_cast<std::size_t>(i)]);
  const PE tok({.input_shape = {6, 2}}, 3);
  const auto xt = random_tensor<double, 3>({3, 6, 2}, 8);
  const auto yt = tok.forward(xt);
  for (Index b = 0; b < 3; ++b)
    for (Index n = 0; n < 6; ++n)
      for (Index c = 0; c < 2; ++c)
        REQUIRE(yt(b, n, c) == xt(b, n, c) + tok.parameters()[0].data[static_cast<std::size_t>(n * 2 + c)]);
  // an empty batch is fine
  REQUIRE(img.forward(attn::Tensor<double, 4>(0, 3, 4, 5)).size() == 0);
}

TEST_CASE("positional_embedding: hand-computed resizes (bilinear half-pixel, nearest, class token kept)",
          "[positional_embedding]") {
  // image [1, 1, 2, 1] = (a, b) -> (1, 4): source columns (i + 0.5)·2/4 − 0.5 = −0.25, 0.25, 0.75, 1.25
  // -> a, 0.75a + 0.25b, 0.25a + 0.75b, b (clamped at the ends)
  PE img({.input_shape = {1, 4, 1}});
  img.load_resized_weights(std::vector<double>{2.0, 6.0}, {1, 1, 2, 1});
  REQUIRE(img.parameters()[0].data == std::vector<double>{2.0, 3.0, 5.0, 6.0});
  // nearest: source column min(⌊(i + 0.5)·2/4⌋, 1) = 0, 0, 1, 1
  img.load_resized_weights(std::vector<double>{2.0, 6.0}, {1, 1, 2, 1}, attn::ResizeMethod::nearest);
  REQUIRE(img.parameters()[0].data == std::vector<double>{2.0, 2.0, 6.0, 6.0});
  // tokens: 1 class token (9) + a 1x1 grid (4) -> 1 + 2x2: the class token is copied, the grid resized
  PE tok({.input_shape = {5, 1}});
  tok.load_resized_weights(std::vector<double>{9.0, 4.0}, {1, 2, 1});
  REQUIRE(tok.parameters()[0].data == std::vector<double>{9.0, 4.0, 4.0, 4.0, 4.0});
  // a copy when the sizes agree
  PE same({.input_shape = {2, 3, 2}});
  const std::vector<double> src{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  same.load_resized_weights(src, {1, 2, 3, 2});
  REQUIRE(same.parameters()[0].data == src);
  // from another layer's weight
  PE other({.input_shape = {2, 3, 2}}, 5);
  same.load_resized_weights(other.parameters()[0]);
  REQUIRE(same.parameters()[0].data == other.parameters()[0].data);
}

TEST_CASE("positional_embedding: resize errors leave the weight unchanged", "[positional_embedding]") {
  const std::vector<double> src(static_cast<std::size_t>(10 * 2), 0.5);  // 1 class token + a 3x3 grid
  // 1 + 12x16 = 193 tokens: the reference's default grid height ⌊sqrt(193)⌋ = 13 counts the class token
  // (13x14 = 182 tokens, not 192): refused; with input_height = 12 the grid is 12x16
  PE wide({.input_shape = {193, 2}}, 4);
  const auto before = wide.parameters()[0].data;
  REQUIRE_THROWS_WITH(wide.load_resized_weights(src, {1, 10, 2}),
                      Catch::Contains("positional_embedding: load_resized_weights: the source has 1 leading "
                                      "token(s) before a 3x3 grid, so the target's 193 tokens need a grid of 192; "
                                      "the grid 13x14") &&
                          Catch::Contains("set input_height"));
  REQUIRE(wide.parameters()[0].data == before);
  PE wide12({.input_shape = {193, 2}, .input_height = 12});
  wide12.load_resized_weights(src, {1, 10, 2});
  for (double v : wide12.parameters()[0].data) REQUIRE(v == 0.5);
  // the leading-token counts must agree: 1 + 5x5 = 26 takes a source with 1 leading token, not 2
  PE t26({.input_shape = {26, 2}});
  REQUIRE_NOTHROW(t26.load_resized_weights(std::vector<double>(20, 1.0), {1, 10, 2}));
  REQUIRE_THROWS_AS(t26.load_resized_weights(std::vector<double>(22, 1.0), {1, 11, 2}), attn::ShapeError);
  // wrong channels, wrong rank, value count, leading extent
  PE tok({.input_shape = {21, 2}}, 4);
  const auto kept = tok.parameters()[0].data;
  REQUIRE_THROWS_AS(tok.load_resized_weights(std::vector<double>(30, 0.0), {1, 10, 3}), attn::ShapeError);
  REQUIRE_THROWS_AS(tok.load_resized_weights(std::vector<double>(20, 0.0), {1, 2, 5, 2}), attn::ShapeError);
  REQUIRE_THROWS_AS(tok.load_resized_weights(std::vector<double>(19, 0.0), {1, 10, 2}), attn::ShapeError);
  REQUIRE_THROWS_AS(tok.load_resized_weights(std::vector<double>(20, 0.0), {2, 5, 2}), attn::ShapeError);
  REQUIRE(tok.parameters()[0].data == kept);
}

TEST_CASE("positional_embedding: validation and shape errors", "[positional_embedding]") {
  REQUIRE_THROWS_WITH(PE({.input_shape = {3, 4, 5}, .input_height = 0}), "input_height must be -1 or positive, got 0");
  REQUIRE_THROWS_AS(PE({.input_shape = {3, 4, 5}, .input_height = -2}), attn::ConfigError);
  REQUIRE_THROWS_AS(PE({.input_shape = {3, 0, 5}}), attn::ConfigError);
  REQUIRE_THROWS_AS(PE({.input_shape = {5}}), attn::ConfigError);
  REQUIRE_THROWS_AS(PE({.input_shape = {1, 2, 3, 4}}), attn::ConfigError);
  REQUIRE_THROWS_WITH(attn::validate_attention_config("positional_embedding", Json::object()),
                      "Required parameters for 'positional_embedding' are missing: ['input_shape']. Required: "
                      "['input_shape']");
  const PE layer({.input_shape = {3, 4, 5}});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({2, 3, 5, 5}, 1)),
                      "positional_embedding: x must have shape [*, 3, 4, 5] (the input_shape the layer was built "
                      "for), got [2, 3, 5, 5]");
  REQUIRE_THROWS_AS(layer.forward(random_tensor<double, 3>({2, 12, 5}, 1)), attn::ShapeError);
  REQUIRE(layer.output_shape({7, 3, 4, 5}) == Shape{7, 3, 4, 5});
  const auto any = attn::create_attention_layer<double>("positional_embedding", {{"input_shape", {3, 4, 5}}});
  REQUIRE_THROWS_WITH(any.forward(random_any<double>({2, 12, 5}, 1)),
                      Catch::StartsWith("positional_embedding: input 0 must have rank 4"));
}

TEST_CASE("positional_embedding: upstream shape test [2, 8, 16, 49]", "[positional_embedding]") {
  const auto any = attn::create_attention_layer<float>("positional_embedding", {{"input_shape", {8, 16, 49}}});
  REQUIRE(any.forward(random_any<float>({2, 8, 16, 49}, 1)).shape() == Shape{2, 8, 16, 49});
}

// ---- golden parity (tools/golden/positional_embedding.py, tests/data/positional_embedding/) ----
TEMPLATE_TEST_CASE("golden: positional_embedding matches PyTorch's add and interpolate", "[golden][positional_embedding]",
                   float, double) {
  using T = TestType;
  for_each_golden<T>("positional_embedding", [](const Golden& g) {
    attn::PositionalEmbedding<T> layer(g.config.get<attn::PositionalEmbeddingConfig>());
    if (g.file.contains("input/source")) {
      const auto src = g.file.tensor<T>("input/source");
      const auto method = g.meta("method") == "nearest" ? attn::ResizeMethod::nearest : attn::ResizeMethod::bilinear;
      layer.load_resized_weights(std::span<const T>(src.values()), src.shape(), method);
      const auto& w = layer.parameters()[0];
      if (w.shape.size() == 4)
        check<T>(g, "positional_embedding", w.template view<4>());
      else
        check<T>(g, "positional_embedding", w.template view<3>());
    } else {
      attn::load_weights(layer, g.file, "weights");
    }
    if (g.config.at("input_shape").size() == 3)
      check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
    else
      check<T>(g, "output", layer.forward(input<T, 3>(g, "x")));
  });
}
