// cross_attention: loop oracle, the seed's unscaled form via scale = 1, context masks, errors.
#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;
using CA = attn::CrossAttention<double>;

namespace {
attn::Tensor<double, 3> oracle(const CA& l, const attn::Tensor<double, 3>& x, const attn::Tensor<double, 3>& ctx,
                               double scale, const Keep& keep = nullptr) {
  const auto& c = l.config();
  const auto& w = l.parameters();
  const std::size_t st = c.use_bias ? 2 : 1;
  const auto b = [&](std::size_t i) { return c.use_bias ? &w[i + 1] : nullptr; };
  const Index H = c.num_heads;
  auto q = split_heads(naive_dense(x, w[0], b(0)), H);
  auto k = split_heads(naive_dense(ctx, w[st], b(st)), H);
  auto v = split_heads(naive_dense(ctx, w[2 * st], b(2 * st)), H);
  auto y = merge_heads(naive_attention(q, k, v, scale, keep).first);
  return c.output_projection ? naive_dense(y, w[3 * st], b(3 * st)) : y;
}
}  // namespace

TEST_CASE("cross_attention: weights and shapes", "[cross_attention]") {
  const CA l({.embed_dim = 4, .context_dim = 6, .num_heads = 2, .output_projection = true});
  REQUIRE(l.parameters()[0].shape == Shape{4, 4});
  REQUIRE(l.parameters()[2].name == "key/kernel");
  REQUIRE(l.parameters()[2].shape == Shape{6, 4});
  REQUIRE(l.parameters()[4].shape == Shape{6, 4});
  REQUIRE(l.parameters()[6].name == "output/kernel");
  REQUIRE(l.output_shape({2, 3, 4}, {2, 7, 6}) == Shape{2, 3, 4});
}

TEST_CASE("cross_attention: equals the loop oracle, scale = 1 is the seed's unscaled form", "[cross_attention]") {
  for (int heads : {1, 2})
    for (bool proj : {false, true}) {
      CA l({.embed_dim = 4, .context_dim = 3, .num_heads = heads, .output_projection = proj}, 5);
      for (auto& w : l.parameters())
        if (w.shape.size() == 1)
          for (std::size_t i = 0; i < w.data.size(); ++i) w.data[i] = 0.1 * double(i) - 0.2;
      const auto x = random_tensor<double, 3>({2, 3, 4}, 1);
      const auto c = random_tensor<double, 3>({2, 6, 3}, 2);
      ATTN_REQUIRE_CLOSE(l.forward(x, c), oracle(l, x, c, 1 / std::sqrt(4.0 / heads)), 1e-12, 1e-13);
    }
  CA seed({.embed_dim = 4, .scale = 1.0}, 5);
  const auto x = random_tensor<double, 3>({1, 2, 4}, 1);
  const auto c = random_tensor<double, 3>({1, 3, 4}, 2);
  ATTN_REQUIRE_CLOSE(seed.forward(x, c), oracle(seed, x, c, 1.0), 1e-12, 1e-13);
}

TEST_CASE("cross_attention: context padding mask and rank-3 mask", "[cross_attention]") {
  CA l({.embed_dim = 4, .num_heads = 2}, 3);
  const auto x = random_tensor<double, 3>({2, 3, 4}, 1);
  const auto c = random_tensor<double, 3>({2, 5, 4}, 2);
  attn::Tensor<bool, 2> pad(2, 5);
  pad.setConstant(true);
  pad(0, 4) = false;
  ATTN_REQUIRE_CLOSE(l.forward(x, c, {.key_padding = attn::KeyPaddingMask(pad)}),
                     oracle(l, x, c, 1 / std::sqrt(2.0), [&](Index b, Index, Index, Index j) { return pad(b, j); }),
                     1e-12, 1e-13);
  // padding equals truncating item 0's context
  attn::Tensor<double, 3> x0 = x.slice(std::array<Index, 3>{0, 0, 0}, std::array<Index, 3>{1, 3, 4});
  attn::Tensor<double, 3> c0 = c.slice(std::array<Index, 3>{0, 0, 0}, std::array<Index, 3>{1, 4, 4});
  const auto full = l.forward(x, c, {.key_padding = attn::KeyPaddingMask(pad)});
  const auto trunc = l.forward(x0, c0);
  for (Index t = 0; t < 3; ++t)
    for (Index f = 0; f < 4; ++f) REQUIRE(full(0, t, f) == Approx(trunc(0, t, f)).margin(1e-13));
  attn::Tensor<bool, 3> m3(2, 3, 5);
  m3.setConstant(false);  // everything masked: zeros (bias of the value projection is zero-init)
  const auto z = l.forward_with_weights(x, c, {.attn_mask = attn::AttnMask(m3)});
  for (Index i = 0; i < z.output.size(); ++i) REQUIRE(z.output.data()[i] == 0.0);
}

TEST_CASE("cross_attention: errors", "[cross_attention]") {
  const CA l({.embed_dim = 4, .context_dim = 6});
  REQUIRE_THROWS_WITH(l.forward(random_tensor<double, 3>({2, 3, 4}, 1), random_tensor<double, 3>({1, 5, 6}, 2)),
                      "cross_attention: context must have shape [2, *, 6] ([batch, S, context_dim] with the query's "
                      "batch), got [1, 5, 6]");
  REQUIRE_THROWS_AS(l.forward(random_tensor<double, 3>({2, 3, 5}, 1), random_tensor<double, 3>({2, 5, 6}, 2)),
                    attn::ShapeError);
  REQUIRE_THROWS_WITH(attn::validate_attention_config("cross_attention", {{"embed_dim", 4}, {"scale", 0}}),
                      "scale must be positive, got 0.0");
}

// ---- golden parity (tools/golden/cross_attention.py, tests/data/cross_attention/) ----

TEMPLATE_TEST_CASE("golden: cross_attention matches PyTorch linear, matmul and softmax", "[golden][cross_attention]", float,
                   double) {
  using T = TestType;
  for_each_golden<T>("cross_attention", [](const Golden& g) {
    attn::CrossAttention<T> layer(g.config.get<attn::CrossAttentionConfig>());
    attn::load_weights(layer, g.file, "weights");
    const auto mask = mask_of(g, "input/mask");
    const auto r = layer.forward_with_weights(input<T, 3>(g, "x"), input<T, 3>(g, "context"), mask.masks<T>());
    check<T>(g, "output", r.output);
    check<T>(g, "weights", r.weights);
    auto any = attn::create_attention_layer<T>("cross_attention", g.config);
    attn::load_weights(any, g.file, "weights");
    check_through_door<T>(g, any, {attn::AnyTensor<T>(input<T, 3>(g, "x")), attn::AnyTensor<T>(input<T, 3>(g, "context"))},
                          mask);
  });
}

namespace {
template <class M>
concept ForwardTakes = requires(const CA& l, const attn::Tensor<double, 3>& x, const M& m) { l.forward(x, x, m); };
}  // namespace

// The user's case: B = T = 4, S = 6. causal_mask(T, S) used to be read as [B, S] key padding (rank 2),
// so query 3 attended to keys 0..2 only. Its kind is now its type: as an attention mask it is [T, S];
// a raw tensor does not compile as a mask.
TEST_CASE("cross_attention: causal_mask(T, S) with B == T is an attention mask, never key padding",
          "[cross_attention][masks]") {
  static_assert(!ForwardTakes<attn::Tensor<bool, 2>>);  // a raw tensor is no mask
  static_assert(!ForwardTakes<attn::BoolMask>);           // nor a rank-erased view
  static_assert(ForwardTakes<attn::AttentionMasks<double>>);
  static_assert(!std::is_convertible_v<attn::Tensor<bool, 2>, attn::AttnMask>);
  static_assert(!std::is_convertible_v<attn::Tensor<bool, 2>, attn::KeyPaddingMask>);
  static_assert(!std::is_convertible_v<attn::Tensor<bool, 2>, attn::AttentionMasks<double>>);
  const Index B = 4, T = 4, S = 6;
  const CA l({.embed_dim = 8, .num_heads = 2}, 3);
  const auto x = random_tensor<double, 3>({B, T, 8}, 1);
  const auto c = random_tensor<double, 3>({B, S, 8}, 2);
  const auto cm = attn::causal_mask(T, S);
  const auto r = l.forward_with_weights(x, c, {.attn_mask = attn::AttnMask(cm)});
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < 2; ++h) {
      for (Index j = 0; j < S; ++j) REQUIRE(r.weights(b, h, 3, j) > 0.0);  // query 3 sees all 6 keys
      for (Index j = 0; j < S; ++j) REQUIRE((r.weights(b, h, 0, j) > 0.0) == (j <= 2));  // query 0: keys 0..2
    }
  const auto want = oracle(l, x, c, 0.5, [](Index, Index, Index i, Index j) { return j <= i + 2; });
  ATTN_REQUIRE_CLOSE(r.output, want, 1e-12, 1e-13);
  // the causal flag (per call, and in the config) gives the same
  ATTN_REQUIRE_CLOSE(l.forward(x, c, {.causal = true}), want, 1e-12, 1e-13);
  auto cfg = l.config();
  cfg.causal = true;
  CA causal(cfg, 3);
  ATTN_REQUIRE_CLOSE(causal.forward(x, c), want, 1e-12, 1e-13);
  // and through the factory's config
  const auto any = attn::create_attention_layer<double>("cross_attention", {{"embed_dim", 8}, {"num_heads", 2},
                                                                            {"causal", true}}, "", 3);
  ATTN_REQUIRE_CLOSE(any.forward({attn::AnyTensor<double>(x), attn::AnyTensor<double>(c)}).to_tensor<3>(), want,
                     1e-12, 1e-13);
  // the same tensor as key padding must say so, and then means [B, S] (here a valid shape)
  const auto kp = l.forward(x, c, {.key_padding = attn::KeyPaddingMask(cm)});
  ATTN_REQUIRE_CLOSE(kp, oracle(l, x, c, 0.5, [&](Index b, Index, Index, Index j) { return cm(b, j); }), 1e-12,
                     1e-13);
  // a [T, S] attention mask of the wrong key extent: a ShapeError, not a reinterpretation
  const auto wrong = attn::causal_mask(T, S + 1);
  REQUIRE_THROWS_WITH(l.forward(x, c, {.attn_mask = attn::AttnMask(wrong)}),
                      "cross_attention: attn_mask of shape [4, 7] does not broadcast to [4, 2, 4, 6] (the key axis "
                      "must equal S)");
}

TEST_CASE("cross_attention: key lengths, key padding with an attention mask, additive bias", "[cross_attention][masks]") {
  const CA l({.embed_dim = 4, .num_heads = 2, .output_projection = true}, 7);
  const auto x = random_tensor<double, 3>({2, 3, 4}, 1);
  const auto c = random_tensor<double, 3>({2, 5, 4}, 2);
  const std::vector<Index> lengths{5, 3};
  const auto ref = oracle(l, x, c, 1 / std::sqrt(2.0), [&](Index b, Index, Index, Index j) {
    return j < lengths[static_cast<std::size_t>(b)];
  });
  ATTN_REQUIRE_CLOSE(l.forward(x, c, {.key_lengths = lengths}), ref, 1e-12, 1e-13);
  // key padding AND an attention mask [B, T, S]: both apply
  attn::Tensor<bool, 2> pad(2, 5);
  pad.setConstant(true);
  pad(1, 0) = false;
  attn::Tensor<bool, 3> m3(2, 3, 5);
  for (Index b = 0; b < 2; ++b)
    for (Index i = 0; i < 3; ++i)
      for (Index j = 0; j < 5; ++j) m3(b, i, j) = (i + j + b) % 3 != 0;
  const auto both = l.forward(x, c, {.key_padding = attn::KeyPaddingMask(pad), .attn_mask = attn::AttnMask(m3)});
  ATTN_REQUIRE_CLOSE(both, oracle(l, x, c, 1 / std::sqrt(2.0), [&](Index b, Index, Index i, Index j) {
                       return pad(b, j) && m3(b, i, j);
                     }), 1e-12, 1e-13);
  // an additive bias of -inf equals masking
  attn::Tensor<double, 2> bias(3, 5);
  for (Index i = 0; i < 3; ++i)
    for (Index j = 0; j < 5; ++j) bias(i, j) = j == 1 ? -std::numeric_limits<double>::infinity() : 0.0;
  ATTN_REQUIRE_CLOSE(l.forward(x, c, {.bias = bias}),
                     oracle(l, x, c, 1 / std::sqrt(2.0), [](Index, Index, Index, Index j) { return j != 1; }), 1e-12,
                     1e-13);
  // a key padding mask with null data is not "no mask"
  REQUIRE_THROWS_WITH(l.forward(x, c, {.key_padding = attn::KeyPaddingMask(nullptr, Shape{2, 5})}),
                      "cross_attention: key_padding_mask of shape [2, 5] was given with null data; pass a "
                      "default-constructed mask for no mask");
}
