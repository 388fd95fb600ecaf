// window: the relative-position index of the spec's Appendix B, an independent loop implementation
// (projections, heads, attention with the gathered bias and masks, all in double), the identity with
// multi_head when the bias table is zero, the feature-map entry against a partition done by hand, the
// reference's messages and shape errors, threads, and golden parity with Swin's code written in torch.
#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using WA = attn::WindowAttention<double>;

namespace {

const attn::Weight<double>* find(const WA& l, const char* name) { return l.parameters().find(name); }

/// Loops from the formula: y = merge(softmax(Q Kᵀ·scale + table[index] + extra) V) Wp + bp, with
/// index[n, m] = (r_n − r_m + w − 1)(2w − 1) + (c_n − c_m + w − 1).
attn::Tensor<double, 3> naive_window(const WA& layer, const attn::Tensor<double, 3>& x, const Bias& extra = nullptr,
                                     const Keep& keep = nullptr) {
  const auto& c = layer.config();
  const Index w = c.window_size, H = c.num_heads, C = c.dim, d = C / H;
  const auto qkv = naive_dense(x, *find(layer, "qkv/kernel"), find(layer, "qkv/bias"));
  const Index B = x.dimension(0), N = x.dimension(1);
  attn::Tensor<double, 3> q(B, N, C), k(B, N, C), v(B, N, C);
  for (Index b = 0; b < B; ++b)
    for (Index n = 0; n < N; ++n)
      for (Index f = 0; f < C; ++f) {
        q(b, n, f) = qkv(b, n, f);
        k(b, n, f) = qkv(b, n, C + f);
        v(b, n, f) = qkv(b, n, 2 * C + f);
      }
  const auto& table = *find(layer, "relative_position_bias_table");
  const Bias bias = [&](Index b, Index h, Index i, Index j) {
    const Index idx = (i / w - j / w + w - 1) * (2 * w - 1) + (i % w - j % w + w - 1);
    return table.data[static_cast<std::size_t>(idx * H + h)] + (extra ? extra(b, h, i, j) : 0.0);
  };
  const double scale = c.qk_scale ? *c.qk_scale : 1.0 / std::sqrt(double(d));
  const auto [ctx, p] = naive_attention(split_heads(q, H), split_heads(k, H), split_heads(v, H), scale, keep, bias);
  return naive_dense(merge_heads(ctx), *find(layer, "proj/kernel"), find(layer, "proj/bias"));
}

void randomize(WA& layer, std::uint64_t seed) {
  for (auto& w : layer.parameters()) {
    const auto r = random_tensor<double, 1>({static_cast<Index>(w.data.size())}, seed++);
    for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.5 * r(static_cast<Index>(i));
  }
}

}  // namespace

TEST_CASE("window: weights have the reference's names, shapes, order and initializers", "[window]") {
  const WA layer({.dim = 12, .window_size = 3, .num_heads = 3}, 4);
  std::vector<std::string> names;
  for (const auto& w : layer.parameters()) names.push_back(w.name);
  REQUIRE(names == std::vector<std::string>{"qkv/kernel", "qkv/bias", "proj/kernel", "proj/bias",
                                            "relative_position_bias_table"});
  REQUIRE(layer.parameters()[0].shape == Shape{12, 36});
  REQUIRE(layer.parameters()[1].shape == Shape{36});
  REQUIRE(layer.parameters()[2].shape == Shape{12, 12});
  REQUIRE(layer.parameters()[3].shape == Shape{12});
  REQUIRE(layer.parameters()[4].shape == Shape{25, 3});
  for (double v : layer.parameters()[1].data) REQUIRE(v == 0.0);
  // glorot_uniform kernel: |v| <= sqrt(6 / (12 + 36))
  for (double v : layer.parameters()[0].data) REQUIRE(std::abs(v) <= std::sqrt(6.0 / 48.0));
  // the table: TruncatedNormal(stddev 0.02), cut at 2 sigma
  double sq = 0;
  for (double v : layer.parameters()[4].data) {
    REQUIRE(std::abs(v) <= 0.04);
    sq += v * v;
  }
  REQUIRE(sq > 0);
  REQUIRE(std::sqrt(sq / 75.0) == Approx(0.02 * 0.88).epsilon(0.35));
  const WA bare({.dim = 4, .window_size = 2, .num_heads = 2, .qkv_bias = false, .proj_bias = false});
  REQUIRE(bare.parameters().size() == 3);
  REQUIRE(bare.parameters()[2].name == "relative_position_bias_table");
  REQUIRE(bare.parameters()[2].shape == Shape{9, 2});
}

TEST_CASE("window: the relative-position index of Appendix B", "[window]") {
  const WA layer({.dim = 4, .window_size = 2, .num_heads = 1});
  const auto& idx = layer.relative_position_index();
  REQUIRE(idx.rows == 4);
  REQUIRE(idx.values == std::vector<Index>{4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4});
}

TEST_CASE("window: validation messages and order", "[window]") {
  const auto msg = [](const attn::Json& j) {
    const auto p = attn::check_attention_config("window", j);
    return p.empty() ? std::string() : p.front().message;
  };
  REQUIRE(msg({{"dim", 0}, {"window_size", 2}, {"num_heads", 2}}) == "Parameter 'dim' must be positive, got 0");
  REQUIRE(msg({{"dim", 8}, {"window_size", 2}, {"num_heads", -1}}) == "Parameter 'num_heads' must be positive, got -1");
  REQUIRE(msg({{"dim", 8}, {"window_size", 0}, {"num_heads", 2}}) == "window_size must be positive, got 0");
  REQUIRE(msg({{"dim", 8}, {"window_size", 2}, {"num_heads", 2}, {"attn_dropout_rate", 1.5}}) ==
          "Parameter 'attn_dropout_rate' must be between 0.0 and 1.0, got 1.5");
  REQUIRE(msg({{"dim", 8}, {"window_size", 2}, {"num_heads", 2}, {"proj_dropout_rate", -0.1}}) ==
          "Parameter 'proj_dropout_rate' must be between 0.0 and 1.0, got -0.1");
  REQUIRE(msg({{"dim", 10}, {"window_size", 2}, {"num_heads", 3}}) == "dim (10) must be divisible by num_heads (3)");
  // factory-worded checks come before the layer's
  REQUIRE(msg({{"dim", 8}, {"window_size", 0}, {"num_heads", 0}}) == "Parameter 'num_heads' must be positive, got 0");
  REQUIRE(msg({{"dim", 8}, {"window_size", 2}, {"num_heads", 2}, {"qkv_bais", true}}).starts_with(
      "Unknown parameter 'qkv_bais' for 'window'. Did you mean 'qkv_bias'?"));
  REQUIRE(msg({{"dim", 8}, {"window_size", 2}, {"num_heads", 2}, {"qk_scale", nullptr},
               {"kernel_regularizer", nullptr}}) == "");
  REQUIRE_THROWS_WITH(WA({.dim = 10, .window_size = 2, .num_heads = 3}), "dim (10) must be divisible by num_heads (3)");
}

TEST_CASE("window: every parameter of the reference registry, at its defaults", "[window]") {
  const attn::Json ref = {{"dim", 96},          {"window_size", 7},          {"num_heads", 3},
                          {"qkv_bias", true},   {"qk_scale", nullptr},       {"attn_dropout_rate", 0.0},
                          {"proj_dropout_rate", 0.0}, {"proj_bias", true},   {"kernel_initializer", "glorot_uniform"},
                          {"bias_initializer", "zeros"}, {"kernel_regularizer", nullptr}, {"bias_regularizer", nullptr}};
  REQUIRE(attn::check_attention_config("window", ref).empty());
  const auto layer = attn::create_attention_layer<float>("window", ref);
  REQUIRE(layer.parameters().size() == 5);
}

TEST_CASE("window: hand-computed case", "[window]") {
  // dim 1, one head, window 1 (one token): the softmax over one key is 1, so y = (x·wv + bv)·wp + bp.
  WA layer({.dim = 1, .window_size = 1, .num_heads = 1});
  auto& w = layer.parameters();
  w[0].data = {2.0, 3.0, 0.5};  // q, k, v kernels
  w[1].data = {0.1, 0.2, 0.25};
  w[2].data = {4.0};
  w[3].data = {-1.0};
  w[4].data = {7.0};  // a bias on the only logit changes nothing
  attn::Tensor<double, 3> x(2, 1, 1);
  x.setValues({{{1.0}}, {{-2.0}}});
  const auto r = layer.forward_with_weights(x);
  REQUIRE(r.output(0, 0, 0) == Approx((1.0 * 0.5 + 0.25) * 4.0 - 1.0));
  REQUIRE(r.output(1, 0, 0) == Approx((-2.0 * 0.5 + 0.25) * 4.0 - 1.0));
  REQUIRE(r.weights(1, 0, 0, 0) == 1.0);
  // window 2, dim 1: zero kernels except V = identity; logits are the table entries alone
  WA two({.dim = 1, .window_size = 2, .num_heads = 1, .qkv_bias = false, .proj_bias = false});
  auto& t = two.parameters();
  t[0].data = {0.0, 0.0, 1.0};
  t[1].data = {1.0};
  for (std::size_t i = 0; i < 9; ++i) t[2].data[i] = double(i) * 0.1;  // table[i] = i/10
  attn::Tensor<double, 3> x2(1, 4, 1);
  x2.setValues({{{1.0}, {2.0}, {3.0}, {4.0}}});
  // row 0 uses indices [4, 3, 1, 0] -> logits [0.4, 0.3, 0.1, 0.0]
  const double e[4] = {std::exp(0.4), std::exp(0.3), std::exp(0.1), 1.0};
  const double s = e[0] + e[1] + e[2] + e[3];
  REQUIRE(two.forward(x2)(0, 0, 0) == Approx((e[0] * 1 + e[1] * 2 + e[2] * 3 + e[3] * 4) / s).epsilon(1e-12));
}

TEST_CASE("window: equals an independent loop implementation", "[window]") {
  for (const auto& [bias, scale] : {std::pair{true, std::optional<double>{}}, std::pair{false, std::optional(0.7)}}) {
    WA layer({.dim = 12, .window_size = 3, .num_heads = 3, .qkv_bias = bias, .qk_scale = scale, .proj_bias = bias},
             3);
    randomize(layer, 10);
    const auto x = random_tensor<double, 3>({4, 9, 12}, 42);
    ATTN_REQUIRE_CLOSE(layer.forward(x), naive_window(layer, x), 1e-12, 1e-12);
    // the library's masks on top of the relative-position bias: a boolean mask and an additive bias
    attn::Tensor<bool, 3> keep(4, 9, 9);
    attn::Tensor<double, 4> extra(4, 1, 9, 9);
    for (Index b = 0; b < 4; ++b)
      for (Index i = 0; i < 9; ++i)
        for (Index j = 0; j < 9; ++j) {
          keep(b, i, j) = (i + 2 * j + b) % 4 != 0 || j == i;
          extra(b, 0, i, j) = 0.1 * double((i * 7 + j * 3 + b) % 5) - 0.2;
        }
    const auto got = layer.forward(x, {.attn_mask = attn::AttnMask(keep), .bias = extra});
    const auto want = naive_window(layer, x, [&](Index b, Index, Index i, Index j) { return extra(b, 0, i, j); },
                                   [&](Index b, Index, Index i, Index j) { return keep(b, i, j); });
    ATTN_REQUIRE_CLOSE(got, want, 1e-12, 1e-12);
  }
}

TEST_CASE("window: a per-window mask is read per window of each image", "[window]") {
  WA layer({.dim = 8, .window_size = 2, .num_heads = 2}, 5);
  randomize(layer, 20);
  const Index nW = 3, images = 2;
  const auto x = random_tensor<double, 3>({nW * images, 4, 8}, 7);
  attn::Tensor<double, 3> m(nW, 4, 4);
  for (Index w = 0; w < nW; ++w)
    for (Index i = 0; i < 4; ++i)
      for (Index j = 0; j < 4; ++j) m(w, i, j) = (i + j + w) % 3 == 0 && i != j ? -100.0 : 0.25 * double(w);
  const auto r = layer.forward_windows_with_weights(x, m);
  const auto want = naive_window(layer, x, [&](Index b, Index, Index i, Index j) { return m(b % nW, i, j); });
  ATTN_REQUIRE_CLOSE(r.output, want, 1e-12, 1e-12);
  REQUIRE(r.weights.dimension(0) == nW * images);
  // an all-zero window mask changes nothing
  attn::Tensor<double, 3> zero(nW, 4, 4);
  zero.setZero();
  ATTN_REQUIRE_CLOSE(layer.forward_windows(x, zero), layer.forward(x), 0.0, 0.0);
}

TEST_CASE("window: a zero bias table equals multi_head with the same weights", "[window]") {
  WA win({.dim = 12, .window_size = 2, .num_heads = 3}, 8);
  randomize(win, 30);
  std::fill(win.parameters()[4].data.begin(), win.parameters()[4].data.end(), 0.0);
  attn::MultiHeadAttention<double> mha({.embed_dim = 12, .num_heads = 3, .use_bias = true});
  for (std::size_t i = 0; i < 4; ++i) mha.parameters()[i].data = win.parameters()[i].data;
  const auto x = random_tensor<double, 3>({3, 4, 12}, 9);
  ATTN_REQUIRE_CLOSE(win.forward(x), mha.forward(x), 1e-13, 1e-13);
}

TEST_CASE("window: the feature-map entry partitions, shifts, masks, reverses and crops", "[window]") {
  WA layer({.dim = 6, .window_size = 3, .num_heads = 2}, 2);
  randomize(layer, 40);
  // a map of exactly one window, no shift: the windows entry on its tokens
  const auto one = random_tensor<double, 4>({2, 3, 3, 6}, 1);
  const auto y1 = layer.forward_map(one);
  const auto y1w = layer.forward(attn::Tensor<double, 3>(one.reshape(std::array<Index, 3>{2, 9, 6})));
  for (Index b = 0; b < 2; ++b)
    for (Index n = 0; n < 9; ++n)
      for (Index c = 0; c < 6; ++c) REQUIRE(y1(b, n / 3, n % 3, c) == y1w(b, n, c));
  // 5x4 map (padded to 6x6, four windows), shift 1: by hand with the loops
  const Index Hs = 5, Ws = 4, w = 3, s = 1, Hp = 6, Wp = 6;
  const auto x = random_tensor<double, 4>({2, Hs, Ws, 6}, 2);
  attn::Tensor<double, 3> tokens(2 * 4, 9, 6);
  std::vector<int> label(static_cast<std::size_t>(2 * 4 * 9));
  const auto region = [&](Index v, Index n) { return v < n - w ? 0 : (v < n - s ? 1 : 2); };
  for (Index b = 0; b < 2; ++b)
    for (Index wi = 0; wi < 2; ++wi)
      for (Index wj = 0; wj < 2; ++wj)
        for (Index a = 0; a < 3; ++a)
          for (Index c = 0; c < 3; ++c) {
            const Index win = (b * 2 + wi) * 2 + wj, n = a * 3 + c;
            const Index yr = wi * 3 + a, xc = wj * 3 + c;              // shifted, padded coordinates
            const Index sr = (yr + s) % Hp, sc = (xc + s) % Wp;         // source in the padded map
            for (Index f = 0; f < 6; ++f) tokens(win, n, f) = sr < Hs && sc < Ws ? x(b, sr, sc, f) : 0.0;
            label[static_cast<std::size_t>(win * 9 + n)] = 3 * region(yr, Hp) + region(xc, Wp);
          }
  const auto yt = naive_window(layer, tokens, [&](Index b, Index, Index i, Index j) {
    return label[static_cast<std::size_t>(b * 9 + i)] == label[static_cast<std::size_t>(b * 9 + j)] ? 0.0 : -100.0;
  });
  const auto y = layer.forward_map(x, s);
  REQUIRE(y.dimension(1) == Hs);
  REQUIRE(y.dimension(2) == Ws);
  for (Index b = 0; b < 2; ++b)
    for (Index r = 0; r < Hs; ++r)
      for (Index c = 0; c < Ws; ++c) {
        const Index yr = (r - s + Hp) % Hp, xc = (c - s + Wp) % Wp;  // where pixel (r, c) went
        const Index win = (b * 2 + yr / 3) * 2 + xc / 3, n = (yr % 3) * 3 + xc % 3;
        for (Index f = 0; f < 6; ++f) REQUIRE(y(b, r, c, f) == Approx(yt(win, n, f)).margin(1e-12));
      }
  const auto rw = layer.forward_map_with_weights(x, s);
  REQUIRE(rw.weights.dimension(0) == 8);
  ATTN_REQUIRE_CLOSE(rw.output, y, 0.0, 0.0);
}

TEST_CASE("window: bad shapes give ShapeErrors naming the layer", "[window]") {
  const WA layer({.dim = 8, .window_size = 2, .num_heads = 2});
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 3>({2, 5, 8}, 1)),
                      "window: Input sequence length (5) does not match the square of the window_size (2^2 = 4). "
                      "WindowAttention requires the input to be a single window of tokens.");
  REQUIRE_THROWS_WITH(layer.forward(random_tensor<double, 3>({2, 4, 6}, 1)),
                      "window: input must have shape [*, *, 8] ([windows, window_size², dim]), got [2, 4, 6]");
  const auto x = random_tensor<double, 3>({6, 4, 8}, 1);
  REQUIRE_THROWS_WITH(layer.forward_windows(x, attn::Tensor<double, 3>(3, 4, 5)),
                      "window: window_mask must have shape [*, 4, 4] ([windows per image, N, N], additive), got [3, 4, "
                      "5]");
  attn::Tensor<double, 3> m4(4, 4, 4);
  m4.setZero();
  REQUIRE_THROWS_WITH(layer.forward_windows(x, m4),
                      "window: the 6 windows of the input are not a whole number of images of 4 windows (window_mask "
                      "[4, 4, 4])");
  REQUIRE_THROWS_AS(layer.forward_map(random_tensor<double, 4>({1, 4, 4, 8}, 1), 2), attn::ConfigError);
  REQUIRE_THROWS_WITH(layer.forward_map(random_tensor<double, 4>({1, 4, 4, 8}, 1), -1),
                      "window: shift_size must lie in [0, window_size) = [0, 2), got -1");
  REQUIRE_THROWS_WITH(layer.forward_map(random_tensor<double, 4>({1, 0, 4, 8}, 1)),
                      "window: forward_map input must have shape [batch, height >= 1, width >= 1, 8], got [1, 0, 4, 8]");
  REQUIRE_THROWS_WITH(WA({.dim = 8, .window_size = 1 << 20, .num_heads = 2}),
                      Catch::StartsWith("window: parameter 'window_size' (1048576): the relative-position index "
                                        "would take "));
  WA tampered = layer;
  tampered.parameters()[4].shape = {8, 2};
  REQUIRE_THROWS_AS(tampered.forward(x), attn::WeightsError);
  REQUIRE(layer.forward(attn::Tensor<double, 3>(0, 4, 8)).dimension(0) == 0);
}

TEST_CASE("window: 1 and 2 threads give bit-identical results", "[window][threads]") {
  const attn::WindowAttention<float> layer({.dim = 32, .window_size = 7, .num_heads = 2}, 2);
  const auto x = random_tensor<float, 4>({2, 21, 19, 32}, 8);
  const int saved = attn::num_threads();
  attn::set_num_threads(1);
  const auto a = layer.forward_map(x, 3);
  attn::set_num_threads(2);
  const auto b = layer.forward_map(x, 3);
  attn::set_num_threads(saved);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
}

// ---- golden parity (tools/golden/window.py, tests/data/window/) ----

TEMPLATE_TEST_CASE("golden: window matches Swin's window attention in torch", "[golden][window]", float, double) {
  using T = TestType;
  for_each_golden<T>("window", [](const Golden& g) {
    attn::WindowAttention<T> layer(g.config.get<attn::WindowAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    if (g.meta("entry") == "map") {
      const auto r = layer.forward_map_with_weights(input<T, 4>(g, "x"), std::stoi(g.meta("shift_size")));
      check<T>(g, "output", r.output);
      check<T>(g, "weights", r.weights);
    } else {
      const auto r = layer.forward_with_weights(input<T, 3>(g, "x"));
      check<T>(g, "output", r.output);
      check<T>(g, "weights", r.weights);
      auto any = attn::create_attention_layer<T>("window", g.config);
      attn::load_weights(any, g.file, "weights");
      check_through_door<T>(g, any, {attn::AnyTensor<T>(input<T, 3>(g, "x"))}, Mask{});
    }
  });
}
