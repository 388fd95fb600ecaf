// perceiver: against an independent loop implementation, perceiver(x) == perceiver(x, x), one key,
// masks, large logits, the reference's messages, shape errors, threads, golden data.
#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using P = attn::PerceiverAttention<double>;

namespace {
/// Plain loops from the formula: Q = xq·Wq (+ bq), [K; V] = xkv·Wkv (+ bkv), y = merge(softmax(Q Kᵀ/√d) V)·Wp (+ bp).
attn::Tensor<double, 3> oracle(const P& l, const attn::Tensor<double, 3>& xq, const attn::Tensor<double, 3>& xkv,
                               const Keep& keep = nullptr) {
  const auto& c = l.config();
  const auto& w = l.parameters();
  const std::size_t st = c.use_bias ? 2 : 1;
  const auto b = [&](std::size_t i) { return c.use_bias ? &w[i + 1] : nullptr; };
  const Index H = c.num_heads, E = c.dim;
  const auto q = split_heads(naive_dense(xq, w[0], b(0)), H);
  const auto kv = naive_dense(xkv, w[st], b(st));
  const Index B = kv.dimension(0), S = kv.dimension(1);
  attn::Tensor<double, 3> k(B, S, E), v(B, S, E);
  for (Index i = 0; i < B; ++i)
    for (Index s = 0; s < S; ++s)
      for (Index f = 0; f < E; ++f) {
        k(i, s, f) = kv(i, s, f);
        v(i, s, f) = kv(i, s, E + f);
      }
  const auto ctx = naive_attention(q, split_heads(k, H), split_heads(v, H),
                                   1.0 / std::sqrt(static_cast<double>(E / H)), keep).first;
  return naive_dense(merge_heads(ctx), w[2 * st], b(2 * st));
}

void set_biases(P& l) {
  for (auto& w : l.parameters())
    if (w.shape.size() == 1)
      for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.02 * double(i % 9) - 0.07;
}

std::string config_error(const attn::PerceiverAttentionConfig& c) {
  try {
    P layer(c);
  } catch (const attn::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST_CASE("perceiver: weights have the reference's names, shapes, order and initializers", "[perceiver]") {
  const P l({.dim = 8, .num_heads = 2}, 3);
  std::vector<std::string> names;
  for (const auto& w : l.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"q/kernel", "q/bias", "kv/kernel", "kv/bias", "proj/kernel", "proj/bias"});
  REQUIRE(l.parameters()[0].shape == Shape{8, 8});
  REQUIRE(l.parameters()[2].shape == Shape{8, 16});
  REQUIRE(l.parameters()[3].shape == Shape{16});
  REQUIRE(l.parameters()[4].shape == Shape{8, 8});
  // glorot_uniform: |w| <= sqrt(6 / (fan_in + fan_out)); biases zeros
  const double lim = std::sqrt(6.0 / 24.0);
  for (double v : l.parameters()[2].data) REQUIRE(std::abs(v) <= lim);
  for (double v : l.parameters()[3].data) REQUIRE(v == 0.0);
  const P nob({.dim = 8, .num_heads = 2, .use_bias = false});
  REQUIRE(nob.parameters().size() == 3);
  REQUIRE(nob.parameters()[1].name == "kv/kernel");
  REQUIRE(P({.dim = 8}, 5).parameters()[0].data == P({.dim = 8}, 5).parameters()[0].data);
}

TEST_CASE("perceiver: validation messages (the reference's) and unknown parameters", "[perceiver]") {
  REQUIRE(config_error({.dim = 8}) == "(no error)");
  REQUIRE(config_error({.dim = 0}) == "Parameter 'dim' must be positive, got 0");
  REQUIRE(config_error({.dim = 8, .num_heads = -1}) == "Parameter 'num_heads' must be positive, got -1");
  REQUIRE(config_error({.dim = 10, .num_heads = 3}) == "dim (10) must be divisible by num_heads (3)");
  REQUIRE(config_error({.dim = 8, .dropout = 1.5}) == "Parameter 'dropout' must be between 0.0 and 1.0, got 1.5");
  REQUIRE(config_error({.dim = 8, .dropout = 1.0}) == "(no error)");
  const auto fail = [](const Json& p) -> std::string {
    try {
      attn::validate_attention_config("perceiver", p);
    } catch (const attn::ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  };
  REQUIRE(fail(Json::object()) == "Required parameters for 'perceiver' are missing: ['dim']. Required: ['dim']");
  REQUIRE_THAT(fail({{"dim", 8}, {"num_head", 2}}),
               Catch::StartsWith("Unknown parameter 'num_head' for 'perceiver'. Did you mean 'num_heads'?"));
  // every name of the reference registry is accepted (regularizers kept for the round trip)
  const Json all{{"dim", 8},         {"num_heads", 2},          {"dropout", 0.1},
                 {"use_bias", false}, {"kernel_initializer", "he_normal"}, {"bias_initializer", "ones"},
                 {"kernel_regularizer", nullptr}, {"bias_regularizer", "l2"}};
  REQUIRE(fail(all) == "(no error)");
  const auto layer = attn::create_attention_layer<float>("perceiver", all);
  REQUIRE(layer.config().at("bias_regularizer") == "l2");
  REQUIRE(layer.class_name() == "PerceiverAttention");
}

TEST_CASE("perceiver: equals an independent loop implementation", "[perceiver]") {
  for (bool bias : {false, true})
    for (int heads : {1, 3}) {
      P l({.dim = 6, .num_heads = heads, .use_bias = bias}, 11);
      set_biases(l);
      const auto xq = random_tensor<double, 3>({2, 3, 6}, 1);
      const auto xkv = random_tensor<double, 3>({2, 7, 6}, 2);
      ATTN_REQUIRE_CLOSE(l.forward(xq, xkv), oracle(l, xq, xkv), 1e-12, 1e-13);
      const auto x1 = random_tensor<double, 3>({1, 5, 6}, 3);  // B = 1, self
      ATTN_REQUIRE_CLOSE(l.forward(x1), oracle(l, x1, x1), 1e-12, 1e-13);
    }
}

TEST_CASE("perceiver: perceiver(x) equals perceiver(x, x), weights included", "[perceiver]") {
  P l({.dim = 8, .num_heads = 2}, 4);
  set_biases(l);
  const auto x = random_tensor<double, 3>({2, 5, 8}, 6);
  const auto a = l.forward_with_weights(x);
  const auto b = l.forward_with_weights(x, x);
  ATTN_REQUIRE_CLOSE(a.output, b.output, 0.0, 0.0);
  ATTN_REQUIRE_CLOSE(a.weights, b.weights, 0.0, 0.0);
  ATTN_REQUIRE_CLOSE(l.forward(x), l.forward(x, x), 0.0, 0.0);
}

TEST_CASE("perceiver: hand-computed case, and one key gives every query the same value", "[perceiver]") {
  // dim 2, one head, identity kernels, no biases: y = softmax(x xᵀ/√2) x.
  P l({.dim = 2, .num_heads = 1, .use_bias = false});
  auto& w = l.parameters();
  w[0].data = {1, 0, 0, 1};
  w[1].data = {1, 0, 1, 0, 0, 1, 0, 1};  // K = x, V = x
  w[2].data = {1, 0, 0, 1};
  attn::Tensor<double, 3> x(1, 2, 2);
  x.setValues({{{1, 0}, {0, 1}}});
  const double a = 1.0 / std::sqrt(2.0);
  const double p0 = std::exp(a) / (std::exp(a) + 1.0);
  const auto y = l.forward(x);
  REQUIRE(y(0, 0, 0) == Approx(p0).epsilon(1e-12));
  REQUIRE(y(0, 0, 1) == Approx(1 - p0).epsilon(1e-12));
  REQUIRE(y(0, 1, 1) == Approx(p0).epsilon(1e-12));
  // S = 1: softmax over one key is 1, so every query row gets V of that key, projected
  P r({.dim = 4, .num_heads = 2}, 9);
  set_biases(r);
  const auto q = random_tensor<double, 3>({2, 5, 4}, 1);
  const auto kv = random_tensor<double, 3>({2, 1, 4}, 2);
  const auto out = r.forward(q, kv);
  for (Index b = 0; b < 2; ++b)
    for (Index t = 1; t < 5; ++t)
      for (Index f = 0; f < 4; ++f) REQUIRE(out(b, t, f) == Approx(out(b, 0, f)).margin(1e-14));
}

TEST_CASE("perceiver: masks: kv padding equals the truncated kv, fully masked rows give zeros", "[perceiver]") {
  P l({.dim = 8, .num_heads = 2, .use_bias = false}, 3);
  const auto xq = random_tensor<double, 3>({2, 3, 8}, 1);
  const auto xkv = random_tensor<double, 3>({2, 6, 8}, 2);
  attn::Tensor<bool, 2> pad(2, 6);
  pad.setConstant(true);
  pad(1, 4) = pad(1, 5) = false;
  const auto y = l.forward(xq, xkv, {.key_padding = attn::KeyPaddingMask(pad)});
  ATTN_REQUIRE_CLOSE(y, oracle(l, xq, xkv, [&](Index b, Index, Index, Index j) { return pad(b, j); }), 1e-12, 1e-13);
  attn::Tensor<double, 3> q1 = xq.slice(std::array<Index, 3>{1, 0, 0}, std::array<Index, 3>{1, 3, 8});
  attn::Tensor<double, 3> kv1 = xkv.slice(std::array<Index, 3>{1, 0, 0}, std::array<Index, 3>{1, 4, 8});
  const auto y1 = l.forward(q1, kv1);
  for (Index t = 0; t < 3; ++t)
    for (Index f = 0; f < 8; ++f) REQUIRE(y(1, t, f) == Approx(y1(0, t, f)).margin(1e-13));
  // a query row that sees no key: zero weights, zero output (no biases), never NaN
  attn::Tensor<bool, 3> m(2, 3, 6);
  m.setConstant(true);
  for (Index j = 0; j < 6; ++j) m(0, 1, j) = false;
  const auto r = l.forward_with_weights(xq, xkv, {.attn_mask = attn::AttnMask(m)});
  for (Index f = 0; f < 8; ++f) REQUIRE(r.output(0, 1, f) == 0.0);
  for (Index h = 0; h < 2; ++h)
    for (Index j = 0; j < 6; ++j) REQUIRE(r.weights(0, h, 1, j) == 0.0);
  REQUIRE(all_finite(r.output.data(), r.output.size()));
  // a mask of the wrong shape names the layer
  attn::Tensor<bool, 2> bad(2, 3);
  bad.setConstant(true);
  REQUIRE_THROWS_WITH(l.forward(xq, xkv, {.key_padding = attn::KeyPaddingMask(bad)}),
                      Catch::StartsWith("perceiver: key_padding_mask must have shape [2, 6]"));
}

TEST_CASE("perceiver: logits of magnitude 1e4 stay finite and match the oracle", "[perceiver]") {
  P l({.dim = 4, .num_heads = 1, .use_bias = false}, 2);
  for (auto& w : l.parameters())
    for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] *= 40.0;
  const auto xq = random_tensor<double, 3>({1, 3, 4}, 1, 10.0);
  const auto xkv = random_tensor<double, 3>({1, 5, 4}, 2, 10.0);
  const auto r = l.forward_with_weights(xq, xkv);
  REQUIRE(all_finite(r.output.data(), r.output.size()));
  ATTN_REQUIRE_CLOSE(r.output, oracle(l, xq, xkv), 1e-9, 1e-9);
  attn::PerceiverAttention<float> lf({.dim = 4, .num_heads = 1, .use_bias = false});
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < l.parameters()[i].data.size(); ++j)
      lf.parameters()[i].data[j] = static_cast<float>(l.parameters()[i].data[j]);
  const auto yf = lf.forward(random_tensor<float, 3>({1, 3, 4}, 1, 10.0), random_tensor<float, 3>({1, 5, 4}, 2, 10.0));
  REQUIRE(all_finite(yf.data(), yf.size()));
}

TEST_CASE("perceiver: bad shapes give ShapeErrors naming the layer", "[perceiver]") {
  const P l({.dim = 8, .num_heads = 2});
  const auto x = random_tensor<double, 3>({2, 3, 8}, 1);
  REQUIRE_THROWS_WITH(l.forward(random_tensor<double, 3>({2, 3, 7}, 1)),
                      "perceiver: Query last dimension (7) must match dim (8)");
  REQUIRE_THROWS_WITH(l.forward(x, random_tensor<double, 3>({2, 4, 7}, 1)),
                      "perceiver: KV last dimension (7) must match dim (8)");
  REQUIRE_THROWS_WITH(l.forward(x, random_tensor<double, 3>({3, 4, 8}, 1)),
                      "perceiver: the kv input's batch (3) must equal the query input's (2); query [2, 3, 8], kv "
                      "[3, 4, 8]");
  REQUIRE_THROWS_WITH(l.output_shape({2, 3}), "perceiver: Query input must be 3D, got shape [2, 3]");
  REQUIRE(l.output_shape({2, 3, 8}, {2, 9, 8}) == Shape{2, 3, 8});
  // empty query or kv sequences: no crash
  REQUIRE(l.forward(attn::Tensor<double, 3>(2, 0, 8), x).dimension(1) == 0);
  const auto e = l.forward(x, attn::Tensor<double, 3>(2, 0, 8));
  REQUIRE(all_finite(e.data(), e.size()));
}

TEST_CASE("perceiver: 1 and 2 threads give bit-identical results", "[perceiver][threads]") {
  const P l({.dim = 16, .num_heads = 4}, 2);
  const auto xq = random_tensor<double, 3>({3, 200, 16}, 8);
  const auto xkv = random_tensor<double, 3>({3, 300, 16}, 9);
  const int saved = attn::num_threads();
  attn::set_num_threads(1);
  const auto a = l.forward(xq, xkv);
  attn::set_num_threads(2);
  const auto b = l.forward(xq, xkv);
  attn::set_num_threads(saved);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
}

// ---- golden parity (tools/golden/perceiver.py, tests/data/perceiver/) ----

TEMPLATE_TEST_CASE("golden: perceiver matches PyTorch ops", "[golden][perceiver]", float, double) {
  using T = TestType;
  for_each_golden<T>("perceiver", [](const Golden& g) {
    attn::PerceiverAttention<T> layer(g.config.get<attn::PerceiverAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto mask = mask_of(g, "input/mask");
    auto masks = mask.masks<T>();
    masks.causal = g.meta("causal") == "1";
    const auto q = input<T, 3>(g, "query");
    const bool cross = g.file.contains("input/kv");
    const auto r = cross ? layer.forward_with_weights(q, input<T, 3>(g, "kv"), masks)
                         : layer.forward_with_weights(q, masks);
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("perceiver", g.config);
    attn::load_weights(any, g.file, "weights");
    attn::ForwardArgs<T> args;
    static_cast<attn::AttentionMasks<T>&>(args) = masks;
    args.inputs = {attn::AnyTensor<T>(q), attn::AnyTensor<T>(cross ? input<T, 3>(g, "kv") : q)};
    args.return_weights = true;
    const auto y = any.forward(args);
    check<T>(g, "output", y.output.template view<3>());
    check<T>(g, "weights", y.weights->template view<4>());
  });
}
