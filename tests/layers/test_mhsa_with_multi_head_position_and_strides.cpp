// mhsa_with_multi_head_position_and_strides (LeViT subsample, spec §5.6 with §4.4 and the errata): an
// independent loop implementation (strided queries, dense, inference BatchNorm, interleaved k | v heads,
// LeViT's index from its formula, attention, hard_swish, in double), strides 1 against the non-strided
// block with the same weights, the upstream shape test (Appendix C.1), the errata's 3x8 grid, messages,
// shape errors, threads, and golden parity with torch.
#include <attn/layers/mhsa_with_multi_head_position_and_strides.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::MhsaWithMultiHeadPositionAndStrides<double>;

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

/// The forward from the formulas on x [B, H, W, C]; returns {output [B, Nq, O], weights}.
std::pair<attn::Tensor<double, 3>, attn::Tensor<double, 4>> naive(const L& layer, const attn::Tensor<double, 4>& x) {
  const auto& c = layer.config();
  const Index B = x.dimension(0), H = x.dimension(1), W = x.dimension(2), C = x.dimension(3), s = c.strides;
  const Index Hq = (H + s - 1) / s, Wq = (W + s - 1) / s, N = H * W, Nq = Hq * Wq;
  const Index h = c.num_heads, r = c.attn_ratio, d = c.key_dim > 0 ? c.key_dim : C / h, hs = (r + 1) * d;
  attn::Tensor<double, 3> xq(B, Nq, C), xt(B, N, C);
  std::copy(x.data(), x.data() + x.size(), xt.data());
  for (Index b = 0; b < B; ++b)
    for (Index i = 0; i < Hq; ++i)
      for (Index j = 0; j < Wq; ++j)
        for (Index ch = 0; ch < C; ++ch) xq(b, i * Wq + j, ch) = x(b, i * s, j * s, ch);
  auto q = naive_dense(xq, *find(layer, "q/kernel"), find(layer, "q/bias"));
  auto kv = naive_dense(xt, *find(layer, "kv/kernel"), find(layer, "kv/bias"));
  if (c.use_bn) {
    bn(layer, "q_bn", q);
    bn(layer, "kv_bn", kv);
  }
  attn::Tensor<double, 4> k(B, h, N, d), v(B, h, N, r * d);
  for (Index b = 0; b < B; ++b)
    for (Index hd = 0; hd < h; ++hd)
      for (Index n = 0; n < N; ++n) {
        for (Index j = 0; j < d; ++j) k(b, hd, n, j) = kv(b, n, hd * hs + j);
        for (Index j = 0; j < r * d; ++j) v(b, hd, n, j) = kv(b, n, hd * hs + d + j);
      }
  const Index st = static_cast<Index>(std::ceil(std::sqrt(double(N) / double(Nq))));
  const auto& table = find(layer, "attn_pos/positional_embedding")->data;
  const Bias bias = [&](Index, Index hd, Index p, Index m) {
    const Index idx = std::abs(m % H - st * (p % Hq)) + H * std::abs(m / H - st * (p / Hq));
    return table[static_cast<std::size_t>(idx * h + hd)];
  };
  auto [ctx, p] = naive_attention(split_heads(q, h), k, v, 1.0 / std::sqrt(double(d)), nullptr, bias);
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

TEST_CASE("mhsa_with_multi_head_position_and_strides: weights have the reference's names, shapes and order",
          "[mhsa_with_multi_head_position_and_strides]") {
  const L a({.input_shape = {7, 9, 16}, .num_heads = 4, .key_dim = 4, .output_dim = 24, .strides = 2});
  std::vector<std::string> names;
  for (const auto& w : a.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"q/kernel", "q_bn/gamma", "q_bn/beta", "q_bn/moving_mean",
                                            "q_bn/moving_variance", "kv/kernel", "kv_bn/gamma", "kv_bn/beta",
                                            "kv_bn/moving_mean", "kv_bn/moving_variance",
                                            "attn_pos/positional_embedding", "out/kernel", "out_bn/gamma",
                                            "out_bn/beta", "out_bn/moving_mean", "out_bn/moving_variance"});
  REQUIRE(a.parameters()[0].shape == Shape{16, 16});
  REQUIRE(a.parameters()[5].shape == Shape{16, 32});
  REQUIRE(a.parameters()[10].shape == Shape{63, 4});
  REQUIRE(a.parameters()[11].shape == Shape{16, 24});
  for (double v : a.parameters()[12].data) REQUIRE(v == 0.0);  // zero-gamma output BN
  REQUIRE(a.output_shape({2, 7, 9, 16}) == Shape{2, 4, 5, 24});
  const L b({.input_shape = {6, 5, 12}, .num_heads = 3, .attn_ratio = 2, .strides = 3, .use_bn = false,
             .qkv_bias = true, .out_bias = true});
  names.clear();
  for (const auto& w : b.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"q/kernel", "q/bias", "kv/kernel", "kv/bias",
                                            "attn_pos/positional_embedding", "out/kernel", "out/bias"});
  REQUIRE(b.parameters()[2].shape == Shape{12, 36});  // (attn_ratio + 1) x heads x d
  REQUIRE(b.parameters()[5].shape == Shape{24, 12});
}

TEST_CASE("mhsa_with_multi_head_position_and_strides: validation messages", "[mhsa_with_multi_head_position_and_strides]") {
  const auto msg = [](const attn::Json& j) {
    const auto p = attn::check_attention_config("mhsa_with_multi_head_position_and_strides", j);
    return p.empty() ? std::string() : p.front().message;
  };
  REQUIRE(msg({{"input_shape", {3, 5, 2}}, {"num_heads", 4}}) ==
          "channels (2) must be at least num_heads (4) when key_dim is -1");
  REQUIRE(msg({{"input_shape", {3, 5, 8}}, {"num_heads", 2}, {"strides", 0}}) ==
          "strides must be positive, got 0");
  REQUIRE(msg({{"input_shape", {3, 8, 8}}, {"num_heads", 2}, {"strides", 2}}).empty());  // the errata's grid
  REQUIRE(msg({{"input_shape", {3, 5, 8}}, {"num_heads", 2}, {"strides", 7}}).empty());  // one query
}

TEST_CASE("mhsa_with_multi_head_position_and_strides: equals an independent loop implementation",
          "[mhsa_with_multi_head_position_and_strides]") {
  const std::vector<L::Config> configs{
      {.input_shape = {7, 9, 16}, .num_heads = 4, .key_dim = 4, .output_dim = 24, .strides = 2},
      {.input_shape = {6, 5, 12}, .num_heads = 3, .key_dim = 4, .output_dim = 10, .attn_ratio = 2, .strides = 3,
       .use_bn = false, .qkv_bias = true, .out_bias = true, .activation = "hard_swish"},
      {.input_shape = {3, 8, 8}, .num_heads = 2, .strides = 2},  // the reference would overrun its table here
      {.input_shape = {4, 4, 6}, .num_heads = 1, .strides = 1},
  };
  std::uint64_t seed = 1;
  for (const auto& c : configs) {
    INFO("config " << seed);
    L layer(c, seed);
    randomize(layer, 100 * seed);
    const auto x = random_tensor<double, 4>({2, c.input_shape[0], c.input_shape[1], c.input_shape[2]}, seed);
    const auto r = layer.forward_with_weights(x);
    const auto [y, p] = naive(layer, x);
    ATTN_REQUIRE_CLOSE(tokens_of(r.output), y, 1e-12, 1e-12);
    ATTN_REQUIRE_CLOSE(r.weights, p, 1e-12, 1e-12);
    ++seed;
  }
}

TEST_CASE("mhsa_with_multi_head_position_and_strides: strides 1 is the non-strided block with split kernels",
          "[mhsa_with_multi_head_position_and_strides]") {
  L sub({.input_shape = {5, 4, 12}, .num_heads = 3, .output_dim = 8, .strides = 1, .use_bn = false}, 3);
  randomize(sub, 30);
  auto full = attn::create_attention_layer<double>(
      "mhsa_with_multi_head_position",
      {{"input_shape", {5, 4, 12}}, {"num_heads", 3}, {"output_dim", 8}});
  // qkv [C, 3·(q|k|v per head)] from q [C, h·d] and kv [C, h·(k|v)]
  const auto& q = find(sub, "q/kernel")->data;
  const auto& kv = find(sub, "kv/kernel")->data;
  auto& qkv = full.parameters()[0].data;
  const Index C = 12, h = 3, d = 4;
  for (Index c = 0; c < C; ++c)
    for (Index hd = 0; hd < h; ++hd)
      for (Index j = 0; j < d; ++j) {
        qkv[static_cast<std::size_t>(c * 3 * h * d + hd * 3 * d + j)] = q[static_cast<std::size_t>(c * h * d + hd * d + j)];
        qkv[static_cast<std::size_t>(c * 3 * h * d + hd * 3 * d + d + j)] =
            kv[static_cast<std::size_t>(c * 2 * h * d + hd * 2 * d + j)];
        qkv[static_cast<std::size_t>(c * 3 * h * d + hd * 3 * d + 2 * d + j)] =
            kv[static_cast<std::size_t>(c * 2 * h * d + hd * 2 * d + d + j)];
      }
  full.parameters()[1].data = find(sub, "attn_pos/positional_embedding")->data;
  full.parameters()[2].data = find(sub, "out/kernel")->data;
  const auto x = random_tensor<double, 4>({2, 5, 4, 12}, 4);
  ATTN_REQUIRE_CLOSE(sub.forward(x), full.forward(attn::AnyTensor<double>(x)).view<4>(), 1e-13, 1e-13);
}

TEST_CASE("mhsa_with_multi_head_position_and_strides: the upstream shape test",
          "[mhsa_with_multi_head_position_and_strides]") {
  // tests/test_layers.py: [2, 28, 18, 192], output_dim 384, num_heads 4, key_dim 16, strides 2 -> [2, 14, 9, 384]
  const auto layer = attn::create_attention_layer<float>(
      "mhsa_with_multi_head_position_and_strides",
      {{"input_shape", {28, 18, 192}}, {"output_dim", 384}, {"num_heads", 4}, {"key_dim", 16}, {"strides", 2}});
  const auto y = layer.forward(attn::AnyTensor<float>(random_tensor<float, 4>({2, 28, 18, 192}, 3)));
  REQUIRE(y.shape() == Shape{2, 14, 9, 384});
  REQUIRE(all_finite(y.data(), y.size()));
}

TEST_CASE("mhsa_with_multi_head_position_and_strides: bad shapes give ShapeErrors naming the layer",
          "[mhsa_with_multi_head_position_and_strides]") {
  const L layer({.input_shape = {3, 4, 8}, .num_heads = 2, .strides = 2});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 4, 3, 8}, 1)),
                      "mhsa_with_multi_head_position_and_strides: input must have shape [*, 3, 4, 8] ([batch, height, "
                      "width, channels] of the input_shape), got [1, 4, 3, 8]");
  L tampered = layer;
  tampered.parameters()[0].shape = {8, 3};
  REQUIRE_THROWS_AS(tampered.forward(random_tensor<double, 4>({1, 3, 4, 8}, 1)), attn::WeightsError);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 3, 4, 8)).dimension(0) == 0);
}

TEST_CASE("mhsa_with_multi_head_position_and_strides: 1 and 2 threads give bit-identical results",
          "[mhsa_with_multi_head_position_and_strides][threads]") {
  attn::MhsaWithMultiHeadPositionAndStrides<float> layer(
      {.input_shape = {28, 26, 64}, .num_heads = 4, .strides = 2, .use_bn = false, .activation = "hard_swish"}, 2);
  for (auto& w : layer.parameters())
    if (w.name == "attn_pos/positional_embedding")
      for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = static_cast<float>(i % 7) * 0.1f;
  const auto x = random_tensor<float, 4>({2, 28, 26, 64}, 8);
  REQUIRE(same_bits_for_1_and_2_threads([&] { return layer.forward(x); }));
}

// ---- golden parity (tools/golden/mhsa_with_multi_head_position_and_strides.py, tests/data/<type>/) ----

TEMPLATE_TEST_CASE("golden: mhsa_with_multi_head_position_and_strides matches torch",
                   "[golden][mhsa_with_multi_head_position_and_strides]", float, double) {
  using T = TestType;
  for_each_golden<T>("mhsa_with_multi_head_position_and_strides", [](const Golden& g) {
    attn::MhsaWithMultiHeadPositionAndStrides<T> layer(g.config.get<attn::MhsaWithMultiHeadPositionAndStridesConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto x = input<T, 4>(g, "x");
    const auto r = layer.forward_with_weights(x);
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("mhsa_with_multi_head_position_and_strides", g.config);
    attn::load_weights(any, g.file, "weights");
    check<T>(g, "output", any.forward(attn::AnyTensor<T>(x)).template view<4>());
  });
}
