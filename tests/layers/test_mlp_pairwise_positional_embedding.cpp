// mlp_pairwise_positional_embedding: the coordinate table against the spec's Appendix B.5 values, the
// reference index against Appendix B.1 (2x3) and the raster index against its formula (the spec's 7x8
// count of differing pairs), deploy mode and the seed-era weights as identities, the upstream shapes
// (Appendix C.1), PyTorch golden data, validation and shape errors.
#include <attn/layers/mlp_pairwise_positional_embedding.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using MP = attn::MlpPairwisePositionalEmbedding<double>;

namespace {
template <class A, class B>
bool same(const A& a, const B& b) {
  return a.dimensions() == b.dimensions() && std::equal(a.data(), a.data() + a.size(), b.data());
}
}  // namespace

TEST_CASE("mlp_pairwise_positional_embedding: coordinate table equals Appendix B.5", "[mlp_pairwise_positional_embedding]") {
  const double l9 = std::log2(9.0) / 3, l5 = std::log2(5.0) / 3;
  REQUIRE_THAT(l9, Catch::Matchers::WithinAbs(1.0566417, 1e-7));
  REQUIRE_THAT(l5, Catch::Matchers::WithinAbs(0.7739760, 1e-7));
  // 2x2: rows (dy, dx) in (-1,-1), (-1,0), ..., (1,1); every non-zero coordinate is ±log2(9)/3
  const auto t2 = MP({.input_shape = {1, 4, 4}}).relative_coords_table();
  REQUIRE(t2.dimension(0) == 9);
  for (Index r = 0; r < 9; ++r) {
    const double dy = double(r / 3 - 1), dx = double(r % 3 - 1);
    REQUIRE_THAT(t2(r, 0), Catch::Matchers::WithinAbs(dy * l9, 1e-15));
    REQUIRE_THAT(t2(r, 1), Catch::Matchers::WithinAbs(dx * l9, 1e-15));
  }
  // 3x3: |d| = 1 -> log2(5)/3, |d| = 2 -> log2(9)/3
  const auto t3 = MP({.input_shape = {1, 9, 9}}).relative_coords_table();
  REQUIRE(t3.dimension(0) == 25);
  const double v[5] = {-l9, -l5, 0, l5, l9};
  for (Index r = 0; r < 25; ++r) {
    REQUIRE_THAT(t3(r, 0), Catch::Matchers::WithinAbs(v[r / 5], 1e-15));
    REQUIRE_THAT(t3(r, 1), Catch::Matchers::WithinAbs(v[r % 5], 1e-15));
  }
  // errata: a pos_scale below the window exceeds 1.06 (window 8, pos_scale 4: about 1.43)
  const auto t8 = MP({.input_shape = {1, 64, 64}, .pos_scale = {4, 4}}).relative_coords_table();
  REQUIRE_THAT(t8(0, 0), Catch::Matchers::WithinAbs(-std::log2(1 + 7 * 8 / 3.0) / 3, 1e-15));
  REQUIRE(t8(0, 0) < -1.4);
}

TEST_CASE("mlp_pairwise_positional_embedding: the reference index and the raster-correct option",
          "[mlp_pairwise_positional_embedding]") {
  // the reference index of a 2x3 window is Appendix B.1's KCAM index, the raster one its comparison
  const MP ref({.input_shape = {1, 6, 6}, .attn_height = 2});
  REQUIRE(ref.relative_position_index().values ==
          std::vector<Index>{7,  6,  4, 3, 1, 0, 8,  7,  5, 4, 2, 1, 10, 9,  7, 6, 4, 3,
                             11, 10, 8, 7, 5, 4, 13, 12, 10, 9, 7, 6, 14, 13, 11, 10, 8, 7});
  const MP raster({.input_shape = {1, 6, 6}, .attn_height = 2, .relative_index = "raster"});
  REQUIRE(raster.relative_position_index().values ==
          std::vector<Index>{7,  6,  5,  2, 1, 0, 8,  7,  6,  3, 2, 1, 9,  8,  7,  4, 3, 2,
                             12, 11, 10, 7, 6, 5, 13, 12, 11, 8, 7, 6, 14, 13, 12, 9, 8, 7});
  // the raster index reads the table row of the pair's (dy, dx); the spec counts 2758 of 3136 pairs
  // of a 7x8 window where the reference index differs
  const MP r78({.input_shape = {1, 56, 56}, .attn_height = 7, .relative_index = "raster"});
  const MP k78({.input_shape = {1, 56, 56}, .attn_height = 7});
  const auto& R = r78.relative_position_index();
  const auto& K = k78.relative_position_index();
  Index differ = 0;
  for (Index p = 0; p < 56; ++p)
    for (Index q = 0; q < 56; ++q) {
      REQUIRE(R(p, q) == (p / 8 - q / 8 + 6) * 15 + (p % 8 - q % 8 + 7));
      differ += R(p, q) != K(p, q);
    }
  REQUIRE(differ == 2758);
  // square windows: both agree
  REQUIRE(MP({.input_shape = {1, 16, 16}}).relative_position_index().values ==
          MP({.input_shape = {1, 16, 16}, .relative_index = "raster"}).relative_position_index().values);
}

TEST_CASE("mlp_pairwise_positional_embedding: weights, upstream shapes, deploy mode, seed-era weights",
          "[mlp_pairwise_positional_embedding]") {
  // upstream: attn_height 4 on [2, 8, 28, 28] (4x7 window), absolute mode on [2, 16, 49, 8]
  MP rel({.input_shape = {8, 28, 28}, .attn_height = 4}, 3);
  REQUIRE(rel.parameters().size() == 3);
  REQUIRE(rel.parameters()[0].name == "hidden_weight");
  REQUIRE(rel.parameters()[0].shape == Shape{2, 512});
  REQUIRE(rel.parameters()[1].name == "hidden_bias");
  REQUIRE(rel.parameters()[2].name == "out");
  REQUIRE(rel.parameters()[2].shape == Shape{512, 8});
  const auto x = random_tensor<double, 4>({2, 8, 28, 28}, 4);
  const auto y = rel.forward(x);
  REQUIRE(y.dimensions() == x.dimensions());
  const auto bias = rel.attention_bias();
  for (Index i = 0; i < bias.size(); ++i) {  // 16·sigmoid lies in (0, 16)
    REQUIRE(bias.data()[i] > 0.0);
    REQUIRE(bias.data()[i] < 16.0);
  }
  const MP ab({.input_shape = {16, 49, 8}, .use_absolute_pos = true});
  REQUIRE(ab.parameters()[2].shape == Shape{512, 8});
  REQUIRE(ab.forward(random_tensor<double, 4>({2, 16, 49, 8}, 1)).dimension(3) == 8);
  REQUIRE_THROWS_AS(ab.attention_bias(), attn::ConfigError);

  // deploy: the same outputs from one precomputed weight
  MP dep = rel;
  dep.switch_to_deploy();
  REQUIRE(dep.config().is_deploy_mode);
  REQUIRE(dep.parameters().size() == 1);
  REQUIRE(dep.parameters()[0].name == "deploy_bias");
  REQUIRE(dep.parameters()[0].shape == Shape{1, 8, 28, 28});
  REQUIRE(same(dep.forward(x), y));
  // a deploy-mode layer built from its config takes the weight by name
  MP fresh(dep.config());
  REQUIRE(same(fresh.forward(x), x));  // zeros until loaded
  fresh.parameters()[0].data = dep.parameters()[0].data;
  REQUIRE(same(fresh.forward(x), y));
  // absolute mode on tokens [N, C], deployed
  MP tok({.input_shape = {12, 5}, .hidden_dim = 6, .attn_height = 3, .use_absolute_pos = true}, 2);
  const auto xt = random_tensor<double, 3>({2, 12, 5}, 6);
  const auto yt = tok.forward(xt);
  MP tok_dep = tok;
  tok_dep.switch_to_deploy();
  REQUIRE(tok_dep.parameters()[0].shape == Shape{1, 12, 5});
  REQUIRE(same(tok_dep.forward(xt), yt));

  // seed era: meta_dense_1 / meta_dense_2 give the same layer as hidden_weight, hidden_bias, out
  attn::PairWiseRelativePositionalEmbedding<double> seed({.input_shape = {8, 28, 28}, .attn_height = 4}, 9);
  REQUIRE_FALSE(same(seed.forward(x), y));
  const auto& p = rel.parameters();
  seed.load_pair_wise_weights({"meta_dense_1/kernel", p[0].shape, p[0].data}, {"meta_dense_1/bias", p[1].shape, p[1].data},
                              {"meta_dense_2/kernel", p[2].shape, p[2].data});
  REQUIRE(same(seed.forward(x), y));
  REQUIRE_THROWS_WITH(seed.load_pair_wise_weights({"k", {2, 8}, std::vector<double>(16)}, p[1], p[2]),
                      "mlp_pairwise_positional_embedding: load_pair_wise_weights: 'meta_dense_1/kernel' must have shape "
                      "[2, 512] (for 'hidden_weight'), got [2, 8]");
  REQUIRE(same(seed.forward(x), y));
  REQUIRE_THROWS_AS(dep.load_pair_wise_weights(p[0], p[1], p[2]), attn::ShapeError);
}

TEST_CASE("mlp_pairwise_positional_embedding: padding tokens, validation and shape errors",
          "[mlp_pairwise_positional_embedding]") {
  // a class token first: its row and column get bias 0, the rest is the 3x3 window's bias
  const MP cls({.input_shape = {2, 10, 10}, .hidden_dim = 4}, 1);
  const MP win({.input_shape = {2, 9, 9}, .hidden_dim = 4}, 1);
  const auto bc = cls.attention_bias();
  const auto bw = win.attention_bias();
  for (Index h = 0; h < 2; ++h)
    for (Index i = 0; i < 10; ++i)
      for (Index j = 0; j < 10; ++j)
        REQUIRE(bc(h, i, j) == (i == 0 || j == 0 ? 0.0 : bw(h, i - 1, j - 1)));
  // a window of size 1 on an axis divides by zero in the reference
  REQUIRE_THROWS_WITH(MP({.input_shape = {1, 4, 4}, .attn_height = 1}),
                      "the window 1x4 has an axis of size 1: the offsets would be divided by zero; set pos_scale (at "
                      "least 2) for it");
  REQUIRE_NOTHROW(MP({.input_shape = {1, 4, 4}, .attn_height = 1, .pos_scale = {2, -1}}));
  REQUIRE_THROWS_WITH(MP({.input_shape = {1, 4, 4}, .pos_scale = {1, 1}}),
                      "pos_scale must be -1 or at least 2 (the offsets are divided by pos_scale - 1), got (1, 1)");
  REQUIRE_THROWS_WITH(MP({.input_shape = {1, 4, 5}}), "relative mode takes square scores [heads, N, N], got [1, 4, 5]");
  REQUIRE_THROWS_WITH(MP({.input_shape = {1, 6, 6}, .attn_height = 2, .attn_width = 4}),
                      "the window 2x4 does not fit the 6 tokens");
  REQUIRE_THROWS_WITH(MP({.input_shape = {1, 6, 4}, .use_absolute_pos = true}),
                      "absolute mode needs a grid of at least 2x2 (coordinates are divided by floor(size / 2)), got 1x6");
  REQUIRE_THROWS_WITH(MP({.input_shape = {10, 4}, .attn_height = 3, .use_absolute_pos = true}),
                      "the 10 tokens do not form a grid 3x3");
  REQUIRE_THROWS_AS(MP({.input_shape = {1, 4, 4}, .attn_width = 0}), attn::ConfigError);
  const auto problems = attn::check_attention_config("mlp_pairwise_positional_embedding",
                                                     {{"input_shape", {1, 4, 4}}, {"relative_index", "rows"}});
  REQUIRE(problems.size() == 1);
  REQUIRE(problems[0].message ==
          "Parameter 'relative_index' of 'mlp_pairwise_positional_embedding' must be one of ['reference', 'raster'], "
          "got 'rows'");
  const MP layer({.input_shape = {2, 9, 9}, .hidden_dim = 4});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({2, 2, 9, 8}, 1)),
                      "mlp_pairwise_positional_embedding: x must have shape [*, 2, 9, 9] (scores [B, heads, N, N] of "
                      "the input_shape), got [2, 2, 9, 8]");
  REQUIRE_THROWS_AS(layer.forward(random_tensor<double, 3>({2, 9, 9}, 1)), attn::ShapeError);
}

// ---- golden parity (tools/golden/mlp_pairwise_positional_embedding.py) ----
TEMPLATE_TEST_CASE("golden: mlp_pairwise_positional_embedding matches PyTorch's table, index, MLP and sigmoid",
                   "[golden][mlp_pairwise_positional_embedding]", float, double) {
  using T = TestType;
  for_each_golden<T>("mlp_pairwise_positional_embedding", [](const Golden& g) {
    attn::MlpPairwisePositionalEmbedding<T> layer(g.config.get<attn::MlpPairwisePositionalEmbeddingConfig>());
    attn::load_weights(layer, g.file, "weights");
    if (g.file.contains("expected/index")) {
      check<T>(g, "relative_coords_table", layer.relative_coords_table());
      const auto& I = layer.relative_position_index();
      attn::Tensor<T, 2> index(I.rows, I.cols);
      for (Index i = 0; i < index.size(); ++i) index.data()[i] = static_cast<T>(I.values[static_cast<std::size_t>(i)]);
      check<T>(g, "index", index);
      check<T>(g, "attention_bias", layer.attention_bias());
    }
    check<T>(g, "output", layer.forward(input<T, 4>(g, "x")));
  });
}
