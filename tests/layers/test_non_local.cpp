// non_local: the intended behaviour of spec §4.14 (both modes run at their defaults and at dropout 0)
// against an independent loop implementation (depthwise 'same' convolution, norms, 1x1 convolutions and
// attention written from the formulas, in double), the spec's identity-like test hint, the reference's
// messages, shape errors, threads, and golden parity with torch conv2d / batch_norm / layer_norm.
#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using NL = attn::NonLocalAttention<double>;

namespace {

const attn::Weight<double>* find(const NL& l, const std::string& name) { return l.parameters().find(name); }

double act(std::string_view name, double v) {
  if (name == "relu") return std::max(v, 0.0);
  if (name == "sigmoid") return 1.0 / (1.0 + std::exp(-v));
  if (name == "tanh") return std::tanh(v);
  return v;  // linear
}

/// x[B, H, W, in] · kernel [1, 1, in, out] (+ bias), then act.
attn::Tensor<double, 3> conv1x1(const attn::Tensor<double, 3>& x, const attn::Weight<double>& k,
                                const attn::Weight<double>* b, std::string_view a = "linear") {
  attn::Weight<double> flat{k.name, {k.shape[2], k.shape[3]}, k.data, true};
  auto y = naive_dense(x, flat, b);
  for (Index i = 0; i < y.size(); ++i) y.data()[i] = act(a, y.data()[i]);
  return y;
}

/// The forward from the formulas; also returns the attention weights [B, 1, P, P].
std::pair<attn::Tensor<double, 4>, attn::Tensor<double, 4>> naive_non_local(const NL& layer,
                                                                            const attn::Tensor<double, 4>& x) {
  const auto& c = layer.config();
  const Index B = x.dimension(0), H = x.dimension(1), W = x.dimension(2), C = x.dimension(3), P = H * W;
  const Index kh = c.kernel_size[0], kw = c.kernel_size[1], top = (kh - 1) / 2, left = (kw - 1) / 2;
  const auto& dk = *find(layer, "depthwise_conv/kernel");
  const auto* db = find(layer, "depthwise_conv/bias");
  attn::Tensor<double, 3> u(B, P, C);
  for (Index b = 0; b < B; ++b)
    for (Index r = 0; r < H; ++r)
      for (Index q = 0; q < W; ++q)
        for (Index ch = 0; ch < C; ++ch) {
          double s = db ? db->data[static_cast<std::size_t>(ch)] : 0.0;
          for (Index i = 0; i < kh; ++i)
            for (Index j = 0; j < kw; ++j) {
              const Index y = r - top + i, xx = q - left + j;
              if (y >= 0 && y < H && xx >= 0 && xx < W)
                s += x(b, y, xx, ch) * dk.data[static_cast<std::size_t>((i * kw + j) * C + ch)];
            }
          u(b, r * W + q, ch) = act(c.intermediate_activation, s);
        }
  const std::string_view norm = c.norm();
  if (norm != "none") {
    const auto& g = find(layer, "normalization_layer/gamma")->data;
    const auto& be = find(layer, "normalization_layer/beta")->data;
    for (Index b = 0; b < B; ++b)
      for (Index p = 0; p < P; ++p) {
        double mean = 0, var = 0;
        if (norm == "layer") {
          for (Index ch = 0; ch < C; ++ch) mean += u(b, p, ch) / double(C);
          for (Index ch = 0; ch < C; ++ch) var += (u(b, p, ch) - mean) * (u(b, p, ch) - mean) / double(C);
        }
        for (Index ch = 0; ch < C; ++ch) {
          const auto k = static_cast<std::size_t>(ch);
          if (norm == "batch") {
            mean = find(layer, "normalization_layer/moving_mean")->data[k];
            var = find(layer, "normalization_layer/moving_variance")->data[k];
          }
          u(b, p, ch) = (u(b, p, ch) - mean) / std::sqrt(var + 1e-5) * g[k] + be[k];
        }
      }
  }
  const auto q = conv1x1(u, *find(layer, "query_conv/kernel"), find(layer, "query_conv/bias"));
  const auto k = conv1x1(u, *find(layer, "key_conv/kernel"), find(layer, "key_conv/bias"), c.intermediate_activation);
  const auto v = conv1x1(u, *find(layer, "value_conv/kernel"), find(layer, "value_conv/bias"));
  const double s = c.dot_product() ? find(layer, "attention/scale")->data[0] : 1.0;
  const auto [ctx, p] = naive_attention(split_heads(q, 1), split_heads(k, 1), split_heads(v, 1), s);
  const auto y = conv1x1(merge_heads(ctx), *find(layer, "output_conv/kernel"), find(layer, "output_conv/bias"),
                         c.output_activation);
  const Index co = y.dimension(2);
  attn::Tensor<double, 4> out(B, H, W, co);
  std::copy(y.data(), y.data() + y.size(), out.data());
  return {out, p};
}

void randomize(NL& layer, std::uint64_t seed) {
  for (auto& w : layer.parameters()) {
    const auto r = random_tensor<double, 1>({std::max<Index>(1, static_cast<Index>(w.data.size()))}, seed++);
    for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.6 * r(static_cast<Index>(i));
    if (w.name.find("variance") != std::string::npos)
      for (auto& v : w.data) v = 1.0 + std::abs(v);
  }
}

}  // namespace

TEST_CASE("non_local: weights have the documented names, shapes, order and initializers", "[non_local]") {
  const NL g({.attention_channels = 16});
  std::vector<std::string> names;
  for (const auto& w : g.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"depthwise_conv/kernel", "normalization_layer/gamma",
                                            "normalization_layer/beta", "normalization_layer/moving_mean",
                                            "normalization_layer/moving_variance", "query_conv/kernel",
                                            "key_conv/kernel", "value_conv/kernel", "output_conv/kernel"});
  REQUIRE(g.parameters()[0].shape == Shape{7, 7, 16, 1});
  REQUIRE(g.parameters()[5].shape == Shape{1, 1, 16, 2});  // gaussian: max(1, 16 / 8) for Q, K and V
  REQUIRE(g.parameters()[8].shape == Shape{1, 1, 2, 16});
  REQUIRE(!g.parameters()[3].trainable);
  for (double v : g.parameters()[4].data) REQUIRE(v == 1.0);
  const NL d({.attention_channels = 4, .kernel_size = {3, 5}, .use_bias = true, .normalization = "layer",
              .output_channels = 6, .attention_mode = "dot_product", .input_channels = 5});
  names.clear();
  for (const auto& w : d.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"depthwise_conv/kernel", "depthwise_conv/bias",
                                            "normalization_layer/gamma", "normalization_layer/beta",
                                            "query_conv/kernel", "query_conv/bias", "key_conv/kernel",
                                            "key_conv/bias", "value_conv/kernel", "value_conv/bias",
                                            "attention/scale", "output_conv/kernel", "output_conv/bias"});
  REQUIRE(d.parameters()[0].shape == Shape{3, 5, 5, 1});
  REQUIRE(d.parameters()[4].shape == Shape{1, 1, 5, 4});
  REQUIRE(d.parameters()[10].shape == Shape{});
  REQUIRE(d.parameters()[10].data == std::vector<double>{1.0});
  REQUIRE(d.parameters()[11].shape == Shape{1, 1, 4, 6});
  // glorot_normal on [1, 1, 5, 4]: truncated at 2 sigma, sigma = sqrt(2 / 9) / 0.8796...
  for (double v : d.parameters()[4].data) REQUIRE(std::abs(v) <= 2 * std::sqrt(2.0 / 9.0) / 0.87962566103423978);
  const NL none({.attention_channels = 3, .normalization = std::nullopt});
  REQUIRE(none.parameters().size() == 5);
  REQUIRE(none.parameters()[1].shape == Shape{1, 1, 3, 1});  // max(1, 3 / 8)
}

TEST_CASE("non_local: validation messages", "[non_local]") {
  const auto msg = [](const attn::Json& j) {
    const auto p = attn::check_attention_config("non_local", j);
    return p.empty() ? std::string() : p.front().message;
  };
  REQUIRE(msg({{"attention_channels", 0}}) == "attention_channels must be positive");
  REQUIRE(msg({{"attention_channels", 8}, {"dropout_rate", 1.0}}) == "dropout_rate must be in [0, 1)");
  REQUIRE(msg({{"attention_channels", 8}, {"dropout_rate", 1.5}}) ==
          "Parameter 'dropout_rate' must be between 0.0 and 1.0, got 1.5");
  REQUIRE(msg({{"attention_channels", 8}, {"normalization", "group"}}) ==
          "Parameter 'normalization' of 'non_local' must be one of ['batch', 'layer', 'none'], got 'group'");
  REQUIRE(msg({{"attention_channels", 8}, {"attention_mode", "dot"}}).starts_with(
      "Parameter 'attention_mode' of 'non_local' must be one of ['gaussian', 'dot_product'], got 'dot'"));
  REQUIRE(msg({{"attention_channels", 8}, {"kernel_size", {3, 0}}}) == "kernel_size must be positive, got (3, 0)");
  REQUIRE(msg({{"attention_channels", 8}, {"intermediate_activation", "ReLU"}}).starts_with(
      "Parameter 'intermediate_activation' of 'non_local' must be one of ['relu', "));
  // what the reference could not run: defaults, dropout 0, lists and ints for kernel_size, null norm
  for (const attn::Json& ok : {attn::Json{{"attention_channels", 8}},
                               attn::Json{{"attention_channels", 8}, {"kernel_size", {3, 5}}, {"dropout_rate", 0.0}},
                               attn::Json{{"attention_channels", 8}, {"kernel_size", 3}, {"normalization", nullptr},
                                          {"activity_regularizer", nullptr}}})
    REQUIRE(msg(ok).empty());
  REQUIRE_THROWS_WITH(NL({.attention_channels = -2}), "attention_channels must be positive");
}

TEST_CASE("non_local: every parameter of the reference registry, and its README example", "[non_local]") {
  const attn::Json ref = {{"attention_channels", 64},     {"kernel_size", {7, 7}},       {"use_bias", false},
                          {"normalization", "batch"},     {"intermediate_activation", "relu"},
                          {"output_activation", "linear"}, {"output_channels", -1},      {"dropout_rate", 0.0},
                          {"attention_mode", "gaussian"}, {"kernel_initializer", "glorot_normal"},
                          {"bias_initializer", "zeros"},  {"kernel_regularizer", nullptr},
                          {"bias_regularizer", nullptr},  {"activity_regularizer", nullptr}};
  REQUIRE(attn::check_attention_config("non_local", ref).empty());
  // the README's example, which the reference cannot run (dropout 0)
  const auto layer = attn::create_attention_layer<float>(
      "non_local", {{"attention_channels", 64}, {"normalization", "layer"}, {"attention_mode", "dot_product"}});
  const auto y = layer.forward(attn::AnyTensor<float>(random_tensor<float, 4>({1, 4, 5, 64}, 2)));
  REQUIRE(y.shape() == Shape{1, 4, 5, 64});
}

TEST_CASE("non_local: the spec's identity-like hint by hand", "[non_local]") {
  // dot_product, no norm, 1x1 depthwise weight 1, no bias, identity Q/K/V/output, relu on the input
  // (non-negative here): out[p] = Σ_q softmax_q(s·x_p·x_q) x_q over the flattened map.
  NL layer({.attention_channels = 2, .kernel_size = {1, 1}, .normalization = "none",
            .attention_mode = "dot_product", .input_channels = 2});
  auto& w = layer.parameters();
  for (auto& p : w) {
    std::fill(p.data.begin(), p.data.end(), 0.0);
    if (p.name == "depthwise_conv/kernel") p.data = {1, 1};
    if (p.name.ends_with("_conv/kernel") && p.name != "depthwise_conv/kernel") p.data = {1, 0, 0, 1};
    if (p.name == "attention/scale") p.data = {0.5};
  }
  attn::Tensor<double, 4> x(1, 1, 2, 2);
  x.setValues({{{{1.0, 0.0}, {0.0, 2.0}}}});
  // position 0: logits 0.5·[1, 0] -> p = [e^.5, 1]/(e^.5 + 1); out = p0·(1, 0) + p1·(0, 2)
  const double p0 = std::exp(0.5) / (std::exp(0.5) + 1.0);
  const auto r = layer.forward_with_weights(x);
  REQUIRE(r.output(0, 0, 0, 0) == Approx(p0).epsilon(1e-12));
  REQUIRE(r.output(0, 0, 0, 1) == Approx(2 * (1 - p0)).epsilon(1e-12));
  // position 1: logits 0.5·[0, 4] -> p = [1, e^2]/(1 + e^2)
  const double p1 = std::exp(2.0) / (1.0 + std::exp(2.0));
  REQUIRE(r.output(0, 0, 1, 0) == Approx(1 - p1).epsilon(1e-12));
  REQUIRE(r.output(0, 0, 1, 1) == Approx(2 * p1).epsilon(1e-12));
  REQUIRE(r.weights(0, 0, 1, 1) == Approx(p1).epsilon(1e-12));
}

TEST_CASE("non_local: equals an independent loop implementation in both modes", "[non_local]") {
  const std::vector<NL::Config> configs{
      {.attention_channels = 16},  // the reference's defaults (gaussian, batch norm, 7x7)
      {.attention_channels = 4, .kernel_size = {3, 2}, .use_bias = true, .normalization = "layer",
       .output_activation = "sigmoid", .output_channels = 3, .attention_mode = "dot_product", .input_channels = 5},
      {.attention_channels = 5, .kernel_size = {2, 4}, .normalization = std::nullopt,
       .intermediate_activation = "tanh", .input_channels = 3},
  };
  std::uint64_t seed = 1;
  for (const auto& c : configs) {
    NL layer(c, seed);
    randomize(layer, 100 * seed);
    const auto x = random_tensor<double, 4>({3, 7, 9, c.in_channels()}, seed++);
    const auto r = layer.forward_with_weights(x);
    const auto [y, p] = naive_non_local(layer, x);
    ATTN_REQUIRE_CLOSE(r.output, y, 1e-12, 1e-12);
    ATTN_REQUIRE_CLOSE(r.weights, p, 1e-12, 1e-12);
  }
}

TEST_CASE("non_local: bad shapes give ShapeErrors naming the layer", "[non_local]") {
  const NL layer({.attention_channels = 8});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 3, 3, 4}, 1)),
                      "non_local: input must have shape [batch, height >= 1, width >= 1, 8], got [1, 3, 3, 4]");
  REQUIRE_THROWS_AS(layer.forward(attn::Tensor<double, 4>(1, 0, 3, 8)), attn::ShapeError);
  REQUIRE(layer.output_shape({2, 3, 5, 8}) == Shape{2, 3, 5, 8});
  NL tampered = layer;
  tampered.parameters()[5].shape = {1, 1, 8, 3};
  REQUIRE_THROWS_AS(tampered.forward(random_tensor<double, 4>({1, 3, 3, 8}, 1)), attn::WeightsError);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 3, 3, 8)).dimension(0) == 0);
}

TEST_CASE("non_local: 1 and 2 threads give bit-identical results", "[non_local][threads]") {
  const attn::NonLocalAttention<float> layer({.attention_channels = 32, .attention_mode = "dot_product"}, 2);
  const auto x = random_tensor<float, 4>({2, 15, 13, 32}, 8);
  const int saved = attn::num_threads();
  attn::set_num_threads(1);
  const auto a = layer.forward(x);
  attn::set_num_threads(2);
  const auto b = layer.forward(x);
  attn::set_num_threads(saved);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
}

// ---- golden parity (tools/golden/non_local.py, tests/data/non_local/) ----

TEMPLATE_TEST_CASE("golden: non_local matches torch conv2d, norms and softmax attention", "[golden][non_local]",
                   float, double) {
  using T = TestType;
  for_each_golden<T>("non_local", [](const Golden& g) {
    attn::NonLocalAttention<T> layer(g.config.get<attn::NonLocalAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto r = layer.forward_with_weights(input<T, 4>(g, "x"));
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("non_local", g.config);
    attn::load_weights(any, g.file, "weights");
    check<T>(g, "output", any.forward(attn::AnyTensor<T>(input<T, 4>(g, "x"))).template view<4>());
  });
}
