// mhsa_with_multi_head_position (LeViT, spec §5.5 with §4.4): an independent loop implementation (dense,
// inference BatchNorm, the interleaved q | k | v heads, LeViT's index from its formula, attention,
// hard_swish, in double), the index by hand on a non-square grid, tokens against the map, the zero-gamma
// output BN, messages, shape errors, threads, and golden parity with torch.
#include <attn/layers/mhsa_with_multi_head_position.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::MhsaWithMultiHeadPosition<double>;

namespace {

const attn::Weight<double>* find(const L& l, const std::string& name) { return l.parameters().find(name); }

void bn(const L& layer, const std::string& prefix, attn::Tensor<double, 3>& t) {
  const auto& g = find(layer, prefix + "/gamma")->data;
  const auto& be = find(layer, prefix + "/beta")->data;
  const auto& m = find(layer, prefix + "/moving_mean")->data;
  const auto& v = find(layer, prefix + "/moving_variance")->data;
  for (Index b = 0; b < t.dimension(0); ++b)
    for (Index n = 0; n < t.dimension(1); ++n)
      for (Index c = 0; c < t.dimension(2); ++c) {
        const auto k = static_cast<std::size_t>(c);
        t(b, n, c) = (t(b, n, c) - m[k]) / std::sqrt(v[k] + 1e-5) * g[k] + be[k];
      }
}

/// The forward from the formulas on tokens [B, N, C]; returns {output, weights}.
std::pair<attn::Tensor<double, 3>, attn::Tensor<double, 4>> naive(const L& layer, const attn::Tensor<double, 3>& x) {
  const auto& c = layer.config();
  const Index B = x.dimension(0), N = x.dimension(1), H = c.input_shape[0], h = c.num_heads, r = c.attn_ratio;
  const Index d = c.key_dim > 0 ? c.key_dim : c.input_shape[2] / h, hs = (r + 2) * d;
  auto t = naive_dense(x, *find(layer, "qkv/kernel"), find(layer, "qkv/bias"));
  if (c.use_bn) bn(layer, "qkv_bn", t);
  attn::Tensor<double, 4> q(B, h, N, d), k(B, h, N, d), v(B, h, N, r * d);
  for (Index b = 0; b < B; ++b)
    for (Index hd = 0; hd < h; ++hd)
      for (Index n = 0; n < N; ++n) {
        for (Index j = 0; j < d; ++j) {
          q(b, hd, n, j) = t(b, n, hd * hs + j);
          k(b, hd, n, j) = t(b, n, hd * hs + d + j);
        }
        for (Index j = 0; j < r * d; ++j) v(b, hd, n, j) = t(b, n, hd * hs + 2 * d + j);
      }
  const auto& table = find(layer, "attn_pos/positional_embedding")->data;
  const Bias bias = [&](Index, Index hd, Index p, Index m) {
    const Index idx = std::abs(m % H - p % H) + H * std::abs(m / H - p / H);
    return table[static_cast<std::size_t>(idx * h + hd)];
  };
  auto [ctx, p] = naive_attention(q, k, v, 1.0 / std::sqrt(double(d)), nullptr, bias);
  auto y = merge_heads(ctx);
  if (c.activation && c.activation->view() == "hard_swish")
    for (Index i = 0; i < y.size(); ++i) {
      const double z = y.data()[i];
      y.data()[i] = z * std::min(std::max(z + 3.0, 0.0), 6.0) / 6.0;
    }
  y = naive_dense(y, *find(layer, "out/kernel"), find(layer, "out/bias"));
  if (c.use_bn) bn(layer, "out_bn", y);
  return {y, p};
}

void randomize(L& layer, std::uint64_t seed) {
  randomize_weights(layer, seed);
  for (auto& w : layer.parameters()) {
    if (w.name.ends_with("variance"))
      for (auto& v : w.data) v = 1.0 + std::abs(v);
  }
}

attn::Tensor<double, 3> tokens_of(const attn::Tensor<double, 4>& x) {
  attn::Tensor<double, 3> t(x.dimension(0), x.dimension(1) * x.dimension(2), x.dimension(3));
  std::copy(x.data(), x.data() + x.size(), t.data());
  return t;
}

}  // namespace

TEST_CASE("mhsa_with_multi_head_position: weights have the reference's names, shapes, order and initializers",
          "[mhsa_with_multi_head_position]") {
  const L a({.input_shape = {7, 9, 16}, .num_heads = 4});
  std::vector<std::string> names;
  for (const auto& w : a.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"qkv/kernel", "attn_pos/positional_embedding", "out/kernel"});
  REQUIRE(a.parameters()[0].shape == Shape{16, 48});
  REQUIRE(a.parameters()[1].shape == Shape{63, 4});
  REQUIRE(a.parameters()[2].shape == Shape{16, 16});
  const L b({.input_shape = {5, 4, 12}, .num_heads = 3, .key_dim = 5, .output_dim = 10, .attn_ratio = 2,
             .use_bn = true, .qkv_bias = true, .out_bias = true, .activation = "prelu"});
  names.clear();
  for (const auto& w : b.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"qkv/kernel", "qkv/bias", "qkv_bn/gamma", "qkv_bn/beta",
                                            "qkv_bn/moving_mean", "qkv_bn/moving_variance",
                                            "attn_pos/positional_embedding", "prelu/alpha", "out/kernel", "out/bias",
                                            "out_bn/gamma", "out_bn/beta", "out_bn/moving_mean",
                                            "out_bn/moving_variance"});
  REQUIRE(b.parameters()[0].shape == Shape{12, 60});
  REQUIRE(b.parameters()[7].shape == Shape{1, 1, 30});
  REQUIRE(b.parameters()[8].shape == Shape{30, 10});
  for (double v : b.parameters()[10].data) REQUIRE(v == 0.0);  // zero-gamma output BN
  for (double v : b.parameters()[2].data) REQUIRE(v == 1.0);
  REQUIRE_FALSE(b.parameters()[5].trainable);
  // zero-gamma BN: the initial block outputs its beta (zeros)
  const auto y = b.forward(random_tensor<double, 4>({1, 5, 4, 12}, 1));
  for (Index i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == 0.0);
}

TEST_CASE("mhsa_with_multi_head_position: LeViT's index on a non-square grid by hand", "[mhsa_with_multi_head_position]") {
  // H = 2, W = 3: I[p, m] = |m mod 2 − p mod 2| + 2·|m div 2 − p div 2| (p mod H cycles with the height)
  const L layer({.input_shape = {2, 3, 4}, .num_heads = 1});
  const auto& I = layer.relative_position_index();
  REQUIRE(I.rows == 6);
  REQUIRE(I(0, 0) == 0);
  REQUIRE(I(0, 1) == 1);
  REQUIRE(I(0, 5) == 5);  // m = 5: 1 + 2·2
  REQUIRE(I(3, 0) == 3);  // p = 3: |0 − 1| + 2·|0 − 1|
  REQUIRE(I(4, 1) == 5);  // p = 4: (0, 2), m = 1: (1, 0) -> 1 + 2·2
}

TEST_CASE("mhsa_with_multi_head_position: validation messages", "[mhsa_with_multi_head_position]") {
  const auto msg = [](const attn::Json& j) {
    const auto p = attn::check_attention_config("mhsa_with_multi_head_position", j);
    return p.empty() ? std::string() : p.front().message;
  };
  REQUIRE(msg({{"input_shape", {3, 5, 2}}, {"num_heads", 4}}) ==
          "channels (2) must be at least num_heads (4) when key_dim is -1");
  REQUIRE(msg({{"input_shape", {3, 5, 8}}, {"num_heads", 2}, {"attn_height", 5}}) ==
          "attn_height (5) must be -1 or the input_shape's height (3)");
  REQUIRE(msg({{"input_shape", {3, 5, 8}}, {"num_heads", 2}, {"attn_ratio", 0}}) ==
          "attn_ratio must be positive, got 0");
  REQUIRE_FALSE(msg({{"input_shape", {3, 5, 8}}, {"num_heads", 2}, {"key_dim", -2}}).empty());
  REQUIRE_FALSE(msg({{"input_shape", {3, 5, 8}}, {"num_heads", 2}, {"activation", "nope"}}).empty());
  REQUIRE(msg({{"input_shape", {3, 5, 8}}, {"num_heads", 2}, {"activation", "hard_swish"}, {"use_bn", true}}).empty());
}

TEST_CASE("mhsa_with_multi_head_position: equals an independent loop implementation", "[mhsa_with_multi_head_position]") {
  const std::vector<L::Config> configs{
      {.input_shape = {7, 9, 16}, .num_heads = 4},
      {.input_shape = {5, 4, 12}, .num_heads = 3, .key_dim = 5, .output_dim = 10, .attn_ratio = 2, .use_bn = true,
       .qkv_bias = true, .out_bias = true, .activation = "hard_swish"},
      {.input_shape = {3, 6, 8}, .num_heads = 2, .attn_height = 3, .attn_ratio = 4, .use_bn = true},
  };
  std::uint64_t seed = 1;
  for (const auto& c : configs) {
    INFO("config " << seed);
    L layer(c, seed);
    randomize(layer, 100 * seed);
    const auto x = random_tensor<double, 4>({2, c.input_shape[0], c.input_shape[1], c.input_shape[2]}, seed);
    const auto r = layer.forward_with_weights(x);
    const auto [y, p] = naive(layer, tokens_of(x));
    ATTN_REQUIRE_CLOSE(tokens_of(r.output), y, 1e-12, 1e-12);
    ATTN_REQUIRE_CLOSE(r.weights, p, 1e-12, 1e-12);
    const auto rt = layer.forward_with_weights(tokens_of(x));
    REQUIRE(std::equal(rt.output.data(), rt.output.data() + rt.output.size(), r.output.data()));
    ++seed;
  }
}

TEST_CASE("mhsa_with_multi_head_position: bad shapes give ShapeErrors naming the layer", "[mhsa_with_multi_head_position]") {
  const L layer({.input_shape = {3, 4, 8}, .num_heads = 2});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 3>({1, 11, 8}, 1)),
                      "mhsa_with_multi_head_position: input must have shape [*, 12, 8] ([batch, tokens, channels] of "
                      "the input_shape), got [1, 11, 8]");
  REQUIRE_THROWS_AS(layer.forward(random_tensor<double, 4>({1, 4, 3, 8}, 1)), attn::ShapeError);
  L tampered = layer;
  tampered.parameters()[1].shape = {11, 2};
  REQUIRE_THROWS_AS(tampered.forward(random_tensor<double, 4>({1, 3, 4, 8}, 1)), attn::WeightsError);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 3, 4, 8)).dimension(0) == 0);
}

TEST_CASE("mhsa_with_multi_head_position: 1 and 2 threads give bit-identical results",
          "[mhsa_with_multi_head_position][threads]") {
  attn::MhsaWithMultiHeadPosition<float> layer(
      {.input_shape = {14, 13, 64}, .num_heads = 4, .use_bn = true, .activation = "hard_swish"}, 2);
  for (auto& w : layer.parameters()) {
    if (w.name == "out_bn/gamma") std::fill(w.data.begin(), w.data.end(), 1.0f);  // zero gamma would hide all
    if (w.name == "attn_pos/positional_embedding")
      for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = static_cast<float>(i % 7) * 0.1f;
  }
  const auto x = random_tensor<float, 4>({2, 14, 13, 64}, 8);
  REQUIRE(same_bits_for_1_and_2_threads([&] { return layer.forward(x); }));
}

// ---- golden parity (tools/golden/mhsa_with_multi_head_position.py, tests/data/mhsa_with_multi_head_position/) ----

TEMPLATE_TEST_CASE("golden: mhsa_with_multi_head_position matches torch", "[golden][mhsa_with_multi_head_position]",
                   float, double) {
  using T = TestType;
  for_each_golden<T>("mhsa_with_multi_head_position", [](const Golden& g) {
    attn::MhsaWithMultiHeadPosition<T> layer(g.config.get<attn::MhsaWithMultiHeadPositionConfig>());
    attn::load_weights(layer, g.file, "weights");
    if (g.file.at("input/x").shape.size() == 3) {
      const auto r = layer.forward_with_weights(input<T, 3>(g, "x"));
      check<T>(g, "output", r.output);
      check<T>(g, "weights", r.weights);
      return;
    }
    const auto x = input<T, 4>(g, "x");
    const auto r = layer.forward_with_weights(x);
    check<T>(g, "output", r.output);
    if (g.file.contains("expected/weights")) check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("mhsa_with_multi_head_position", g.config);
    attn::load_weights(any, g.file, "weights");
    check<T>(g, "output", any.forward(attn::AnyTensor<T>(x)).template view<4>());
  });
}
