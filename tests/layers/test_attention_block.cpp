// attention_block: an independent loop implementation in double (layer norm, Keras multi-head attention
// with rank-3 kernels, erf GELU MLP, pre/post residuals, the per-channel scale) on several map sizes with
// the same layer; the inner types through identities (window over one whole window with a zero bias
// table equals Keras MHA on the repacked kernels; group_query and differential equal the standalone
// layers on the block's weights); the spec's hints (use_layer_scale = false is the plain encoder layer, a
// fresh block is layer_scale_init times it); names, messages, shapes, threads, the load_weights round
// trip, and golden parity with torch (tools/golden/attention_block.py).
#include <attn/layers/attention_block.hpp>

#include <cmath>
#include <filesystem>
#include <string>

#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using L = attn::AttentionBlock<double>;
using attn::Json;
using T3 = attn::Tensor<double, 3>;
using T4 = attn::Tensor<double, 4>;

namespace {

const attn::Weight<double>& get(const L& l, const std::string& name) {
  const auto* w = l.parameters().find(name);
  REQUIRE(w != nullptr);
  return *w;
}
double at(const attn::Weight<double>& w, Index i) { return w.data[static_cast<std::size_t>(i)]; }

T3 naive_ln(const T3& x, const attn::Weight<double>& g, const attn::Weight<double>& b) {
  const Index C = x.dimension(2);
  T3 y(x.dimensions());
  for (Index i = 0; i < x.dimension(0); ++i)
    for (Index t = 0; t < x.dimension(1); ++t) {
      double m = 0, v = 0;
      for (Index c = 0; c < C; ++c) m += x(i, t, c);
      m /= double(C);
      for (Index c = 0; c < C; ++c) v += (x(i, t, c) - m) * (x(i, t, c) - m);
      v /= double(C);
      for (Index c = 0; c < C; ++c) y(i, t, c) = (x(i, t, c) - m) / std::sqrt(v + 1e-6) * at(g, c) + at(b, c);
    }
  return y;
}

T3 naive_mlp(const L& l, const T3& x) {
  T3 h = naive_dense(x, get(l, "vision_transformer/ffn/fc1/kernel"), &get(l, "vision_transformer/ffn/fc1/bias"));
  for (Index i = 0; i < h.size(); ++i) h.data()[i] = 0.5 * h.data()[i] * (1.0 + std::erf(h.data()[i] / std::sqrt(2.0)));
  return naive_dense(h, get(l, "vision_transformer/ffn/fc2/kernel"), &get(l, "vision_transformer/ffn/fc2/bias"));
}

/// Keras MultiHeadAttention with [D, h, d] kernels; returns {output, weights}.
std::pair<T3, T4> naive_kmha(const L& l, const T3& x) {
  const Index B = x.dimension(0), N = x.dimension(1), D = x.dimension(2), H = l.config().num_heads, d = D / H;
  const std::string p = "vision_transformer/attention/";
  const auto project = [&](const char* name) {
    const auto& k = get(l, p + name + "/kernel");
    const auto& b = get(l, p + name + "/bias");
    T4 out(B, H, N, d);
    for (Index i = 0; i < B; ++i)
      for (Index h = 0; h < H; ++h)
        for (Index n = 0; n < N; ++n)
          for (Index c = 0; c < d; ++c) {
            double s = at(b, h * d + c);
            for (Index e = 0; e < D; ++e) s += x(i, n, e) * at(k, (e * H + h) * d + c);
            out(i, h, n, c) = s;
          }
    return out;
  };
  const auto [o, w] = naive_attention(project("query"), project("key"), project("value"), 1.0 / std::sqrt(double(d)));
  const auto& ko = get(l, p + "attention_output/kernel");
  const auto& bo = get(l, p + "attention_output/bias");
  T3 y(B, N, D);
  for (Index i = 0; i < B; ++i)
    for (Index n = 0; n < N; ++n)
      for (Index e = 0; e < D; ++e) {
        double s = at(bo, e);
        for (Index h = 0; h < H; ++h)
          for (Index c = 0; c < d; ++c) s += o(i, h, n, c) * at(ko, (h * d + c) * D + e);
        y(i, n, e) = s;
      }
  return {y, w};
}

/// The block around `inner` ([B, N, D] -> [B, N, D]), written from the spec's formulas.
template <class Inner>
T4 naive_block(const L& l, const T4& x, Inner&& inner) {
  const Index B = x.dimension(0), Hs = x.dimension(1), Ws = x.dimension(2), D = x.dimension(3);
  const T3 t = x.reshape(std::array<Index, 3>{B, Hs * Ws, D});
  const auto& g1 = get(l, "vision_transformer/attention_norm/gamma");
  const auto& b1 = get(l, "vision_transformer/attention_norm/beta");
  const auto& g2 = get(l, "vision_transformer/output_norm/gamma");
  const auto& b2 = get(l, "vision_transformer/output_norm/beta");
  T3 y;
  if (l.config().normalization_position == "pre") {
    const T3 u = t + inner(naive_ln(t, g1, b1));
    y = u + naive_mlp(l, naive_ln(u, g2, b2));
  } else {
    const T3 u = naive_ln(t + inner(t), g1, b1);
    y = naive_ln(u + naive_mlp(l, u), g2, b2);
  }
  T4 out = y.reshape(std::array<Index, 4>{B, Hs, Ws, D});
  if (l.config().use_layer_scale) {
    const auto& s = get(l, "layer_scale/gamma");
    for (Index i = 0; i < out.size(); ++i) out.data()[i] *= at(s, i % D);
  }
  return out;
}

T4 naive_kmha_block(const L& l, const T4& x) {
  return naive_block(l, x, [&](const T3& u) { return naive_kmha(l, u).first; });
}

/// A standalone inner layer holding the block's inner weights (names without the prefix).
template <class Inner>
Inner standalone(const L& l, const typename Inner::Config& c) {
  Inner inner(c, 99);
  for (auto& w : inner.parameters()) w.data = get(l, "vision_transformer/attention/" + w.name).data;
  return inner;
}

std::string fail(const Json& params) {
  try {
    attn::validate_attention_config("attention_block", params);
  } catch (const attn::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("attention_block: weights have the reference's names, shapes, order and initializers", "[attention_block]") {
  const L l({.dim = 12, .num_heads = 3}, 3);
  const std::vector<std::pair<std::string, Shape>> expected{
      {"vision_transformer/attention_norm/gamma", {12}},
      {"vision_transformer/attention_norm/beta", {12}},
      {"vision_transformer/output_norm/gamma", {12}},
      {"vision_transformer/output_norm/beta", {12}},
      {"vision_transformer/attention/query/kernel", {12, 3, 4}},
      {"vision_transformer/attention/query/bias", {3, 4}},
      {"vision_transformer/attention/key/kernel", {12, 3, 4}},
      {"vision_transformer/attention/key/bias", {3, 4}},
      {"vision_transformer/attention/value/kernel", {12, 3, 4}},
      {"vision_transformer/attention/value/bias", {3, 4}},
      {"vision_transformer/attention/attention_output/kernel", {3, 4, 12}},
      {"vision_transformer/attention/attention_output/bias", {12}},
      {"vision_transformer/ffn/fc1/kernel", {12, 48}},
      {"vision_transformer/ffn/fc1/bias", {48}},
      {"vision_transformer/ffn/fc2/kernel", {48, 12}},
      {"vision_transformer/ffn/fc2/bias", {12}},
      {"layer_scale/gamma", {12}}};
  REQUIRE(l.parameters().size() == expected.size());  // the spec's 17 tensors
  for (std::size_t i = 0; i < expected.size(); ++i) {
    CHECK(l.parameters()[i].name == expected[i].first);
    CHECK(l.parameters()[i].shape == expected[i].second);
  }
  for (const auto& w : l.parameters()) {
    const bool gamma = w.name.ends_with("norm/gamma");
    const bool bias = w.name.ends_with("bias") || w.name.ends_with("beta");
    if (w.name == "layer_scale/gamma") {
      for (double v : w.data) REQUIRE(v == 1e-4);
    } else if (gamma || bias) {
      for (double v : w.data) REQUIRE(v == (gamma ? 1.0 : 0.0));
    } else {  // glorot_uniform with Keras's fans (rank 3: receptive field = the leading extent)
      const auto& s = w.shape;
      const double fan_in = s.size() == 3 ? double(s[0] * s[1]) : double(s[0]);
      const double fan_out = s.size() == 3 ? double(s[0] * s[2]) : double(s[1]);
      const double limit = std::sqrt(6.0 / (fan_in + fan_out));
      double mx = 0;
      for (double v : w.data) mx = std::max(mx, std::abs(v));
      CHECK(mx <= limit);
      CHECK(mx > 0.5 * limit);
    }
  }
  // mlp_ratio truncates; no scale weight without use_layer_scale
  const L small({.dim = 10, .num_heads = 2, .mlp_ratio = 1.35, .use_layer_scale = false});
  REQUIRE(get(small, "vision_transformer/ffn/fc1/kernel").shape == Shape{10, 13});
  REQUIRE(small.parameters().find("layer_scale/gamma") == nullptr);
  // the other inner types: their own weights under the prefix
  const L win({.dim = 8, .num_heads = 2, .attention_type = "window_attention"});
  REQUIRE(get(win, "vision_transformer/attention/relative_position_bias_table").shape == Shape{225, 2});
  REQUIRE(get(win, "vision_transformer/attention/qkv/kernel").shape == Shape{8, 24});
  const L gq({.dim = 8, .num_heads = 2, .attention_type = "group_query", .attention_args = {.n_kv_head = 1}});
  REQUIRE(get(gq, "vision_transformer/attention/w_k/kernel").shape == Shape{8, 4});
  REQUIRE(get(gq, "vision_transformer/attention/w_o/bias").shape == Shape{8});  // biases on, as the reference
  REQUIRE_FALSE(get(gq, "vision_transformer/attention/rope/cos_cached").trainable);
  const L diff({.dim = 8, .num_heads = 2, .attention_type = "differential_attention"});
  REQUIRE(get(diff, "vision_transformer/attention/attention2/query/kernel").shape == Shape{8, 2, 4});
  REQUIRE(get(diff, "vision_transformer/attention/lambda_param").data[0] == 0.8);
  REQUIRE(diff.parameters().size() == 4 + 19 + 4 + 1);
}

TEST_CASE("attention_block: validation messages and order", "[attention_block]") {
  const Json ok{{"dim", 12}, {"num_heads", 3}};
  REQUIRE(fail(ok) == "(no error)");
  // every parameter of the reference registry, at its factory defaults
  REQUIRE(fail({{"dim", 16},
                {"num_heads", 8},
                {"mlp_ratio", 4.0},
                {"attention_type", "multi_head_attention"},
                {"normalization_position", "pre"},
                {"dropout_rate", 0.0},
                {"use_layer_scale", true},
                {"layer_scale_init", 1e-4}}) == "(no error)");
  REQUIRE(fail({{"dim", 0}}) == "Parameter 'dim' must be positive, got 0");
  REQUIRE(fail({{"dim", 12}, {"num_heads", -1}}) == "Parameter 'num_heads' must be positive, got -1");
  REQUIRE(fail({{"dim", 10}, {"num_heads", 3}}) == "dim (10) must be divisible by num_heads (3)");
  REQUIRE(fail({{"dim", 12}, {"num_heads", 3}, {"mlp_ratio", 0.0}}) == "mlp_ratio must be positive, got 0.0");
  REQUIRE(fail({{"dim", 12}, {"num_heads", 3}, {"mlp_ratio", 0.05}}) ==
          "intermediate_size must be positive when moe_config is None, got 0");
  REQUIRE(fail({{"dim", 12}, {"num_heads", 3}, {"dropout_rate", 1.5}}) ==
          "Parameter 'dropout_rate' must be between 0.0 and 1.0, got 1.5");
  REQUIRE(fail({{"dim", 12}, {"num_heads", 3}, {"dropout_rate", 1.0}}) ==
          "dropout_rate must be in [0.0, 1.0), got 1.0");
  REQUIRE(fail({{"dim", 12}, {"num_heads", 3}, {"use_layer_scale", false}, {"layer_scale_init", 0.0}}) ==
          "layer_scale_init must be positive, got 0.0");
  REQUIRE(fail({{"dim", 12}, {"num_heads", 3}, {"normalization_position", "pots"}}) ==
          "Parameter 'normalization_position' of 'attention_block' must be one of ['pre', 'post'], got 'pots'. "
          "Did you mean 'post'?");
  const std::string types = fail({{"dim", 12}, {"num_heads", 3}, {"attention_type", "window_attn"}});
  CHECK_THAT(types, Catch::StartsWith("Parameter 'attention_type' of 'attention_block' must be one of "
                                      "['multi_head_attention', 'window_attention', 'group_query_attention', "
                                      "'differential_attention', 'multi_head', 'window', 'group_query', "
                                      "'differential'], got 'window_attn'. Did you mean"));
  // through the factory: the reference's wrapping
  std::string wrapped;
  try {
    (void)attn::create_attention_layer<float>("attention_block", {{"dim", 0}});
  } catch (const attn::ConfigError& e) {
    wrapped = e.what();
  }
  CHECK_THAT(wrapped, Catch::StartsWith("Failed to create 'attention_block' layer (AttentionBlock). Required: ['dim']."));
  CHECK_THAT(wrapped, Catch::EndsWith("Original error: Parameter 'dim' must be positive, got 0"));
}

TEST_CASE("attention_block: attention_type spellings, attention_args and their messages", "[attention_block]") {
  // attn's type names are aliases of the reference's spellings: the same layer, the spelling kept
  for (const auto& [ref, alias] : std::vector<std::pair<std::string, std::string>>{
           {"multi_head_attention", "multi_head"},
           {"window_attention", "window"},
           {"group_query_attention", "group_query"},
           {"differential_attention", "differential"}}) {
    const Json a{{"dim", 8}, {"num_heads", 2}, {"attention_type", ref}};
    Json b = a;
    b["attention_type"] = alias;
    const auto la = attn::create_attention_layer<double>("attention_block", a, "", 4);
    const auto lb = attn::create_attention_layer<double>("attention_block", b, "", 4);
    REQUIRE(lb.config().at("attention_type") == alias);
    const auto x = random_any<double>({2, 8, 8, 8}, 5);
    const auto ya = la.forward(x), yb = lb.forward(x);
    REQUIRE(compare(ya.template view<4>(), yb.template view<4>(), 0, 0).ok);
  }
  // the nested options: unknown keys with a did-you-mean, kinds, ranges, options of another inner type
  const Json base{{"dim", 8}, {"num_heads", 2}, {"attention_type", "window_attention"}};
  Json j = base;
  j["attention_args"] = {{"window_sise", 4}};
  REQUIRE(fail(j) ==
          "Unknown parameter 'attention_args.window_sise' for 'attention_block'. Did you mean "
          "'attention_args.window_size'? Accepted parameters: ['attention_args.window_size', "
          "'attention_args.shift_size', 'attention_args.n_kv_head', 'attention_args.max_seq_len', "
          "'attention_args.rope_percentage', 'attention_args.rope_theta', 'attention_args.head_dim', "
          "'attention_args.lambda_init', 'attention_args.layer_idx']");
  j["attention_args"] = {{"window_size", 0}};
  REQUIRE(fail(j) == "attention_args.window_size must be positive, got 0");
  j["attention_args"] = {{"window_size", 4}, {"shift_size", 4}};
  REQUIRE(fail(j) == "attention_args.shift_size must be smaller than window_size (4), got 4");
  j["attention_args"] = {{"n_kv_head", 1}};
  REQUIRE(fail(j) == "attention_args.n_kv_head is not an option of attention_type 'window_attention'");
  j["attention_args"] = "window";
  CHECK_THAT(fail(j), Catch::StartsWith("Parameter 'attention_args' of 'attention_block' must be an object"));
  j = {{"dim", 8}, {"num_heads", 4}, {"attention_type", "group_query"}, {"attention_args", {{"n_kv_head", 3}}}};
  REQUIRE(fail(j) == "attention_args (group_query attention): n_head (4) must be divisible by n_kv_head (3)");
  j = {{"dim", 8}, {"num_heads", 2}, {"attention_type", "differential"}, {"attention_args", {{"lambda_init", 1.5}}}};
  REQUIRE(fail(j) == "attention_args.lambda_init must be between 0.0 and 1.0, got 1.5");
  j["attention_args"] = {{"head_dim", 3}, {"layer_idx", 2}};
  REQUIRE(fail(j) == "(no error)");
  // the problem's parameter is the dotted path; the JSON round trip keeps the nested options
  const auto problems = attn::check_attention_config(
      "attention_block", {{"dim", 8}, {"num_heads", 2}, {"attention_args", {{"rope_theta", 100.0}}}});
  REQUIRE(problems.size() == 1);
  REQUIRE(problems[0].parameter == "attention_args.rope_theta");
  const auto layer = attn::create_attention_layer<float>("attention_block", j);
  REQUIRE(layer.config().at("attention_args").at("head_dim") == 3);
  Json full{{"type", "attention_block"}, {"name", "b"}};
  full.update(layer.config());
  Json again = attn::create_attention_from_config<float>(full).config();
  REQUIRE(again.at("name") == "b");
  again.erase("name");
  REQUIRE(again == layer.config());
}

TEST_CASE("attention_block: equals an independent loop implementation, any map size per call", "[attention_block]") {
  for (const char* pos : {"pre", "post"})
    for (const bool scale : {true, false}) {
      L l({.dim = 12, .num_heads = 3, .mlp_ratio = 1.5, .normalization_position = pos, .use_layer_scale = scale}, 2);
      randomize_weights(l, 40);
      // one layer, several sizes in turn: the spatial size is read from every input
      for (const auto& hw : std::vector<std::pair<Index, Index>>{{7, 9}, {1, 1}, {3, 4}, {7, 9}}) {
        const auto x = random_tensor<double, 4>({3, hw.first, hw.second, 12}, 7);
        const auto r = l.forward_with_weights(x);
        ATTN_REQUIRE_CLOSE(r.output, naive_kmha_block(l, x), 1e-12, 1e-12);
        if (std::string(pos) == "pre") {
          const T3 t = x.reshape(std::array<Index, 3>{3, hw.first * hw.second, 12});
          const auto ln = naive_ln(t, get(l, "vision_transformer/attention_norm/gamma"),
                                   get(l, "vision_transformer/attention_norm/beta"));
          ATTN_REQUIRE_CLOSE(r.weights, naive_kmha(l, ln).second, 1e-12, 1e-12);
        }
      }
    }
}

TEST_CASE("attention_block: the spec's hints: no scale is the encoder layer, a fresh block is 1e-4 times it",
          "[attention_block]") {
  L plain({.dim = 8, .num_heads = 2, .use_layer_scale = false}, 11);
  randomize_weights(plain, 3);
  L scaled({.dim = 8, .num_heads = 2}, 12);  // layer_scale/gamma = 1e-4, the rest copied by name
  for (const auto& w : plain.parameters()) scaled.parameters().find(w.name)->data = w.data;
  const auto x = random_tensor<double, 4>({2, 3, 5, 8}, 4);
  const T4 y = plain.forward(x), ys = scaled.forward(x);
  ATTN_REQUIRE_CLOSE(y, naive_kmha_block(plain, x), 1e-12, 1e-12);
  T4 expected = y * 1e-4;
  ATTN_REQUIRE_CLOSE(ys, expected, 1e-15, 1e-18);
  // no outer residual: zero attention and MLP output kernels and biases leave LN2(LN1(x)) (post)
  // resp. x itself (pre) before the scale
  L pre({.dim = 8, .num_heads = 2, .use_layer_scale = false}, 1);
  for (auto& w : pre.parameters())
    if (w.name.find("attention_output") != std::string::npos || w.name.find("fc2") != std::string::npos)
      std::fill(w.data.begin(), w.data.end(), 0.0);
  ATTN_REQUIRE_CLOSE(pre.forward(x), x, 0, 0);
}

TEST_CASE("attention_block: window inner over one whole window with a zero table equals Keras MHA",
          "[attention_block]") {
  for (const char* pos : {"pre", "post"}) {
    L win({.dim = 8, .num_heads = 2, .attention_type = "window_attention", .normalization_position = pos}, 5);
    randomize_weights(win, 60);
    auto& table = win.parameters().find("vision_transformer/attention/relative_position_bias_table")->data;
    std::fill(table.begin(), table.end(), 0.0);
    L mha({.dim = 8, .num_heads = 2, .normalization_position = pos}, 6);
    for (auto& w : mha.parameters())
      if (const auto* src = win.parameters().find(w.name)) w.data = src->data;
    // Keras Q/K/V kernels [8, 2, 4] are the column blocks of the fused qkv kernel [8, 24]
    const auto& qkv = get(win, "vision_transformer/attention/qkv/kernel").data;
    const auto& qkv_b = get(win, "vision_transformer/attention/qkv/bias").data;
    const char* names[3] = {"query", "key", "value"};
    for (Index j = 0; j < 3; ++j) {
      auto& k = mha.parameters().find(std::string("vision_transformer/attention/") + names[j] + "/kernel")->data;
      auto& b = mha.parameters().find(std::string("vision_transformer/attention/") + names[j] + "/bias")->data;
      for (Index r = 0; r < 8; ++r)
        for (Index c = 0; c < 8; ++c) k[static_cast<std::size_t>(r * 8 + c)] = qkv[static_cast<std::size_t>(r * 24 + j * 8 + c)];
      for (Index c = 0; c < 8; ++c) b[static_cast<std::size_t>(c)] = qkv_b[static_cast<std::size_t>(j * 8 + c)];
    }
    mha.parameters().find("vision_transformer/attention/attention_output/kernel")->data =
        get(win, "vision_transformer/attention/proj/kernel").data;
    mha.parameters().find("vision_transformer/attention/attention_output/bias")->data =
        get(win, "vision_transformer/attention/proj/bias").data;
    const auto x = random_tensor<double, 4>({2, 8, 8, 8}, 9);  // the default window_size 8: one window
    ATTN_REQUIRE_CLOSE(win.forward(x), naive_kmha_block(mha, x), 1e-12, 1e-12);
    const auto r = win.forward_with_weights(x);
    REQUIRE(r.weights.dimensions() == std::array<Index, 4>{2, 2, 64, 64});  // per window: 1 per image
  }
  // smaller windows: per-window weights [B·nW, h, w², w²] over the padded 7 x 9 map (2 x 3 windows)
  const L w4({.dim = 8, .num_heads = 2, .attention_type = "window", .attention_args = {.window_size = 4, .shift_size = 2}});
  const auto r = w4.forward_with_weights(random_tensor<double, 4>({3, 7, 9, 8}, 2));
  REQUIRE(r.weights.dimensions() == std::array<Index, 4>{18, 2, 16, 16});
}

TEST_CASE("attention_block: group_query and differential inner layers equal the standalone layers",
          "[attention_block]") {
  const auto x = random_tensor<double, 4>({2, 3, 5, 8}, 13);
  {
    L l({.dim = 8, .num_heads = 4, .attention_type = "group_query_attention", .normalization_position = "post",
         .attention_args = {.n_kv_head = 2, .max_seq_len = 20, .rope_theta = 100.0}},
        1);
    randomize_weights(l, 70);
    const auto gqa = standalone<attn::GroupedQueryAttention<double>>(l, l.config().group_query_config());
    ATTN_REQUIRE_CLOSE(l.forward(x), naive_block(l, x, [&](const T3& u) { return gqa.forward(u); }), 1e-12, 1e-12);
    REQUIRE(l.forward_with_weights(x).weights.dimensions() == std::array<Index, 4>{2, 4, 15, 15});
    // 15 tokens: more than max_seq_len is the inner layer's ShapeError
    REQUIRE_THROWS_AS(l.forward(random_tensor<double, 4>({1, 3, 7, 8}, 1)), attn::ShapeError);
  }
  {
    L l({.dim = 8, .num_heads = 2, .attention_type = "differential",
         .attention_args = {.head_dim = 3, .lambda_init = 0.5, .layer_idx = 3}},
        1);
    randomize_weights(l, 80);
    const auto diff = standalone<attn::DifferentialMultiHeadAttention<double>>(l, l.config().differential_config());
    ATTN_REQUIRE_CLOSE(l.forward(x), naive_block(l, x, [&](const T3& u) { return diff.forward(u); }), 1e-12, 1e-12);
    REQUIRE_THROWS_AS(l.forward_with_weights(x), attn::ConfigError);
  }
}

TEST_CASE("attention_block: load_weights round trip", "[attention_block]") {
  for (const char* type : {"multi_head_attention", "window", "group_query", "differential"}) {
    const Json params{{"dim", 8}, {"num_heads", 2}, {"attention_type", type}};
    const auto a = attn::create_attention_layer<double>("attention_block", params, "block", 1);
    auto b = attn::create_attention_layer<double>("attention_block", params, "block", 2);
    REQUIRE_FALSE(a == b);
    const auto path = attn_test::temp_path(fmt::format("{}.safetensors", type));
    attn::save_weights(a, path, "block");
    attn::load_weights(b, attn::SafeTensors::open(path), "block");
    std::filesystem::remove(path);
    REQUIRE(a == b);
    const auto x = random_any<double>({1, 4, 6, 8}, 3);
    REQUIRE(compare(a.forward(x).template view<4>(), b.forward(x).template view<4>(), 0, 0).ok);
  }
}

TEST_CASE("attention_block: bad shapes give ShapeErrors naming the layer", "[attention_block]") {
  const L l({.dim = 8, .num_heads = 2});
  REQUIRE_THROWS_WITH(l.forward(random_tensor<double, 4>({1, 3, 3, 6}, 1)),
                      "attention_block: Input channels (6) must match dim (8) (input shape [1, 3, 3, 6])");
  REQUIRE_THROWS_WITH(l.output_shape({2, 9, 8}), "attention_block: Expected 4D input, got 3D (input shape [2, 9, 8])");
  REQUIRE_THROWS_AS(l.forward(T4(1, 0, 3, 8)), attn::ShapeError);
  REQUIRE(l.forward(T4(0, 3, 3, 8)).dimension(0) == 0);
  L tampered = l;
  tampered.parameters()[5].data.pop_back();
  REQUIRE_THROWS_AS(tampered.forward(random_tensor<double, 4>({1, 3, 3, 8}, 1)), attn::WeightsError);
}

TEST_CASE("attention_block: float against double, and 1 and 2 threads give bit-identical results",
          "[attention_block][threads]") {
  for (const char* type : {"multi_head_attention", "window_attention", "group_query_attention", "differential_attention"}) {
    const Json params{{"dim", 32}, {"num_heads", 4}, {"attention_type", type},
                      {"normalization_position", "post"}, {"use_layer_scale", false}};
    const auto lf = attn::create_attention_layer<float>("attention_block", params, "", 7);
    const auto ld = attn::create_attention_layer<double>("attention_block", params, "", 7);
    const auto xf = random_any<float>({2, 9, 11, 32}, 8);
    const auto xd = random_any<double>({2, 9, 11, 32}, 8);
    const auto yf = lf.forward(xf);
    CHECK(compare(yf.template view<4>(), ld.forward(xd).template view<4>(), 1e-4, 1e-5).ok);
    REQUIRE(same_bits_for_1_and_2_threads([&] { return attn::Tensor<float, 4>(lf.forward(xf).template view<4>()); }));
  }
}

// ---- golden parity (tools/golden/attention_block.py, tests/data/attention_block/) ----

// float through the factory only (its instance is compiled once in attn::layers): the typed double layer
// here also returns the attention weights, which the factory's door does not for map inputs.
TEMPLATE_TEST_CASE("golden: attention_block matches torch layer_norm, the inner attention, linear and gelu",
                   "[golden][attention_block]", float, double) {
  using T = TestType;
  for_each_golden<T>("attention_block", [](const Golden& g) {
    const auto x = input<T, 4>(g, "x");
    auto any = attn::create_attention_layer<T>("attention_block", g.config);
    attn::load_weights(any, g.file, "weights");
    check<T>(g, "output", any.forward(attn::AnyTensor<T>(x)).template view<4>());
    if constexpr (std::is_same_v<T, double>) {
      L layer(g.config.get<attn::AttentionBlockConfig>());
      attn::load_weights(layer, g.file, "weights");
      if (g.file.contains("expected/weights")) {
        const auto r = layer.forward_with_weights(x);
        check<T>(g, "output", r.output);
        check<T>(g, "weights", r.weights);
      } else {
        check<T>(g, "output", layer.forward(x));
      }
    }
  });
}
