// adaptive_multi_head: the spec's ATS reference numbers through the blockwise temperature pass, an
// independent loop implementation (rank-3 Keras kernels, replaced masked logits, ATS per row), the
// spec's identity (temperatures pinned to 1 = plain multi-head attention), fully masked rows, large
// logits, the reference's messages, threads, golden data from PyTorch operators.
#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::AdaptiveMultiHeadAttention<double>;
using attn::detail::AtsSchedule;

namespace {

/// ATS of one row of logits, in double from the formula (masked entries: replaced by -1e9).
std::vector<double> ats_row(std::vector<double> z, const AtsSchedule& s, double* tau_out = nullptr) {
  double mx = -1e300;
  for (double x : z) mx = std::max(mx, x);
  double sum = 0;
  for (double x : z) sum += std::exp(x - mx);
  double h = 0;
  for (double x : z) {
    const double p = std::clamp(std::exp(x - mx) / sum, s.eps, 1 - s.eps);
    h -= p * std::log(p);
  }
  double poly = 0;
  for (double c : s.coeffs) poly = poly * h + c;
  const double tau = h > s.entropy_threshold ? s.min_temp + (s.max_temp - s.min_temp) * std::clamp(poly, 0.0, 1.0) : 1.0;
  if (tau_out) *tau_out = tau;
  for (auto& x : z) x /= std::max(tau, s.eps);
  mx = -1e300;
  for (double x : z) mx = std::max(mx, x);
  sum = 0;
  for (auto& x : z) sum += (x = std::exp(x - mx));
  for (auto& x : z) x /= sum;
  return z;
}

/// x [B, L, in] · kernel [in, H, d] (+ bias [H, d]) -> [B, H, L, d].
attn::Tensor<double, 4> project(const attn::Tensor<double, 3>& x, const attn::Weight<double>& k,
                                const attn::Weight<double>* b) {
  const Index B = x.dimension(0), Lx = x.dimension(1), in = k.shape[0], H = k.shape[1], d = k.shape[2];
  attn::Tensor<double, 4> y(B, H, Lx, d);
  for (Index i = 0; i < B; ++i)
    for (Index h = 0; h < H; ++h)
      for (Index t = 0; t < Lx; ++t)
        for (Index c = 0; c < d; ++c) {
          double s = b ? b->data[static_cast<std::size_t>(h * d + c)] : 0.0;
          for (Index f = 0; f < in; ++f) s += x(i, t, f) * k.data[static_cast<std::size_t>((f * H + h) * d + c)];
          y(i, h, t, c) = s;
        }
  return y;
}

struct Oracle {
  attn::Tensor<double, 3> y;
  attn::Tensor<double, 4> p;
};

/// The reference's forward with loops; keep(b, t, s) == false replaces the logit by -1e9 (rows that keep
/// nothing give zero weights, the library's contract).
Oracle oracle(const L& l, const attn::Tensor<double, 3>& xq, const attn::Tensor<double, 3>& xv,
              const attn::Tensor<double, 3>& xk, const std::function<bool(Index, Index, Index)>& keep = nullptr) {
  const auto& c = l.config();
  const auto& w = l.parameters();
  const bool ub = c.use_bias;
  const std::size_t st = ub ? 2 : 1;
  const auto bias = [&](std::size_t i) { return ub ? &w[i + 1] : nullptr; };
  const auto q = project(xq, w[0], bias(0)), k = project(xk, w[st], bias(st)), v = project(xv, w[2 * st], bias(2 * st));
  const Index B = xq.dimension(0), T = xq.dimension(1), S = xv.dimension(1), H = c.num_heads, dk = c.dk(),
              dv = c.dv(), E = c.d_out();
  const auto sched = l.schedule();
  Oracle o{attn::Tensor<double, 3>(B, T, E), attn::Tensor<double, 4>(B, H, T, S)};
  o.p.setZero();
  attn::Tensor<double, 4> ctx(B, T, H, dv);
  ctx.setZero();
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index t = 0; t < T; ++t) {
        std::vector<double> z(static_cast<std::size_t>(S));
        bool any = false;
        for (Index s = 0; s < S; ++s) {
          double a = 0;
          for (Index e = 0; e < dk; ++e) a += q(b, h, t, e) * k(b, h, s, e);
          const bool kept = !keep || keep(b, t, s);
          any = any || kept;
          z[static_cast<std::size_t>(s)] = kept ? a / std::sqrt(double(dk)) : -1e9;
        }
        if (!any) continue;
        const auto p = ats_row(z, sched);
        for (Index s = 0; s < S; ++s) {
          o.p(b, h, t, s) = p[static_cast<std::size_t>(s)];
          for (Index e = 0; e < dv; ++e) ctx(b, t, h, e) += p[static_cast<std::size_t>(s)] * v(b, h, s, e);
        }
      }
  const auto& wo = w[3 * st];
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t)
      for (Index e = 0; e < E; ++e) {
        double s = ub ? w[3 * st + 1].data[static_cast<std::size_t>(e)] : 0.0;
        for (Index h = 0; h < H; ++h)
          for (Index f = 0; f < dv; ++f) s += ctx(b, t, h, f) * wo.data[static_cast<std::size_t>((h * dv + f) * E + e)];
        o.y(b, t, e) = s;
      }
  return o;
}

void set_biases(L& l) {
  for (auto& w : l.parameters())
    if (w.name.ends_with("/bias"))
      for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.03 * double(i % 7) - 0.08;
}

std::string config_error(const Json& p) {
  try {
    attn::validate_attention_config("adaptive_multi_head", p);
  } catch (const attn::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST_CASE("adaptive_multi_head: the spec's ATS numbers through the blockwise temperature pass", "[adaptive_multi_head]") {
  // One head of width 1 with q = 1 and k = the logits: every row of logits of Appendix B.
  struct Row {
    std::vector<double> z;
    double tau;
    std::vector<double> out;
  };
  const std::vector<Row> rows{
      {{1, 2, 3, 4}, 1.0, {0.032059, 0.087144, 0.236883, 0.643914}},
      {{0, 0}, 0.473877, {0.5, 0.5}},
      {{1, 0}, 0.305195, {0.963617, 0.036383}},
      {{0.5, 0}, 0.421785, {0.765924, 0.234076}},
      {{2, 0, 0}, 0.426284, {0.981988, 0.009006, 0.009006}},
      {{3, 1, 0}, 0.240607, {0.999751, 0.000245, 0.000004}},
      {{5, 0, 0}, 1.0, {0.986703, 0.006648, 0.006648}},
      {std::vector<double>(8, 0.0), 1.0, std::vector<double>(8, 0.125)},
      {std::vector<double>(16, 0.0), 0.1, std::vector<double>(16, 0.0625)},  // H = ln 16: P(H) = -17.4
  };
  const AtsSchedule sched;
  for (const auto& r : rows) {
    const Index S = static_cast<Index>(r.z.size());
    const double one = 1.0;
    double tau = 0;
    attn::detail::ats_temperatures(attn::ops::heads_of<double>(&one, 1, 1, 1, 1, 1),
                                   attn::ops::heads_of<double>(r.z.data(), 1, S, 1, 1, 1), 1.0,
                                   attn::ops::AttentionMask<double>{}, sched, &tau, 64, 3);  // key blocks of 3
    REQUIRE(tau == Approx(r.tau).margin(1e-6));
    double tau2 = 0;
    const auto p = ats_row(r.z, sched, &tau2);
    REQUIRE(tau2 == Approx(tau).epsilon(1e-12));
    for (std::size_t j = 0; j < p.size(); ++j) REQUIRE(p[j] == Approx(r.out[j]).margin(1e-6));
  }
  REQUIRE(sched.polynomial(0.5) == Approx(0.131187).margin(1e-6));
  REQUIRE(sched.temperature(0.5) == 1.0);  // strict ">"
  REQUIRE(sched.temperature(0.5 + 1e-9) == Approx(0.218069).margin(1e-6));
  REQUIRE(sched.polynomial(2.5) == Approx(-6.342313).margin(1e-6));
  // a masked key counts as p = eps in H: [0, 0] with a third masked key differs from [0, 0] by that term
  const std::vector<double> z{0, 0, 5};
  const bool keep[3] = {true, true, false};
  attn::ops::AttentionMask<double> m;
  m.keep = keep;
  const double one = 1.0;
  double tau = 0;
  attn::detail::ats_temperatures(attn::ops::heads_of<double>(&one, 1, 1, 1, 1, 1),
                                 attn::ops::heads_of<double>(z.data(), 1, 3, 1, 1, 1), 1.0, m, sched, &tau);
  double want = 0;
  ats_row({0, 0, -1e9}, sched, &want);
  REQUIRE(tau == Approx(want).epsilon(1e-12));
  REQUIRE(tau != Approx(0.473877).epsilon(1e-9));
}

TEST_CASE("adaptive_multi_head: weights, names and Keras rank-3 layouts", "[adaptive_multi_head]") {
  const L l({.num_heads = 2, .key_dim = 3, .value_dim = 4, .output_shape = attn::IntOrIntList{5},
             .query_input_dim = 6, .value_input_dim = 7, .key_input_dim = 8});
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  for (const auto& w : l.parameters()) {
    names.push_back(w.name);
    shapes.push_back(w.shape);
  }
  REQUIRE(names == std::vector<std::string>{"query/kernel", "query/bias", "key/kernel", "key/bias", "value/kernel",
                                            "value/bias", "attention_output/kernel", "attention_output/bias"});
  REQUIRE(shapes == std::vector<Shape>{{6, 2, 3}, {2, 3}, {8, 2, 3}, {2, 3}, {7, 2, 4}, {2, 4}, {2, 4, 5}, {5}});
  REQUIRE(L({.num_heads = 2, .key_dim = 3, .use_bias = false}).parameters().size() == 4);
  REQUIRE(L({.num_heads = 2, .key_dim = 3, .value_dim = 0}).parameters()[4].shape == Shape{6, 2, 3});  // 0: key_dim
}

TEST_CASE("adaptive_multi_head: validation messages (the reference's) at construction", "[adaptive_multi_head]") {
  const Json base{{"num_heads", 2}, {"key_dim", 4}};
  const auto with = [&](const char* k, const Json& v) {
    Json j = base;
    j[k] = v;
    return config_error(j);
  };
  REQUIRE(config_error(base) == "(no error)");
  REQUIRE(with("num_heads", 0) == "Parameter 'num_heads' must be positive, got 0");
  REQUIRE(with("dropout", 1.5) == "Parameter 'dropout' must be between 0.0 and 1.0, got 1.5");
  REQUIRE(with("key_dim", 0) == "key_dim must be positive, got 0");
  REQUIRE(with("min_temp", 0.0) == "min_temp must be positive, got 0.0");
  REQUIRE(with("max_temp", -1.0) == "max_temp must be positive, got -1.0");
  REQUIRE(with("min_temp", 2.0) == "min_temp (2.0) must be <= max_temp (1.0)");
  REQUIRE(with("entropy_threshold", -0.5) == "entropy_threshold must be non-negative, got -0.5");
  Json flash = base;
  flash["flash_attention"] = true;
  flash["dropout"] = 0.1;
  REQUIRE(config_error(flash) ==
          "Dropout is not supported when flash attention is enabled. Please set dropout to 0.0 to use flash attention.");
  REQUIRE_THAT(with("min_tmp", 0.2), Catch::StartsWith("Unknown parameter 'min_tmp' for 'adaptive_multi_head'. Did "
                                                       "you mean 'min_temp'?"));
  REQUIRE_THAT(with("attention_axes", Json::array({1, 2})), Catch::Contains("only the sequence axis"));
  REQUIRE_THAT(with("output_shape", Json::array({2, 3})), Catch::Contains("only one output axis"));
  REQUIRE_THAT(with("output_shape", "x"), Catch::Contains("must be an integer, a list of integers or null, got string"));
  // every registry parameter of the reference is accepted; an int and a list mean the same output_shape
  const Json all{{"num_heads", 2},          {"key_dim", 4},        {"value_dim", nullptr},
                 {"dropout", 0.0},          {"use_bias", true},    {"output_shape", 8},
                 {"attention_axes", 1},     {"flash_attention", nullptr},
                 {"kernel_initializer", "glorot_uniform"},        {"bias_initializer", "zeros"},
                 {"kernel_regularizer", nullptr}, {"bias_regularizer", nullptr},
                 {"activity_regularizer", nullptr}, {"kernel_constraint", nullptr},
                 {"bias_constraint", nullptr}, {"seed", 3},   {"min_temp", 0.1},
                 {"max_temp", 1.0},         {"entropy_threshold", 0.5}, {"polynomial_coeffs", nullptr}};
  REQUIRE(config_error(all) == "(no error)");
  auto a = attn::create_attention_layer<double>("adaptive_multi_head", all);
  Json listed = all;
  listed["output_shape"] = Json::array({8});
  listed["attention_axes"] = Json::array({-2});
  auto b = attn::create_attention_layer<double>("adaptive_multi_head", listed);
  REQUIRE(a.output_shape(std::vector<Shape>{{2, 3, 8}, {2, 4, 8}}) == Shape{2, 3, 8});
  REQUIRE(b.parameters()[6].shape == Shape{2, 4, 8});
  Json zero = base;
  zero["output_shape"] = 0;  // falsy: unset
  REQUIRE(attn::create_attention_layer<double>("adaptive_multi_head", zero).parameters()[6].shape == Shape{2, 4, 8});
  // flash attention refuses scores at the call
  const L fl({.num_heads = 1, .key_dim = 2, .flash_attention = true});
  const auto x = random_tensor<double, 3>({1, 3, 2}, 1);
  REQUIRE(fl.forward(x, x).dimension(1) == 3);
  REQUIRE_THROWS_MATCHES(fl.forward_with_weights(x, x), attn::ConfigError,
                         Catch::Matchers::Message("adaptive_multi_head: Returning attention scores is not supported "
                                                  "when flash attention is enabled. Please disable flash attention "
                                                  "to access attention scores."));
}

TEST_CASE("adaptive_multi_head: equals an independent loop implementation, with masks", "[adaptive_multi_head]") {
  // 300 keys: several key blocks in both passes; temperatures spread over every branch of the schedule
  L l({.num_heads = 2, .key_dim = 3, .value_dim = 4, .output_shape = attn::IntOrIntList{5}, .query_input_dim = 6,
       .value_input_dim = 7, .key_input_dim = 8},
      4);
  set_biases(l);
  const auto xq = random_tensor<double, 3>({2, 9, 6}, 1, 2.0);
  const auto xv = random_tensor<double, 3>({2, 300, 7}, 2, 2.0);
  const auto xk = random_tensor<double, 3>({2, 300, 8}, 3, 2.0);
  const auto want = oracle(l, xq, xv, xk);
  const auto got = l.forward_with_weights(xq, xv, xk);
  ATTN_REQUIRE_CLOSE(got.output, want.y, 1e-11, 1e-12);
  ATTN_REQUIRE_CLOSE(got.weights, want.p, 1e-11, 1e-13);
  // key padding, an attention mask and causal (T = S) with a short self-attention
  L s({.num_heads = 2, .key_dim = 4, .use_bias = true}, 9);
  set_biases(s);
  const auto x = random_tensor<double, 3>({2, 7, 8}, 5, 3.0);
  attn::Tensor<bool, 2> pad(2, 7);
  pad.setConstant(true);
  pad(0, 1) = pad(0, 4) = pad(1, 6) = false;
  attn::AttentionMasks<double> m;
  m.key_padding = attn::KeyPaddingMask(pad);
  ATTN_REQUIRE_CLOSE(s.forward(x, x, m), oracle(s, x, x, x, [&](Index b, Index, Index j) { return pad(b, j); }).y,
                     1e-11, 1e-12);
  attn::AttentionMasks<double> c;
  c.causal = true;
  ATTN_REQUIRE_CLOSE(s.forward(x, x, c), oracle(s, x, x, x, [](Index, Index i, Index j) { return j <= i; }).y, 1e-11,
                     1e-12);
  attn::Tensor<bool, 3> am(2, 7, 7);
  for (Index b = 0; b < 2; ++b)
    for (Index i = 0; i < 7; ++i)
      for (Index j = 0; j < 7; ++j) am(b, i, j) = (i + 2 * j + b) % 3 != 0;
  attn::AttentionMasks<double> a;
  a.attn_mask = attn::AttnMask(am);
  ATTN_REQUIRE_CLOSE(s.forward(x, x, a), oracle(s, x, x, x, [&](Index b, Index i, Index j) { return am(b, i, j); }).y,
                     1e-11, 1e-12);
  // an additive bias is divided by the row's temperature as the logits are: Q·Kᵀ/√d + bias with bias =
  // a constant row shift changes nothing (softmax and entropy are shift-invariant)
  attn::Tensor<double, 2> shift(7, 7);
  for (Index i = 0; i < 7; ++i)
    for (Index j = 0; j < 7; ++j) shift(i, j) = 0.7 * double(i);
  attn::AttentionMasks<double> bm;
  bm.bias = shift;
  ATTN_REQUIRE_CLOSE(s.forward(x, x, bm), s.forward(x, x), 1e-12, 1e-13);
  // that [B, H, T, S] buffer is checked against the allocation limit
  const std::size_t limit = attn::allocation_limit();
  attn::set_allocation_limit(64);
  REQUIRE_THROWS_WITH(s.forward(x, x, bm), Catch::Contains("the additive bias divided by the temperatures"));
  attn::set_allocation_limit(limit);
}

TEST_CASE("adaptive_multi_head: temperatures pinned to 1 give plain multi-head attention", "[adaptive_multi_head]") {
  L l({.num_heads = 2, .key_dim = 4, .min_temp = 1.0, .max_temp = 1.0}, 3);
  set_biases(l);
  L thr({.num_heads = 2, .key_dim = 4, .entropy_threshold = 1e6}, 3);
  set_biases(thr);
  const auto x = random_tensor<double, 3>({2, 6, 8}, 4, 2.0);
  const auto& w = l.parameters();
  const auto ctx = naive_attention(project(x, w[0], &w[1]), project(x, w[2], &w[3]), project(x, w[4], &w[5]), 0.5);
  attn::Weight<double> wo{"o", {8, 8}, w[6].data};
  const auto want = naive_dense(merge_heads(ctx.first), wo, &w[7]);
  ATTN_REQUIRE_CLOSE(l.forward(x, x), want, 1e-12, 1e-13);
  ATTN_REQUIRE_CLOSE(thr.forward(x, x), want, 1e-12, 1e-13);
}

TEST_CASE("adaptive_multi_head: fully masked rows give zeros, 1e4 logits stay finite", "[adaptive_multi_head]") {
  L l({.num_heads = 1, .key_dim = 4}, 2);
  set_biases(l);
  const auto x = random_tensor<double, 3>({1, 4, 4}, 6);
  attn::Tensor<bool, 2> none(4, 4);
  none.setConstant(true);
  for (Index j = 0; j < 4; ++j) none(2, j) = false;  // query 2 sees nothing
  attn::AttentionMasks<double> m;
  m.attn_mask = attn::AttnMask(none);
  const auto r = l.forward_with_weights(x, x, m);
  for (Index j = 0; j < 4; ++j) REQUIRE(r.weights(0, 0, 2, j) == 0.0);
  for (Index e = 0; e < 4; ++e) REQUIRE(r.output(0, 2, e) == l.parameters()[7].data[static_cast<std::size_t>(e)]);
  ATTN_REQUIRE_CLOSE(r.output, oracle(l, x, x, x, [&](Index, Index i, Index j) { return none(i, j); }).y, 1e-12, 1e-13);
  // logits of magnitude 1e4
  L big({.num_heads = 1, .key_dim = 4, .use_bias = false}, 2);
  for (auto& w : big.parameters())
    for (auto& v : w.data) v *= 40.0;
  const auto xb = random_tensor<double, 3>({1, 6, 4}, 1, 10.0);
  const auto yb = big.forward(xb, xb);
  REQUIRE(all_finite(yb.data(), yb.size()));
  ATTN_REQUIRE_CLOSE(yb, oracle(big, xb, xb, xb).y, 1e-9, 1e-9);
  attn::AdaptiveMultiHeadAttention<float> bf({.num_heads = 1, .key_dim = 4, .use_bias = false});
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < big.parameters()[i].data.size(); ++j)
      bf.parameters()[i].data[j] = static_cast<float>(big.parameters()[i].data[j]);
  const auto xf = random_tensor<float, 3>({1, 6, 4}, 1, 10.0);
  const auto yf = bf.forward(xf, xf);
  REQUIRE(all_finite(yf.data(), yf.size()));
}

TEST_CASE("adaptive_multi_head: bad shapes give ShapeErrors naming the layer, empty inputs", "[adaptive_multi_head]") {
  const L l({.num_heads = 2, .key_dim = 4});
  const auto x = random_tensor<double, 3>({2, 3, 8}, 1);
  REQUIRE_THROWS_WITH(l.forward(random_tensor<double, 3>({2, 3, 7}, 1), x),
                      "adaptive_multi_head: query must have shape [*, *, 8] ([batch, T, query_input_dim]), got [2, 3, 7]");
  REQUIRE_THROWS_AS(l.forward(x, random_tensor<double, 3>({3, 3, 8}, 1)), attn::ShapeError);
  REQUIRE_THROWS_WITH(l.forward(x, x, random_tensor<double, 3>({2, 4, 8}, 1)),
                      "adaptive_multi_head: All dimensions of `value` and `key`, except the last one, must be equal. "
                      "Received: value_shape=[2, 3, 8] and key_shape=[2, 4, 8]");
  REQUIRE_THROWS_AS(l.output_shape({2, 3}, {2, 3, 8}), attn::ShapeError);
  REQUIRE(l.forward(attn::Tensor<double, 3>(0, 3, 8), attn::Tensor<double, 3>(0, 2, 8)).dimension(0) == 0);
  REQUIRE(l.forward(attn::Tensor<double, 3>(2, 0, 8), x).dimension(1) == 0);
}

TEST_CASE("adaptive_multi_head: 1 and 2 threads give bit-identical results", "[adaptive_multi_head][threads]") {
  const L l({.num_heads = 4, .key_dim = 4}, 2);
  const auto x = random_tensor<double, 3>({3, 300, 16}, 8, 2.0);
  const int saved = attn::num_threads();
  attn::set_num_threads(1);
  const auto a = l.forward_with_weights(x, x);
  attn::set_num_threads(2);
  const auto b = l.forward_with_weights(x, x);
  attn::set_num_threads(saved);
  REQUIRE(std::equal(a.output.data(), a.output.data() + a.output.size(), b.output.data()));
  REQUIRE(std::equal(a.weights.data(), a.weights.data() + a.weights.size(), b.weights.data()));
}

// ---- golden parity (tools/golden/adaptive_multi_head.py, tests/data/adaptive_multi_head/) ----

TEMPLATE_TEST_CASE("golden: adaptive_multi_head matches PyTorch ops", "[golden][adaptive_multi_head]", float, double) {
  using T = TestType;
  for_each_golden<T>("adaptive_multi_head", [](const Golden& g) {
    attn::AdaptiveMultiHeadAttention<T> layer(g.config.get<attn::AdaptiveMultiHeadAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto mask = mask_of(g, "input/mask");
    const auto q = input<T, 3>(g, "query"), v = input<T, 3>(g, "value");
    if (g.file.contains("input/key")) {
      const auto r = layer.forward_with_weights(q, v, input<T, 3>(g, "key"), mask.masks<T>());
      check<T>(g, "output", r.output);
      check<T>(g, "weights", r.weights);
      return;
    }
    const auto r = layer.forward_with_weights(q, v, mask.masks<T>());
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("adaptive_multi_head", g.config);
    attn::load_weights(any, g.file, "weights");
    check_through_door<T>(g, any, {attn::AnyTensor<T>(q), attn::AnyTensor<T>(v)}, mask);
  });
}
