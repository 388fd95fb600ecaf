// light_mhsa_with_multi_head_relative_position_embedding (CMT, spec §5.4 with §4.6 and Appendix A.4): an
// independent loop implementation (projections, the strided depthwise reduction, LayerNorm / BatchNorm, both
// key/value layouts, KCAM's index with its last Nk columns, attention, in double), the reduced index by hand,
// the identity "seed layout with permuted columns = HEAD layout", the upstream shape test (Appendix C.1),
// messages, shape errors, threads, and golden parity with torch.
#include <attn/layers/light_mhsa_with_multi_head_relative_position_embedding.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::LightMhsaWithMultiHeadRelativePositionEmbedding<double>;

namespace {

const attn::Weight<double>* find(const L& l, const std::string& name) { return l.parameters().find(name); }

attn::Weight<double> flat(const attn::Weight<double>& w, Index in) {
  return {w.name, {in, static_cast<Index>(w.data.size()) / in}, w.data, true};
}

/// The forward from the formulas on x [B, H, W, C]; returns {output [B, N, O], weights}.
std::pair<attn::Tensor<double, 3>, attn::Tensor<double, 4>> naive(const L& layer, const attn::Tensor<double, 4>& x) {
  const auto& c = layer.config();
  const Index B = x.dimension(0), H = x.dimension(1), W = x.dimension(2), C = x.dimension(3), N = H * W;
  const Index h = c.num_heads, d = c.key_dim > 0 ? c.key_dim : C / h, E = h * d, R = (2 * H - 1) * (2 * W - 1);
  const Index s = c.sr_ratio, Hk = H / s, Wk = W / s, Nk = Hk * Wk;
  const bool seed = c.weight_layout == "seed";
  const std::string qn = seed ? "query" : "query_conv", kvn = seed ? "key_value" : "key_value_conv";
  attn::Tensor<double, 3> tok(B, N, C);
  std::copy(x.data(), x.data() + x.size(), tok.data());
  const auto q = naive_dense(tok, flat(*find(layer, qn + "/kernel"), C), find(layer, qn + "/bias"));
  attn::Tensor<double, 3> src = tok;
  if (s > 1) {
    src = attn::Tensor<double, 3>(B, Nk, C);
    const auto& k = find(layer, "kv_sr_dw_conv/depthwise_kernel")->data;
    const auto* kb = find(layer, "kv_sr_dw_conv/bias");
    for (Index b = 0; b < B; ++b)
      for (Index y = 0; y < Hk; ++y)
        for (Index xx = 0; xx < Wk; ++xx) {
          std::vector<double> row(static_cast<std::size_t>(C));
          for (Index ch = 0; ch < C; ++ch) {
            double v = kb ? kb->data[static_cast<std::size_t>(ch)] : 0.0;
            for (Index i = 0; i < s; ++i)
              for (Index j = 0; j < s; ++j)
                v += x(b, y * s + i, xx * s + j, ch) * k[static_cast<std::size_t>((i * s + j) * C + ch)];
            row[static_cast<std::size_t>(ch)] = v;
          }
          double mean = 0, var = 0;
          for (double v : row) mean += v;
          mean /= double(C);
          for (double v : row) var += (v - mean) * (v - mean);
          var /= double(C);
          for (Index ch = 0; ch < C; ++ch) {
            const auto u = static_cast<std::size_t>(ch);
            double v = row[u];
            if (c.use_bn)
              v = (v - find(layer, "kv_sr_bn/moving_mean")->data[u]) /
                      std::sqrt(find(layer, "kv_sr_bn/moving_variance")->data[u] + 1e-5) *
                      find(layer, "kv_sr_bn/gamma")->data[u] +
                  find(layer, "kv_sr_bn/beta")->data[u];
            else
              v = (v - mean) / std::sqrt(var + 1e-5) * find(layer, "kv_sr_ln/gamma")->data[u] +
                  find(layer, "kv_sr_ln/beta")->data[u];
            src(b, y * Wk + xx, ch) = v;
          }
        }
  }
  const auto kv = naive_dense(src, flat(*find(layer, kvn + "/kernel"), C), find(layer, kvn + "/bias"));
  attn::Tensor<double, 3> k(B, Nk, E), v(B, Nk, E);
  for (Index b = 0; b < B; ++b)
    for (Index n = 0; n < Nk; ++n)
      for (Index i = 0; i < h; ++i)
        for (Index j = 0; j < d; ++j) {
          k(b, n, i * d + j) = seed ? kv(b, n, (j * h + i) * 2) : kv(b, n, i * d + j);
          v(b, n, i * d + j) = seed ? kv(b, n, (j * h + i) * 2 + 1) : kv(b, n, E + i * d + j);
        }
  const auto& table = find(layer, "pos_emb/positional_embedding")->data;
  const Bias bias = [&](Index, Index hd, Index i, Index j) {
    const Index col = N - Nk + j;  // the last Nk columns of the [N, N] index
    const Index idx = (i % H - col % H + H - 1) + (i / H - col / H + W - 1) * (2 * H - 1);
    return table[static_cast<std::size_t>(hd * R + idx)];
  };
  auto [ctx, p] = naive_attention(split_heads(q, h), split_heads(k, h), split_heads(v, h), 1.0 / std::sqrt(double(d)),
                                  nullptr, bias);
  auto y = merge_heads(ctx);
  if (c.out_weight) y = naive_dense(y, *find(layer, "output/kernel"), find(layer, "output/bias"));
  return {y, p};
}

void randomize(L& layer, std::uint64_t seed) {
  for (auto& w : layer.parameters()) {
    const auto r = random_tensor<double, 1>({static_cast<Index>(w.data.size())}, seed++);
    for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.5 * r(static_cast<Index>(i));
    if (w.name == "kv_sr_bn/moving_variance")
      for (auto& v : w.data) v = 0.5 + std::abs(v);
  }
}

std::vector<std::string> names_of(const L& l) {
  std::vector<std::string> names;
  for (const auto& w : l.parameters()) names.push_back(w.name);
  return names;
}

attn::Tensor<double, 3> tokens_of(const attn::Tensor<double, 4>& x) {
  attn::Tensor<double, 3> t(x.dimension(0), x.dimension(1) * x.dimension(2), x.dimension(3));
  std::copy(x.data(), x.data() + x.size(), t.data());
  return t;
}

}  // namespace

TEST_CASE("light_mhsa_with_multi_head_relative_position_embedding: weights have the reference's names, shapes and "
          "order",
          "[light_mhsa_with_multi_head_relative_position_embedding]") {
  const L a({.input_shape = {7, 9, 16}});
  REQUIRE(names_of(a) ==
          std::vector<std::string>{"query_conv/kernel", "key_value_conv/kernel", "pos_emb/positional_embedding",
                                   "output/kernel"});
  REQUIRE(a.parameters()[0].shape == Shape{1, 1, 16, 16});
  REQUIRE(a.parameters()[1].shape == Shape{1, 1, 16, 32});
  REQUIRE(a.parameters()[2].shape == Shape{4, 13 * 17});
  for (double v : a.parameters()[2].data) REQUIRE(v == 0.0);
  const L b({.input_shape = {7, 9, 16}, .sr_ratio = 2, .qkv_bias = true, .out_bias = true});
  REQUIRE(names_of(b) == std::vector<std::string>{"query_conv/kernel", "query_conv/bias",
                                                  "kv_sr_dw_conv/depthwise_kernel", "kv_sr_dw_conv/bias",
                                                  "kv_sr_ln/gamma", "kv_sr_ln/beta", "key_value_conv/kernel",
                                                  "key_value_conv/bias", "pos_emb/positional_embedding",
                                                  "output/kernel", "output/bias"});
  REQUIRE(b.parameters()[2].shape == Shape{2, 2, 16, 1});
  const L c({.input_shape = {7, 8, 12}, .num_heads = 3, .key_dim = 5, .sr_ratio = 3, .use_bn = true,
             .out_shape = 10, .weight_layout = "seed"});
  REQUIRE(names_of(c) == std::vector<std::string>{"query/kernel", "kv_sr_dw_conv/depthwise_kernel",
                                                  "kv_sr_bn/gamma", "kv_sr_bn/beta", "kv_sr_bn/moving_mean",
                                                  "kv_sr_bn/moving_variance", "key_value/kernel",
                                                  "pos_emb/positional_embedding", "output/kernel"});
  REQUIRE(c.parameters()[0].shape == Shape{12, 15});
  REQUIRE(c.parameters()[6].shape == Shape{12, 30});
  REQUIRE(c.parameters()[8].shape == Shape{15, 10});
  REQUIRE(c.relative_position_index().rows == 56);
  REQUIRE(c.relative_position_index().cols == 4);  // ⌊7/3⌋·⌊8/3⌋ keys
  const L e({.input_shape = {4, 4, 8}, .num_heads = 2, .key_dim = 3, .out_weight = false});
  REQUIRE(e.output_shape({2, 4, 4, 8}) == Shape{2, 4, 4, 6});
}

TEST_CASE("light_mhsa_with_multi_head_relative_position_embedding: reduced keys read the last Nk columns",
          "[light_mhsa_with_multi_head_relative_position_embedding]") {
  // H = 2, W = 3, sr 2: one key (Nk = 1) reading column q = 5 of the [6, 6] index: a_q = 1, b_q = 2,
  // I[p] = (a_p − 1 + 1) + (b_p − 2 + 2)·3 with a = p mod 2, b = p div 2.
  const L layer({.input_shape = {2, 3, 4}, .num_heads = 1, .sr_ratio = 2});
  const auto& I = layer.relative_position_index();
  REQUIRE(I.rows == 6);
  REQUIRE(I.cols == 1);
  const std::vector<Index> expected{0, 1, 3, 4, 6, 7};
  for (Index p = 0; p < 6; ++p) REQUIRE(I(p, 0) == expected[static_cast<std::size_t>(p)]);
}

TEST_CASE("light_mhsa_with_multi_head_relative_position_embedding: validation messages",
          "[light_mhsa_with_multi_head_relative_position_embedding]") {
  const auto msg = [](const attn::Json& j) {
    const auto p = attn::check_attention_config("light_mhsa_with_multi_head_relative_position_embedding", j);
    return p.empty() ? std::string() : p.front().message;
  };
  REQUIRE(msg({{"input_shape", {3, 5, 2}}}) == "channels (2) must be at least num_heads (4) when key_dim is 0");
  REQUIRE(msg({{"input_shape", {3, 5, 2}}, {"key_dim", 3}, {"out_shape", 5}}).empty());
  REQUIRE(msg({{"input_shape", {3, 5, 10}}, {"out_weight", false}}) ==
          "channels (10) must be divisible by num_heads (4) when out_weight is false and key_dim is 0");
  REQUIRE(msg({{"input_shape", {3, 5, 10}}, {"out_weight", false}, {"key_dim", 2}}).empty());
  REQUIRE(msg({{"input_shape", {3, 5, 8}}, {"sr_ratio", 4}}) ==
          "sr_ratio (4) must not exceed the height (3) or the width (5)");
  REQUIRE(msg({{"input_shape", {3, 5, 8}}, {"sr_ratio", 3}}).empty());
  REQUIRE_FALSE(msg({{"input_shape", {3, 5, 8}}, {"sr_ratio", 0}}).empty());
  REQUIRE_FALSE(msg({{"input_shape", {3, 5, 8}}, {"weight_layout", "torch"}}).empty());
  REQUIRE_FALSE(msg({{"input_shape", {3, 5, 8, 1}}}).empty());
  REQUIRE_THROWS_AS(attn::create_attention_layer<float>("light_mhsa_with_multi_head_relative_position_embedding",
                                                        {{"input_shape", {3, 5, 8}}, {"sr_ratio", 6}}),
                    attn::ConfigError);
}

TEST_CASE("light_mhsa_with_multi_head_relative_position_embedding: equals an independent loop implementation",
          "[light_mhsa_with_multi_head_relative_position_embedding]") {
  const std::vector<L::Config> configs{
      {.input_shape = {7, 9, 16}},
      {.input_shape = {7, 9, 16}, .sr_ratio = 2, .qkv_bias = true},
      {.input_shape = {7, 8, 12}, .num_heads = 3, .key_dim = 5, .sr_ratio = 3, .qkv_bias = true, .use_bn = true,
       .out_shape = 10, .out_bias = true, .weight_layout = "seed"},
      {.input_shape = {5, 4, 8}, .num_heads = 2, .sr_ratio = 2, .out_weight = false, .weight_layout = "seed"},
      {.input_shape = {1, 5, 3}, .num_heads = 1},
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

TEST_CASE("light_mhsa_with_multi_head_relative_position_embedding: the seed layout with permuted columns equals "
          "HEAD's",
          "[light_mhsa_with_multi_head_relative_position_embedding]") {
  const L::Config head_cfg{.input_shape = {6, 5, 12}, .num_heads = 3, .sr_ratio = 2, .qkv_bias = true};
  L head(head_cfg, 3);
  randomize(head, 30);
  L::Config seed_cfg = head_cfg;
  seed_cfg.weight_layout = "seed";
  L seed(seed_cfg, 4);
  const Index h = 3, d = 4, E = 12, C = 12;
  for (std::size_t i = 0; i < seed.parameters().size(); ++i) {
    auto& w = seed.parameters()[i];
    const auto& src = head.parameters()[i].data;
    if (w.name == "key_value/kernel" || w.name == "key_value/bias") {
      const Index rows = w.name == "key_value/kernel" ? C : 1;
      for (Index r = 0; r < rows; ++r)
        for (Index t = 0; t < 2; ++t)
          for (Index hd = 0; hd < h; ++hd)
            for (Index j = 0; j < d; ++j)
              w.data[static_cast<std::size_t>(r * 2 * E + (j * h + hd) * 2 + t)] =
                  src[static_cast<std::size_t>(r * 2 * E + t * E + hd * d + j)];
    } else {
      w.data = src;  // same values; the query's Dense [C, E] is the 1x1 kernel [1, 1, C, E] in memory
    }
  }
  const auto x = random_tensor<double, 4>({2, 6, 5, 12}, 9);
  ATTN_REQUIRE_CLOSE(seed.forward(x), head.forward(x), 1e-13, 1e-13);
}

TEST_CASE("light_mhsa_with_multi_head_relative_position_embedding: the upstream shape test",
          "[light_mhsa_with_multi_head_relative_position_embedding]") {
  // tests/test_layers.py: [2, 14, 16, 256], num_heads 4, out_shape 384 -> [2, 14, 16, 384]
  for (int sr : {1, 3}) {
    const auto layer = attn::create_attention_layer<float>(
        "light_mhsa_with_multi_head_relative_position_embedding",
        {{"input_shape", {14, 16, 256}}, {"num_heads", 4}, {"out_shape", 384}, {"sr_ratio", sr}});
    const auto y = layer.forward(attn::AnyTensor<float>(random_tensor<float, 4>({2, 14, 16, 256}, 3)));
    REQUIRE(y.shape() == Shape{2, 14, 16, 384});
    REQUIRE(all_finite(y.data(), y.size()));
  }
}

TEST_CASE("light_mhsa_with_multi_head_relative_position_embedding: bad shapes give typed errors naming the layer",
          "[light_mhsa_with_multi_head_relative_position_embedding]") {
  const L layer({.input_shape = {3, 4, 8}, .sr_ratio = 2});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 3, 4, 6}, 1)),
                      "light_mhsa_with_multi_head_relative_position_embedding: input must have shape [*, 3, 4, 8] "
                      "([batch, height, width, channels] of the input_shape), got [1, 3, 4, 6]");
  L tampered = layer;
  tampered.parameters()[1].shape = {3, 3, 8, 1};
  REQUIRE_THROWS_AS(tampered.forward(random_tensor<double, 4>({1, 3, 4, 8}, 1)), attn::WeightsError);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 3, 4, 8)).dimension(0) == 0);
}

TEST_CASE("light_mhsa_with_multi_head_relative_position_embedding: 1 and 2 threads give bit-identical results",
          "[light_mhsa_with_multi_head_relative_position_embedding][threads]") {
  attn::LightMhsaWithMultiHeadRelativePositionEmbedding<float> layer({.input_shape = {14, 13, 64}, .sr_ratio = 2},
                                                                      2);
  for (auto& v : layer.parameters()[5].data) v = 0.25f;  // the table
  REQUIRE(layer.parameters()[5].name == "pos_emb/positional_embedding");
  const auto x = random_tensor<float, 4>({2, 14, 13, 64}, 8);
  const int saved = attn::num_threads();
  attn::set_num_threads(1);
  const auto a = layer.forward(x);
  attn::set_num_threads(2);
  const auto b = layer.forward(x);
  attn::set_num_threads(saved);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
}

// ---- golden parity (tools/golden/light_mhsa_with_multi_head_relative_position_embedding.py, tests/data/<type>/) ----

TEMPLATE_TEST_CASE("golden: light_mhsa_with_multi_head_relative_position_embedding matches torch",
                   "[golden][light_mhsa_with_multi_head_relative_position_embedding]", float, double) {
  using T = TestType;
  for_each_golden<T>("light_mhsa_with_multi_head_relative_position_embedding", [](const Golden& g) {
    attn::LightMhsaWithMultiHeadRelativePositionEmbedding<T> layer(
        g.config.get<attn::LightMhsaWithMultiHeadRelativePositionEmbeddingConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto x = input<T, 4>(g, "x");
    const auto r = layer.forward_with_weights(x);
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("light_mhsa_with_multi_head_relative_position_embedding", g.config);
    attn::load_weights(any, g.file, "weights");
    check<T>(g, "output", any.forward(attn::AnyTensor<T>(x)).template view<4>());
  });
}
