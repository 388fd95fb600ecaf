// PyTorch interop: state_dicts built by hand (torch layouts and names), mapped into attn layers; checked
// element by element against the documented mapping and, for the forward pass, against plain loops
// written in torch's own formulation (y = x·Wᵀ + b). The parity against PyTorch itself is in
// test_golden.cpp.
#include "support.hpp"

#include <functional>

using namespace attn_test;
using attn::SafeTensorsWriter;

namespace {

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

/// A torch-layout tensor with distinct values: v(flat i) = base + 0.01·i, alternating sign.
std::vector<double> distinct(Index n, double base) {
  std::vector<double> v(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i)
    v[static_cast<std::size_t>(i)] = (i % 2 ? -1.0 : 1.0) * (base + 0.01 * double(i));
  return v;
}

struct TorchMha {
  Index E = 4, kdim = 4;
  bool bias = true, separate = false;
  std::vector<double> wq, wk, wv, in_bias, out_w, out_b;

  TorchMha(Index e, Index kd, bool b, bool sep) : E(e), kdim(kd), bias(b), separate(sep) {
    wq = distinct(E * E, 0.1);
    wk = distinct(E * kdim, 0.2);
    wv = distinct(E * kdim, 0.3);
    in_bias = distinct(3 * E, 0.05);
    out_w = distinct(E * E, 0.4);
    out_b = distinct(E, 0.07);
  }
  /// The state_dict as nn.MultiheadAttention names it, under `prefix` (ending with '.').
  void write(SafeTensorsWriter& w, const std::string& prefix) const {
    if (separate) {
      w.add<double>(prefix + "q_proj_weight", {E, E}, wq);
      w.add<double>(prefix + "k_proj_weight", {E, kdim}, wk);
      w.add<double>(prefix + "v_proj_weight", {E, kdim}, wv);
    } else {
      std::vector<double> in(wq);
      in.insert(in.end(), wk.begin(), wk.end());
      in.insert(in.end(), wv.begin(), wv.end());
      w.add<double>(prefix + "in_proj_weight", {3 * E, E}, in);
    }
    if (bias) w.add<double>(prefix + "in_proj_bias", {3 * E}, in_bias);
    w.add<double>(prefix + "out_proj.weight", {E, E}, out_w);
    if (bias) w.add<double>(prefix + "out_proj.bias", {E}, out_b);
  }
  attn::SafeTensors file(const std::string& prefix = "") const {
    SafeTensorsWriter w;
    write(w, prefix);
    w.add<double>("unrelated.weight", {2}, std::vector<double>{1, 2});  // other modules of a state_dict
    return w.to_safetensors("state_dict.safetensors");
  }

  /// torch's forward, as plain loops: q = x·W_qᵀ + b_q (k, v from ctx), heads of d = E/h,
  /// softmax(q kᵀ/sqrt(d)) v, y = ctx·W_oᵀ + b_o.
  attn::Tensor<double, 3> forward(const attn::Tensor<double, 3>& x, const attn::Tensor<double, 3>& c,
                                  Index h) const {
    const Index B = x.dimension(0), T = x.dimension(1), S = c.dimension(1), d = E / h;
    auto proj = [&](const attn::Tensor<double, 3>& in, const std::vector<double>& w, Index in_dim,
                    Index bias_off) {
      attn::Tensor<double, 3> y(in.dimension(0), in.dimension(1), E);
      for (Index b = 0; b < in.dimension(0); ++b)
        for (Index t = 0; t < in.dimension(1); ++t)
          for (Index o = 0; o < E; ++o) {
            double s = bias ? in_bias[static_cast<std::size_t>(bias_off + o)] : 0.0;
            for (Index i = 0; i < in_dim; ++i) s += in(b, t, i) * w[static_cast<std::size_t>(o * in_dim + i)];
            y(b, t, o) = s;
          }
      return y;
    };
    const auto q = proj(x, wq, E, 0), k = proj(c, wk, kdim, E), v = proj(c, wv, kdim, 2 * E);
    attn::Tensor<double, 3> ctx(B, T, E);
    ctx.setZero();
    for (Index b = 0; b < B; ++b)
      for (Index hh = 0; hh < h; ++hh)
        for (Index i = 0; i < T; ++i) {
          std::vector<double> z(static_cast<std::size_t>(S));
          double mx = -1e300, sum = 0;
          for (Index j = 0; j < S; ++j) {
            double s = 0;
            for (Index e = 0; e < d; ++e) s += q(b, i, hh * d + e) * k(b, j, hh * d + e);
            z[static_cast<std::size_t>(j)] = s / std::sqrt(double(d));
            mx = std::max(mx, z[static_cast<std::size_t>(j)]);
          }
          for (auto& val : z) sum += (val = std::exp(val - mx));
          for (Index j = 0; j < S; ++j)
            for (Index e = 0; e < d; ++e)
              ctx(b, i, hh * d + e) += z[static_cast<std::size_t>(j)] / sum * v(b, j, hh * d + e);
        }
    attn::Tensor<double, 3> y(B, T, E);
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t)
        for (Index o = 0; o < E; ++o) {
          double s = bias ? out_b[static_cast<std::size_t>(o)] : 0.0;
          for (Index i = 0; i < E; ++i) s += ctx(b, t, i) * out_w[static_cast<std::size_t>(o * E + i)];
          y(b, t, o) = s;
        }
    return y;
  }
};

/// kernel [in, out] (row-major) at (i, o) == torch weight [out, in] at (o, i).
void require_transposed(const attn::Weight<double>& kernel, const std::vector<double>& torch_w, Index out,
                        Index in, Index row_offset = 0) {
  INFO("kernel " << kernel.name);
  REQUIRE(kernel.shape == Shape{in, out});
  for (Index o = 0; o < out; ++o)
    for (Index i = 0; i < in; ++i)
      REQUIRE(kernel.data[static_cast<std::size_t>(i * out + o)] ==
              torch_w[static_cast<std::size_t>((row_offset + o) * in + i)]);
}

const attn::Weight<double>& weight(const attn::WeightSet<double>& w, std::string_view name) {
  const auto* p = w.find(name);
  INFO("weight " << name);
  REQUIRE(p != nullptr);
  return *p;
}

std::vector<double> slice(const std::vector<double>& v, Index begin, Index end) {
  return {v.begin() + begin, v.begin() + end};
}

}  // namespace

TEST_CASE("torch: nn.Linear weight [out, in] becomes the kernel [in, out]", "[torch]") {
  const attn::AnyTensor<float> w(Shape{2, 3}, {1, 2, 3, 4, 5, 6});
  const auto k = attn::torch::linear_to_kernel(w);
  REQUIRE(k.shape() == Shape{3, 2});
  REQUIRE(k.values() == std::vector<float>{1, 4, 2, 5, 3, 6});
  REQUIRE_THROWS_AS(attn::torch::linear_to_kernel(attn::AnyTensor<float>(Shape{3})), attn::WeightsError);
  SafeTensorsWriter sw;
  sw.add<float>("lin.weight", {2, 3}, w.values());
  const auto st = sw.to_safetensors();
  REQUIRE(attn::torch::linear_kernel<double>(st, "lin.weight").values() ==
          std::vector<double>{1, 4, 2, 5, 3, 6});
  REQUIRE_THROWS_AS(attn::torch::linear_kernel<double>(st, "nope.weight"), attn::WeightsError);
  REQUIRE(attn::torch::key("a.b", "w") == "a.b.w");
  REQUIRE(attn::torch::key("a.b.", "w") == "a.b.w");
  REQUIRE(attn::torch::key("", "w") == "w");
}

TEST_CASE("torch: nn.MultiheadAttention maps into multi_head (fused) and self_attention (split)", "[torch]") {
  const TorchMha t(4, 4, true, false);
  const auto st = t.file("enc.attn.");
  const Index E = 4;
  std::vector<double> in(t.wq);
  in.insert(in.end(), t.wk.begin(), t.wk.end());
  in.insert(in.end(), t.wv.begin(), t.wv.end());

  attn::MultiHeadAttention<double> mh({.embed_dim = 4, .num_heads = 2, .use_bias = true});
  attn::torch::load_multihead_attention(mh, st, "enc.attn");  // prefix without the trailing dot
  require_transposed(weight(mh.parameters(), "qkv/kernel"), in, 3 * E, E);
  REQUIRE(weight(mh.parameters(), "qkv/bias").data == t.in_bias);
  require_transposed(weight(mh.parameters(), "proj/kernel"), t.out_w, E, E);
  REQUIRE(weight(mh.parameters(), "proj/bias").data == t.out_b);

  attn::SelfAttention<double> sa(
      {.embed_dim = 4, .num_heads = 2, .use_bias = true, .output_projection = true});
  attn::torch::load_multihead_attention(sa, st, "enc.attn.");
  require_transposed(weight(sa.parameters(), "query/kernel"), in, E, E, 0);
  require_transposed(weight(sa.parameters(), "key/kernel"), in, E, E, E);
  require_transposed(weight(sa.parameters(), "value/kernel"), in, E, E, 2 * E);
  REQUIRE(weight(sa.parameters(), "query/bias").data == slice(t.in_bias, 0, E));
  REQUIRE(weight(sa.parameters(), "key/bias").data == slice(t.in_bias, E, 2 * E));
  REQUIRE(weight(sa.parameters(), "value/bias").data == slice(t.in_bias, 2 * E, 3 * E));
  require_transposed(weight(sa.parameters(), "output/kernel"), t.out_w, E, E);
  REQUIRE(weight(sa.parameters(), "output/bias").data == t.out_b);

  // both compute torch's forward
  const auto x = random_tensor<double, 3>({2, 5, 4}, 3);
  const auto expected = t.forward(x, x, 2);
  ATTN_REQUIRE_CLOSE(mh.forward(x), expected, 1e-12, 1e-12);
  ATTN_REQUIRE_CLOSE(sa.forward(x), expected, 1e-12, 1e-12);

  // through AnyLayer too
  auto any = attn::create_attention_layer<double>("multi_head",
                                                  {{"embed_dim", 4}, {"num_heads", 2}, {"use_bias", true}});
  attn::torch::load_multihead_attention(any, st, "enc.attn.");
  REQUIRE(any.target<attn::MultiHeadAttention<double>>()->parameters()[0].data == mh.parameters()[0].data);
}

TEST_CASE("torch: nn.MultiheadAttention with kdim/vdim maps into cross_attention", "[torch]") {
  const TorchMha t(4, 3, true, true);
  const auto st = t.file("dec.cross.");
  attn::CrossAttention<double> ca(
      {.embed_dim = 4, .context_dim = 3, .num_heads = 2, .output_projection = true});
  attn::torch::load_multihead_attention(ca, st, "dec.cross");
  require_transposed(weight(ca.parameters(), "query/kernel"), t.wq, 4, 4);
  require_transposed(weight(ca.parameters(), "key/kernel"), t.wk, 4, 3);
  require_transposed(weight(ca.parameters(), "value/kernel"), t.wv, 4, 3);
  REQUIRE(weight(ca.parameters(), "value/bias").data == slice(t.in_bias, 8, 12));
  const auto x = random_tensor<double, 3>({2, 3, 4}, 4);
  const auto c = random_tensor<double, 3>({2, 6, 3}, 5);
  ATTN_REQUIRE_CLOSE(ca.forward(x, c), t.forward(x, c, 2), 1e-12, 1e-12);

  // multi_head projects q, k and v from one input: kdim != embed_dim cannot map
  attn::MultiHeadAttention<double> mh({.embed_dim = 4, .num_heads = 2, .use_bias = true});
  CHECK_THAT(message_of([&] { attn::torch::load_multihead_attention(mh, st, "dec.cross"); }),
             Catch::Contains("kdim/vdim (3, 3) != embed_dim (4)"));
}

TEST_CASE("torch: nn.MultiheadAttention mapping errors, a failed load leaves the layer unchanged",
          "[torch]") {
  const TorchMha t(4, 4, true, false);
  const TorchMha nobias(4, 4, false, false);
  using attn::torch::load_multihead_attention;

  attn::SelfAttention<double> sa(
      {.embed_dim = 4, .num_heads = 2, .use_bias = true, .output_projection = true}, 9);
  const auto before = sa.parameters();
  const auto unchanged = [&] {
    for (std::size_t i = 0; i < before.size(); ++i) REQUIRE(sa.parameters()[i].data == before[i].data);
  };

  SECTION("add_bias_kv") {
    SafeTensorsWriter w;
    t.write(w, "m.");
    w.add<double>("m.bias_k", {1, 1, 4}, std::vector<double>(4, 0.0));
    CHECK_THAT(message_of([&] { load_multihead_attention(sa, w.to_safetensors(), "m"); }),
               Catch::Contains("add_bias_kv"));
  }
  SECTION("the layer wants biases the module does not have") {
    CHECK_THAT(message_of([&] { load_multihead_attention(sa, nobias.file("m."), "m"); }),
               Catch::Contains("self_attention (SelfAttention): weight 'query/bias' needs torch tensor "
                               "'m.in_proj_bias'"));
  }
  SECTION("the wrong embedding width") {
    attn::SelfAttention<double> wide({.embed_dim = 8, .num_heads = 2, .output_projection = true});
    const auto msg = message_of([&] { load_multihead_attention(wide, t.file("m."), "m"); });
    CHECK_THAT(msg, Catch::Contains("weight 'query/kernel': expected shape [8, 8], found [4, 4]"));
    CHECK_THAT(msg, Catch::Contains("converted from torch.nn.MultiheadAttention under prefix 'm'"));
  }
  SECTION("not an nn.MultiheadAttention under the prefix") {
    CHECK_THAT(message_of([&] { load_multihead_attention(sa, t.file("m."), "other"); }),
               Catch::Contains("has neither 'other.in_proj_weight' nor 'other.q_proj_weight'"));
    SafeTensorsWriter w;
    w.add<double>("in_proj_weight", {10, 4}, std::vector<double>(40, 0.0));
    w.add<double>("out_proj.weight", {4, 4}, std::vector<double>(16, 0.0));
    CHECK_THAT(message_of([&] { load_multihead_attention(sa, w.to_safetensors()); }),
               Catch::Contains("expected shape [3·E, E], found [10, 4]"));
    SafeTensorsWriter w2;
    w2.add<double>("in_proj_weight", {12, 4}, std::vector<double>(48, 0.0));
    CHECK_THAT(message_of([&] { load_multihead_attention(sa, w2.to_safetensors()); }),
               Catch::Contains("has no tensor 'out_proj.weight'"));
  }
  SECTION("a layer of another kind") {
    attn::ChannelAttention<double> ch({.channels = 4, .ratio = 2});
    CHECK_THAT(
        message_of([&] { load_multihead_attention(ch, t.file()); }),
        Catch::Contains("channel (ChannelAttention): nn.MultiheadAttention maps to layers with weights"));
  }
  unchanged();

  SECTION("torch tensors without a slot: an error unless allow_extra") {
    attn::MultiHeadAttention<double> plain({.embed_dim = 4, .num_heads = 2});  // use_bias = false
    CHECK_THAT(message_of([&] { load_multihead_attention(plain, t.file()); }),
               Catch::Contains("torch tensor 'in_proj_bias' in 'state_dict.safetensors' has no counterpart"));
    load_multihead_attention(plain, t.file(), "", {.allow_extra = true});
    require_transposed(weight(plain.parameters(), "proj/kernel"), t.out_w, 4, 4);
    attn::SelfAttention<double> no_out({.embed_dim = 4, .num_heads = 2});  // no output projection
    CHECK_THAT(message_of([&] { load_multihead_attention(no_out, t.file()); }),
               Catch::Contains("build it with output_projection = true"));
  }
}

TEST_CASE("torch: grouped-query attention from q/k/v/o nn.Linear weights", "[torch]") {
  // d_model 8, 4 query heads, 2 kv heads, head width 2
  const Index D = 8, d = 2;
  const auto wq = distinct(8 * D, 0.1), wk = distinct(4 * D, 0.2), wv = distinct(4 * D, 0.3),
             wo = distinct(D * 8, 0.4);
  const auto bq = distinct(8, 0.01), bk = distinct(4, 0.02), bv = distinct(4, 0.03), bo = distinct(8, 0.04);
  const auto make = [&](const std::string& p, bool bias, const attn::torch::GroupedQueryNames& n = {}) {
    SafeTensorsWriter w;
    w.add<double>(p + n.q_weight, {8, D}, wq);
    w.add<double>(p + n.k_weight, {4, D}, wk);
    w.add<double>(p + n.v_weight, {4, D}, wv);
    w.add<double>(p + n.o_weight, {D, 8}, wo);
    if (bias) {
      w.add<double>(p + n.q_bias, {8}, bq);
      w.add<double>(p + n.k_bias, {4}, bk);
      w.add<double>(p + n.v_bias, {4}, bv);
      w.add<double>(p + n.o_bias, {8}, bo);
    }
    return w.to_safetensors();
  };
  const attn::GroupedQueryAttentionConfig cfg{
      .d_model = 8, .n_head = 4, .n_kv_head = 2, .max_seq_len = 5, .use_bias = true};
  attn::GroupedQueryAttention<double> layer(cfg, 3);
  const auto fresh = attn::GroupedQueryAttention<double>(cfg, 4).parameters();
  attn::torch::load_grouped_query(layer, make("model.layers.0.self_attn.", true), "model.layers.0.self_attn");
  const auto& w = layer.parameters();
  require_transposed(weight(w, "w_q/kernel"), wq, 8, D);
  require_transposed(weight(w, "w_k/kernel"), wk, 4, D);
  require_transposed(weight(w, "w_v/kernel"), wv, 4, D);
  require_transposed(weight(w, "w_o/kernel"), wo, D, 8);
  REQUIRE(weight(w, "w_k/bias").data == bk);
  REQUIRE(weight(w, "w_o/bias").data == bo);
  // the RoPE tables come from the config
  REQUIRE(weight(w, "rope/cos_cached").data == fresh.find("rope/cos_cached")->data);
  REQUIRE(weight(w, "rope/sin_cached").data == fresh.find("rope/sin_cached")->data);

  SECTION("custom names") {
    const attn::torch::GroupedQueryNames names{.q_weight = "wq.weight",
                                               .k_weight = "wk.weight",
                                               .v_weight = "wv.weight",
                                               .o_weight = "wo.weight",
                                               .q_bias = "wq.bias",
                                               .k_bias = "wk.bias",
                                               .v_bias = "wv.bias",
                                               .o_bias = "wo.bias"};
    attn::GroupedQueryAttention<double> other(cfg, 5);
    attn::torch::load_grouped_query(other, make("", true, names), "", {.names = names});
    REQUIRE(other.parameters()[0].data == w[0].data);
  }
  SECTION("bias mismatches") {
    attn::GroupedQueryAttention<double> other(cfg, 5);
    CHECK_THAT(message_of([&] { attn::torch::load_grouped_query(other, make("", false)); }),
               Catch::Contains("weight 'w_q/bias' needs torch tensor 'q_proj.bias'"));
    attn::GroupedQueryAttention<double> plain({.d_model = 8, .n_head = 4, .n_kv_head = 2, .max_seq_len = 5});
    CHECK_THAT(message_of([&] { attn::torch::load_grouped_query(plain, make("", true)); }),
               Catch::Contains("torch tensor 'q_proj.bias'"));
    attn::torch::load_grouped_query(plain, make("", true), "", {.load = {.allow_extra = true}});
    REQUIRE(plain.parameters()[0].data == w[0].data);
  }
  SECTION("Qwen2-style: biases on q/k/v, none on o_proj") {
    SafeTensorsWriter sw;
    sw.add<double>("q_proj.weight", {8, D}, wq);
    sw.add<double>("k_proj.weight", {4, D}, wk);
    sw.add<double>("v_proj.weight", {4, D}, wv);
    sw.add<double>("o_proj.weight", {D, 8}, wo);
    sw.add<double>("q_proj.bias", {8}, bq);
    sw.add<double>("k_proj.bias", {4}, bk);
    sw.add<double>("v_proj.bias", {4}, bv);
    const auto qwen = sw.to_safetensors();
    attn::GroupedQueryAttention<double> q2({.d_model = 8, .n_head = 4, .n_kv_head = 2, .max_seq_len = 5,
                                            .qkv_bias = true},
                                           6);
    attn::torch::load_grouped_query(q2, qwen);
    REQUIRE(weight(q2.parameters(), "w_q/bias").data == bq);
    REQUIRE(weight(q2.parameters(), "w_v/bias").data == bv);
    REQUIRE(q2.parameters().find("w_o/bias") == nullptr);
    require_transposed(weight(q2.parameters(), "w_o/kernel"), wo, D, 8);
    // identity: the layer with every bias, loaded from the same file plus a zero o_proj.bias, agrees
    SafeTensorsWriter sz;
    sz.add<double>("q_proj.weight", {8, D}, wq);
    sz.add<double>("k_proj.weight", {4, D}, wk);
    sz.add<double>("v_proj.weight", {4, D}, wv);
    sz.add<double>("o_proj.weight", {D, 8}, wo);
    sz.add<double>("q_proj.bias", {8}, bq);
    sz.add<double>("k_proj.bias", {4}, bk);
    sz.add<double>("v_proj.bias", {4}, bv);
    sz.add<double>("o_proj.bias", {8}, std::vector<double>(8, 0.0));
    attn::GroupedQueryAttention<double> full(cfg, 6);
    attn::torch::load_grouped_query(full, sz.to_safetensors());
    const auto x = attn_test::random_tensor<double, 3>({2, 5, 8}, 9);
    ATTN_REQUIRE_CLOSE(q2.forward(x), full.forward(x), 1e-13, 1e-14);
    // a layer with an output bias cannot take this checkpoint, one without q/k/v biases neither
    CHECK_THAT(message_of([&] { attn::torch::load_grouped_query(full, qwen); }),
               Catch::Contains("weight 'w_o/bias' needs torch tensor 'o_proj.bias'"));
    attn::GroupedQueryAttention<double> proj_only(
        {.d_model = 8, .n_head = 4, .n_kv_head = 2, .max_seq_len = 5, .proj_bias = true});
    CHECK_THAT(message_of([&] { attn::torch::load_grouped_query(proj_only, qwen); }),
               Catch::Contains("torch tensor 'q_proj.bias' in '<memory>' has no counterpart"));
  }
  SECTION("wrong head layout") {
    attn::GroupedQueryAttention<double> mqa(
        {.d_model = 8, .n_head = 4, .n_kv_head = 1, .max_seq_len = 5, .use_bias = true});
    CHECK_THAT(message_of([&] { attn::torch::load_grouped_query(mqa, make("", true)); }),
               Catch::Contains("weight 'w_k/kernel': expected shape [8, 2], found [8, 4]"));
  }
  (void)d;
}

TEST_CASE("torch: rotate-half RoPE weights are reordered to interleaved pairs", "[torch]") {
  // d_model 16, 2 heads of 8, 1 kv head, rope_percentage 0.75: r = 6, pairs (i, i + 3) -> (2i, 2i + 1)
  const Index D = 16, d = 8;
  const auto wq = distinct(16 * D, 0.1), wk = distinct(8 * D, 0.2), wv = distinct(8 * D, 0.3),
             wo = distinct(D * 16, 0.4);
  const auto bq = distinct(16, 0.01), bk = distinct(8, 0.02);
  SafeTensorsWriter sw;
  sw.add<double>("q_proj.weight", {16, D}, wq);
  sw.add<double>("k_proj.weight", {8, D}, wk);
  sw.add<double>("v_proj.weight", {8, D}, wv);
  sw.add<double>("o_proj.weight", {D, 16}, wo);
  sw.add<double>("q_proj.bias", {16}, bq);
  sw.add<double>("k_proj.bias", {8}, bk);
  sw.add<double>("v_proj.bias", {8}, distinct(8, 0.03));
  sw.add<double>("o_proj.bias", {16}, distinct(16, 0.04));
  const auto st = sw.to_safetensors();
  auto layer = attn::create_attention_layer<double>("group_query", {{"d_model", 16},
                                                                    {"n_head", 2},
                                                                    {"n_kv_head", 1},
                                                                    {"max_seq_len", 4},
                                                                    {"rope_percentage", 0.75},
                                                                    {"use_bias", true}});
  attn::torch::load_grouped_query(layer, st, "", {.rope = attn::torch::RopeLayout::half_split});
  const auto& w = layer.parameters();
  // source feature of head h for destination feature f within the head
  const auto source = [](Index f) -> Index {
    if (f >= 6) return f;
    return f % 2 == 0 ? f / 2 : f / 2 + 3;
  };
  const auto& kq = weight(w, "w_q/kernel");
  for (Index h = 0; h < 2; ++h)
    for (Index f = 0; f < d; ++f)
      for (Index i = 0; i < D; ++i)
        REQUIRE(kq.data[static_cast<std::size_t>(i * 16 + h * d + f)] ==
                wq[static_cast<std::size_t>((h * d + source(f)) * D + i)]);
  const auto& kk = weight(w, "w_k/kernel");
  for (Index f = 0; f < d; ++f)
    for (Index i = 0; i < D; ++i)
      REQUIRE(kk.data[static_cast<std::size_t>(i * 8 + f)] ==
              wk[static_cast<std::size_t>(source(f) * D + i)]);
  for (Index f = 0; f < d; ++f) {
    REQUIRE(weight(w, "w_q/bias").data[static_cast<std::size_t>(d + f)] ==
            bq[static_cast<std::size_t>(d + source(f))]);
    REQUIRE(weight(w, "w_k/bias").data[static_cast<std::size_t>(f)] ==
            bk[static_cast<std::size_t>(source(f))]);
  }
  // values and the output projection are not reordered
  require_transposed(weight(w, "w_v/kernel"), wv, 8, D);
  require_transposed(weight(w, "w_o/kernel"), wo, D, 16);
}

TEST_CASE("torch: a general nn.Linear mapping", "[torch]") {
  // DistilBERT-like names: q_lin, k_lin, v_lin, out_lin
  SafeTensorsWriter sw;
  const auto q = distinct(16, 0.1), k = distinct(16, 0.2), v = distinct(16, 0.3), o = distinct(16, 0.4);
  sw.add<double>("attention.q_lin.weight", {4, 4}, q);
  sw.add<double>("attention.q_lin.bias", {4}, distinct(4, 0.5));
  sw.add<double>("attention.k_lin.weight", {4, 4}, k);
  sw.add<double>("attention.k_lin.bias", {4}, distinct(4, 0.6));
  sw.add<double>("attention.v_lin.weight", {4, 4}, v);
  sw.add<double>("attention.v_lin.bias", {4}, distinct(4, 0.7));
  sw.add<double>("attention.out_lin.weight", {4, 4}, o);
  sw.add<double>("attention.out_lin.bias", {4}, distinct(4, 0.8));
  const auto st = sw.to_safetensors();
  const std::vector<std::pair<std::string, std::string>> map{
      {"query", "q_lin"}, {"key", "k_lin"}, {"value", "v_lin"}, {"output", "out_lin"}};
  attn::SelfAttention<double> sa({.embed_dim = 4, .num_heads = 2, .output_projection = true});
  attn::torch::load_linears(sa, st, map, "attention");
  require_transposed(weight(sa.parameters(), "key/kernel"), k, 4, 4);
  require_transposed(weight(sa.parameters(), "output/kernel"), o, 4, 4);
  REQUIRE(weight(sa.parameters(), "value/bias").data == distinct(4, 0.7));
  attn::SelfAttention<double> no_bias(
      {.embed_dim = 4, .num_heads = 2, .use_bias = false, .output_projection = true});
  CHECK_THAT(message_of([&] { attn::torch::load_linears(no_bias, st, map, "attention"); }),
             Catch::Contains("'attention.q_lin.bias'"));
  attn::SelfAttention<double> no_out({.embed_dim = 4, .num_heads = 2});
  CHECK_THAT(message_of([&] { attn::torch::load_linears(no_out, st, map, "attention"); }),
             Catch::Contains(
                 "self_attention (SelfAttention): the mapping names 'output', but the layer has no weight "
                 "'output/kernel'"));
}
