// capsule_routing: the spec's test hints (squash numbers, R = 1 routing is the squashed mean, the
// positional term's row 0 is the raw logit row and row 1 with R = 1 the squashed mean of rows 0 and 1,
// both switches off = plain multi-head attention), the reference's messages, weights, fully masked rows,
// large logits, threads, golden data from PyTorch operators.
#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::CapsuleRoutingSelfAttention<double>;

namespace {

std::vector<double> squashed(std::vector<double> s, double eps) {
  double n2 = 0;
  for (double x : s) n2 += x * x;
  for (auto& x : s) x *= n2 / (1 + n2) / std::sqrt(n2 + eps);
  return s;
}

/// Raw logits A [h, T, T] of item b, with loops.
std::vector<double> raw_logits(const L& l, const attn::Tensor<double, 3>& x, Index b) {
  const auto& c = l.config();
  const auto& w = l.parameters();
  const std::size_t st = c.use_bias ? 2 : 1;
  const auto q = split_heads(naive_dense(x, w[0], c.use_bias ? &w[1] : nullptr), c.num_heads);
  const auto k = split_heads(naive_dense(x, w[st], c.use_bias ? &w[st + 1] : nullptr), c.num_heads);
  const Index H = c.num_heads, T = x.dimension(1), d = c.dk();
  std::vector<double> a(static_cast<std::size_t>(H * T * T));
  for (Index h = 0; h < H; ++h)
    for (Index i = 0; i < T; ++i)
      for (Index j = 0; j < T; ++j) {
        double s = 0;
        for (Index e = 0; e < d; ++e) s += q(b, h, i, e) * k(b, h, j, e);
        a[static_cast<std::size_t>((h * T + i) * T + j)] = s / std::sqrt(double(d));
      }
  return a;
}

std::string config_error(const Json& p) {
  try {
    attn::validate_attention_config("capsule_routing", p);
  } catch (const attn::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

void set_biases(L& l) {
  for (auto& w : l.parameters())
    if (w.name.ends_with("bias"))
      for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.04 * double(i % 5) - 0.07;
}
}  // namespace

TEST_CASE("capsule_routing: squash and routing numbers of the spec", "[capsule_routing]") {
  double s[2] = {3, 4};
  attn::detail::capsule_squash(s, 2, 1e-8);
  REQUIRE(s[0] == Approx(0.576923).margin(1e-6));
  REQUIRE(s[1] == Approx(0.769231).margin(1e-6));
  // R = 1: the squashed mean of the inputs (uniform coupling)
  const std::vector<double> u{1, -2, 0.5, 3, 0, -1, 2, 2, 2};  // 3 inputs of length 3
  std::vector<double> v(3), beta, c;
  attn::detail::capsule_route(u.data(), 3, 3, 3, 1, 1e-8, v.data(), beta, c);
  const auto want = squashed({2.0, 0.0, 0.5}, 1e-8);
  for (int j = 0; j < 3; ++j) REQUIRE(v[static_cast<std::size_t>(j)] == Approx(want[static_cast<std::size_t>(j)]).epsilon(1e-14));
  // R = 2 by hand: β_i = u_i·v1, c = softmax(β), v2 = squash(Σ c_i u_i)
  attn::detail::capsule_route(u.data(), 3, 3, 3, 2, 1e-8, v.data(), beta, c);
  double b[3], m = -1e300, sum = 0;
  for (int i = 0; i < 3; ++i) {
    b[i] = 0;
    for (int j = 0; j < 3; ++j) b[i] += u[static_cast<std::size_t>(i * 3 + j)] * want[static_cast<std::size_t>(j)];
    m = std::max(m, b[i]);
  }
  for (double& x : b) sum += (x = std::exp(x - m));
  std::vector<double> s2(3, 0.0);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) s2[static_cast<std::size_t>(j)] += b[i] / sum * u[static_cast<std::size_t>(i * 3 + j)];
  const auto want2 = squashed(s2, 1e-8);
  for (int j = 0; j < 3; ++j) REQUIRE(v[static_cast<std::size_t>(j)] == Approx(want2[static_cast<std::size_t>(j)]).epsilon(1e-13));
}

TEST_CASE("capsule_routing: the positional term: row 0 is the raw row, row 1 with R = 1 the squashed mean",
          "[capsule_routing]") {
  L l({.num_heads = 2, .routing_iterations = 1, .use_vertical_routing = false, .input_dim = 8}, 3);
  const auto x = random_tensor<double, 3>({1, 5, 8}, 2, 2.0);
  const auto a = raw_logits(l, x, 0);
  auto terms = a;
  l.routing_terms(terms.data(), 5);
  for (Index h = 0; h < 2; ++h) {
    const double* ah = a.data() + h * 25;
    const double* th = terms.data() + h * 25;
    for (Index s = 0; s < 5; ++s) REQUIRE(th[s] == ah[s]);  // exactly the raw row
    std::vector<double> mean(5);
    for (Index s = 0; s < 5; ++s) mean[static_cast<std::size_t>(s)] = (ah[s] + ah[5 + s]) / 2;
    const auto want = squashed(mean, 1e-8);
    for (Index s = 0; s < 5; ++s) REQUIRE(th[5 + s] == Approx(want[static_cast<std::size_t>(s)]).epsilon(1e-13));
  }
  // the non-positional horizontal term and the vertical core route across heads: equal for every head
  L nh({.num_heads = 3, .routing_iterations = 2, .use_vertical_routing = false, .use_positional_routing = false,
        .input_dim = 6}, 4);
  const auto a3 = raw_logits(nh, random_tensor<double, 3>({1, 4, 6}, 5), 0);
  auto t3 = a3;
  nh.routing_terms(t3.data(), 4);
  for (Index i = 0; i < 16; ++i) {
    REQUIRE(t3[static_cast<std::size_t>(16 + i)] == t3[static_cast<std::size_t>(i)]);
    REQUIRE(t3[static_cast<std::size_t>(32 + i)] == t3[static_cast<std::size_t>(i)]);
  }
}

TEST_CASE("capsule_routing: weights, names, shapes and order", "[capsule_routing]") {
  const L l({.num_heads = 2, .key_dim = 3, .value_dim = 5, .input_dim = 8});
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  for (const auto& w : l.parameters()) {
    names.push_back(w.name);
    shapes.push_back(w.shape);
  }
  REQUIRE(names == std::vector<std::string>{"query/kernel", "query/bias", "key/kernel", "key/bias", "value/kernel",
                                            "value/bias", "output/kernel", "output/bias",
                                            "vertical_aggregation_weights", "vertical_aggregation_bias"});
  REQUIRE(shapes == std::vector<Shape>{{8, 6}, {6}, {8, 6}, {6}, {8, 10}, {10}, {10, 8}, {8}, {2, 2}, {2}});
  REQUIRE(L({.num_heads = 2, .use_bias = false, .input_dim = 8}).parameters().size() == 5);
  REQUIRE(L({.num_heads = 2, .use_vertical_routing = false, .input_dim = 8}).parameters().size() == 8);
  REQUIRE(L({.num_heads = 2, .input_dim = 8}).parameters()[0].shape == Shape{8, 8});  // key_dim = D / h
  REQUIRE(L({.num_heads = 3}).parameters()[0].shape == Shape{192, 192});                // D = h·64
}

TEST_CASE("capsule_routing: validation messages (the reference's)", "[capsule_routing]") {
  const Json base{{"num_heads", 2}};
  const auto with = [&](const char* k, const Json& v) {
    Json j = base;
    j[k] = v;
    return config_error(j);
  };
  REQUIRE(config_error(base) == "(no error)");
  REQUIRE(with("num_heads", 0) == "Parameter 'num_heads' must be positive, got 0");
  REQUIRE(with("key_dim", 0) == "key_dim must be positive, got 0");
  REQUIRE(with("value_dim", -1) == "value_dim must be positive, got -1");
  REQUIRE(with("dropout", 2.0) == "Parameter 'dropout' must be between 0.0 and 1.0, got 2.0");
  REQUIRE(with("routing_iterations", 0) == "routing_iterations must be positive, got 0");
  REQUIRE(with("epsilon", 0.0) == "epsilon must be positive, got 0.0");
  REQUIRE(config_error({{"num_heads", 3}, {"input_dim", 10}, {"key_dim", 4}}) ==
          "embed_dim (10) must be divisible by num_heads (3)");
  REQUIRE_THAT(with("routing_iteration", 2), Catch::StartsWith("Unknown parameter 'routing_iteration' for "
                                                               "'capsule_routing'. Did you mean 'routing_iterations'?"));
  const Json all{{"num_heads", 2},
                 {"key_dim", nullptr},
                 {"value_dim", nullptr},
                 {"dropout", 0.0},
                 {"use_bias", true},
                 {"kernel_initializer", "glorot_uniform"},
                 {"bias_initializer", "zeros"},
                 {"kernel_regularizer", nullptr},
                 {"bias_regularizer", nullptr},
                 {"activity_regularizer", nullptr},
                 {"routing_iterations", 3},
                 {"use_vertical_routing", true},
                 {"use_horizontal_routing", true},
                 {"use_positional_routing", true},
                 {"epsilon", 1e-8}};
  REQUIRE(config_error(all) == "(no error)");
}

TEST_CASE("capsule_routing: both routings off is plain multi-head attention, with a mask", "[capsule_routing]") {
  L l({.num_heads = 2, .key_dim = 3, .value_dim = 4, .use_vertical_routing = false, .use_horizontal_routing = false,
       .input_dim = 6}, 5);
  set_biases(l);
  const auto x = random_tensor<double, 3>({2, 5, 6}, 3, 1.5);
  const auto& w = l.parameters();
  attn::Tensor<bool, 2> pad(2, 5);
  pad.setConstant(true);
  pad(0, 3) = pad(1, 0) = false;
  const auto keep = [&](Index b, Index, Index, Index j) { return bool(pad(b, j)); };
  const auto ctx = naive_attention(split_heads(naive_dense(x, w[0], &w[1]), 2), split_heads(naive_dense(x, w[2], &w[3]), 2),
                                   split_heads(naive_dense(x, w[4], &w[5]), 2), 1.0 / std::sqrt(3.0), keep);
  attn::AttentionMasks<double> m;
  m.key_padding = attn::KeyPaddingMask(pad);
  const auto r = l.forward_with_weights(x, m);
  ATTN_REQUIRE_CLOSE(r.output, naive_dense(merge_heads(ctx.first), w[6], &w[7]), 1e-12, 1e-13);
  ATTN_REQUIRE_CLOSE(r.weights, ctx.second, 1e-12, 1e-13);
}

TEST_CASE("capsule_routing: fully masked rows give zeros, 1e4 logits stay finite", "[capsule_routing]") {
  L l({.num_heads = 2, .input_dim = 4}, 2);
  set_biases(l);
  const auto x = random_tensor<double, 3>({1, 4, 4}, 6);
  attn::Tensor<bool, 2> am(4, 4);
  am.setConstant(true);
  for (Index j = 0; j < 4; ++j) am(1, j) = false;
  attn::AttentionMasks<double> m;
  m.attn_mask = attn::AttnMask(am);
  const auto r = l.forward_with_weights(x, m);
  for (Index h = 0; h < 2; ++h)
    for (Index j = 0; j < 4; ++j) REQUIRE(r.weights(0, h, 1, j) == 0.0);
  for (Index e = 0; e < 4; ++e) REQUIRE(r.output(0, 1, e) == l.parameters()[7].data[static_cast<std::size_t>(e)]);
  // other rows are unchanged by the mask of row 1 (the routing reads the unmasked logits)
  const auto y = l.forward(x);
  for (Index t : {0, 2, 3})
    for (Index e = 0; e < 4; ++e) REQUIRE(r.output(0, t, e) == Approx(y(0, t, e)).epsilon(1e-12));
  L big({.num_heads = 1, .use_bias = false, .input_dim = 4}, 2);
  for (auto& w : big.parameters())
    for (auto& v : w.data) v *= 40.0;
  const auto xb = random_tensor<double, 3>({1, 6, 4}, 1, 10.0);
  const auto yb = big.forward(xb);
  REQUIRE(all_finite(yb.data(), yb.size()));
  attn::CapsuleRoutingSelfAttention<float> bf({.num_heads = 1, .use_bias = false, .input_dim = 4});
  for (std::size_t i = 0; i < bf.parameters().size(); ++i)
    for (std::size_t j = 0; j < big.parameters()[i].data.size(); ++j)
      bf.parameters()[i].data[j] = static_cast<float>(big.parameters()[i].data[j]);
  const auto yf = bf.forward(random_tensor<float, 3>({1, 6, 4}, 1, 10.0));
  REQUIRE(all_finite(yf.data(), yf.size()));
}

TEST_CASE("capsule_routing: bad shapes give ShapeErrors naming the layer, empty inputs", "[capsule_routing]") {
  const L l({.num_heads = 2, .input_dim = 8});
  REQUIRE_THROWS_WITH(l.forward(random_tensor<double, 3>({2, 3, 7}, 1)),
                      "capsule_routing: input must have shape [*, *, 8] ([batch, T, input_dim]), got [2, 3, 7]");
  REQUIRE_THROWS_WITH(l.output_shape({2, 3}), "capsule_routing: Expected 3D input, got shape [2, 3]");
  REQUIRE(l.forward(attn::Tensor<double, 3>(0, 3, 8)).dimension(0) == 0);
  REQUIRE(l.forward(attn::Tensor<double, 3>(2, 0, 8)).dimension(1) == 0);
}

TEST_CASE("capsule_routing: 1 and 2 threads give bit-identical results", "[capsule_routing][threads]") {
  const L l({.num_heads = 4, .input_dim = 16}, 2);
  const auto x = random_tensor<double, 3>({2, 150, 16}, 8);
  const int saved = attn::num_threads();
  attn::set_num_threads(1);
  const auto a = l.forward(x);
  attn::set_num_threads(2);
  const auto b = l.forward(x);
  attn::set_num_threads(saved);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
}

// ---- golden parity (tools/golden/capsule_routing.py, tests/data/capsule_routing/) ----

TEMPLATE_TEST_CASE("golden: capsule_routing matches PyTorch ops", "[golden][capsule_routing]", float, double) {
  using T = TestType;
  for_each_golden<T>("capsule_routing", [](const Golden& g) {
    attn::CapsuleRoutingSelfAttention<T> layer(g.config.get<attn::CapsuleRoutingSelfAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto mask = mask_of(g, "input/mask");
    const auto x = input<T, 3>(g, "x");
    const auto r = layer.forward_with_weights(x, mask.masks<T>());
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("capsule_routing", g.config);
    attn::load_weights(any, g.file, "weights");
    check_through_door<T>(g, any, {attn::AnyTensor<T>(x)}, mask);
  });
}
