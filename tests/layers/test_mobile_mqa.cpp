// mobile_mqa: an independent loop implementation (projections, the stride-2 'same' depthwise
// downsampling, shared-K/V attention, the gated residual, all in double) on even and odd maps, the spec's
// test hints (zero o_proj gives the identity; one token), the key counts of Appendix B, messages,
// shape errors, threads, and golden parity with torch linear / conv2d.
#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using MQA = attn::MobileMQA<double>;

namespace {

const attn::Weight<double>& get(const MQA& l, const char* name) { return *l.parameters().find(name); }

std::pair<attn::Tensor<double, 4>, attn::Tensor<double, 4>> naive_mqa(const MQA& layer, const attn::Tensor<double, 4>& x) {
  const auto& c = layer.config();
  const Index B = x.dimension(0), H = x.dimension(1), W = x.dimension(2), C = x.dimension(3), P = H * W;
  const Index h = c.num_heads, d = C / h;
  const attn::Tensor<double, 3> flat = x.reshape(std::array<Index, 3>{B, P, C});
  const auto q = naive_dense(flat, get(layer, "q_proj/kernel"), &get(layer, "q_proj/bias"));
  auto kv = naive_dense(flat, get(layer, "kv_proj/kernel"), &get(layer, "kv_proj/bias"));  // [B, P, 2d]
  Index Hk = H, Wk = W;
  if (c.use_downsampling) {
    Hk = (H + 1) / 2;
    Wk = (W + 1) / 2;
    const Index top = std::max<Index>((Hk - 1) * 2 + 3 - H, 0) / 2, left = std::max<Index>((Wk - 1) * 2 + 3 - W, 0) / 2;
    const auto& k = get(layer, "downsample/kernel").data;
    const auto& bias = get(layer, "downsample/bias").data;
    attn::Tensor<double, 3> ds(B, Hk * Wk, 2 * d);
    for (Index b = 0; b < B; ++b)
      for (Index r = 0; r < Hk; ++r)
        for (Index s = 0; s < Wk; ++s)
          for (Index ch = 0; ch < 2 * d; ++ch) {
            double v = bias[static_cast<std::size_t>(ch)];
            for (Index i = 0; i < 3; ++i)
              for (Index j = 0; j < 3; ++j) {
                const Index y = 2 * r - top + i, xx = 2 * s - left + j;
                if (y >= 0 && y < H && xx >= 0 && xx < W)
                  v += kv(b, y * W + xx, ch) * k[static_cast<std::size_t>((i * 3 + j) * 2 * d + ch)];
              }
            ds(b, r * Wk + s, ch) = v;
          }
    kv = ds;
  }
  const Index S = Hk * Wk;
  attn::Tensor<double, 4> K(B, 1, S, d), V(B, 1, S, d);
  for (Index b = 0; b < B; ++b)
    for (Index s = 0; s < S; ++s)
      for (Index f = 0; f < d; ++f) {
        K(b, 0, s, f) = kv(b, s, f);
        V(b, 0, s, f) = kv(b, s, d + f);
      }
  const auto [ctx, p] = naive_attention(split_heads(q, h), K, V, 1.0 / std::sqrt(double(d)));
  const auto o = naive_dense(merge_heads(ctx), get(layer, "o_proj/kernel"), &get(layer, "o_proj/bias"));
  const double lambda = get(layer, "lambda").data[0];
  attn::Tensor<double, 4> y(B, H, W, C);
  for (Index i = 0; i < y.size(); ++i) y.data()[i] = x.data()[i] + lambda * o.data()[i];
  return {y, p};
}

void randomize(MQA& layer, std::uint64_t seed) {
  for (auto& w : layer.parameters()) {
    const auto r = random_tensor<double, 1>({static_cast<Index>(w.data.size())}, seed++);
    for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.5 * r(static_cast<Index>(i));
  }
}

}  // namespace

TEST_CASE("mobile_mqa: weights have the reference's names, shapes, order and initializers", "[mobile_mqa]") {
  const MQA plain({.dim = 16, .num_heads = 4}, 3);
  std::vector<std::string> names;
  for (const auto& w : plain.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"lambda", "q_proj/kernel", "q_proj/bias", "kv_proj/kernel", "kv_proj/bias",
                                            "o_proj/kernel", "o_proj/bias"});
  REQUIRE(plain.parameters()[0].shape == Shape{});
  REQUIRE(plain.parameters()[0].data == std::vector<double>{1.0});
  REQUIRE(plain.parameters()[3].shape == Shape{16, 8});
  REQUIRE(plain.parameters()[5].shape == Shape{16, 16});
  for (double v : plain.parameters()[4].data) REQUIRE(v == 0.0);
  for (double v : plain.parameters()[1].data) REQUIRE(std::abs(v) <= 2 * std::sqrt(2.0 / 16.0) / 0.87962566103423978);
  const MQA ds({.dim = 16, .num_heads = 4, .use_downsampling = true});
  REQUIRE(ds.parameters().size() == 9);
  REQUIRE(ds.parameters()[7].name == "downsample/kernel");
  REQUIRE(ds.parameters()[7].shape == Shape{3, 3, 8, 1});
  REQUIRE(ds.parameters()[8].name == "downsample/bias");
}

TEST_CASE("mobile_mqa: validation messages", "[mobile_mqa]") {
  const auto msg = [](const attn::Json& j) {
    const auto p = attn::check_attention_config("mobile_mqa", j);
    return p.empty() ? std::string() : p.front().message;
  };
  REQUIRE(msg({{"dim", 0}}) == "Parameter 'dim' must be positive, got 0");
  REQUIRE(msg({{"dim", 16}, {"num_heads", 0}}) == "Parameter 'num_heads' must be positive, got 0");
  REQUIRE(msg({{"dim", 10}, {"num_heads", 4}}) == "dim (10) must be divisible by num_heads (4)");
  REQUIRE(msg({{"dim", 16}, {"kernel_regularizer", nullptr}, {"use_downsampling", true}}).empty());
  REQUIRE_THROWS_WITH(MQA({.dim = 12}), "dim (12) must be divisible by num_heads (8)");
}

TEST_CASE("mobile_mqa: every parameter of the reference registry, at its defaults", "[mobile_mqa]") {
  const attn::Json ref = {{"dim", 64}, {"num_heads", 8}, {"use_downsampling", false},
                          {"kernel_initializer", "he_normal"}, {"kernel_regularizer", nullptr}};
  REQUIRE(attn::check_attention_config("mobile_mqa", ref).empty());
  REQUIRE(attn::create_attention_layer<float>("mobile_mqa", ref).parameters().size() == 7);
}

TEST_CASE("mobile_mqa: the key counts of Appendix B (odd sizes use the convolution's size)", "[mobile_mqa]") {
  const MQA ds({.dim = 8, .num_heads = 2, .use_downsampling = true});
  REQUIRE(ds.keys(8, 8) == 16);
  REQUIRE(ds.keys(6, 10) == 15);
  REQUIRE(ds.keys(7, 7) == 16);  // the reference crashes here (conv 4x4, reshape 3x3)
  const auto r = ds.forward_with_weights(random_tensor<double, 4>({1, 7, 7, 8}, 1));
  REQUIRE(r.weights.dimension(3) == 16);
  REQUIRE(MQA({.dim = 8, .num_heads = 2}).keys(7, 7) == 49);
}

TEST_CASE("mobile_mqa: the spec's hints: zero o_proj is the identity, one token by hand", "[mobile_mqa]") {
  MQA layer({.dim = 8, .num_heads = 2, .use_downsampling = true}, 4);
  randomize(layer, 9);
  for (auto& w : layer.parameters())
    if (w.name.starts_with("o_proj")) std::fill(w.data.begin(), w.data.end(), 0.0);
  const auto x = random_tensor<double, 4>({2, 5, 3, 8}, 2);
  ATTN_REQUIRE_CLOSE(layer.forward(x), x, 0.0, 0.0);
  // one token, no downsampling: out = x + λ·((v replicated over heads)·Wo + bo)
  MQA one({.dim = 4, .num_heads = 2}, 1);
  randomize(one, 20);
  const auto x1 = random_tensor<double, 4>({1, 1, 1, 4}, 3);
  const auto& wkv = get(one, "kv_proj/kernel").data;
  const auto& bkv = get(one, "kv_proj/bias").data;
  std::vector<double> v(2);
  for (Index f = 0; f < 2; ++f) {
    v[static_cast<std::size_t>(f)] = bkv[static_cast<std::size_t>(2 + f)];
    for (Index i = 0; i < 4; ++i) v[static_cast<std::size_t>(f)] += x1(0, 0, 0, i) * wkv[static_cast<std::size_t>(i * 4 + 2 + f)];
  }
  const double lambda = get(one, "lambda").data[0];
  const auto y = one.forward(x1);
  for (Index o = 0; o < 4; ++o) {
    double s = get(one, "o_proj/bias").data[static_cast<std::size_t>(o)];
    for (Index i = 0; i < 4; ++i) s += v[static_cast<std::size_t>(i % 2)] * get(one, "o_proj/kernel").data[static_cast<std::size_t>(i * 4 + o)];
    REQUIRE(y(0, 0, 0, o) == Approx(x1(0, 0, 0, o) + lambda * s).epsilon(1e-12));
  }
}

TEST_CASE("mobile_mqa: equals an independent loop implementation", "[mobile_mqa]") {
  for (const bool ds : {false, true})
    for (const auto& hw : std::vector<std::pair<Index, Index>>{{7, 9}, {8, 6}, {1, 2}, {3, 3}}) {
      MQA layer({.dim = 12, .num_heads = 3, .use_downsampling = ds}, 5);
      randomize(layer, 30);
      const auto x = random_tensor<double, 4>({3, hw.first, hw.second, 12}, 6);
      const auto r = layer.forward_with_weights(x);
      const auto [y, p] = naive_mqa(layer, x);
      ATTN_REQUIRE_CLOSE(r.output, y, 1e-12, 1e-12);
      ATTN_REQUIRE_CLOSE(r.weights, p, 1e-12, 1e-12);
    }
}

TEST_CASE("mobile_mqa: bad shapes give ShapeErrors naming the layer", "[mobile_mqa]") {
  const MQA layer({.dim = 8, .num_heads = 2});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 4>({1, 3, 3, 6}, 1)),
                      "mobile_mqa: input must have shape [batch, height >= 1, width >= 1, 8], got [1, 3, 3, 6]");
  REQUIRE_THROWS_AS(layer.forward(attn::Tensor<double, 4>(1, 3, 0, 8)), attn::ShapeError);
  MQA tampered = layer;
  tampered.parameters()[0].shape = {1};
  REQUIRE_THROWS_AS(tampered.forward(random_tensor<double, 4>({1, 3, 3, 8}, 1)), attn::WeightsError);
  REQUIRE(layer.forward(attn::Tensor<double, 4>(0, 3, 3, 8)).dimension(0) == 0);
}

TEST_CASE("mobile_mqa: 1 and 2 threads give bit-identical results", "[mobile_mqa][threads]") {
  const attn::MobileMQA<float> layer({.dim = 64, .num_heads = 4, .use_downsampling = true}, 2);
  const auto x = random_tensor<float, 4>({2, 17, 15, 64}, 8);
  const int saved = attn::num_threads();
  attn::set_num_threads(1);
  const auto a = layer.forward(x);
  attn::set_num_threads(2);
  const auto b = layer.forward(x);
  attn::set_num_threads(saved);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
}

// ---- golden parity (tools/golden/mobile_mqa.py, tests/data/mobile_mqa/) ----

TEMPLATE_TEST_CASE("golden: mobile_mqa matches torch linear, conv2d and softmax attention", "[golden][mobile_mqa]",
                   float, double) {
  using T = TestType;
  for_each_golden<T>("mobile_mqa", [](const Golden& g) {
    attn::MobileMQA<T> layer(g.config.get<attn::MobileMQAConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto r = layer.forward_with_weights(input<T, 4>(g, "x"));
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("mobile_mqa", g.config);
    attn::load_weights(any, g.file, "weights");
    check<T>(g, "output", any.forward(attn::AnyTensor<T>(input<T, 4>(g, "x"))).template view<4>());
  });
}
