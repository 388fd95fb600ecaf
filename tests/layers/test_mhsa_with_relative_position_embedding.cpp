// mhsa_with_relative_position_embedding (BoTNet, spec §5.8 with §4.10): an independent loop
// implementation (1x1 convolution, the relative / absolute position logits by their gather formula,
// attention, in double), the identity "zero position tables = UniFormer's plain MHSA with the same
// kernels", the upstream shape test (Appendix C.1), messages, shape errors, threads, and golden parity
// with torch conv2d / matmul / softmax and the reference's rel_to_abs reshape trick.
#include <attn/layers/mhsa_with_relative_position_embedding.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::MhsaWithRelativePositionEmbedding<double>;

namespace {

const attn::Weight<double>* find(const L& l, const std::string& name) { return l.parameters().find(name); }

/// The forward from the formulas on x [B, H, W, C]; returns {output [B, N, O], weights}.
std::pair<attn::Tensor<double, 3>, attn::Tensor<double, 4>> naive(const L& layer, const attn::Tensor<double, 4>& x) {
  const auto& c = layer.config();
  const Index B = x.dimension(0), H = x.dimension(1), W = x.dimension(2), C = x.dimension(3), N = H * W;
  const Index h = c.num_heads, d = c.key_dim > 0 ? c.key_dim : C / h, E = h * d;
  const Index O = c.out_weight ? c.out_shape.value_or(C) : C;
  attn::Tensor<double, 3> tok(B, N, C);
  std::copy(x.data(), x.data() + x.size(), tok.data());
  const auto& kw = *find(layer, "qkv_conv/kernel");
  const attn::Weight<double> flat{kw.name, {C, 2 * E + O}, kw.data, true};
  const auto t = naive_dense(tok, flat);
  attn::Tensor<double, 3> q(B, N, E), k(B, N, E), v(B, N, O);
  for (Index b = 0; b < B; ++b)
    for (Index n = 0; n < N; ++n) {
      for (Index j = 0; j < E; ++j) {
        q(b, n, j) = t(b, n, j);
        k(b, n, j) = t(b, n, E + j);
      }
      for (Index j = 0; j < O; ++j) v(b, n, j) = t(b, n, 2 * E + j);
    }
  const auto& rh = *find(layer, "pos_emb/r_height");
  const auto& rw = *find(layer, "pos_emb/r_width");
  const Index lh = rh.shape[1], lw = rw.shape[1];
  const Bias bias = [&](Index b, Index hd, Index i, Index j) {
    const Index y = i / W, xx = i % W, ky = j / W, kx = j % W;
    const Index ch = c.relative ? H - 1 + ky - y : ky, cw = c.relative ? W - 1 + kx - xx : kx;
    double s = 0;
    for (Index e = 0; e < d; ++e)
      s += q(b, i, hd * d + e) *
           (rh.data[static_cast<std::size_t>(e * lh + ch)] + rw.data[static_cast<std::size_t>(e * lw + cw)]);
    return s;
  };
  auto [ctx, p] = naive_attention(split_heads(q, h), split_heads(k, h), split_heads(v, h), 1.0 / std::sqrt(double(d)),
                                  nullptr, bias);
  auto y = merge_heads(ctx);
  if (c.out_weight) y = naive_dense(y, *find(layer, "output/kernel"), find(layer, "output/bias"));
  return {y, p};
}

attn::Tensor<double, 3> tokens_of(const attn::Tensor<double, 4>& x) {
  attn::Tensor<double, 3> t(x.dimension(0), x.dimension(1) * x.dimension(2), x.dimension(3));
  std::copy(x.data(), x.data() + x.size(), t.data());
  return t;
}

}  // namespace

TEST_CASE("mhsa_with_relative_position_embedding: weights have the reference's names, shapes and order",
          "[mhsa_with_relative_position_embedding]") {
  const L a({.input_shape = {7, 9, 16}});
  std::vector<std::string> names;
  for (const auto& w : a.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"qkv_conv/kernel", "pos_emb/r_height", "pos_emb/r_width",
                                            "output/kernel"});
  REQUIRE(a.parameters()[0].shape == Shape{1, 1, 16, 48});
  REQUIRE(a.parameters()[1].shape == Shape{4, 13});
  REQUIRE(a.parameters()[2].shape == Shape{4, 17});
  REQUIRE(a.parameters()[3].shape == Shape{16, 16});
  for (double v : a.parameters()[0].data) REQUIRE(std::abs(v) <= 0.25);  // torch-like: 1 / sqrt(16)
  const L b({.input_shape = {3, 5, 8}, .num_heads = 2, .relative = false, .out_shape = 6, .out_weight = false,
             .out_bias = true});
  names.clear();
  for (const auto& w : b.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"qkv_conv/kernel", "pos_emb/r_height", "pos_emb/r_width"});
  REQUIRE(b.parameters()[0].shape == Shape{1, 1, 8, 24});  // O forced to the channels
  REQUIRE(b.parameters()[1].shape == Shape{4, 3});
  REQUIRE(b.parameters()[2].shape == Shape{4, 5});
  const L c({.input_shape = {5, 4, 10}, .num_heads = 3, .key_dim = 6, .out_shape = 12, .out_bias = true});
  REQUIRE(c.parameters()[0].shape == Shape{1, 1, 10, 48});
  REQUIRE(c.parameters()[4].name == "output/bias");
  REQUIRE(c.output_shape({2, 5, 4, 10}) == Shape{2, 5, 4, 12});
}

TEST_CASE("mhsa_with_relative_position_embedding: validation messages", "[mhsa_with_relative_position_embedding]") {
  const auto msg = [](const attn::Json& j) {
    const auto p = attn::check_attention_config("mhsa_with_relative_position_embedding", j);
    return p.empty() ? std::string() : p.front().message;
  };
  REQUIRE(msg({{"input_shape", {3, 5, 2}}}) == "channels (2) must be at least num_heads (4) when key_dim is 0");
  REQUIRE(msg({{"input_shape", {3, 5, 8}}, {"out_shape", 6}}) == "out_shape (6) must be divisible by num_heads (4)");
  REQUIRE(msg({{"input_shape", {3, 5, 6}}, {"key_dim", 2}}) == "channels (6) must be divisible by num_heads (4)");
  REQUIRE_FALSE(msg({{"input_shape", {3, 5}}}).empty());
  REQUIRE_FALSE(msg({{"input_shape", {3, 0, 8}}}).empty());
  REQUIRE(msg({{"input_shape", {3, 5, 8}}, {"num_heads", 2}, {"relative", false}}).empty());
}

TEST_CASE("mhsa_with_relative_position_embedding: equals an independent loop implementation",
          "[mhsa_with_relative_position_embedding]") {
  const std::vector<L::Config> configs{
      {.input_shape = {7, 9, 16}},
      {.input_shape = {5, 4, 10}, .num_heads = 3, .key_dim = 6, .out_shape = 12, .out_bias = true},
      {.input_shape = {3, 5, 8}, .num_heads = 2, .relative = false, .out_weight = false},
      {.input_shape = {1, 6, 4}, .num_heads = 1},
  };
  std::uint64_t seed = 1;
  for (const auto& c : configs) {
    INFO("config " << seed);
    L layer(c, seed);
    randomize_weights(layer, 100 * seed);
    const auto x = random_tensor<double, 4>({2, c.input_shape[0], c.input_shape[1], c.input_shape[2]}, seed);
    const auto r = layer.forward_with_weights(x);
    const auto [y, p] = naive(layer, x);
    ATTN_REQUIRE_CLOSE(tokens_of(r.output), y, 1e-12, 1e-12);
    ATTN_REQUIRE_CLOSE(r.weights, p, 1e-12, 1e-12);
    ++seed;
  }
}

TEST_CASE("mhsa_with_relative_position_embedding: zero position tables give UniFormer's plain MHSA",
          "[mhsa_with_relative_position_embedding]") {
  L layer({.input_shape = {4, 6, 12}, .num_heads = 3, .out_shape = 9, .out_bias = true}, 5);
  randomize_weights(layer, 50);
  for (auto& w : layer.parameters())
    if (w.name.starts_with("pos_emb/")) std::fill(w.data.begin(), w.data.end(), 0.0);
  auto plain = attn::create_attention_layer<double>(
      "multi_head_self_attention", {{"channels", 12}, {"num_heads", 3}, {"out_shape", 9}, {"out_bias", true}});
  plain.parameters()[0].data = find(layer, "qkv_conv/kernel")->data;  // [1, 1, C, 2E + O] = [C, 2E + O]
  plain.parameters()[1].data = find(layer, "output/kernel")->data;
  plain.parameters()[2].data = find(layer, "output/bias")->data;
  const auto x = random_tensor<double, 4>({2, 4, 6, 12}, 6);
  const auto a = layer.forward(x);
  const auto b = plain.forward(attn::AnyTensor<double>(x));
  ATTN_REQUIRE_CLOSE(a, b.view<4>(), 1e-13, 1e-13);
}

TEST_CASE("mhsa_with_relative_position_embedding: the upstream shape test", "[mhsa_with_relative_position_embedding]") {
  // tests/test_layers.py: [2, 14, 16, 256], num_heads 4, out_shape 384 -> [2, 14, 16, 384]
  const auto layer = attn::create_attention_layer<float>(
      "mhsa_with_relative_position_embedding", {{"input_shape", {14, 16, 256}}, {"num_heads", 4}, {"out_shape", 384}});
  const auto y = layer.forward(attn::AnyTensor<float>(random_tensor<float, 4>({2, 14, 16, 256}, 3)));
  REQUIRE(y.shape() == Shape{2, 14, 16, 384});
  REQUIRE(all_finite(y.data(), y.size()));
}

TEST_CASE("mhsa_with_relative_position_embedding: bad shapes give ShapeErrors naming the layer",
          "[mhsa_with_relative_position_embedding]") {
  const L layer({.input_shape = {3, 4, 8}});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 4, 3, 8}, 1)),
                      "mhsa_with_relative_position_embedding: input must have shape [*, 3, 4, 8] ([batch, height, "
                      "width, channels] of the input_shape), got [1, 4, 3, 8]");
  L tampered = layer;
  tampered.parameters()[1].shape = {2, 6};
  REQUIRE_THROWS_AS(tampered.forward(random_tensor<double, 4>({1, 3, 4, 8}, 1)), attn::WeightsError);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 3, 4, 8)).dimension(0) == 0);
}

TEST_CASE("mhsa_with_relative_position_embedding: 1 and 2 threads give bit-identical results",
          "[mhsa_with_relative_position_embedding][threads]") {
  const attn::MhsaWithRelativePositionEmbedding<float> layer({.input_shape = {14, 13, 64}}, 2);
  const auto x = random_tensor<float, 4>({2, 14, 13, 64}, 8);
  REQUIRE(same_bits_for_1_and_2_threads([&] { return layer.forward(x); }));
}

// ---- golden parity (tools/golden/mhsa_with_relative_position_embedding.py, tests/data/<type>/) ----

TEMPLATE_TEST_CASE("golden: mhsa_with_relative_position_embedding matches torch and the reference's rel_to_abs",
                   "[golden][mhsa_with_relative_position_embedding]", float, double) {
  using T = TestType;
  for_each_golden<T>("mhsa_with_relative_position_embedding", [](const Golden& g) {
    attn::MhsaWithRelativePositionEmbedding<T> layer(g.config.get<attn::MhsaWithRelativePositionEmbeddingConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto x = input<T, 4>(g, "x");
    const auto r = layer.forward_with_weights(x);
    check<T>(g, "output", r.output);
    if (g.file.contains("expected/weights")) check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("mhsa_with_relative_position_embedding", g.config);
    attn::load_weights(any, g.file, "weights");
    check<T>(g, "output", any.forward(attn::AnyTensor<T>(x)).template view<4>());
  });
}
