// multi_head: against an independent loop implementation, hand-computed cases, the mask contract.
#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using MHA = attn::MultiHeadAttention<double>;

namespace {
/// Plain loops, written from the formula: y = merge(softmax(QKᵀ/√d + mask) V) Wp (+ biases).
attn::Tensor<double, 3> naive_mha(const MHA& layer, const attn::Tensor<double, 3>& x,
                                  const attn::Tensor<bool, 2>* pad = nullptr) {
  const auto& c = layer.config();
  const auto& w = layer.parameters();
  const bool bias = c.use_bias;
  const auto& wqkv = w[0];
  const auto& wp = w[bias ? 2 : 1];
  const Index B = x.dimension(0), T = x.dimension(1), Din = x.dimension(2), E = c.embed_dim,
              H = c.num_heads, d = E / H;
  attn::Tensor<double, 3> qkv(B, T, 3 * E);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t)
      for (Index o = 0; o < 3 * E; ++o) {
        double s = bias ? w[1].data[static_cast<std::size_t>(o)] : 0.0;
        for (Index i = 0; i < Din; ++i) s += x(b, t, i) * wqkv.data[static_cast<std::size_t>(i * 3 * E + o)];
        qkv(b, t, o) = s;
      }
  attn::Tensor<double, 3> ctx(B, T, E);
  ctx.setZero();
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index i = 0; i < T; ++i) {
        std::vector<double> z(static_cast<std::size_t>(T));
        double mx = -1e300;
        bool any = false;
        for (Index j = 0; j < T; ++j) {
          double s = 0;
          for (Index k = 0; k < d; ++k) s += qkv(b, i, h * d + k) * qkv(b, j, E + h * d + k);
          s /= std::sqrt(static_cast<double>(d));
          const bool keep = pad == nullptr || (*pad)(b, j);
          z[static_cast<std::size_t>(j)] = keep ? s : -1e300;
          if (keep) {
            mx = std::max(mx, s);
            any = true;
          }
        }
        if (!any) continue;
        double sum = 0;
        for (auto& v : z) sum += (v = v <= -1e299 ? 0.0 : std::exp(v - mx));
        for (Index j = 0; j < T; ++j)
          for (Index k = 0; k < d; ++k)
            ctx(b, i, h * d + k) += z[static_cast<std::size_t>(j)] / sum * qkv(b, j, 2 * E + h * d + k);
      }
  attn::Tensor<double, 3> y(B, T, E);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t)
      for (Index o = 0; o < E; ++o) {
        double s = bias ? w[3].data[static_cast<std::size_t>(o)] : 0.0;
        for (Index i = 0; i < E; ++i) s += ctx(b, t, i) * wp.data[static_cast<std::size_t>(i * E + o)];
        y(b, t, o) = s;
      }
  return y;
}
}  // namespace

TEST_CASE("multi_head: weights have the reference's names, shapes and initializers", "[multi_head]") {
  const MHA plain({.embed_dim = 8, .num_heads = 2});
  REQUIRE(plain.parameters().size() == 2);
  REQUIRE(plain.parameters()[0].name == "qkv/kernel");
  REQUIRE(plain.parameters()[0].shape == Shape{8, 24});
  REQUIRE(plain.parameters()[1].name == "proj/kernel");
  REQUIRE(plain.parameters()[1].shape == Shape{8, 8});
  const MHA biased({.embed_dim = 8, .num_heads = 2, .use_bias = true, .input_dim = 5});
  std::vector<std::string> names;
  for (const auto& w : biased.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"qkv/kernel", "qkv/bias", "proj/kernel", "proj/bias"});
  REQUIRE(biased.parameters()[0].shape == Shape{5, 24});
  REQUIRE(biased.parameters()[1].shape == Shape{24});
  for (double v : biased.parameters()[1].data) REQUIRE(v == 0.0);
  // he_normal: truncated at 2 sigma, sigma = sqrt(2 / fan_in) / 0.8796...
  const double sigma = std::sqrt(2.0 / 5.0) / 0.87962566103423978;
  double sq = 0;
  for (double v : biased.parameters()[0].data) {
    REQUIRE(std::abs(v) <= 2 * sigma);
    sq += v * v;
  }
  REQUIRE(std::sqrt(sq / 120.0) == Approx(sigma * 0.8796).epsilon(0.25));
  // deterministic from the seed
  REQUIRE(MHA({.embed_dim = 8, .num_heads = 2}, 5).parameters()[0].data ==
          MHA({.embed_dim = 8, .num_heads = 2}, 5).parameters()[0].data);
}

TEST_CASE("multi_head: equals an independent loop implementation", "[multi_head]") {
  for (bool bias : {false, true}) {
    const MHA layer({.embed_dim = 12, .num_heads = 3, .kernel_initializer = "glorot_uniform",
                     .use_bias = bias, .input_dim = 7},
                    11);
    MHA& mut = const_cast<MHA&>(layer);
    if (bias)  // non-zero biases so they are exercised
      for (auto& w : mut.parameters())
        if (w.shape.size() == 1)
          for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.01 * double(i % 7) - 0.03;
    const auto x = random_tensor<double, 3>({2, 5, 7}, 42);
    ATTN_REQUIRE_CLOSE(layer.forward(x), naive_mha(layer, x), 1e-12, 1e-12);
  }
}

TEST_CASE("multi_head: hand-computed case", "[multi_head]") {
  // embed_dim 2, one head, identity QKV blocks and projection: y = softmax(x xᵀ/√2) x.
  MHA layer({.embed_dim = 2, .num_heads = 1});
  auto& w = layer.parameters();
  std::fill(w[0].data.begin(), w[0].data.end(), 0.0);
  for (int blk = 0; blk < 3; ++blk) {
    w[0].data[static_cast<std::size_t>(0 * 6 + blk * 2 + 0)] = 1.0;
    w[0].data[static_cast<std::size_t>(1 * 6 + blk * 2 + 1)] = 1.0;
  }
  w[1].data = {1, 0, 0, 1};
  attn::Tensor<double, 3> x(1, 2, 2);
  x.setValues({{{1, 0}, {0, 1}}});
  // logits row 0: [1/√2, 0] -> p = [e^a/(e^a+1), 1/(e^a+1)], a = 1/√2
  const double a = 1.0 / std::sqrt(2.0);
  const double p0 = std::exp(a) / (std::exp(a) + 1.0);
  const auto r = layer.forward_with_weights(x);
  REQUIRE(r.output(0, 0, 0) == Approx(p0).epsilon(1e-12));
  REQUIRE(r.output(0, 0, 1) == Approx(1 - p0).epsilon(1e-12));
  REQUIRE(r.output(0, 1, 0) == Approx(1 - p0).epsilon(1e-12));
  REQUIRE(r.output(0, 1, 1) == Approx(p0).epsilon(1e-12));
  REQUIRE(r.weights(0, 0, 0, 0) == Approx(p0).epsilon(1e-12));
}

TEST_CASE("multi_head: padding mask equals running on the truncated sequence", "[multi_head]") {
  const MHA layer({.embed_dim = 16, .num_heads = 4}, 3);
  const auto x = random_tensor<double, 3>({2, 6, 16}, 9);
  attn::Tensor<bool, 2> pad(2, 6);
  pad.setConstant(true);
  for (Index j = 4; j < 6; ++j) pad(1, j) = false;  // item 1 has 4 real tokens
  const auto r = layer.forward_with_weights(x, {.key_padding = attn::KeyPaddingMask(pad)});
  attn::Tensor<double, 3> x1 = x.slice(std::array<Index, 3>{1, 0, 0}, std::array<Index, 3>{1, 4, 16});
  const auto y1 = layer.forward(x1);
  for (Index t = 0; t < 4; ++t)
    for (Index f = 0; f < 16; ++f) REQUIRE(r.output(1, t, f) == Approx(y1(0, t, f)).margin(1e-12));
  for (Index h = 0; h < 4; ++h)
    for (Index i = 0; i < 6; ++i) {
      REQUIRE(r.weights(1, h, i, 4) == 0.0);
      REQUIRE(r.weights(1, h, i, 5) == 0.0);
      double s = 0;
      for (Index j = 0; j < 6; ++j) s += r.weights(0, h, i, j);
      REQUIRE(s == Approx(1.0).epsilon(1e-12));
    }
  ATTN_REQUIRE_CLOSE(r.output, naive_mha(layer, x, &pad), 1e-12, 1e-12);
}

TEST_CASE("multi_head: mask ranks 3 and 4, broadcast, and fully masked rows give zeros", "[multi_head]") {
  const MHA layer({.embed_dim = 8, .num_heads = 2}, 4);
  const auto x = random_tensor<double, 3>({1, 3, 8}, 5);
  attn::Tensor<bool, 3> m3(1, 3, 3);
  m3.setConstant(true);
  for (Index j = 0; j < 3; ++j) m3(0, 2, j) = false;  // query 2 sees nothing
  const auto r3 = layer.forward_with_weights(x, {.attn_mask = attn::AttnMask(m3)});
  for (Index h = 0; h < 2; ++h)
    for (Index j = 0; j < 3; ++j) REQUIRE(r3.weights(0, h, 2, j) == 0.0);
  // the context of query 2 is zero, so its output is zero (no bias)
  for (Index f = 0; f < 8; ++f) REQUIRE(r3.output(0, 2, f) == 0.0);
  // rank 4 with a head extent of 1 broadcasts like rank 3
  attn::Tensor<bool, 4> m4 = m3.reshape(std::array<Index, 4>{1, 1, 3, 3});
  ATTN_REQUIRE_CLOSE(layer.forward(x, {.attn_mask = attn::AttnMask(m4)}), r3.output, 0.0, 0.0);
  // per-head rank 4: head 1 fully unmasked equals the unmasked layer's head 1 weights
  attn::Tensor<bool, 4> mh(1, 2, 3, 3);
  mh.setConstant(true);
  for (Index j = 1; j < 3; ++j) mh(0, 0, 0, j) = false;
  const auto rh = layer.forward_with_weights(x, {.attn_mask = attn::AttnMask(mh)});
  const auto r0 = layer.forward_with_weights(x);
  REQUIRE(rh.weights(0, 0, 0, 0) == Approx(1.0));
  for (Index i = 0; i < 3; ++i)
    for (Index j = 0; j < 3; ++j) REQUIRE(rh.weights(0, 1, i, j) == Approx(r0.weights(0, 1, i, j)));
}

TEST_CASE("multi_head: bad shapes and configs give typed errors", "[multi_head]") {
  REQUIRE_THROWS_WITH(MHA({.embed_dim = 10, .num_heads = 3}), "embed_dim (10) must be divisible by num_heads (3)");
  REQUIRE_THROWS_AS(MHA({.embed_dim = 0}), attn::ConfigError);
  REQUIRE_THROWS_AS(MHA({.embed_dim = 8, .num_heads = 2, .kernel_initializer = "bogus"}), attn::ConfigError);
  const MHA layer({.embed_dim = 8, .num_heads = 2});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 3>({1, 3, 7}, 1)),
                      "multi_head: input must have shape [*, *, 8] ([batch, seq, input_dim]), got [1, 3, 7]");
  const auto x = random_tensor<double, 3>({2, 3, 8}, 1);
  attn::Tensor<bool, 2> bad(2, 4);
  bad.setConstant(true);
  REQUIRE_THROWS_WITH(layer.forward(x, {.key_padding = attn::KeyPaddingMask(bad)}),
                      "multi_head: key_padding_mask must have shape [2, 3] ([batch, keys], true = a real key), got "
                      "[2, 4]");
  attn::Tensor<bool, 1> r1(3);
  r1.setConstant(true);
  REQUIRE_THROWS_WITH(layer.forward(x, {.attn_mask = attn::AttnMask(r1)}),
                      "multi_head: attn_mask must have rank 2 [T, S], 3 [B, T, S] or 4 [B, 1|H, T, S], got rank 1 "
                      "with shape [3]");
  attn::Tensor<double, 2> soft(2, 3);
  soft.setConstant(0.5);
  REQUIRE_THROWS_AS(attn::mask_from_values(soft), attn::ShapeError);
  // empty sequence: empty output, no crash
  const auto e = layer.forward(attn::Tensor<double, 3>(2, 0, 8));
  REQUIRE(e.dimension(1) == 0);
}

TEST_CASE("multi_head: causal equals an explicit lower-triangular mask and ignores future tokens", "[multi_head]") {
  MHA causal({.embed_dim = 8, .num_heads = 2, .causal = true}, 6);
  MHA plain({.embed_dim = 8, .num_heads = 2}, 6);
  const auto x = random_tensor<double, 3>({2, 7, 8}, 3);
  attn::Tensor<bool, 3> tri(2, 7, 7);
  for (Index b = 0; b < 2; ++b)
    for (Index i = 0; i < 7; ++i)
      for (Index j = 0; j < 7; ++j) tri(b, i, j) = j <= i;
  const auto r = causal.forward_with_weights(x);
  ATTN_REQUIRE_CLOSE(r.output, plain.forward(x, {.attn_mask = attn::AttnMask(tri)}), 1e-12, 1e-13);
  // the causal flag per call equals the config's
  ATTN_REQUIRE_CLOSE(r.output, plain.forward(x, {.causal = true}), 0.0, 0.0);
  for (Index i = 0; i < 7; ++i)
    for (Index j = i + 1; j < 7; ++j) REQUIRE(r.weights(1, 1, i, j) == 0.0);
  auto x2 = x;
  for (Index f = 0; f < 8; ++f) x2(0, 6, f) = 5.0;  // change the last token only
  const auto y2 = causal.forward(x2);
  for (Index t = 0; t < 6; ++t)
    for (Index f = 0; f < 8; ++f) REQUIRE(y2(0, t, f) == r.output(0, t, f));
}

TEST_CASE("multi_head: 1 and 2 threads give bit-identical results (projections are threaded too)", "[multi_head][threads]") {
  const MHA layer({.embed_dim = 16, .num_heads = 4}, 2);
  const auto x = random_tensor<double, 3>({3, 300, 16}, 8);  // 900 rows: several projection chunks
  const int saved = attn::num_threads();
  attn::set_num_threads(1);
  const auto a = layer.forward(x);
  attn::set_num_threads(2);
  const auto b = layer.forward(x);
  attn::set_num_threads(saved);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
}

// ---- golden parity (tools/golden/multi_head.py, tests/data/multi_head/) ----

TEMPLATE_TEST_CASE("golden: multi_head (the reference layout) matches PyTorch ops", "[golden][multi_head]",
                   float, double) {
  using T = TestType;
  for_each_golden<T>("multi_head", [](const Golden& g) {
    attn::MultiHeadAttention<T> layer(g.config.get<attn::MultiHeadAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto mask = mask_of(g, "input/mask");
    const auto r = layer.forward_with_weights(input<T, 3>(g, "x"), mask.masks<T>());
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("multi_head", g.config);
    attn::load_weights(any, g.file, "weights");
    check_through_door<T>(g, any, {attn::AnyTensor<T>(input<T, 3>(g, "x"))}, mask);
  });
}
