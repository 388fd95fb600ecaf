// hopfield: an independent loop implementation of the update steps (per batch item), the spec's
// identities (0 steps = plain attention, 1 step = attention from the state P0·K), batch independence of
// the early exit, masks, messages, shape errors, threads and golden data from PyTorch operators.
#include <attn/layers/hopfield.hpp>

#include <chrono>
#include <cmath>
#include <limits>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::HopfieldAttention<double>;

namespace {

const attn::Weight<double>* find(const L& l, const std::string& n) { return l.parameters().find(n); }

void layer_norm_heads(attn::Tensor<double, 4>& x, const L& l) {
  const auto* g = find(l, "pattern_norm/gamma");
  const auto* be = find(l, "pattern_norm/beta");
  const Index d = x.dimension(3);
  for (Index b = 0; b < x.dimension(0); ++b)
    for (Index h = 0; h < x.dimension(1); ++h)
      for (Index t = 0; t < x.dimension(2); ++t) {
        double mu = 0, var = 0;
        for (Index c = 0; c < d; ++c) mu += x(b, h, t, c) / double(d);
        for (Index c = 0; c < d; ++c) var += (x(b, h, t, c) - mu) * (x(b, h, t, c) - mu) / double(d);
        for (Index c = 0; c < d; ++c)
          x(b, h, t, c) = (x(b, h, t, c) - mu) / std::sqrt(var + 1e-5) * g->data[static_cast<std::size_t>(c)] +
                          be->data[static_cast<std::size_t>(c)];
      }
}

attn::Tensor<double, 4> item(const attn::Tensor<double, 4>& x, Index b) {
  return x.slice(std::array<Index, 4>{b, 0, 0, 0},
                 std::array<Index, 4>{1, x.dimension(1), x.dimension(2), x.dimension(3)});
}

/// The layer from the spec's loop, per batch item. Returns {output, last weights}; `steps` gets each
/// item's number of updates.
std::pair<attn::Tensor<double, 3>, attn::Tensor<double, 4>> oracle(const L& l, const attn::Tensor<double, 3>& xq,
                                                                   const attn::Tensor<double, 3>& xk,
                                                                   const attn::Tensor<double, 3>& xv,
                                                                   const Keep& keep = nullptr,
                                                                   std::vector<int>* steps = nullptr) {
  const auto& c = l.config();
  const Index H = c.num_heads, B = xq.dimension(0), T = xq.dimension(1), S = xk.dimension(1);
  auto q = split_heads(naive_dense(xq, *find(l, "query_dense/kernel"), find(l, "query_dense/bias")), H);
  auto k = split_heads(naive_dense(xk, *find(l, "key_dense/kernel"), find(l, "key_dense/bias")), H);
  const auto v = split_heads(naive_dense(xv, *find(l, "value_dense/kernel"), find(l, "value_dense/bias")), H);
  if (c.normalize_patterns) {
    layer_norm_heads(q, l);
    layer_norm_heads(k, l);
  }
  attn::Tensor<double, 4> ctx(B, H, T, c.dv()), weights(B, H, T, S);
  for (Index b = 0; b < B; ++b) {
    attn::Tensor<double, 4> xi = item(q, b);
    const auto kb = item(k, b), vb = item(v, b);
    const Keep kk = keep ? Keep([&](Index, Index h, Index i, Index j) { return keep(b, h, i, j); }) : Keep();
    attn::Tensor<double, 4> prev;
    int n = 0;
    for (;;) {
      auto [o, p] = naive_attention(xi, kb, vb, 1.0 / std::sqrt(double(c.key_dim)), kk);
      for (Index h = 0; h < H; ++h)
        for (Index i = 0; i < T; ++i) {
          for (Index e = 0; e < c.dv(); ++e) ctx(b, h, i, e) = o(0, h, i, e);
          for (Index j = 0; j < S; ++j) weights(b, h, i, j) = p(0, h, i, j);
        }
      if (c.update_steps_max == 0) break;
      if (n > 0) {
        const attn::Tensor<double, 0> sq = (p - prev).square().sum();
        if (std::sqrt(sq()) < c.update_steps_eps) break;
      }
      if (n >= c.update_steps_max) break;
      prev = p;
      ++n;
      for (Index h = 0; h < H; ++h)  // ξ = P K
        for (Index i = 0; i < T; ++i)
          for (Index e = 0; e < c.key_dim; ++e) {
            double s = 0;
            for (Index j = 0; j < S; ++j) s += p(0, h, i, j) * kb(0, h, j, e);
            xi(0, h, i, e) = s;
          }
    }
    if (steps) steps->push_back(n);
  }
  return {naive_dense(merge_heads(ctx), *find(l, "output_dense/kernel"), find(l, "output_dense/bias")), weights};
}

void randomize(L& l) {
  std::uint64_t seed = 40;
  for (auto& w : l.parameters())
    if (w.shape.size() == 1) {
      const auto r = random_tensor<double, 1>({w.size()}, seed++, 0.3);
      for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] += r.data()[i];
    }
}

}  // namespace

TEST_CASE("hopfield: weights have the reference's names, shapes and order", "[hopfield]") {
  const L l({.num_heads = 2, .key_dim = 4, .value_dim = 3, .input_dim = 6});
  std::vector<std::string> names;
  for (const auto& w : l.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"query_dense/kernel", "query_dense/bias", "key_dense/kernel",
                                            "key_dense/bias", "value_dense/kernel", "value_dense/bias",
                                            "output_dense/kernel", "output_dense/bias", "pattern_norm/gamma",
                                            "pattern_norm/beta"});
  REQUIRE(l.parameters()[0].shape == Shape{6, 8});
  REQUIRE(l.parameters()[4].shape == Shape{6, 6});
  REQUIRE(l.parameters()[6].shape == Shape{6, 6});
  REQUIRE(l.parameters()[8].shape == Shape{4});
  REQUIRE(l.parameters()[8].data == std::vector<double>(4, 1.0));
  const L small({.num_heads = 2, .key_dim = 4, .use_bias = false, .normalize_patterns = false});
  REQUIRE(small.parameters().size() == 4);
  REQUIRE(small.parameters()[0].shape == Shape{8, 8});  // input_dim defaults to num_heads * key_dim
}

TEST_CASE("hopfield: validation messages and order", "[hopfield]") {
  const auto msg = [](attn::Json p) {
    const auto problems = attn::check_attention_config("hopfield", p);
    return problems.empty() ? std::string() : problems.front().message;
  };
  const attn::Json ok = {{"num_heads", 2}, {"key_dim", 4}};
  REQUIRE(msg(ok).empty());
  auto p = ok;
  p["num_heads"] = 0;
  REQUIRE(msg(p) == "Parameter 'num_heads' must be positive, got 0");
  p = ok;
  p["key_dim"] = 0;
  REQUIRE(msg(p) == "key_dim must be positive, got 0");
  p = ok;
  p["dropout_rate"] = -0.5;
  REQUIRE(msg(p) == "Parameter 'dropout_rate' must be between 0.0 and 1.0, got -0.5");
  p = ok;
  p["update_steps_max"] = -1;
  REQUIRE(msg(p) == "update_steps_max must be non-negative, got -1");
  p = ok;
  p["update_steps_eps"] = -0.5;
  REQUIRE(msg(p) == "update_steps_eps must be positive, got -0.5");
  p = ok;
  p["update_step_max"] = 2;
  REQUIRE_THAT(msg(p), Catch::StartsWith("Unknown parameter 'update_step_max' for 'hopfield'. Did you mean "
                                         "'update_steps_max'?"));
  p = ok;
  p["activity_regularizer"] = nullptr;
  REQUIRE(msg(p).empty());
}

TEST_CASE("hopfield: equals an independent loop implementation of the update steps", "[hopfield]") {
  for (int steps : {0, 1, 3})
    for (bool norm : {true, false}) {
      INFO("steps " << steps << " normalize " << norm);
      L l({.num_heads = 2, .key_dim = 3, .value_dim = 4, .normalize_patterns = norm, .update_steps_max = steps,
           .update_steps_eps = 1e-9, .input_dim = 5},
          9);
      randomize(l);
      const auto x = random_tensor<double, 3>({2, 4, 5}, 1);
      const auto kv = random_tensor<double, 3>({2, 6, 5}, 2);
      const auto v = random_tensor<double, 3>({2, 6, 5}, 3);
      std::vector<int> n;
      const auto [y, w] = oracle(l, x, kv, v, nullptr, &n);
      const auto r = l.forward_with_weights(x, kv, v);
      ATTN_REQUIRE_CLOSE(r.output, y, 1e-12, 1e-12);
      ATTN_REQUIRE_CLOSE(r.weights, w, 1e-12, 1e-12);
      REQUIRE(n == std::vector<int>(2, steps));  // eps 1e-9: every step is taken
      ATTN_REQUIRE_CLOSE(l.forward(x, kv), oracle(l, x, kv, kv).first, 1e-12, 1e-12);
      ATTN_REQUIRE_CLOSE(l.forward(x), oracle(l, x, x, x).first, 1e-12, 1e-12);
    }
}

TEST_CASE("hopfield: 0 steps is plain attention, 1 step attends from the state P0·K", "[hopfield]") {
  L l0({.num_heads = 2, .key_dim = 3, .normalize_patterns = false}, 4);
  randomize(l0);
  const auto x = random_tensor<double, 3>({2, 5, 6}, 7);
  const auto q = split_heads(naive_dense(x, l0.parameters()[0], &l0.parameters()[1]), 2);
  const auto k = split_heads(naive_dense(x, l0.parameters()[2], &l0.parameters()[3]), 2);
  const auto v = split_heads(naive_dense(x, l0.parameters()[4], &l0.parameters()[5]), 2);
  const double scale = 1.0 / std::sqrt(3.0);
  const auto [o0, p0] = naive_attention(q, k, v, scale);
  const auto plain = naive_dense(merge_heads(o0), l0.parameters()[6], &l0.parameters()[7]);
  ATTN_REQUIRE_CLOSE(l0.forward(x), plain, 1e-12, 1e-12);
  // one step: the state becomes P0·K and the output is attention from it
  L l1({.num_heads = 2, .key_dim = 3, .normalize_patterns = false, .update_steps_max = 1, .update_steps_eps = 1e-12});
  l1.parameters() = l0.parameters();
  attn::Tensor<double, 4> xi(2, 2, 5, 3);
  xi.setZero();
  for (Index b = 0; b < 2; ++b)
    for (Index h = 0; h < 2; ++h)
      for (Index i = 0; i < 5; ++i)
        for (Index e = 0; e < 3; ++e)
          for (Index j = 0; j < 5; ++j) xi(b, h, i, e) += p0(b, h, i, j) * k(b, h, j, e);
  const auto o1 = naive_attention(xi, k, v, scale).first;
  ATTN_REQUIRE_CLOSE(l1.forward(x), naive_dense(merge_heads(o1), l0.parameters()[6], &l0.parameters()[7]), 1e-12,
                     1e-12);
}

TEST_CASE("hopfield: the early exit is per batch item (adding items changes nothing)", "[hopfield]") {
  L l({.num_heads = 2, .key_dim = 4, .update_steps_max = 6, .update_steps_eps = 0.05, .input_dim = 8}, 3);
  const auto x = random_tensor<double, 3>({4, 5, 8}, 12, 2.0);
  std::vector<int> steps;
  const auto want = oracle(l, x, x, x, nullptr, &steps).first;
  ATTN_REQUIRE_CLOSE(l.forward(x), want, 1e-12, 1e-12);
  // the items do not all stop after the same number of steps, so a batch-wide rule would differ
  REQUIRE(std::adjacent_find(steps.begin(), steps.end(), std::not_equal_to<>()) != steps.end());
  for (Index b = 0; b < 4; ++b) {
    attn::Tensor<double, 3> one = x.slice(std::array<Index, 3>{b, 0, 0}, std::array<Index, 3>{1, 5, 8});
    const auto y1 = l.forward(one);
    for (Index t = 0; t < 5; ++t)
      for (Index f = 0; f < 8; ++f) REQUIRE(y1(0, t, f) == Approx(want(b, t, f)).margin(1e-12));
  }
}

TEST_CASE("hopfield: masks", "[hopfield]") {
  L l({.num_heads = 2, .key_dim = 3, .update_steps_max = 2, .update_steps_eps = 1e-9, .input_dim = 4}, 6);
  randomize(l);
  const auto q = random_tensor<double, 3>({2, 3, 4}, 1);
  const auto kv = random_tensor<double, 3>({2, 6, 4}, 2);
  attn::Tensor<bool, 2> pad(2, 6);
  pad.setConstant(true);
  pad(0, 5) = pad(0, 4) = false;
  const auto r = l.forward_with_weights(q, kv, kv, {.key_padding = attn::KeyPaddingMask(pad)});
  const auto [y, w] = oracle(l, q, kv, kv, [&](Index b, Index, Index, Index j) { return pad(b, j); });
  ATTN_REQUIRE_CLOSE(r.output, y, 1e-12, 1e-12);
  ATTN_REQUIRE_CLOSE(r.weights, w, 1e-12, 1e-12);
  for (Index h = 0; h < 2; ++h)
    for (Index i = 0; i < 3; ++i) {
      REQUIRE(r.weights(0, h, i, 5) == 0.0);
      double s = 0;
      for (Index j = 0; j < 6; ++j) s += r.weights(1, h, i, j);
      REQUIRE(s == Approx(1.0).epsilon(1e-12));
    }
  // a fully masked query row: zero weights at every step, output = the output bias
  attn::Tensor<bool, 3> m(2, 3, 6);
  m.setConstant(true);
  for (Index j = 0; j < 6; ++j) m(1, 2, j) = false;
  const auto rm = l.forward_with_weights(q, kv, kv, {.attn_mask = attn::AttnMask(m)});
  REQUIRE(all_finite(rm.output.data(), rm.output.size()));
  for (Index f = 0; f < 4; ++f) REQUIRE(rm.output(1, 2, f) == Approx(find(l, "output_dense/bias")->data[static_cast<std::size_t>(f)]).margin(1e-14));
  for (Index j = 0; j < 6; ++j) REQUIRE(rm.weights(1, 0, 2, j) == 0.0);
  attn::Tensor<bool, 2> bad(2, 3);
  bad.setConstant(true);
  REQUIRE_THROWS_AS(l.forward(q, kv, kv, {.key_padding = attn::KeyPaddingMask(bad)}), attn::ShapeError);
}

TEST_CASE("hopfield: logits of magnitude 1e4 stay finite", "[hopfield]") {
  attn::HopfieldAttention<float> lf({.num_heads = 1, .key_dim = 4, .normalize_patterns = false, .update_steps_max = 2}, 2);
  L ld({.num_heads = 1, .key_dim = 4, .normalize_patterns = false, .update_steps_max = 2}, 2);
  const auto x = random_tensor<double, 3>({1, 5, 4}, 6, 150.0);
  const attn::Tensor<float, 3> xf = x.cast<float>();
  const auto yf = lf.forward(xf);
  REQUIRE(all_finite(yf.data(), yf.size()));
  const auto y = oracle(ld, x, x, x).first;
  ATTN_REQUIRE_CLOSE(yf, y, 1e-3, 1e-1);
}

TEST_CASE("hopfield: a NaN input ends the update steps at once (the change is NaN)", "[hopfield]") {
  // update_steps_max 2^31 - 1: without the stop the loop runs every step (about 70 minutes here)
  attn::HopfieldAttention<float> l({.num_heads = 2, .key_dim = 4, .update_steps_max = 2147483647}, 2);
  attn::Tensor<float, 3> x = random_tensor<double, 3>({1, 5, 8}, 6).cast<float>();
  x(0, 2, 3) = std::numeric_limits<float>::quiet_NaN();
  const auto start = std::chrono::steady_clock::now();
  const auto y = l.forward(x);
  REQUIRE(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < 10.0);
  REQUIRE(std::isnan(y(0, 0, 0)));
}

TEST_CASE("hopfield: bad shapes give ShapeErrors naming the layer", "[hopfield]") {
  const L l({.num_heads = 2, .key_dim = 2});
  REQUIRE_THROWS_WITH(l.forward(random_tensor<double, 3>({1, 3, 5}, 1)),
                      "hopfield: query must have shape [*, *, 4] ([batch, query len, input_dim]), got [1, 3, 5]");
  const auto q = random_tensor<double, 3>({2, 3, 4}, 1);
  REQUIRE_THROWS_WITH(l.forward(q, random_tensor<double, 3>({1, 3, 4}, 1)),
                      "hopfield: key must have shape [2, *, 4] ([batch, key len, input_dim]), got [1, 3, 4]");
  REQUIRE_THROWS_WITH(l.forward(q, random_tensor<double, 3>({2, 3, 4}, 1), random_tensor<double, 3>({2, 2, 4}, 1)),
                      "hopfield: value must have shape [2, 3, 4] ([batch, key len, input_dim]), got [2, 2, 4]");
  REQUIRE(l.forward(attn::Tensor<double, 3>(2, 0, 4)).dimension(1) == 0);
}

TEST_CASE("hopfield: 1 and 2 threads give bit-identical results", "[hopfield][threads]") {
  for (int steps : {0, 2}) {
    const L l({.num_heads = 2, .key_dim = 8, .update_steps_max = steps}, 2);
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

// ---- golden parity (tools/golden/hopfield.py, tests/data/hopfield/) ----

TEMPLATE_TEST_CASE("golden: hopfield matches PyTorch ops (per-item update steps)", "[golden][hopfield]", float,
                   double) {
  using T = TestType;
  for_each_golden<T>("hopfield", [](const Golden& g) {
    attn::HopfieldAttention<T> layer(g.config.get<attn::HopfieldAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto mask = mask_of(g, "input/mask");
    if (g.file.contains("input/x")) {
      const auto r = layer.forward_with_weights(input<T, 3>(g, "x"), mask.masks<T>());
      check<T>(g, "output", r.output);
      check<T>(g, "weights", r.weights);
      auto any = attn::create_attention_layer<T>("hopfield", g.config);
      attn::load_weights(any, g.file, "weights");
      check_through_door<T>(g, any, {attn::AnyTensor<T>(input<T, 3>(g, "x"))}, mask);
    } else {
      const auto r = layer.forward_with_weights(input<T, 3>(g, "query"), input<T, 3>(g, "key"),
                                                input<T, 3>(g, "value"), mask.masks<T>());
      check<T>(g, "output", r.output);
      check<T>(g, "weights", r.weights);
    }
  });
}
