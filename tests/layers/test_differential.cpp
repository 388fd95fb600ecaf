// differential: plain-loop oracles of both formulations (Keras MultiHeadAttention branches written
// from §3.1), the λ schedule of the spec's Appendix B, identities (equal branches), masks, messages,
// threads and golden data from PyTorch operators.
#include <attn/layers/differential.hpp>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::DifferentialMultiHeadAttention<double>;

namespace {

/// A rank-3 Keras kernel as the matrix [first `in_axes` extents, the rest].
attn::Weight<double> flat(const attn::Weight<double>& w, int in_axes) {
  attn::Weight<double> f = w;
  Index in = 1;
  for (int i = 0; i < in_axes; ++i) in *= w.shape[static_cast<std::size_t>(i)];
  f.shape = {in, w.size() / in};
  return f;
}
attn::Weight<double> as_bias(const attn::Weight<double>& w) {
  attn::Weight<double> f = w;
  f.shape = {w.size()};
  return f;
}
const attn::Weight<double>& named(const L& l, const std::string& n) {
  const auto* w = l.parameters().find(n);
  REQUIRE(w != nullptr);
  return *w;
}
attn::Tensor<double, 3> proj(const L& l, const std::string& a, const std::string& what, const attn::Tensor<double, 3>& x) {
  const auto k = flat(named(l, a + "/" + what + "/kernel"), 1);
  const auto b = as_bias(named(l, a + "/" + what + "/bias"));
  return naive_dense(x, k, &b);
}

/// Per branch: the attention context [B, h, T, d] computed by loops; `vbranch` names the values' branch.
attn::Tensor<double, 4> context(const L& l, const std::string& a, const std::string& vbranch,
                                const attn::Tensor<double, 3>& x, const Keep& keep) {
  const Index H = l.config().num_heads;
  const auto q = split_heads(proj(l, a, "query", x), H);
  const auto k = split_heads(proj(l, a, "key", x), H);
  const auto v = split_heads(proj(l, vbranch, "value", x), H);
  return naive_attention(q, k, v, 1.0 / std::sqrt(double(l.config().head_dim)), keep).first;
}
attn::Tensor<double, 3> out_proj(const L& l, const std::string& a, const attn::Tensor<double, 4>& ctx) {
  const auto k = flat(named(l, a + "/attention_output/kernel"), 2);
  return naive_dense(merge_heads(ctx), k, &named(l, a + "/attention_output/bias"));
}

/// The whole layer from the spec's formulas, λ from the schedule written out here.
attn::Tensor<double, 3> oracle(const L& l, const attn::Tensor<double, 3>& x, int layer_idx, const Keep& keep = nullptr) {
  const double f = 0.8 - 0.6 * std::exp(-0.3 * std::max(layer_idx - 1, 0));
  const double lambda = std::min(0.9, std::max(0.1, f * named(l, "lambda_param").data[0]));
  attn::Tensor<double, 3> z;
  if (l.config().formulation == std::string_view("reference")) {
    const auto y1 = out_proj(l, "attention1", context(l, "attention1", "attention1", x, keep));
    const auto y2 = out_proj(l, "attention2", context(l, "attention2", "attention2", x, keep));
    z = y1 - lambda * y2;
  } else {
    const auto c1 = context(l, "attention1", "attention1", x, keep);
    const auto c2 = context(l, "attention2", "attention1", x, keep);
    attn::Tensor<double, 4> o = c1 - lambda * c2;
    const Index d = o.dimension(3);
    for (Index b = 0; b < o.dimension(0); ++b)
      for (Index h = 0; h < o.dimension(1); ++h)
        for (Index t = 0; t < o.dimension(2); ++t) {
          double ms = 0;
          for (Index c = 0; c < d; ++c) ms += o(b, h, t, c) * o(b, h, t, c) / double(d);
          for (Index c = 0; c < d; ++c) o(b, h, t, c) *= (1.0 - l.config().lambda_init) / std::sqrt(ms + 1e-5);
        }
    z = out_proj(l, "attention1", o);
  }
  return naive_dense(z, named(l, "proj/kernel"), &named(l, "proj/bias"));
}

/// Non-zero biases everywhere (the initializer gives zeros).
void randomize_biases(L& l, std::uint64_t seed) {
  for (auto& w : l.parameters())
    if (w.name.find("bias") != std::string::npos) {
      const auto r = random_tensor<double, 1>({w.size()}, seed++, 0.3);
      std::copy(r.data(), r.data() + r.size(), w.data.begin());
    }
}

}  // namespace

TEST_CASE("differential: weights have the reference's names, shapes and order", "[differential]") {
  const L l({.dim = 8, .num_heads = 2, .head_dim = 3, .lambda_init = 0.6});
  std::vector<std::string> names;
  for (const auto& w : l.parameters()) names.push_back(w.name);
  std::vector<std::string> want;
  for (std::string a : {"attention1/", "attention2/"})
    for (std::string n : {"query/kernel", "query/bias", "key/kernel", "key/bias", "value/kernel", "value/bias",
                          "attention_output/kernel", "attention_output/bias"})
      want.push_back(a + n);
  for (std::string n : {"proj/kernel", "proj/bias", "lambda_param"}) want.push_back(n);
  REQUIRE(names == want);
  REQUIRE(l.parameters().size() == 19);
  REQUIRE(named(l, "attention2/query/kernel").shape == Shape{8, 2, 3});
  REQUIRE(named(l, "attention1/query/bias").shape == Shape{2, 3});
  REQUIRE(named(l, "attention1/attention_output/kernel").shape == Shape{2, 3, 8});
  REQUIRE(named(l, "attention1/attention_output/bias").shape == Shape{8});
  REQUIRE(named(l, "proj/kernel").shape == Shape{8, 8});
  REQUIRE(named(l, "lambda_param").data == std::vector<double>{0.6});
  REQUIRE(named(l, "attention1/query/kernel").data != named(l, "attention2/query/kernel").data);
}

TEST_CASE("differential: validation messages and order", "[differential]") {
  const auto msg = [](attn::Json p) {
    const auto problems = attn::check_attention_config("differential", p);
    return problems.empty() ? std::string() : problems.front().message;
  };
  const attn::Json ok = {{"dim", 8}, {"num_heads", 2}, {"head_dim", 4}};
  REQUIRE(msg(ok).empty());
  auto p = ok;
  p["dim"] = 0;
  REQUIRE(msg(p) == "Parameter 'dim' must be positive, got 0");
  p = ok;
  p["num_heads"] = -1;
  REQUIRE(msg(p) == "Parameter 'num_heads' must be positive, got -1");
  p = ok;
  p["head_dim"] = 0;
  REQUIRE(msg(p) == "head_dim must be positive, got 0");
  p = ok;
  p["attention_dropout"] = 1.5;
  REQUIRE(msg(p) == "Parameter 'attention_dropout' must be between 0.0 and 1.0, got 1.5");
  p = ok;
  p["lambda_init"] = 1.5;
  REQUIRE(msg(p) == "lambda_init must be between 0 and 1, got 1.5");
  p["head_dim"] = 0;  // the class checks head_dim before lambda_init
  REQUIRE(msg(p) == "head_dim must be positive, got 0");
  p = ok;
  p["head_dims"] = 4;
  REQUIRE_THAT(msg(p), Catch::StartsWith("Unknown parameter 'head_dims' for 'differential'. Did you mean "
                                         "'head_dim'?"));
  p = ok;
  p["formulation"] = "papr";
  REQUIRE_THAT(msg(p), Catch::Contains("Did you mean 'paper'?"));
  p = ok;
  p["kernel_regularizer"] = "l2";  // training-only: accepted and kept
  REQUIRE(msg(p).empty());
  REQUIRE(attn::create_attention_layer<double>("differential", p).config().at("kernel_regularizer") == "l2");
  REQUIRE_THROWS_AS(L({.dim = 8, .num_heads = 2, .head_dim = 4, .lambda_init = -0.1}), attn::ConfigError);
}

TEST_CASE("differential: the lambda schedule (spec Appendix B)", "[differential]") {
  L l({.dim = 4, .num_heads = 1, .head_dim = 2});
  const std::vector<std::pair<int, double>> table{{0, 0.16},     {1, 0.16},     {2, 0.284407},  {3, 0.376570},
                                                  {5, 0.495427}, {10, 0.607741}, {100, 0.64}};
  for (const auto& [idx, want] : table) REQUIRE(l.lambda_at(idx) == Approx(want).margin(1e-6));
  REQUIRE(L::depth_factor(2) == Approx(0.355509).margin(1e-6));
  l.parameters().find("lambda_param")->data[0] = 0.0;  // the clip keeps the second branch: λ = 0.1
  REQUIRE(l.lambda_at(0) == 0.1);
  l.parameters().find("lambda_param")->data[0] = 5.0;
  REQUIRE(l.lambda_at(10) == 0.9);
}

TEST_CASE("differential: equals an independent loop implementation (both formulations)", "[differential]") {
  for (std::string_view form : {"reference", "paper"})
    for (int idx : {0, 3}) {
      INFO(form << " layer_idx " << idx);
      L l({.dim = 6, .num_heads = 2, .head_dim = 4, .lambda_init = 0.7, .layer_idx = idx, .formulation = form}, 7);
      randomize_biases(l, 31);
      const auto x = random_tensor<double, 3>({2, 5, 6}, 3);
      ATTN_REQUIRE_CLOSE(l.forward(x), oracle(l, x, idx), 1e-12, 1e-12);
      // the call argument overrides the config's depth
      ATTN_REQUIRE_CLOSE(l.forward(x, {}, 7), oracle(l, x, 7), 1e-12, 1e-12);
    }
  const L l({.dim = 4, .num_heads = 1, .head_dim = 2});
  REQUIRE_THROWS_AS(l.forward(random_tensor<double, 3>({1, 2, 4}, 1), {}, -1), attn::ConfigError);
}

TEST_CASE("differential: equal branches give proj((1 - lambda) Y1)", "[differential]") {
  L l({.dim = 6, .num_heads = 3, .head_dim = 2, .layer_idx = 4}, 5);
  randomize_biases(l, 3);
  auto& w = l.parameters();
  for (std::size_t i = 0; i < 8; ++i) w[i + 8].data = w[i].data;
  const auto x = random_tensor<double, 3>({2, 4, 6}, 8);
  const auto y1 = out_proj(l, "attention1", context(l, "attention1", "attention1", x, nullptr));
  const attn::Tensor<double, 3> scaled = (1.0 - l.lambda_at(4)) * y1;
  ATTN_REQUIRE_CLOSE(l.forward(x), naive_dense(scaled, named(l, "proj/kernel"), &named(l, "proj/bias")), 1e-12,
                     1e-12);
}

TEST_CASE("differential: masks", "[differential]") {
  L l({.dim = 8, .num_heads = 2, .head_dim = 4}, 4);
  randomize_biases(l, 9);
  const auto x = random_tensor<double, 3>({2, 6, 8}, 5);
  attn::Tensor<bool, 2> pad(2, 6);
  pad.setConstant(true);
  pad(1, 4) = pad(1, 5) = false;
  const auto y = l.forward(x, {.key_padding = attn::KeyPaddingMask(pad)});
  ATTN_REQUIRE_CLOSE(y, oracle(l, x, 0, [&](Index b, Index, Index, Index j) { return pad(b, j); }), 1e-12, 1e-12);
  // padding equals running the truncated sequence (rows that are real)
  attn::Tensor<double, 3> x1 = x.slice(std::array<Index, 3>{1, 0, 0}, std::array<Index, 3>{1, 4, 8});
  const auto y1 = l.forward(x1);
  for (Index t = 0; t < 4; ++t)
    for (Index f = 0; f < 8; ++f) REQUIRE(y(1, t, f) == Approx(y1(0, t, f)).margin(1e-12));
  // a fully masked query row: zero contexts, so the output is (b_o1 − λ b_o2)·W_proj + b_proj, finite
  attn::Tensor<bool, 3> m(2, 6, 6);
  m.setConstant(true);
  for (Index j = 0; j < 6; ++j) m(0, 2, j) = false;
  const auto ym = l.forward(x, {.attn_mask = attn::AttnMask(m)});
  REQUIRE(all_finite(ym.data(), ym.size()));
  const double lam = l.lambda_at(0);
  for (Index f = 0; f < 8; ++f) {
    double want = named(l, "proj/bias").data[static_cast<std::size_t>(f)];
    for (Index e = 0; e < 8; ++e)
      want += (named(l, "attention1/attention_output/bias").data[static_cast<std::size_t>(e)] -
               lam * named(l, "attention2/attention_output/bias").data[static_cast<std::size_t>(e)]) *
              named(l, "proj/kernel").data[static_cast<std::size_t>(e * 8 + f)];
    REQUIRE(ym(0, 2, f) == Approx(want).margin(1e-12));
  }
  // causal equals the explicit lower triangle
  attn::Tensor<bool, 2> tri(6, 6);
  for (Index i = 0; i < 6; ++i)
    for (Index j = 0; j < 6; ++j) tri(i, j) = j <= i;
  ATTN_REQUIRE_CLOSE(l.forward(x, {.causal = true}), l.forward(x, {.attn_mask = attn::AttnMask(tri)}), 1e-13, 1e-13);
  attn::Tensor<bool, 2> bad(2, 5);
  bad.setConstant(true);
  REQUIRE_THROWS_AS(l.forward(x, {.key_padding = attn::KeyPaddingMask(bad)}), attn::ShapeError);
}

TEST_CASE("differential: logits of magnitude 1e4 stay finite and match the oracle", "[differential]") {
  attn::DifferentialMultiHeadAttention<float> lf({.dim = 4, .num_heads = 1, .head_dim = 4}, 2);
  L ld({.dim = 4, .num_heads = 1, .head_dim = 4}, 2);
  const auto x = random_tensor<double, 3>({1, 5, 4}, 6, 100.0);  // logits ~ (100·‖W‖)² / 2 ~ 1e4
  const attn::Tensor<float, 3> xf = x.cast<float>();
  const auto yf = lf.forward(xf);
  REQUIRE(all_finite(yf.data(), yf.size()));
  const auto want = oracle(ld, x, 0);
  double mx = 0;
  for (Index i = 0; i < want.size(); ++i) mx = std::max(mx, std::abs(want.data()[i]));
  REQUIRE(mx > 10.0);
  ATTN_REQUIRE_CLOSE(yf, want, 1e-3, 1e-3 * mx);
}

TEST_CASE("differential: bad shapes give ShapeErrors naming the layer", "[differential]") {
  const L l({.dim = 8, .num_heads = 2, .head_dim = 4});
  REQUIRE_THROWS_WITH(l.forward(random_tensor<double, 3>({1, 3, 7}, 1)),
                      "differential: Input dimension 7 doesn't match expected dimension 8 (input shape [1, 3, 7])");
  REQUIRE_THROWS_WITH(l.output_shape({2, 8}),
                      "differential: Expected 3D input (batch_size, seq_len, dim), got shape: [2, 8]");
  REQUIRE(l.forward(attn::Tensor<double, 3>(2, 0, 8)).dimension(1) == 0);
}

TEST_CASE("differential: 1 and 2 threads give bit-identical results", "[differential][threads]") {
  for (std::string_view form : {"reference", "paper"}) {
    const L l({.dim = 16, .num_heads = 2, .head_dim = 8, .formulation = form}, 2);
    const auto x = random_tensor<double, 3>({3, 300, 16}, 8);
    const int saved = attn::num_threads();
    attn::set_num_threads(1);
    const auto a = l.forward(x);
    attn::set_num_threads(2);
    const auto b = l.forward(x);
    attn::set_num_threads(saved);
    REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
  }
}

// ---- golden parity (tools/golden/differential.py, tests/data/differential/) ----

TEMPLATE_TEST_CASE("golden: differential matches PyTorch ops (Keras MHA branches, both formulations)",
                   "[golden][differential]", float, double) {
  using T = TestType;
  for_each_golden<T>("differential", [](const Golden& g) {
    attn::DifferentialMultiHeadAttention<T> layer(g.config.get<attn::DifferentialMultiHeadAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto mask = mask_of(g, "input/mask");
    check<T>(g, "output", layer.forward(input<T, 3>(g, "x"), mask.masks<T>()));
    auto any = attn::create_attention_layer<T>("differential", g.config);
    attn::load_weights(any, g.file, "weights");
    attn::ForwardArgs<T> args;
    static_cast<attn::AttentionMasks<T>&>(args) = mask.masks<T>();
    args.inputs = {attn::AnyTensor<T>(input<T, 3>(g, "x"))};
    check<T>(g, "output", any.forward(args).output.template view<3>());
  });
}
