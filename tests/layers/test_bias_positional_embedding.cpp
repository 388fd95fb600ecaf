// bias_positional_embedding: the bias shapes per axis list, the forward against plain loops, the
// two-pass resize against hand-computed values and PyTorch's interpolate (golden), validation and
// shape errors.
#include <attn/layers/bias_positional_embedding.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using BPE = attn::BiasPositionalEmbedding<double>;

TEST_CASE("bias_positional_embedding: weight name, shapes per axis, zeros init", "[bias_positional_embedding]") {
  const BPE d({.input_shape = {4, 36, 9}});
  REQUIRE(d.parameters().size() == 1);
  REQUIRE(d.parameters()[0].name == "positional_embedding");
  REQUIRE(d.parameters()[0].shape == Shape{4, 36, 9});
  for (double v : d.parameters()[0].data) REQUIRE(v == 0.0);
  REQUIRE(BPE({.input_shape = {4, 36, 9}, .axis = {2, 3}}).parameters()[0].shape == Shape{1, 36, 9});
  REQUIRE(BPE({.input_shape = {4, 36, 9}, .axis = {3, 1}}).parameters()[0].shape == Shape{4, 1, 9});
  REQUIRE(BPE({.input_shape = {4, 36, 9}, .axis = {3}}).parameters()[0].shape == Shape{1, 1, 9});
  REQUIRE(BPE({.input_shape = {4, 36, 9}, .axis = {-1}}).parameters()[0].shape == Shape{9});
  // another initializer is honoured and seeded
  const BPE g({.input_shape = {2, 4, 4}, .initializer = "glorot_uniform"}, 3);
  REQUIRE(g.parameters()[0].data != BPE({.input_shape = {2, 4, 4}, .initializer = "glorot_uniform"}, 4).parameters()[0].data);
}

TEST_CASE("bias_positional_embedding: zero init is the identity (upstream [2, 4, 36, 9])", "[bias_positional_embedding]") {
  const auto any = attn::create_attention_layer<double>("bias_positional_embedding", {{"input_shape", {4, 36, 9}}});
  const auto x = random_any<double>({2, 4, 36, 9}, 3);
  REQUIRE(any.forward(x) == x);
}

TEST_CASE("bias_positional_embedding: forward and attention_bias broadcast as the axis says", "[bias_positional_embedding]") {
  for (const attn::IntList& axis : {attn::IntList{1, 2, 3}, attn::IntList{2, 3}, attn::IntList{1}, attn::IntList{3, 1},
                                    attn::IntList{2}, attn::IntList{-1}}) {
    BPE layer({.input_shape = {3, 5, 4}, .axis = axis});
    auto& w = layer.parameters()[0];
    for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.1 * double(i) - 0.7;
    const bool last = axis.size() == 1 && axis[0] == -1;
    const auto has = [&](int a) { return std::find(axis.begin(), axis.end(), a) != axis.end(); };
    const auto bias_at = [&](Index h, Index q, Index k) {
      if (last) return w.data[static_cast<std::size_t>(k)];
      const Index hh = has(1) ? h : 0, qq = has(2) ? q : 0, kk = has(3) ? k : 0;
      const Index nq = has(2) ? 5 : 1, nk = has(3) ? 4 : 1;
      return w.data[static_cast<std::size_t>((hh * nq + qq) * nk + kk)];
    };
    const auto x = random_tensor<double, 4>({2, 3, 5, 4}, 9);
    const auto y = layer.forward(x);
    const auto bias = layer.attention_bias();
    REQUIRE(bias.dimension(0) == 3);
    REQUIRE(bias.dimension(1) == 5);
    REQUIRE(bias.dimension(2) == 4);
    for (Index b = 0; b < 2; ++b)
      for (Index h = 0; h < 3; ++h)
        for (Index q = 0; q < 5; ++q)
          for (Index k = 0; k < 4; ++k) {
            REQUIRE(bias(h, q, k) == bias_at(h, q, k));
            REQUIRE(y(b, h, q, k) == x(b, h, q, k) + bias_at(h, q, k));
          }
  }
}

TEST_CASE("bias_positional_embedding: hand-computed resize", "[bias_positional_embedding]") {
  // 1 head, source [1, 1, 1] (1x1 query grid, 1x1 keys) = 5 -> [1, 4, 1]: constant 5 everywhere
  BPE up({.input_shape = {1, 4, 1}});
  up.load_resized_weights(std::vector<double>{5.0}, {1, 1, 1});
  REQUIRE(up.parameters()[0].data == std::vector<double>(4, 5.0));
  // source [1, 1, 4]: keys 2x2 = [[1, 2], [3, 4]], query 1x1 -> target [1, 4, 16]: query grid 2x2
  // (sr = ⌊sqrt(4/16)⌋ = 0: refused) ...
  BPE bad({.input_shape = {1, 4, 16}});
  REQUIRE_THROWS_WITH(bad.load_resized_weights(std::vector<double>{1, 2, 3, 4}, {1, 1, 4}),
                      Catch::StartsWith("bias_positional_embedding: load_resized_weights: the target grids do not fit"));
  // ... target [1, 4, 4]: query 2x2 (the source query 1x1 is copied to all 4), sr = 1, keys 2x2 -> 2x2 copy
  BPE keys({.input_shape = {1, 4, 4}});
  keys.load_resized_weights(std::vector<double>{1, 2, 3, 4}, {1, 1, 4});
  for (Index q = 0; q < 4; ++q)
    for (Index k = 0; k < 4; ++k) REQUIRE(keys.parameters()[0].data[static_cast<std::size_t>(q * 4 + k)] == double(k + 1));
  // keys 2x2 -> 4x4 with query 1x1 -> 4x4 (sr = 1): keys row (1, 2) becomes 1, 1.25, 1.75, 2 (half-pixel)
  BPE big({.input_shape = {1, 16, 16}});
  big.load_resized_weights(std::vector<double>{1, 2, 3, 4}, {1, 1, 4});
  const auto& w = big.parameters()[0].data;
  REQUIRE(w[0] == 1.0);
  REQUIRE(w[1] == 1.25);
  REQUIRE(w[2] == 1.75);
  REQUIRE(w[3] == 2.0);
  REQUIRE(w[15] == 4.0);
  REQUIRE(w[16 * 9 + 4] == 1.5);  // query 9, key (1, 0): 0.75·1 + 0.25·3
}

TEST_CASE("bias_positional_embedding: resize errors leave the weight unchanged", "[bias_positional_embedding]") {
  BPE layer({.input_shape = {2, 36, 9}, .initializer = "ones"});
  const auto before = layer.parameters()[0].data;
  REQUIRE_THROWS_AS(layer.load_resized_weights(std::vector<double>(2 * 15 * 4, 0.0), {2, 15, 4}), attn::ShapeError);
  REQUIRE_THROWS_AS(layer.load_resized_weights(std::vector<double>(3 * 16 * 4, 0.0), {3, 16, 4}), attn::ShapeError);
  REQUIRE_THROWS_AS(layer.load_resized_weights(std::vector<double>(2 * 16 * 4 - 1, 0.0), {2, 16, 4}), attn::ShapeError);
  REQUIRE_THROWS_AS(layer.load_resized_weights(std::vector<double>(2 * 16, 0.0), {2, 16}), attn::ShapeError);
  BPE odd({.input_shape = {2, 35, 9}});
  REQUIRE_THROWS_AS(odd.load_resized_weights(std::vector<double>(2 * 16 * 4, 0.0), {2, 16, 4}), attn::ShapeError);
  BPE axis({.input_shape = {2, 36, 9}, .axis = {2, 3}});
  REQUIRE_THROWS_WITH(axis.load_resized_weights(std::vector<double>(2 * 16 * 4, 0.0), {2, 16, 4}),
                      "bias_positional_embedding: load_resized_weights needs the default axis [1, 2, 3], the layer has "
                      "[2, 3]");
  REQUIRE(layer.parameters()[0].data == before);
}

TEST_CASE("bias_positional_embedding: validation and shape errors", "[bias_positional_embedding]") {
  REQUIRE_THROWS_WITH(BPE({.input_shape = {2, 4, 4}, .axis = {0, 2}}), "axis must be [-1] or distinct axes in [1, 3], got [0, 2]");
  REQUIRE_THROWS_WITH(BPE({.input_shape = {2, 4, 4}, .axis = {2, 2}}), "axis must be [-1] or distinct axes in [1, 3], got [2, 2]");
  REQUIRE_THROWS_WITH(BPE({.input_shape = {2, 4, 4}, .axis = {-1, 2}}), "axis must be [-1] or distinct axes in [1, 3], got [-1, 2]");
  REQUIRE_THROWS_AS(BPE({.input_shape = {2, 4, 4}, .axis = {4}}), attn::ConfigError);
  REQUIRE_THROWS_AS(BPE({.input_shape = {2, 4, 4}, .axis = {}}), attn::ConfigError);
  REQUIRE_THROWS_WITH(BPE({.input_shape = {2, 4, 4}, .attn_height = 0}), "attn_height must be -1 or positive, got 0");
  REQUIRE_THROWS_AS(BPE({.input_shape = {2, 4}}), attn::ConfigError);
  REQUIRE_THROWS_AS(BPE({.input_shape = {2, 4, 4}, .initializer = "bogus"}), attn::ConfigError);
  const BPE layer({.input_shape = {2, 4, 3}});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 2, 3, 4}, 1)),
                      "bias_positional_embedding: x must have shape [*, 2, 4, 3] (scores [B, heads, Nq, Nk] of the "
                      "input_shape), got [1, 2, 3, 4]");
  REQUIRE(layer.output_shape({5, 2, 4, 3}) == Shape{5, 2, 4, 3});
}

// ---- golden parity (tools/golden/bias_positional_embedding.py, tests/data/bias_positional_embedding/) ----
TEMPLATE_TEST_CASE("golden: bias_positional_embedding matches PyTorch's add and interpolate",
                   "[golden][bias_positional_embedding]", float, double) {
  using T = TestType;
  for_each_golden<T>("bias_positional_embedding", [](const Golden& g) {
    attn::BiasPositionalEmbedding<T> layer(g.config.get<attn::BiasPositionalEmbeddingConfig>());
    if (g.file.contains("input/source")) {
      const auto src = g.file.tensor<T>("input/source");
      const auto method = g.meta("method") == "nearest" ? attn::ResizeMethod::nearest : attn::ResizeMethod::bilinear;
      layer.load_resized_weights(std::span<const T>(src.values()), src.shape(), method);
      check<T>(g, "positional_embedding", layer.attention_bias());
    } else {
      attn::load_weights(layer, g.file, "weights");
    }
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
