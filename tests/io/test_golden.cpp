// Golden parity tests of the functions and of the PyTorch interop: attn against reference computations
// built from PyTorch operators by tools/make_golden.py (tools/golden/sdpa.py, tools/golden/torch_mha.py;
// committed under tests/data/<type>/, see tests/support/golden.hpp). Each layer type's own golden case
// lives in tests/layers/test_<type>.cpp.
#include "support.hpp"
#include "support/golden.hpp"

using namespace attn_test;

TEMPLATE_TEST_CASE("golden: scaled_dot_product_attention matches PyTorch", "[golden][sdpa]", float, double) {
  using T = TestType;
  for_each_golden<T>("sdpa", [](const Golden& g) {
    const auto q = g.file.tensor<T>("input/q");
    const auto k = g.file.tensor<T>("input/k");
    const auto v = g.file.tensor<T>("input/v");
    const auto mask = mask_of(g, "input/mask");
    const attn::AnyTensor<T> bias =
        g.file.contains("input/bias") ? g.file.tensor<T>("input/bias") : attn::AnyTensor<T>();
    attn::SdpaOptions<T> o;
    if (mask.data) o.attn_mask = attn::AttnMask(mask.view());
    if (g.file.contains("input/bias")) {
      // a rank-3 bias [H, T, S] of the rank-4 cases is read with a leading 1 (attn refuses the
      // ambiguous rank 3 on rank-4 inputs; see ops/masks.hpp)
      Shape bs = bias.shape();
      if (q.rank() == 4 && bs.size() == 3) bs.insert(bs.begin(), 1);
      o.bias = attn::AttnBias<T>(bias.data(), bs);
    }
    o.causal = g.config.at("causal").get<bool>();
    if (!g.config.at("scale").is_null()) o.scale = g.config.at("scale").get<double>();
    const bool unscaled = g.config.at("function") == "dot_product_attention";
    const auto run = [&]<int R>(const attn::SdpaOptions<T>& opts) {
      const auto r = unscaled ? attn::dot_product_attention(q.template view<R>(), k.template view<R>(),
                                                            v.template view<R>())
                              : attn::scaled_dot_product_attention(q.template view<R>(), k.template view<R>(),
                                                                   v.template view<R>(), opts);
      check<T>(g, "output", r.output);
      check<T>(g, "weights", r.weights);
    };
    if (q.rank() == 4)
      run.template operator()<4>(o);
    else
      run.template operator()<3>(o);
    if (const auto lengths = g.file.meta("key_lengths")) {
      // the same padding through the key_lengths option, and as a key padding mask [B, S]
      const auto n = attn::Json::parse(*lengths).get<std::vector<Index>>();
      attn::SdpaOptions<T> o2;
      o2.key_lengths = n;
      run.template operator()<4>(o2);
      REQUIRE(mask.shape.size() == 4);
      attn::SdpaOptions<T> o3;
      o3.key_padding = attn::KeyPaddingMask(mask.data.get(), Shape{mask.shape[0], mask.shape[3]});
      run.template operator()<4>(o3);
    }
  });
}

TEMPLATE_TEST_CASE("golden: torch.nn.MultiheadAttention into multi_head, self_attention, cross_attention",
                   "[golden][torch]", float, double) {
  using T = TestType;
  for_each_golden<T>("torch_mha", [](const Golden& g) {
    const std::string prefix = g.meta("torch_prefix");
    const auto x = input<T, 3>(g, "x");
    const auto mask = mask_of(g, "input/key_padding");  // [B, S], 1 = a real key
    attn::Json split = g.config;
    split["output_projection"] = true;
    if (!g.file.contains("input/context")) {
      attn::MultiHeadAttention<T> mh(attn::Json{
          {"embed_dim", g.config.at("embed_dim")},
          {"num_heads", g.config.at("num_heads")},
          {"use_bias",
           g.config.at("use_bias")}}.get<attn::MultiHeadAttentionConfig>());
      attn::torch::load_multihead_attention(mh, g.file, prefix);
      const auto r = mh.forward_with_weights(x, mask.masks<T>());
      check<T>(g, "output", r.output);
      check<T>(g, "weights", r.weights);

      attn::SelfAttention<T> sa(split.get<attn::SelfAttentionConfig>());
      attn::torch::load_multihead_attention(sa, g.file, prefix);
      const auto s = sa.forward_with_weights(x, mask.masks<T>());
      check<T>(g, "output", s.output);
      check<T>(g, "weights", s.weights);

      // the type-erased path: the same through AnyLayer's forward door, mask and weights included
      auto any = attn::create_attention_layer<T>("self_attention", split);
      attn::torch::load_multihead_attention(any, g.file, prefix);
      attn::ForwardArgs<T> args;
      static_cast<attn::AttentionMasks<T>&>(args) = mask.masks<T>();
      args.inputs = {attn::AnyTensor<T>(x)};
      args.return_weights = true;
      const auto y = any.forward(args);
      check<T>(g, "output", y.output.template view<3>());
      REQUIRE(y.weights.has_value());
      check<T>(g, "weights", y.weights->template view<4>());
    } else {
      const auto ctx = input<T, 3>(g, "context");
      attn::CrossAttention<T> ca(split.get<attn::CrossAttentionConfig>());
      attn::torch::load_multihead_attention(ca, g.file, prefix);
      const auto r = ca.forward_with_weights(x, ctx, mask.masks<T>());
      check<T>(g, "output", r.output);
      check<T>(g, "weights", r.weights);
      auto any = attn::create_attention_layer<T>("cross_attention", split);
      attn::torch::load_multihead_attention(any, g.file, prefix);
      attn::ForwardArgs<T> args;
      static_cast<attn::AttentionMasks<T>&>(args) = mask.masks<T>();
      args.inputs = {attn::AnyTensor<T>(x), attn::AnyTensor<T>(ctx)};
      args.return_weights = true;
      const auto y = any.forward(args);
      check<T>(g, "output", y.output.template view<3>());
      check<T>(g, "weights", y.weights.value().template view<4>());
    }
  });
}
